//! One chaos run: a [`ChaosCluster`], a [`Workload`] of publishers and consuming host
//! instances going through the client proxies, and the nemesis applying its seeded
//! schedule; then everything healed, the history written and checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{ChaosCluster, ClusterOptions};
use crate::history::{self, History, HistoryReport};
use crate::nemesis::{self, Step};
use crate::workload::{Workload, WorkloadShape, declare_route, stored_message_ids};

/// After the last fault: how long the workload goes on with everything healed, so that
/// the run ends on a working replica set.
const QUIET_AFTER_FAULTS: Duration = Duration::from_secs(3);
/// How long the healed replica set may take to elect an active.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// A gap between acknowledgements longer than this is an unavailability window.
pub const UNAVAILABLE_AFTER: Duration = Duration::from_millis(500);
/// The nodes' write timeout: how long a write waits for a majority before `no_quorum`.
const WRITE_TIMEOUT_MS: u64 = 2_000;

#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub binary: PathBuf,
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    pub nodes: usize,
    /// Where the cluster's data, the node logs and the history go.
    pub out_dir: PathBuf,
    /// The fault kinds the nemesis may use (see [`nemesis::FAULT_KINDS`]).
    pub faults: Vec<String>,
    pub publishers: usize,
    pub consumers: usize,
}

/// A fault as it happened.
#[derive(Clone, Debug)]
pub struct AppliedFault {
    pub at_ms: u64,
    pub description: String,
    pub hold_ms: u64,
}

/// A stretch with no acknowledged publish, and the faults held during it.
#[derive(Clone, Debug)]
pub struct Window {
    /// When it began (the last acknowledgement before it), in milliseconds since the fault
    /// schedule began.
    pub from_ms: i64,
    pub milliseconds: i64,
    /// The faults whose hold overlapped it, as the schedule described them.
    pub during: Vec<String>,
}

pub struct ChaosReport {
    pub seed: u64,
    pub history_path: PathBuf,
    pub faults: Vec<AppliedFault>,
    pub history: HistoryReport,
    pub unavailable: Vec<Window>,
}

impl ChaosReport {
    /// The contract held: nothing acknowledged lost, nothing unpublished seen, no stale
    /// acknowledgement.
    pub fn passed(&self) -> bool {
        self.history.violations().is_empty()
    }
}

/// Runs the whole thing; `progress` gets a line per event.
pub async fn run(options: ChaosOptions, progress: impl Fn(&str)) -> Result<ChaosReport, String> {
    std::fs::create_dir_all(&options.out_dir)
        .map_err(|error| format!("cannot create {}: {error}", options.out_dir.display()))?;
    let allowed: Vec<&str> = options.faults.iter().map(String::as_str).collect();
    let steps = nemesis::schedule(options.seed, options.duration, &allowed);
    progress(&format!(
        "seed {}: {} faults over {} s on {} nodes; data and logs in {}",
        options.seed,
        steps.len(),
        options.duration.as_secs(),
        options.nodes,
        options.out_dir.display()
    ));
    let mut cluster = ChaosCluster::start(ClusterOptions {
        binary: options.binary.clone(),
        nodes: options.nodes,
        root: options.out_dir.join("cluster"),
        write_timeout_ms: WRITE_TIMEOUT_MS,
    })
    .await?;
    let clients = cluster.client_addresses();
    declare_route(&clients).await;
    let shape = WorkloadShape {
        publishers: options.publishers,
        consumers: options.consumers,
        id_prefix: format!("chaos{}", options.seed),
        ..WorkloadShape::default()
    };
    let history = Arc::new(History::default());
    let workload = Workload::start(&clients, &shape, history.clone());
    let started = Instant::now();
    let started_ms = history::now_ms();
    let faults = apply_schedule(&mut cluster, &steps, started, &progress).await;
    nemesis::heal(&mut cluster)?;
    cluster
        .wait_for_active(RECOVERY_TIMEOUT)
        .await
        .ok_or("the healed replica set elected no active")?;
    tokio::time::sleep(QUIET_AFTER_FAULTS).await;
    let history = workload.stop().await;
    progress("faults over, everything healed; checking the history");
    let active = cluster
        .wait_for_active(RECOVERY_TIMEOUT)
        .await
        .ok_or("no active at the end")?;
    let direct = cluster.direct_addresses();
    let remaining = stored_message_ids(direct[active.node_id as usize - 1]).await;
    let failovers = cluster.failovers().await;
    let report = history::check(&history, &remaining, &failovers);
    let history_path = options.out_dir.join("history.jsonl");
    history
        .write_jsonl(&history_path)
        .map_err(|error| format!("cannot write {}: {error}", history_path.display()))?;
    let unavailable = unavailability(&history.acknowledgement_times(), started_ms, &faults);
    Ok(ChaosReport {
        seed: options.seed,
        history_path,
        faults,
        unavailable,
        history: report,
    })
}

