//! Crash consistency for every node role: a replica set of three real `tandem` nodes under
//! heavy concurrent publish load (with consumers leasing and completing, so leases and
//! completions are written too), and one node killed with kill -9 per iteration, the role
//! cycling through:
//!
//! - the **active** (the Raft leader); the test measures how long until a new active is seen
//!   and until writes are acknowledged again;
//! - an **in-sync passive**;
//! - a **catching-up passive**: a passive killed, kept down while the load goes on so that it
//!   misses entries, restarted, and killed again a moment after its ready line, while it is
//!   still receiving and applying the entries it missed (or installing a snapshot: the set
//!   snapshots often, so a long enough absence needs one). The test reports how far behind
//!   the active it was just before the second kill.
//!
//! Right after every kill -9, before the node restarts, its data directory must pass
//! `tandem node check`: that is the crash-consistency check proper. The node then restarts
//! and rejoins (passive, caught up) and writes must flow again before the next iteration. At
//! the end every acknowledged publish must be stored on every replica or have been delivered,
//! no acknowledgement may come from a superseded term, the replicas must store the same
//! messages, and every replica's store, once stopped, must pass the integrity check.
//!
//! `cargo test` runs [`DEFAULT_ITERATIONS`] iterations (each role twice);
//! `TANDEM_CRASH_ITERATIONS=100 cargo test -p tandem --test crash_consistency -- --nocapture`
//! runs 100 and prints every one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::check_data_dir;
use support::history::{self, History, HistoryReport, now_ms};
use support::replica_set::{ActiveNode, ReplicaSet, ReplicaSetOptions};
use support::workload::{Workload, WorkloadShape, declare_route, stored_message_ids};
use tandem_protocol::v1;

/// The environment variable that sets the number of iterations.
const ITERATIONS_VARIABLE: &str = "TANDEM_CRASH_ITERATIONS";
/// Iterations in a plain `cargo test` run: each role twice, well under a minute.
const DEFAULT_ITERATIONS: usize = 6;
/// The most iterations the variable may ask for.
const MAX_ITERATIONS: usize = 10_000;
/// How long a test waits for an active (a first one, or a new one after a kill), at most.
const ACTIVE_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to rejoin, or the replicas to converge, at most.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// One iteration (kill, check, restart, rejoin) may take this long at most.
const ITERATION_TIMEOUT: Duration = Duration::from_secs(180);
/// Load before the first kill and between kills.
const LOAD_BEFORE_FIRST_KILL: Duration = Duration::from_millis(800);
const LOAD_BETWEEN_KILLS: Duration = Duration::from_millis(300);
/// How long a passive stays down under load before its catching-up restart.
const DOWN_BEFORE_CATCHING_UP: Duration = Duration::from_millis(1_500);
/// How long after its ready line a catching-up passive is killed again, by turn, so the
/// kills land at different points of its catching up.
const CATCHING_UP_KILL_DELAYS_MS: [u64; 4] = [0, 40, 100, 200];
/// How long the active may take to purge its log past a passive's last entry, at most.
const PURGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Entries per snapshot: often, so a passive down for a while catches up from a snapshot.
const SNAPSHOT_EVERY_ENTRIES: u64 = 500;
/// The load must be real: fewer acknowledged messages than this would prove nothing.
const MINIMUM_ACKNOWLEDGED: usize = 1_000;

/// Many publishers with many messages in flight, and consumers that lease and complete.
fn heavy_load() -> WorkloadShape {
    WorkloadShape {
        publishers: 8,
        consumers: 4,
        messages_per_publish: 8,
        id_prefix: "crash".to_string(),
    }
}

/// The role of the node an iteration kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CrashRole {
    Active,
    InSyncPassive,
    CatchingUpPassive,
}

impl CrashRole {
    const CYCLE: [CrashRole; 3] = [
        CrashRole::Active,
        CrashRole::InSyncPassive,
        CrashRole::CatchingUpPassive,
    ];

    fn of_iteration(iteration: usize) -> CrashRole {
        CrashRole::CYCLE[iteration % CrashRole::CYCLE.len()]
    }
}

impl fmt::Display for CrashRole {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            CrashRole::Active => "active",
            CrashRole::InSyncPassive => "in-sync passive",
            CrashRole::CatchingUpPassive => "catching-up passive",
        })
    }
}

