//! `tandem bench --failover`: publishers keep publishing (unique ids, retried with the same
//! id after any error, through every node's address) while the active of a 3-node replica
//! set is killed with SIGKILL halfway through. Reports the unavailability window (from the
//! kill to the first publish acknowledged in a newer term), then drains the queue and
//! reports acknowledged, lost and duplicated messages. `--runs N` repeats it on a new
//! replica set each time and sums up: the median and worst unavailability, and the lost and
//! duplicated messages of all runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_client::TandemClient;
use tandem_protocol::v1;

use crate::commands::bench::{
    BenchArgs, Printers, bench_property, completions, measure_runs, median, print_json,
};
use crate::commands::local_replica_set::LocalReplicaSet;
use crate::process_signal;

/// Calls that take longer than this count as failed and are retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before retrying a failed publish.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Give up when no publish has been acknowledged for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages leased per call while draining.
const DRAIN_BATCH: u32 = 1000;
const DRAIN_WAIT_MS: u64 = 500;

/// What the publishers saw.
#[derive(Default)]
struct History {
    acknowledged: HashSet<String>,
    /// When each acknowledgement arrived, and its term.
    acknowledgements: Vec<(Instant, u64)>,
    failed_attempts: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct FailoverReport {
    pub messages: usize,
    pub clients: usize,
    pub killed_node: u64,
    pub old_term: u64,
    pub new_term: u64,
    pub unavailable_ms: f64,
    pub acknowledged: usize,
    pub failed_attempts: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub publish_messages_per_second: f64,
}

/// What several runs add up to (`--runs`).
#[derive(Debug, serde::Serialize)]
pub struct FailoverSummary {
    pub runs: usize,
    pub unavailable_ms_median: f64,
    pub unavailable_ms_max: f64,
    pub acknowledged: usize,
    pub failed_attempts: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub publish_messages_per_second_median: f64,
}

#[derive(Debug, serde::Serialize)]
struct FailoverRuns<'a> {
    runs: &'a [FailoverReport],
    summary: FailoverSummary,
}

pub async fn run(args: &BenchArgs, json: bool) -> Result<(), String> {
    let printers = Printers {
        run: print_run,
        one: print_report,
        many: print_runs,
    };
    let command = "tandem bench --failover";
    measure_runs(command, args.runs, json, |run| measure(args, run), printers).await
}