/// Applies each step in turn: waits its pause, applies its fault, holds it, heals.
async fn apply_schedule(
    cluster: &mut ChaosCluster,
    steps: &[Step],
    started: Instant,
    progress: &impl Fn(&str),
) -> Vec<AppliedFault> {
    let mut applied = Vec::new();
    for step in steps {
        tokio::time::sleep(step.pause).await;
        let at_ms = started.elapsed().as_millis() as u64;
        let description = match nemesis::resolve(cluster, step.fault.target()).await {
            None => format!("{} skipped: no such node now", step.fault),
            Some(node) => match nemesis::apply(cluster, step.fault, node).await {
                Ok(done) => done,
                Err(problem) => format!("{} failed: {problem}", step.fault),
            },
        };
        progress(&format!(
            "{:>7.1} s  {description} for {} ms",
            at_ms as f64 / 1000.0,
            step.hold.as_millis()
        ));
        tokio::time::sleep(step.hold).await;
        if let Err(problem) = nemesis::heal(cluster) {
            progress(&format!("healing failed: {problem}"));
        }
        applied.push(AppliedFault {
            at_ms,
            description,
            hold_ms: step.hold.as_millis() as u64,
        });
    }
    applied
}

/// The gaps between consecutive acknowledgements (wall-clock milliseconds) longer than
/// [`UNAVAILABLE_AFTER`], timed from `schedule_began_ms` (the wall clock when the fault
/// schedule began), each with the faults held during it.
fn unavailability(
    acknowledged_at_ms: &[i64],
    schedule_began_ms: i64,
    faults: &[AppliedFault],
) -> Vec<Window> {
    let limit = UNAVAILABLE_AFTER.as_millis() as i64;
    acknowledged_at_ms
        .windows(2)
        .filter(|pair| pair[1] - pair[0] > limit)
        .map(|pair| {
            let (from_ms, to_ms) = (pair[0] - schedule_began_ms, pair[1] - schedule_began_ms);
            Window {
                from_ms,
                milliseconds: to_ms - from_ms,
                during: faults_held_between(faults, from_ms, to_ms),
            }
        })
        .collect()
}

/// The descriptions of the faults held at some moment from `from_ms` to `to_ms`.
fn faults_held_between(faults: &[AppliedFault], from_ms: i64, to_ms: i64) -> Vec<String> {
    faults
        .iter()
        .filter(|fault| {
            let applied_ms = fault.at_ms as i64;
            applied_ms < to_ms && applied_ms + fault.hold_ms as i64 > from_ms
        })
        .map(|fault| fault.description.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_gaps_count_as_unavailable() {
        let windows = unavailability(&[0, 100, 200, 1_000, 1_100, 3_100], 0, &[]);
        let found: Vec<(i64, i64)> = windows
            .iter()
            .map(|window| (window.from_ms, window.milliseconds))
            .collect();
        assert_eq!(found, [(200, 800), (1_100, 2_000)]);
        assert!(unavailability(&[], 0, &[]).is_empty());
    }

    fn fault(at_ms: u64, hold_ms: u64, description: &str) -> AppliedFault {
        AppliedFault {
            at_ms,
            description: description.to_string(),
            hold_ms,
        }
    }

    #[test]
    fn a_window_is_timed_from_the_schedule_and_names_the_faults_held_during_it() {
        let faults = [
            fault(100, 300, "kill the active (node 1)"),
            fault(1_500, 1_000, "partition a passive (node 2)"),
            fault(2_800, 500, "client-cut the active (node 3)"),
            fault(4_000, 200, "delay 10 ms on a passive (node 2)"),
        ];
        let windows = unavailability(&[10_050, 10_300, 12_900, 13_000], 10_000, &faults);
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].from_ms, windows[0].milliseconds), (300, 2_600));
        assert_eq!(
            windows[0].during,
            [
                "kill the active (node 1)",
                "partition a passive (node 2)",
                "client-cut the active (node 3)"
            ]
        );
    }
}