/// What one iteration's kill showed, by role.
enum KillFigures {
    Active {
        killed: ActiveNode,
        elected: ActiveNode,
        new_active_after_ms: u128,
        writes_again_after_ms: i64,
    },
    InSyncPassive,
    /// Boxed: it holds two node statuses.
    CatchingUpPassive(Box<CatchingUp>),
}

/// A catching-up passive at its second kill.
struct CatchingUp {
    killed_after_ready_ms: u64,
    /// The node's last log index when it was first killed.
    last_log_index: u64,
    /// The active's status, then the node's, read just before the second kill; `None` when
    /// one did not answer in time.
    active: Option<v1::NodeStatusResponse>,
    node: Option<v1::NodeStatusResponse>,
}

impl CatchingUp {
    /// Whether the active had purged its log past the node's last entry, so that the node
    /// had to catch up from a snapshot.
    fn needs_snapshot(&self) -> Option<bool> {
        let active = self.active.as_ref()?;
        Some(active.purged_index > self.last_log_index)
    }

    /// The active's committed index less the node's applied index.
    fn entries_behind(&self) -> Option<u64> {
        let (active, node) = (self.active.as_ref()?, self.node.as_ref()?);
        Some(active.committed_index.saturating_sub(node.applied_index))
    }
}

impl fmt::Display for CatchingUp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.needs_snapshot() {
            Some(true) => "a snapshot",
            Some(false) => "the log",
            None => "an unknown source",
        };
        write!(
            formatter,
            " {} ms after its ready line, catching up from {source} (its log ended at {}, the \
             active's was purged up to {}): {} entries behind the active, snapshot index {}",
            self.killed_after_ready_ms,
            self.last_log_index,
            describe(self.active.as_ref().map(|status| status.purged_index)),
            describe(self.entries_behind()),
            describe(self.node.as_ref().map(|status| status.snapshot_index))
        )
    }
}

/// One iteration, as measured.
struct Crash {
    role: CrashRole,
    node_id: u64,
    figures: KillFigures,
    check_after_kill_ms: u128,
    rejoined_after_ms: u128,
}

impl fmt::Display for Crash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "killed the {} node {}", self.role, self.node_id)?;
        match &self.figures {
            KillFigures::Active {
                killed,
                elected,
                new_active_after_ms,
                writes_again_after_ms,
            } => write!(
                formatter,
                " (term {}): node {} active in term {} after {new_active_after_ms} ms, \
                 writes acknowledged again after {writes_again_after_ms} ms",
                killed.term, elected.node_id, elected.term
            )?,
            KillFigures::InSyncPassive => {}
            KillFigures::CatchingUpPassive(catching_up) => write!(formatter, "{catching_up}")?,
        }
        write!(
            formatter,
            "; store healthy after kill -9 (checked in {} ms); rejoined in {} ms",
            self.check_after_kill_ms, self.rejoined_after_ms
        )
    }
}

fn describe(figure: Option<u64>) -> String {
    figure.map_or_else(|| "unknown".to_string(), |figure| figure.to_string())
}

/// Every failover the actives reported during the run, by term: a node shows only its
/// latest ones, so they are gathered as the run goes.
#[derive(Default)]
struct FailoverLog {
    by_term: BTreeMap<u64, v1::FailoverEvent>,
}

impl FailoverLog {
    async fn gather(&mut self, set: &ReplicaSet, active: ActiveNode) {
        for failover in set.failovers(active.node_id).await {
            self.by_term.insert(failover.term, failover);
        }
    }