/// One run on a replica set of its own.
async fn measure(args: &BenchArgs, run: u64) -> Result<FailoverReport, String> {
    let replica_set = LocalReplicaSet::start(args.nodes.max(3))?;
    let addresses = replica_set.addresses();
    let run_id = format!("{}-{run}", std::process::id());
    let host = format!("failover-{run_id}");
    declare_route(&addresses, &host, &run_id).await?;
    eprintln!(
        "tandem bench --failover: {} messages, {} clients; the active (node {}) is killed \
         halfway",
        args.messages, args.clients, replica_set.active_node
    );
    let history = Arc::new(Mutex::new(History::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let publisher = Publisher {
            addresses: addresses.clone(),
            run_id: run_id.clone(),
            body: vec![b'x'; args.body_bytes],
            batch: args.batch,
            total: args.messages,
            next: next.clone(),
            history: history.clone(),
        };
        publishers.spawn(publisher.run());
    }
    let (killed_at, old_term) = kill_active_halfway(&replica_set, &history, args.messages).await?;
    while let Some(result) = publishers.join_next().await {
        result.map_err(|error| format!("publisher task failed: {error}"))??;
    }
    let elapsed = started.elapsed();
    let delivered = drain(&addresses, &host).await?;
    let history = history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let first_new = history
        .acknowledgements
        .iter()
        .filter(|(at, term)| *at >= killed_at && *term > old_term)
        .min_by_key(|(at, _)| *at);
    let report = FailoverReport {
        messages: args.messages,
        clients: args.clients,
        killed_node: replica_set.active_node,
        old_term,
        new_term: first_new.map(|(_, term)| *term).unwrap_or(0),
        unavailable_ms: first_new
            .map(|(at, _)| at.duration_since(killed_at).as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN),
        acknowledged: history.acknowledged.len(),
        failed_attempts: history.failed_attempts,
        lost: history
            .acknowledged
            .iter()
            .filter(|id| !delivered.contains_key(*id))
            .count(),
        duplicated: delivered.values().filter(|count| **count > 1).count(),
        publish_messages_per_second: args.messages as f64 / elapsed.as_secs_f64(),
    };
    Ok(report)
}

async fn declare_route(addresses: &str, host: &str, run_id: &str) -> Result<(), String> {
    let client = TandemClient::connect(addresses)
        .await
        .map_err(|error| error.to_string())?;
    client
        .create_host(v1::CreateHostRequest {
            name: host.to_string(),
        })
        .await
        .map_err(|error| error.to_string())?;
    client
        .create_subscription(v1::CreateSubscriptionRequest {
            name: host.to_string(),
            host: host.to_string(),
            filter: format!("BenchRun == \"{run_id}\""),
            ..Default::default()
        })
        .await
        .map_err(|error| error.to_string())?;
    Ok(())
}

/// Waits until half the messages are acknowledged, then kills the active at once.
async fn kill_active_halfway(
    replica_set: &LocalReplicaSet,
    history: &Mutex<History>,
    total: usize,
) -> Result<(Instant, u64), String> {
    let deadline = Instant::now() + STALL_TIMEOUT;
    loop {
        let (acknowledged, term) = {
            let history = history
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let term = history.acknowledgements.last().map(|(_, term)| *term);
            (history.acknowledged.len(), term)
        };
        if acknowledged >= total / 2 {
            let active = replica_set.active();
            process_signal::kill(active.pid);
            let killed_at = Instant::now();
            eprintln!(
                "  killed the active, node {} (pid {}), after {acknowledged} acknowledgements",
                active.node_id, active.pid
            );
            return Ok((killed_at, term.unwrap_or(0)));
        }
        if Instant::now() > deadline {
            return Err("publishing made no progress before the kill".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Publisher {
    addresses: String,
    run_id: String,
    body: Vec<u8>,
    batch: usize,
    total: usize,
    next: Arc<AtomicUsize>,
    history: Arc<Mutex<History>>,
}

impl Publisher {
    async fn run(self) -> Result<(), String> {
        let mut client = None;
        loop {
            let first = self.next.fetch_add(self.batch, Ordering::Relaxed);
            if first >= self.total {
                return Ok(());
            }
            let ids: Vec<String> = (first..(first + self.batch).min(self.total))
                .map(|index| format!("failover-{}-{index}", self.run_id))
                .collect();
            self.publish_until_acknowledged(&mut client, &ids).await?;
        }
    }

    /// Publishes `ids` again and again (same ids: stored once) until acknowledged.
    async fn publish_until_acknowledged(
        &self,
        client: &mut Option<TandemClient>,
        ids: &[String],
    ) -> Result<(), String> {
        let deadline = Instant::now() + STALL_TIMEOUT;
        while Instant::now() < deadline {
            if client.is_none() {
                *client = TandemClient::connect(&self.addresses)
                    .await
                    .ok()
                    .map(|client| client.with_call_timeout(CALL_TIMEOUT));
            }
            if let Some(connected) = client.as_ref() {
                match connected.publish(self.request(ids)).await {
                    Ok(response) => {
                        self.record(&response);
                        return Ok(());
                    }
                    Err(_) => *client = None,
                }
            }
            self.lock().failed_attempts += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(format!(
            "no acknowledgement for {STALL_TIMEOUT:?}; giving up"
        ))
    }

    fn request(&self, ids: &[String]) -> v1::PublishRequest {
        v1::PublishRequest {
            publisher: "bench-failover".into(),
            messages: ids
                .iter()
                .map(|id| v1::PublishMessage {
                    message_id: id.clone(),
                    body: self.body.clone(),
                    properties: vec![bench_property("BenchRun", &self.run_id)],
                })
                .collect(),
        }
    }

    fn record(&self, response: &v1::PublishResponse) {
        let term = response
            .acknowledgement
            .as_ref()
            .map(|acknowledgement| acknowledgement.term)
            .unwrap_or(0);
        let mut history = self.lock();
        history.acknowledgements.push((Instant::now(), term));
        for result in &response.results {
            if result.error.is_none() {
                history.acknowledged.insert(result.message_id.clone());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Leases and completes everything in the host's queue; counts deliveries per message id.
async fn drain(addresses: &str, host: &str) -> Result<HashMap<String, usize>, String> {
    eprintln!("  draining the queue to check every acknowledged message ...");
    let client = TandemClient::connect(addresses)
        .await
        .map_err(|error| error.to_string())?;
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + STALL_TIMEOUT;
    while Instant::now() < deadline {
        let leased = client
            .lease(v1::LeaseRequest {
                host: host.to_string(),
                holder: "bench-drain".into(),
                max_messages: DRAIN_BATCH,
                lease_duration_ms: 60_000,
                wait_ms: DRAIN_WAIT_MS,
            })
            .await
            .map_err(|error| error.to_string())?
            .messages;
        if leased.is_empty() {
            return Ok(delivered);
        }
        client
            .settle(completions(&leased))
            .await
            .map_err(|error| error.to_string())?;
        for message in leased {
            *delivered.entry(message.message_id).or_default() += 1;
        }
    }
    Err("draining the queue did not finish in time".into())
}

fn print_report(report: &FailoverReport, json: bool) {
    if json {
        print_json(report);
        return;
    }
    println!(
        "failover        : unavailable {:.0} ms (kill -9 of node {} in term {} -> first \
         acknowledgement in term {})",
        report.unavailable_ms, report.killed_node, report.old_term, report.new_term
    );
    println!(
        "messages        : acknowledged {}, lost {}, duplicated {} (failed attempts retried: {})",
        report.acknowledged, report.lost, report.duplicated, report.failed_attempts
    );
    println!(
        "durable publish : {:>10.0} msgs/s across the failover",
        report.publish_messages_per_second
    );
}

/// One line for each run of several, as it finishes.
fn print_run(run: u64, runs: u64, report: &FailoverReport) {
    println!(
        "run {run} of {runs}: unavailable {:.0} ms (node {} killed), acknowledged {}, lost {}, \
         duplicated {}, durable publish {:.0} msgs/s",
        report.unavailable_ms,
        report.killed_node,
        report.acknowledged,
        report.lost,
        report.duplicated,
        report.publish_messages_per_second
    );
}

fn summarize(reports: &[FailoverReport]) -> FailoverSummary {
    let total = |field: fn(&FailoverReport) -> usize| reports.iter().map(field).sum();
    let unavailable: Vec<f64> = reports.iter().map(|report| report.unavailable_ms).collect();
    FailoverSummary {
        runs: reports.len(),
        unavailable_ms_median: median(unavailable.clone()),
        // A run with no acknowledgement after the kill (NaN) sorts last and shows here.
        unavailable_ms_max: unavailable
            .into_iter()
            .max_by(f64::total_cmp)
            .unwrap_or(f64::NAN),
        acknowledged: total(|report| report.acknowledged),
        failed_attempts: total(|report| report.failed_attempts),
        lost: total(|report| report.lost),
        duplicated: total(|report| report.duplicated),
        publish_messages_per_second_median: median(
            reports
                .iter()
                .map(|report| report.publish_messages_per_second)
                .collect(),
        ),
    }
}

fn print_runs(reports: &[FailoverReport], json: bool) {
    let summary = summarize(reports);
    if json {
        print_json(&FailoverRuns {
            runs: reports,
            summary,
        });
        return;
    }
    println!(
        "failover        : unavailable {:.0} ms median, {:.0} ms at worst, over {} kill -9s \
         of the active",
        summary.unavailable_ms_median, summary.unavailable_ms_max, summary.runs
    );
    println!(
        "messages        : acknowledged {}, lost {}, duplicated {} in all runs (failed \
         attempts retried: {})",
        summary.acknowledged, summary.lost, summary.duplicated, summary.failed_attempts
    );
    println!(
        "durable publish : {:>10.0} msgs/s across the failover (median)",
        summary.publish_messages_per_second_median
    );
}