    fn all(&self) -> Vec<v1::FailoverEvent> {
        self.by_term.values().cloned().collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_and_every_store_survive_kill_nine_of_every_role() {
    let iterations = iterations_from_environment();
    let options = ReplicaSetOptions {
        snapshot_every_entries: Some(SNAPSHOT_EVERY_ENTRIES),
        snapshot_min_log_percent: Some(0),
        ..ReplicaSetOptions::default()
    };
    let mut set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let workload = Workload::start(
        &set.addresses(),
        &heavy_load(),
        Arc::new(History::default()),
    );
    tokio::time::sleep(LOAD_BEFORE_FIRST_KILL).await;
    let started = Instant::now();
    let mut failovers = FailoverLog::default();
    let mut crashes = Vec::new();
    for iteration in 0..iterations {
        let role = CrashRole::of_iteration(iteration);
        let crash = tokio::time::timeout(
            ITERATION_TIMEOUT,
            crash_and_rejoin(&mut set, &workload.history, &mut failovers, role, iteration),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("iteration {iteration} ({role}) took longer than {ITERATION_TIMEOUT:?}")
        });
        eprintln!(
            "[crash {}/{iterations}] {crash}; acknowledged so far {}",
            iteration + 1,
            workload.history.acknowledged_ids().len()
        );
        crashes.push(crash);
    }
    let report = verify_final_state(&mut set, workload, &mut failovers).await;
    print_summary(&crashes, &report, started.elapsed());
}

/// The number of iterations: [`ITERATIONS_VARIABLE`] if set, else [`DEFAULT_ITERATIONS`].
fn iterations_from_environment() -> usize {
    match std::env::var(ITERATIONS_VARIABLE) {
        Ok(text) => parse_iterations(&text),
        Err(std::env::VarError::NotPresent) => DEFAULT_ITERATIONS,
        Err(std::env::VarError::NotUnicode(text)) => {
            panic!("{ITERATIONS_VARIABLE}={text:?} is not text")
        }
    }
}

fn parse_iterations(text: &str) -> usize {
    match text.trim().parse::<usize>() {
        Ok(count) if (1..=MAX_ITERATIONS).contains(&count) => count,
        _ => panic!(
            "{ITERATIONS_VARIABLE}={text:?}: expected a whole number of iterations from 1 to \
             {MAX_ITERATIONS}"
        ),
    }
}

/// One iteration: kills a node of `role`, checks its store, restarts it and waits until it
/// has rejoined and writes flow again.
async fn crash_and_rejoin(
    set: &mut ReplicaSet,
    history: &History,
    failovers: &mut FailoverLog,
    role: CrashRole,
    iteration: usize,
) -> Crash {
    tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    failovers.gather(set, active).await;
    // The two passives take turns.
    let passive = set.others(active.node_id)[iteration % 2];
    let (node_id, figures) = match role {
        CrashRole::Active => (active.node_id, kill_active(set, history, active).await),
        CrashRole::InSyncPassive => {
            set.kill(passive);
            (passive, KillFigures::InSyncPassive)
        }
        CrashRole::CatchingUpPassive => {
            let plan = catching_up_plan(iteration);
            let catching_up = kill_catching_up_passive(set, active, passive, plan).await;
            (
                passive,
                KillFigures::CatchingUpPassive(Box::new(catching_up)),
            )
        }
    };
    let check_after_kill_ms = assert_store_healthy(set, node_id, &format!("kill -9 of the {role}"));
    let rejoined_after_ms = rejoin(set, node_id).await;
    wait_for_writes_after(history, now_ms(), 0).await;
    Crash {
        role,
        node_id,
        figures,
        check_after_kill_ms,
        rejoined_after_ms,
    }
}

/// Kills the active and measures the failover: until a new active is seen, and until a
/// write is acknowledged in a later term.
async fn kill_active(set: &mut ReplicaSet, history: &History, active: ActiveNode) -> KillFigures {
    let killed_at = Instant::now();
    let killed_at_ms = now_ms();
    set.kill(active.node_id);
    let elected = set
        .wait_for_active_after(active.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    let new_active_after_ms = killed_at.elapsed().as_millis();
    let writes_again_after_ms = wait_for_writes_after(history, killed_at_ms, active.term).await;
    KillFigures::Active {
        killed: active,
        elected,
        new_active_after_ms,
        writes_again_after_ms,
    }
}

/// How long a catching-up passive stays down: long enough to miss entries the active still
/// has in its log, or until the active has purged its log past the passive's last entry (so
/// the passive must be sent a snapshot).
#[derive(Clone, Copy, Debug)]
enum Absence {
    MissingLogEntries,
    MissingPurgedEntries,
}

/// The catching-up passive's turn: every other one needs a snapshot, and each absence is
/// tried with every kill delay in turn.
fn catching_up_plan(iteration: usize) -> (Absence, u64) {
    let turn = iteration / CrashRole::CYCLE.len();
    let absence = if turn.is_multiple_of(2) {
        Absence::MissingLogEntries
    } else {
        Absence::MissingPurgedEntries
    };
    let delay_ms = CATCHING_UP_KILL_DELAYS_MS[(turn / 2) % CATCHING_UP_KILL_DELAYS_MS.len()];
    (absence, delay_ms)
}

/// Kills the passive, keeps it down while the load goes on, restarts it and kills it again
/// `delay_ms` after its ready line, while it catches up.
async fn kill_catching_up_passive(
    set: &mut ReplicaSet,
    active: ActiveNode,
    passive: u64,
    (absence, delay_ms): (Absence, u64),
) -> CatchingUp {
    let last_log_index = set
        .status(passive)
        .await
        .map_or(0, |status| status.last_log_index);
    set.kill(passive);
    assert_store_healthy(set, passive, "kill -9 of an in-sync passive");
    match absence {
        Absence::MissingLogEntries => tokio::time::sleep(DOWN_BEFORE_CATCHING_UP).await,
        Absence::MissingPurgedEntries => {
            let purged = format!("its log purged past index {last_log_index}");
            set.wait_for_status(active.node_id, &purged, PURGE_TIMEOUT, |status| {
                status.purged_index > last_log_index
            })
            .await;
        }
    }
    set.restart(passive);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let active_status = set.status(active.node_id).await;
    let node_status = set.status(passive).await;
    set.kill(passive);
    CatchingUp {
        killed_after_ready_ms: delay_ms,
        last_log_index,
        active: active_status,
        node: node_status,
    }
}

/// Runs the integrity check on a stopped node's data directory; panics with its report
/// unless the store is healthy. Answers how long the check took.
fn assert_store_healthy(set: &ReplicaSet, node_id: u64, after: &str) -> u128 {
    let started = Instant::now();
    let (healthy, report) = check_data_dir(set.data_dir(node_id));
    assert!(
        healthy,
        "node {node_id} fails its integrity check after {after}:\n{report}"
    );
    started.elapsed().as_millis()
}

/// Restarts the node and waits until it is a passive following an active that has applied
/// everything the active had committed when it restarted. Answers how long that took.
async fn rejoin(set: &mut ReplicaSet, node_id: u64) -> u128 {
    let started = Instant::now();
    set.restart(node_id);
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let committed = set
        .status(active.node_id)
        .await
        .map_or(0, |status| status.committed_index);
    set.wait_for_status(
        node_id,
        "passive following an active, caught up",
        CATCH_UP_TIMEOUT,
        |status| {
            status.role == "passive"
                && status.active_node.is_some()
                && status.applied_index >= committed
        },
    )
    .await;
    started.elapsed().as_millis()
}

/// Waits until a message is acknowledged in a term above `term` after `since_ms`; answers
/// how long after `since_ms` the first one was.
async fn wait_for_writes_after(history: &History, since_ms: i64, term: u64) -> i64 {
    let deadline = Instant::now() + ACTIVE_WAIT_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(after_ms) = history.first_acknowledgement_after(since_ms, term) {
            return after_ms;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no write acknowledged in a term above {term} within {ACTIVE_WAIT_TIMEOUT:?}");
}

/// Stops the load and checks the end state: every replica stores every acknowledged message
/// that was not delivered, nothing unexpected and no stale acknowledgement, the replicas
/// store the same messages, and every store passes the integrity check once its node has
/// stopped. Answers the active's history report.
async fn verify_final_state(
    set: &mut ReplicaSet,
    workload: Workload,
    failovers: &mut FailoverLog,
) -> HistoryReport {
    let history = workload.stop().await;
    set.wait_for_convergence(CATCH_UP_TIMEOUT).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    failovers.gather(set, active).await;
    let mut stored_by_node = BTreeMap::new();
    for node in set.addresses() {
        stored_by_node.insert(node.node_id, stored_message_ids(node).await);
    }
    for (node_id, stored) in &stored_by_node {
        let report = history::check(&history, stored, &failovers.all());
        let violations = report.violations();
        assert!(
            violations.is_empty(),
            "[crash] node {node_id}: {}",
            violations.join("\n")
        );
    }
    assert_replicas_store_the_same(&stored_by_node);
    let report = history::check(&history, &stored_by_node[&active.node_id], &failovers.all());
    report.print("crash");
    assert!(
        report.acknowledged >= MINIMUM_ACKNOWLEDGED,
        "only {} messages acknowledged: the load proves nothing",
        report.acknowledged
    );
    stop_every_node_and_check_its_store(set);
    report
}

fn assert_replicas_store_the_same(stored_by_node: &BTreeMap<u64, BTreeSet<String>>) {
    let mut replicas = stored_by_node.iter();
    let Some((first_node, first)) = replicas.next() else {
        return;
    };
    for (node_id, stored) in replicas {
        let differing: Vec<&String> = first.symmetric_difference(stored).take(5).collect();
        assert!(
            differing.is_empty(),
            "nodes {first_node} and {node_id} store different messages ({} and {}), e.g. \
             {differing:?}",
            first.len(),
            stored.len()
        );
    }
}

/// SIGTERM to every node, then the integrity check of every store.
fn stop_every_node_and_check_its_store(set: &mut ReplicaSet) {
    for node_id in set.node_ids() {
        set.begin_stop(node_id);
    }
    for node_id in set.node_ids() {
        let status = set.finish_stop(node_id);
        assert!(status.success(), "node {node_id} stopped with {status}");
        assert_store_healthy(set, node_id, "the final stop");
    }
}

fn print_summary(crashes: &[Crash], report: &HistoryReport, elapsed: Duration) {
    let mut kills_by_role: BTreeMap<String, usize> = BTreeMap::new();
    for crash in crashes {
        *kills_by_role.entry(crash.role.to_string()).or_default() += 1;
    }
    eprintln!(
        "[crash] {} iterations in {:.1} s; kills by role {kills_by_role:?} (each catching-up \
         passive was killed in sync first); new active after (min, median, max) {:?} ms; \
         {}; acknowledged {}, delivered {}, completed {}, lost {}, stale {}, unexpected {}",
        crashes.len(),
        elapsed.as_secs_f64(),
        new_active_spread_ms(crashes),
        describe_catching_up(crashes),
        report.acknowledged,
        report.delivered,
        report.completed,
        report.lost.len(),
        report.stale.len(),
        report.unexpected.len()
    );
}

/// The least, median and greatest time to a new active over the kills of the active.
fn new_active_spread_ms(crashes: &[Crash]) -> Option<(u128, u128, u128)> {
    let mut times_ms: Vec<u128> = crashes
        .iter()
        .filter_map(|crash| match crash.figures {
            KillFigures::Active {
                new_active_after_ms,
                ..
            } => Some(new_active_after_ms),
            _ => None,
        })
        .collect();
    times_ms.sort_unstable();
    Some((
        *times_ms.first()?,
        times_ms[times_ms.len() / 2],
        *times_ms.last()?,
    ))
}

/// How many catching-up passives needed a snapshot, and how many were still behind the
/// active when killed.
fn describe_catching_up(crashes: &[Crash]) -> String {
    let catching_up: Vec<&CatchingUp> = crashes
        .iter()
        .filter_map(|crash| match &crash.figures {
            KillFigures::CatchingUpPassive(catching_up) => Some(catching_up.as_ref()),
            _ => None,
        })
        .collect();
    let needing_snapshot = catching_up
        .iter()
        .filter(|passive| passive.needs_snapshot() == Some(true))
        .count();
    let behind = catching_up
        .iter()
        .filter(|passive| passive.entries_behind().is_some_and(|entries| entries > 0))
        .count();
    format!(
        "catching-up passives: {} killed, {needing_snapshot} of them needing a snapshot, \
         {behind} measurably behind the active at the kill",
        catching_up.len()
    )
}

#[test]
fn an_iteration_count_is_read_from_its_text() {
    assert_eq!(parse_iterations("100"), 100);
    assert_eq!(parse_iterations(" 7\n"), 7);
}

#[test]
#[should_panic(expected = "TANDEM_CRASH_ITERATIONS=\"lots\": expected a whole number")]
fn a_garbage_iteration_count_is_refused() {
    parse_iterations("lots");
}

#[test]
#[should_panic(expected = "from 1 to 10000")]
fn zero_iterations_are_refused() {
    parse_iterations("0");
}
