//! A replica set of three real `tandem` nodes under concurrent publish and consume load,
//! through the faults an active must survive: kill -9 (ten times in a row), a pause longer
//! than the election timeout, a paused passive (which the active must report as silent), a
//! network partition, links slower than a heartbeat, planned switchover and failback, a stop
//! of every node, a passive that missed many entries, a passive whose disk fills, one short
//! of disk room, a wiped data directory, the loss of a majority, a majority acknowledging
//! later than the active's lease, a just-elected active whose first acknowledgement comes
//! late, passives whose clocks are an hour off, and a whole set
//! restarted under an active whose clock is an hour ahead. A lease
//! stream must follow the active through a kill -9, a `TandemClient` must be acknowledged
//! by a new active while the old one is still paused or cut off, and one more test checks
//! when nodes snapshot a large store.
//!
//! Every test under load records what its clients saw in a history and checks it at the
//! end: no acknowledged message lost, nothing delivered that was never published, and no
//! acknowledgement from a term that a failover had already ended. It also checks that the
//! replicas, having applied the same log, hold the same state. The other tests check each
//! of the few calls they make. The figures (failover times,
//! acknowledged counts) are printed; run with `--nocapture` to read them.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::check_data_dir;
use support::history::{self, History, HistoryReport, PublishOutcome, now_ms};
use support::replica_set::{
    ActiveNode, ElectionTiming, ReplicaSet, ReplicaSetOptions, describe_statuses, node_status,
};
use support::workload::{
    CALL_TIMEOUT, CallFailure, HOST, Workload, WorkloadShape, declare_route, publish_once,
    stored_instances, stored_message_count, stored_message_ids, test_message,
};
use tandem_client::TandemClient;
use tandem_protocol::v1;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::cluster_client::ClusterClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;

/// How long a test waits for an active (a first one, or a new one after a fault), at most.
const ACTIVE_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to catch up, at most.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Load before the first fault and between faults.
const LOAD_BEFORE_FAULT: Duration = Duration::from_millis(800);
const LOAD_BETWEEN_FAULTS: Duration = Duration::from_millis(300);
const KILL_ROUNDS: usize = 10;
/// The load must be real: fewer acknowledged messages than this would prove nothing.
const MINIMUM_ACKNOWLEDGED: usize = 300;
/// How long a passive stays down while the load goes on, so it has many entries to apply.
const DOWN_WHILE_LOADED: Duration = Duration::from_millis(3_000);
/// The size no file of the node whose disk fills may grow past, and how long it may take
/// the load to get there.
const FULL_DISK_FILE_BYTES: u64 = 4 * 1024 * 1024;
const DISK_FILL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the active stays paused: well over the election timeout.
const PAUSE: Duration = Duration::from_millis(2_000);
/// Entries per snapshot in the wipe test, so the log is compacted long before the wipe.
const SNAPSHOT_EVERY_ENTRIES: u64 = 50;
/// Every this many acknowledged messages, one has its tracking events compared across
/// replicas, with every message delivered more than once; at most this many in all.
const TRACKING_SAMPLE_STEP: usize = 20;
const MAX_TRACKING_SAMPLE: usize = 400;
/// Disagreements between replicas reported, at most, and differing instances shown in one.
const MAX_DISAGREEMENTS_SHOWN: usize = 3;
const MAX_DIFFERENCES_SHOWN: usize = 5;
/// A difference between replicas must last this many comparisons, this far apart, to count
/// (a node may apply a tick that expires leases a moment after another).
const AGREEMENT_ATTEMPTS: usize = 5;
const AGREEMENT_RETRY_PAUSE: Duration = Duration::from_millis(300);
/// The write timeout of the majority-loss test.
const SHORT_WRITE_TIMEOUT_MS: u64 = 1_000;
/// Longer than an active goes unconfirmed before it hands its role over by itself (the
/// lease plus the minimum election timeout, 450 ms, then 1.5 s by default).
const UNCONFIRMED_PAST_A_HAND_OVER: Duration = Duration::from_millis(3_000);
/// The late-acknowledgement test's timing: the active's lease is the maximum election
/// timeout (2 s), and no other node can be elected before the minimum (1 s) has passed on
/// top of it, which leaves the test a second between the two for its steps.
const SLOW_ELECTIONS: ElectionTiming = ElectionTiming {
    heartbeat_interval: Duration::from_millis(100),
    election_timeout_min: Duration::from_millis(1_000),
    election_timeout_max: Duration::from_millis(2_000),
};

fn shape(id_prefix: &str) -> WorkloadShape {
    WorkloadShape {
        id_prefix: id_prefix.to_string(),
        ..WorkloadShape::default()
    }
}

/// Starts a replica set, declares the test route and starts the load.
async fn loaded_replica_set(
    options: ReplicaSetOptions,
    shape: &WorkloadShape,
) -> (ReplicaSet, Workload) {
    let set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let workload = Workload::start(&set.addresses(), shape, Arc::new(History::default()));
    (set, workload)
}

/// Stops the load, waits until every live node has applied what the active committed, and
/// checks the history against what the active stores and its failover history.
async fn finish(set: &ReplicaSet, workload: Workload, label: &str) -> Finished {
    let history = workload.stop().await;
    set.wait_for_convergence(CATCH_UP_TIMEOUT).await;
    let disagreements = replica_disagreements(set, label, &history).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let remaining = stored_message_ids(set.address(active.node_id)).await;
    let failovers = set.failovers(active.node_id).await;
    let report = history::check(&history, &remaining, &failovers);
    report.print(label);
    for failover in &failovers {
        eprintln!(
            "[{label}] failover: term {} at {} from {:?} to {}: {} (writes unavailable {} ms)",
            failover.term,
            failover.at_ms,
            failover.from_node,
            failover.to_node,
            failover.reason,
            failover.unavailable_ms
        );
    }
    if let Some((message_id, _)) = &report.completed_more_than_once_example {
        print_stored_history(set, label, message_id).await;
    }
    assert!(
        report.acknowledged >= MINIMUM_ACKNOWLEDGED,
        "only {} messages acknowledged: the load proves nothing",
        report.acknowledged
    );
    let violations: Vec<String> = report
        .violations()
        .into_iter()
        .chain(disagreements)
        .collect();
    assert!(violations.is_empty(), "[{label}] {}", violations.join("\n"));
    Finished {
        report,
        failovers,
        history,
    }
}

/// Where the live nodes disagree, if anywhere. They must store the same instances with the
/// same delivery history (attempts, last lease holder and lease expiry; the states are left
/// out, since lease expiry applies with the ticks), and the same tracking events for a
/// sample of messages: the log is the same, so the state machines must be too. A difference
/// that goes away within a few ticks is one node applying a tick later than another; only
/// lasting ones are reported.
async fn replica_disagreements(set: &ReplicaSet, label: &str, history: &History) -> Vec<String> {
    let mut disagreements = Vec::new();
    disagreements.extend(lasting(|| instance_disagreement(set)).await);
    let sample: Vec<String> = history
        .delivered_more_than_once()
        .into_iter()
        .chain(
            history
                .acknowledged_ids()
                .into_iter()
                .step_by(TRACKING_SAMPLE_STEP),
        )
        .take(MAX_TRACKING_SAMPLE)
        .collect();
    for message_id in &sample {
        if disagreements.len() >= MAX_DISAGREEMENTS_SHOWN {
            break;
        }
        disagreements.extend(lasting(|| tracking_disagreement(set, message_id)).await);
    }
    eprintln!(
        "[{label}] compared {} live replicas: every instance, and the tracking events of {} \
         sampled messages; disagreements: {}",
        set.live_node_ids().len(),
        sample.len(),
        disagreements.len()
    );
    disagreements
}

/// Runs `compare` until it finds no disagreement, a bounded number of times; returns the
/// disagreement that lasted, if any.
async fn lasting<Compare, Comparison>(compare: Compare) -> Option<String>
where
    Compare: Fn() -> Comparison,
    Comparison: Future<Output = Option<String>>,
{
    let mut disagreement = None;
    for _attempt in 0..AGREEMENT_ATTEMPTS {
        disagreement = compare().await;
        if disagreement.is_none() {
            break;
        }
        tokio::time::sleep(AGREEMENT_RETRY_PAUSE).await;
    }
    disagreement
}

/// The first instances whose delivery history differs between two live nodes, if any.
async fn instance_disagreement(set: &ReplicaSet) -> Option<String> {
    let mut replicas = Vec::new();
    for node_id in set.live_node_ids() {
        let instances = stored_instances(set.address(node_id)).await;
        let summary: BTreeMap<u64, (String, u32, String, i64)> = instances
            .into_iter()
            .map(|(id, instance)| {
                let delivery = (
                    instance.message_id,
                    instance.attempts,
                    instance.lease_holder,
                    instance.lease_expires_at_ms,
                );
                (id, delivery)
            })
            .collect();
        replicas.push((node_id, summary));
    }
    let ((first_node, first), others) = replicas.split_first()?;
    others.iter().find_map(|(node_id, summary)| {
        let differences: Vec<String> = first
            .keys()
            .chain(summary.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|id| first.get(id) != summary.get(id))
            .take(MAX_DIFFERENCES_SHOWN)
            .map(|id| {
                format!(
                    "instance {id}: node {first_node} {:?}, node {node_id} {:?}",
                    first.get(id),
                    summary.get(id)
                )
            })
            .collect();
        (!differences.is_empty()).then(|| {
            format!(
                "the replicas' instances differ (as (message id, attempts, lease holder, \
                 lease expiry)); first differences:\n{}",
                differences.join("\n")
            )
        })
    })
}

/// How two live nodes' tracking events for one message differ, if they do.
async fn tracking_disagreement(set: &ReplicaSet, message_id: &str) -> Option<String> {
    let mut tracked = Vec::new();
    for node_id in set.live_node_ids() {
        tracked.push((node_id, tracking_events(set, node_id, message_id).await));
    }
    let ((first_node, first_events), others) = tracked.split_first()?;
    others.iter().find_map(|(node_id, events)| {
        (first_events != events).then(|| {
            format!(
                "nodes {first_node} and {node_id} applied the same log differently for \
                 message {message_id}: its tracking events differ:\n  node {first_node}: \
                 {first_events:?}\n  node {node_id}: {events:?}"
            )
        })
    })
}

/// The tracking events a node stores for one message, as (at, instance, kind, detail).
async fn tracking_events(
    set: &ReplicaSet,
    node_id: u64,
    message_id: &str,
) -> Vec<(i64, u64, String, String)> {
    let mut admin = AdminClient::connect(set.grpc_url(node_id))
        .await
        .expect("connect admin");
    let request = v1::MessageHistoryRequest {
        message_id: message_id.to_string(),
    };
    tokio::time::timeout(CALL_TIMEOUT, admin.message_history(request))
        .await
        .expect("message history answers in time")
        .expect("message history")
        .into_inner()
        .events
        .into_iter()
        .map(|event| (event.at_ms, event.instance, event.kind, event.detail))
        .collect()
}

/// Prints what each live node stores about one message: its instances and tracking events.
async fn print_stored_history(set: &ReplicaSet, label: &str, message_id: &str) {
    for node_id in set.live_node_ids() {
        let Ok(mut admin) = AdminClient::connect(set.grpc_url(node_id)).await else {
            continue;
        };
        let request = v1::MessageHistoryRequest {
            message_id: message_id.to_string(),
        };
        let Ok(Ok(history)) =
            tokio::time::timeout(CALL_TIMEOUT, admin.message_history(request)).await
        else {
            continue;
        };
        let history = history.into_inner();
        eprintln!(
            "[{label}] node {node_id} stores {} copies and {} instances of {message_id}",
            history.messages.len(),
            history.instances.len()
        );
        for event in history.events {
            eprintln!(
                "[{label}]   node {node_id}: {} instance {} {} {}",
                event.at_ms, event.instance, event.kind, event.detail
            );
        }
    }
}

/// What a test's load left: the checked history and the failover history.
struct Finished {
    report: HistoryReport,
    failovers: Vec<v1::FailoverEvent>,
    history: Arc<History>,
}

/// Waits until a message is acknowledged in a term above `term` after `since_ms`; returns
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

fn failover_to_term(failovers: &[v1::FailoverEvent], term: u64) -> Option<&v1::FailoverEvent> {
    failovers.iter().find(|failover| failover.term == term)
}

/// One kill -9 of the active, as measured.
struct KillRound {
    killed: ActiveNode,
    elected: ActiveNode,
    election_seen_ms: i64,
    writes_again_ms: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_ten_kill_nines_of_the_active() {
    let (mut set, workload) =
        loaded_replica_set(ReplicaSetOptions::default(), &shape("kill")).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let mut rounds = Vec::new();
    for _round in 0..KILL_ROUNDS {
        tokio::time::sleep(LOAD_BETWEEN_FAULTS).await;
        let killed = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
        let killed_at_ms = now_ms();
        set.kill(killed.node_id);
        let elected = set
            .wait_for_active_after(killed.term, ACTIVE_WAIT_TIMEOUT)
            .await;
        let election_seen_ms = now_ms() - killed_at_ms;
        let writes_again_ms =
            wait_for_writes_after(&workload.history, killed_at_ms, killed.term).await;
        let (healthy, integrity) = check_data_dir(set.data_dir(killed.node_id));
        assert!(
            healthy,
            "node {} fails its integrity check after kill -9:\n{integrity}",
            killed.node_id
        );
        set.restart(killed.node_id);
        set.wait_for_status(
            killed.node_id,
            "passive following an active",
            CATCH_UP_TIMEOUT,
            |status| status.role == "passive" && status.active_node.is_some(),
        )
        .await;
        rounds.push(KillRound {
            killed,
            elected,
            election_seen_ms,
            writes_again_ms,
        });
    }
    let finished = finish(&set, workload, "kill -9").await;
    for (number, round) in rounds.iter().enumerate() {
        let recorded = failover_to_term(&finished.failovers, round.elected.term);
        eprintln!(
            "[kill -9] round {number}: killed node {} (term {}); node {} active in term {} \
             seen after {} ms; writes acknowledged again after {} ms; recorded unavailable \
             {:?} ms",
            round.killed.node_id,
            round.killed.term,
            round.elected.node_id,
            round.elected.term,
            round.election_seen_ms,
            round.writes_again_ms,
            recorded.map(|failover| failover.unavailable_ms)
        );
    }
    // A killed process's port refuses connections at once, and the first passive in rank
    // elects without waiting when it sees that; the other elects at once when it refuses
    // the first for a log behind its own. (A kill can race the port's check: the listener
    // may close a moment after the connections.)
    let elected_at_once = rounds
        .iter()
        .filter_map(|round| failover_to_term(&finished.failovers, round.elected.term))
        .filter(|failover| failover.reason.contains("elected at once"))
        .count();
    eprintln!("[kill -9] {elected_at_once} of {KILL_ROUNDS} new actives elected at once");
    assert!(
        elected_at_once * 2 >= KILL_ROUNDS,
        "only {elected_at_once} of {KILL_ROUNDS} failovers were elected at once: {:?}",
        finished.failovers
    );
    let slowest = rounds.iter().map(|round| round.writes_again_ms).max();
    eprintln!(
        "[kill -9] {KILL_ROUNDS} kills: {} messages acknowledged, none lost; writes \
         acknowledged again after at most {slowest:?} ms",
        finished.report.acknowledged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_that_missed_many_entries_catches_up_to_the_same_state() {
    let (mut set, workload) =
        loaded_replica_set(ReplicaSetOptions::default(), &shape("behind")).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let behind = set.others(active.node_id)[0];
    set.kill(behind);
    let before = set
        .status(active.node_id)
        .await
        .map_or(0, |status| status.committed_index);
    tokio::time::sleep(DOWN_WHILE_LOADED).await;
    let missed = set
        .status(active.node_id)
        .await
        .map_or(0, |status| status.committed_index)
        - before;
    let restarted_at = Instant::now();
    set.restart(behind);
    let caught_up = set
        .wait_for_status(behind, "caught up", CATCH_UP_TIMEOUT, |status| {
            status.applied_index >= before + missed
        })
        .await;
    let caught_up_ms = restarted_at.elapsed().as_millis();
    let finished = finish(&set, workload, "catch-up").await;
    eprintln!(
        "[catch-up] node {behind} was down for {} ms while {missed} entries committed; it \
         applied them within {caught_up_ms} ms of its restart (index {}); {} acknowledged",
        DOWN_WHILE_LOADED.as_millis(),
        caught_up.applied_index,
        finished.report.acknowledged
    );
}

/// A passive whose disk fills (no file of it may grow past a few megabytes) stops with a
/// clear error rather than going on with a log or a store that misses entries; started again
/// with room, it catches up to the same state, and the replica set lost nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_whose_disk_fills_stops_and_catches_up_once_it_has_room() {
    let (mut set, workload) =
        loaded_replica_set(ReplicaSetOptions::default(), &shape("full-disk")).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let full = set.others(active.node_id)[0];
    set.kill(full);
    set.restart_with(full, &[], Some(FULL_DISK_FILE_BYTES));
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = set.exited(full) {
            break status;
        }
        assert!(
            started.elapsed() < DISK_FILL_TIMEOUT,
            "node {full} still runs {DISK_FILL_TIMEOUT:?} after its disk was limited to \
             {FULL_DISK_FILE_BYTES} bytes per file:\n{}",
            set.log_text(full)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let filled_ms = started.elapsed().as_millis();
    let log = set.log_text(full);
    assert!(!exit.success(), "node {full} exited with {exit}");
    assert!(
        log.contains("replication stopped on this node")
            && (log.contains("disk I/O error") || log.contains("disk is full")),
        "node {full} did not say why it stopped:\n{log}"
    );

    set.restart(full);
    let finished = finish(&set, workload, "full-disk").await;
    eprintln!(
        "[full-disk] node {full} stopped {filled_ms} ms after its files were limited to {} \
         bytes; restarted with room, it caught up; {} acknowledged",
        FULL_DISK_FILE_BYTES, finished.report.acknowledged
    );
}

/// A passive whose disk is short of room (its floor set above any disk's free space) holds
/// the active's publishes back, naming the node, until it has room again (restarted with
/// the default floor); the refused publishes stored nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_short_of_disk_room_holds_publishes_back_until_it_has_room() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let short = set.others(active.node_id)[0];
    set.kill(short);
    let above_any_disk = u64::MAX.to_string();
    set.restart_with(short, &["--min-free-disk-bytes", &above_any_disk], None);

    let history = History::default();
    let refusal = publish_until(&set, &history, "short", |answer| match answer {
        Err(CallFailure::Refused(refusal)) => Some(refusal.clone()),
        _ => None,
    })
    .await
    .expect("the active refuses publishes while a passive is short of room");
    assert!(
        refusal.contains("throttled") && refusal.contains(&format!("the disk of node {short}")),
        "{refusal}"
    );
    let stored_while_short = stored_message_count(set.address(active.node_id)).await;
    let acknowledged_while_short = acknowledged_count(&history);
    assert_eq!(
        stored_while_short, acknowledged_while_short,
        "a refused publish stored a message"
    );

    set.kill(short);
    set.restart(short);
    let acknowledged = publish_until(&set, &history, "roomy", |answer| match answer {
        Ok(outcomes)
            if outcomes
                .iter()
                .all(|outcome| matches!(outcome, PublishOutcome::Acknowledged { .. })) =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    assert!(
        acknowledged.is_some(),
        "publishes stayed refused after node {short} had room again"
    );
}

/// One passive's clock an hour ahead, the other's an hour behind (a drill flag offsets the
/// node's clock). Each node must know its own offset, and whichever is the active must stamp
/// the replica set's time (the median of the voters' clocks), not its own: a lease taken
/// before a switchover to the node ahead is still held after it, a retried publish is still
/// a duplicate there, and on the node behind a lease still expires on time (the state
/// machine's time, which never runs backwards, would otherwise stand still for an hour).
/// Then kill -9 of the active under load, each node restarted as wrong as before: the history
/// and the replicas must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_an_hour_off_moves_neither_leases_nor_the_dedupe_window() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let (ahead, behind) = match set.others(active.node_id)[..] {
        [ahead, behind] => (ahead, behind),
        ref others => panic!("three nodes expected, the others are {others:?}"),
    };
    for (node, offset_ms) in [(ahead, HOUR_MS), (behind, -HOUR_MS)] {
        set.kill(node);
        let offset = offset_ms.to_string();
        set.restart_with(node, &["--drill-clock-offset-ms", &offset], None);
    }
    let expected = [(active.node_id, 0), (ahead, HOUR_MS), (behind, -HOUR_MS)];
    wait_for_clock_offsets(&set, &expected).await;

    let held = lease_one(&set, active.node_id, "clock-held", HELD_LEASE_MS).await;
    let there = switch_over(&set, active, ahead).await.active;
    tokio::time::sleep(TICKS_TO_WAIT).await;
    let republished = publish_message(&set, ahead, "clock-held").await;
    assert!(
        republished.duplicate,
        "node {ahead}, whose clock is an hour ahead, stored a retried publish again: the \
         dedupe window moved with its clock"
    );
    settle(&set, ahead, &held).await.unwrap_or_else(|refusal| {
        panic!(
            "a lease taken before the switchover to node {ahead} was lost: {refusal}\n{}",
            set.log_text(ahead)
        )
    });
    assert!(
        set.log_text(ahead)
            .contains("this node's clock is 1.0 h ahead of the replica set's time"),
        "node {ahead} did not warn of its clock:\n{}",
        set.log_text(ahead)
    );

    switch_over(&set, there, behind).await;
    let short = lease_one(&set, behind, "clock-expiring", SHORT_LEASE_MS).await;
    tokio::time::sleep(Duration::from_millis(SHORT_LEASE_MS) + TICKS_TO_WAIT).await;
    let refusal = settle(&set, behind, &short).await.expect_err(
        "a lease outlived its duration on the node whose clock is an hour behind: the \
         replica set's time stood still",
    );
    assert!(refusal.contains("lease_expired"), "{refusal}");
    // The expired lease gave the message back: it is leased and completed again.
    let again = lease_message(&set, behind, "clock-expiring", HELD_LEASE_MS).await;
    settle(&set, behind, &again)
        .await
        .expect("a message whose lease expired is delivered again");

    // Under load, kill -9 the active a few times, each node coming back with its clock as
    // wrong as before: nothing acknowledged may be lost, and the replicas must agree.
    let workload = Workload::start(
        &set.addresses(),
        &shape("clock"),
        Arc::new(History::default()),
    );
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    for _round in 0..CLOCK_KILL_ROUNDS {
        let killed = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
        set.kill(killed.node_id);
        set.wait_for_active_after(killed.term, ACTIVE_WAIT_TIMEOUT)
            .await;
        let offset = expected
            .iter()
            .find(|(node, _)| *node == killed.node_id)
            .map_or(0, |(_, offset_ms)| *offset_ms)
            .to_string();
        set.restart_with(killed.node_id, &["--drill-clock-offset-ms", &offset], None);
        tokio::time::sleep(LOAD_BETWEEN_FAULTS).await;
    }
    let finished = finish(&set, workload, "clock").await;
    eprintln!(
        "[clock] {CLOCK_KILL_ROUNDS} kills with clocks an hour ahead and behind: {} \
         acknowledged, none lost",
        finished.report.acknowledged
    );
}

/// The whole set stops, and comes back with its only candidate an hour ahead: elected
/// before it has read another clock, it must not stamp its own (its first entry, the
/// failover record, would move the replica set's time an hour on: every lease expired, the
/// dedupe window forgotten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_restarted_whole_under_an_active_an_hour_ahead_keeps_its_leases() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let held = lease_one(&set, active.node_id, "restart-held", HELD_LEASE_MS).await;
    let (ahead, follower, down) = match set.node_ids()[..] {
        [first, second, third] => (first, second, third),
        ref nodes => panic!("three nodes expected, got {nodes:?}"),
    };
    for node in set.node_ids() {
        set.kill(node);
    }
    let offset = HOUR_MS.to_string();
    set.restart_with(ahead, &["--drill-clock-offset-ms", &offset], None);
    // The follower never campaigns while the test runs: the node ahead is elected.
    set.restart_with(
        follower,
        &[
            "--election-timeout-min",
            "60s",
            "--election-timeout-max",
            "61s",
        ],
        None,
    );
    let elected = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    assert_eq!(
        elected.node_id, ahead,
        "node {down} is down, node {follower} never campaigns"
    );
    tokio::time::sleep(TICKS_TO_WAIT).await;

    settle(&set, ahead, &held).await.unwrap_or_else(|refusal| {
        panic!(
            "a lease taken before the restart was lost under node {ahead}, whose clock is an \
             hour ahead: {refusal}\n{}",
            set.log_text(ahead)
        )
    });
    let republished = publish_message(&set, ahead, "restart-held").await;
    assert!(
        republished.duplicate,
        "node {ahead}, an hour ahead and just restarted, stored a retried publish again"
    );
}

const HOUR_MS: i64 = 60 * 60 * 1000;
/// Kills of the active under load in the clock test.
const CLOCK_KILL_ROUNDS: usize = 3;
/// A lease that must last through the switchover (the default lease duration).
const HELD_LEASE_MS: u64 = 30_000;
/// A lease that must expire while the test waits, and how long to wait past a lease's end
/// for the ticks (every 200 ms) to act on it.
const SHORT_LEASE_MS: u64 = 1_000;
const TICKS_TO_WAIT: Duration = Duration::from_millis(1_500);
/// How far a node's reported clock offset may be from the drill's: the probes' round trips
/// on a loaded machine, with a wide margin.
const CLOCK_OFFSET_TOLERANCE_MS: i64 = 30_000;

/// Waits (at most 10 s) until every node reports its clock offset from the replica set's
/// time as `expected` gives it, within [`CLOCK_OFFSET_TOLERANCE_MS`].
async fn wait_for_clock_offsets(set: &ReplicaSet, expected: &[(u64, i64)]) {
    let deadline = Instant::now() + ACTIVE_WAIT_TIMEOUT;
    loop {
        let mut reported = Vec::new();
        for &(node, _) in expected {
            let offset = set
                .status(node)
                .await
                .and_then(|status| status.clock_offset_ms);
            reported.push((node, offset));
        }
        let agree = expected.iter().zip(&reported).all(|((_, want), (_, got))| {
            got.is_some_and(|got| (got - want).abs() < CLOCK_OFFSET_TOLERANCE_MS)
        });
        if agree {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "clock offsets reported {reported:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes one message on `node` and answers its result.
async fn publish_message(set: &ReplicaSet, node: u64, message_id: &str) -> v1::PublishResult {
    let mut client = set.message_box(node).await;
    let answer = tokio::time::timeout(
        CALL_TIMEOUT,
        client.publish(v1::PublishRequest {
            messages: vec![test_message(message_id)],
            ..Default::default()
        }),
    )
    .await
    .expect("publish answers in time")
    .unwrap_or_else(|refusal| panic!("publish of {message_id} refused: {refusal}"))
    .into_inner();
    answer.results.into_iter().next().expect("one result")
}

/// Publishes `message_id` on `node` and leases it for `lease_ms`.
async fn lease_one(
    set: &ReplicaSet,
    node: u64,
    message_id: &str,
    lease_ms: u64,
) -> v1::LeasedMessage {
    publish_message(set, node, message_id).await;
    lease_message(set, node, message_id, lease_ms).await
}

/// Leases one message on `node`, which must be `message_id`, for `lease_ms`.
async fn lease_message(
    set: &ReplicaSet,
    node: u64,
    message_id: &str,
    lease_ms: u64,
) -> v1::LeasedMessage {
    let mut client = set.message_box(node).await;
    let leased = tokio::time::timeout(
        CALL_TIMEOUT,
        client.lease(v1::LeaseRequest {
            host: HOST.to_string(),
            holder: "clock-test".to_string(),
            max_messages: 1,
            lease_duration_ms: lease_ms,
            wait_ms: 0,
        }),
    )
    .await
    .expect("lease answers in time")
    .expect("lease")
    .into_inner()
    .messages;
    match &leased[..] {
        [one] if one.message_id == message_id => one.clone(),
        other => panic!("leased {other:?} instead of {message_id}"),
    }
}

/// Completes a leased message on `node`; a refusal comes back as its status and error code.
async fn settle(set: &ReplicaSet, node: u64, leased: &v1::LeasedMessage) -> Result<(), String> {
    let mut client = set.message_box(node).await;
    let answer = tokio::time::timeout(
        CALL_TIMEOUT,
        client.complete(v1::SettleRequest {
            instance: leased.instance,
            token: leased.token,
        }),
    )
    .await
    .expect("complete answers in time");
    answer.map(drop).map_err(|refusal| {
        let code = refusal
            .metadata()
            .get(tandem_protocol::ERROR_CODE_METADATA)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        format!("{code}: {}", refusal.message())
    })
}

fn acknowledged_count(history: &History) -> u64 {
    history
        .publishes()
        .iter()
        .filter(|publish| matches!(publish.outcome, PublishOutcome::Acknowledged { .. }))
        .count() as u64
}

/// Publishes one message at a time to the active (a new id each time), every 100 ms for at
/// most 10 s, until `accept` takes an answer.
async fn publish_until<T>(
    set: &ReplicaSet,
    history: &History,
    prefix: &str,
    accept: impl Fn(&Result<Vec<PublishOutcome>, CallFailure>) -> Option<T>,
) -> Option<T> {
    for attempt in 0..100 {
        let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
        let message_ids = [format!("{prefix}-{attempt}")];
        let answer = publish_once(set.address(active.node_id), &message_ids, history).await;
        if let Some(accepted) = accept(&answer) {
            return Some(accepted);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_active_is_replaced_and_never_acknowledges_in_its_old_term() {
    let (mut set, workload) =
        loaded_replica_set(ReplicaSetOptions::default(), &shape("pause")).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let paused = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let paused_at = Instant::now();
    let paused_at_ms = now_ms();
    set.pause(paused.node_id);
    let elected = set
        .wait_for_active_after(paused.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    let election_seen_ms = now_ms() - paused_at_ms;
    assert_ne!(elected.node_id, paused.node_id);
    let writes_again_ms = wait_for_writes_after(&workload.history, paused_at_ms, paused.term).await;
    tokio::time::sleep(PAUSE.saturating_sub(paused_at.elapsed())).await;
    set.resume(paused.node_id);
    let resumed_at_ms = now_ms();
    let rejoined = set
        .wait_for_status(
            paused.node_id,
            "passive in the new term",
            CATCH_UP_TIMEOUT,
            |status| status.role == "passive" && status.term >= elected.term,
        )
        .await;
    let stepped_down_ms = now_ms() - resumed_at_ms;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let finished = finish(&set, workload, "pause").await;
    let recorded = failover_to_term(&finished.failovers, elected.term)
        .expect("the failover to the new active is recorded");
    let old_term_acknowledgements = finished.history.publishes().into_iter().filter(|attempt| {
        matches!(attempt.outcome, PublishOutcome::Acknowledged { term, .. } if term == paused.term)
    });
    let (invoked_after, answered_after) =
        old_term_acknowledgements.fold((0, 0), |(invoked_after, answered_after), attempt| {
            (
                invoked_after + usize::from(attempt.invoked_at_ms > recorded.at_ms),
                answered_after
                    + usize::from(attempt.answered_at_ms.is_some_and(|at| at > recorded.at_ms)),
            )
        });
    assert_eq!(
        invoked_after, 0,
        "acknowledgements in term {} of publishes invoked after term {} began",
        paused.term, elected.term
    );
    eprintln!(
        "[pause] node {} paused for {} ms in term {}; node {} active in term {} seen after \
         {election_seen_ms} ms, writes acknowledged again after {writes_again_ms} ms \
         (recorded unavailable {} ms); after SIGCONT node {} was passive in term {} within \
         {stepped_down_ms} ms; acknowledgements in term {}: invoked after the new active's \
         first commit {invoked_after}, answered after it {answered_after}",
        paused.node_id,
        PAUSE.as_millis(),
        paused.term,
        elected.node_id,
        elected.term,
        recorded.unavailable_ms,
        paused.node_id,
        rejoined.term,
        paused.term
    );
}

/// How long ago the active last heard from `node_id`, as the active reports it.
fn acknowledged_ms_ago(active: &v1::NodeStatusResponse, node_id: u64) -> Option<u64> {
    let member = active
        .members
        .iter()
        .find(|member| member.node_id == node_id);
    member.and_then(|member| member.acknowledged_ms_ago)
}

/// Waits until the active's status (whichever node is active at the time) satisfies
/// `condition`; panics with `what` if it does not within `timeout`.
async fn wait_for_active_status(
    set: &ReplicaSet,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&v1::NodeStatusResponse) -> bool,
) -> v1::NodeStatusResponse {
    let deadline = Instant::now() + timeout;
    let mut last_seen = Vec::new();
    while Instant::now() < deadline {
        last_seen = set.statuses().await;
        if let Some(active) = last_seen.iter().find(|status| status.role == "active")
            && condition(active)
        {
            return active.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{what} not seen on the active within {timeout:?}; last statuses: {}",
        describe_statuses(&last_seen)
    );
}

/// What an operator reads when writes stall: the active reports how lately each member
/// answered and how lately a majority confirmed it. A paused passive's silence grows there
/// while the other passive keeps the majority, and writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_passive_shows_as_silent_on_the_active_while_writes_go_on() {
    let (mut set, workload) =
        loaded_replica_set(ReplicaSetOptions::default(), &shape("quiet")).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let others = set.others(active.node_id);
    let (paused, answering) = (others[0], others[1]);
    let silent_ms = PAUSE.as_millis() as u64 / 2;
    set.pause(paused);
    let paused_at_ms = now_ms();
    let seen = wait_for_active_status(
        &set,
        "the paused passive silent, the other answering, a majority confirming",
        PAUSE * 2,
        |status| {
            acknowledged_ms_ago(status, paused).is_some_and(|ago| ago >= silent_ms)
                && acknowledged_ms_ago(status, answering).is_some_and(|ago| ago < silent_ms)
                && status
                    .quorum_acknowledged_ms_ago
                    .is_some_and(|ago| ago < silent_ms)
        },
    )
    .await;
    let writes_meanwhile = workload
        .history
        .publishes()
        .into_iter()
        .filter(|attempt| {
            matches!(attempt.outcome, PublishOutcome::Acknowledged { .. })
                && attempt.answered_at_ms.is_some_and(|at| at > paused_at_ms)
        })
        .count();
    set.resume(paused);
    wait_for_active_status(
        &set,
        "the resumed passive answering again",
        CATCH_UP_TIMEOUT,
        |status| acknowledged_ms_ago(status, paused).is_some_and(|ago| ago < silent_ms),
    )
    .await;
    tokio::time::sleep(LOAD_BETWEEN_FAULTS).await;
    finish(&set, workload, "paused passive").await;
    assert!(
        writes_meanwhile > 0,
        "publishes were acknowledged while a passive was paused"
    );
    eprintln!(
        "[paused passive] node {paused} paused: the active saw it silent for {:?} ms, node \
         {answering} {:?} ms, a majority {:?} ms; {writes_meanwhile} publishes acknowledged \
         meanwhile",
        acknowledged_ms_ago(&seen, paused),
        acknowledged_ms_ago(&seen, answering),
        seen.quorum_acknowledged_ms_ago
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_active_is_replaced_cannot_acknowledge_and_catches_up_after_healing() {
    let (set, workload, isolated) = loaded_proxied_set("partition").await;
    let cut_at_ms = now_ms();
    set.isolate(isolated.node_id);
    let elected = set
        .wait_for_active_after(isolated.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    let election_seen_ms = now_ms() - cut_at_ms;
    assert_ne!(elected.node_id, isolated.node_id);
    let writes_again_ms = wait_for_writes_after(&workload.history, cut_at_ms, isolated.term).await;
    // Writes sent straight to the cut-off active must not succeed.
    let mut probe_answers = Vec::new();
    for probe in 0..2 {
        let message_ids = [format!("partition-probe-{probe}")];
        let started = Instant::now();
        let answer = publish_once(
            set.address(isolated.node_id),
            &message_ids,
            &workload.history,
        )
        .await;
        match answer {
            Ok(outcomes) => assert!(
                !outcomes
                    .iter()
                    .any(|outcome| matches!(outcome, PublishOutcome::Acknowledged { .. })),
                "the cut-off active acknowledged a write: {outcomes:?}"
            ),
            Err(failure) => probe_answers.push(format!(
                "{failure:?} after {} ms",
                started.elapsed().as_millis()
            )),
        }
    }
    let isolated_status = set
        .status(isolated.node_id)
        .await
        .expect("the cut-off node still answers its status");
    let healed_at_ms = now_ms();
    set.heal();
    let committed = set
        .status(elected.node_id)
        .await
        .map_or(0, |status| status.committed_index);
    let rejoined = set
        .wait_for_status(
            isolated.node_id,
            "passive in the new term and caught up",
            CATCH_UP_TIMEOUT,
            |status| {
                status.role == "passive"
                    && status.term >= elected.term
                    && status.applied_index >= committed
            },
        )
        .await;
    let caught_up_ms = now_ms() - healed_at_ms;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let finished = finish(&set, workload, "partition").await;
    let recorded = failover_to_term(&finished.failovers, elected.term);
    eprintln!(
        "[partition] node {} cut off in term {}; node {} active in term {} seen after \
         {election_seen_ms} ms, writes acknowledged again after {writes_again_ms} ms \
         (recorded unavailable {:?} ms); writes sent to the cut-off node: {probe_answers:?}; \
         it reported role {} in term {} while cut off; after healing it was passive in term \
         {} with index {} applied within {caught_up_ms} ms",
        isolated.node_id,
        isolated.term,
        elected.node_id,
        elected.term,
        recorded.map(|failover| failover.unavailable_ms),
        isolated_status.role,
        isolated_status.term,
        rejoined.term,
        rejoined.applied_index
    );
}

/// How long the active's links stay slow, and how slow: each way more than a heartbeat
/// interval (50 ms by default, which is also how long openraft waits for a heartbeat's
/// answer), but with a round trip well inside the passives' lease on the active (300 ms).
const SLOW_LINKS_FOR: Duration = Duration::from_secs(4);
const LINK_SLOWER_THAN_A_HEARTBEAT: Duration = Duration::from_millis(80);

/// A loaded, proxied replica set (message ids `id_prefix-…`) whose active has had its links
/// slowed by `delay` each way for [`SLOW_LINKS_FOR`], still slowed: with its load, the
/// active, and the messages acknowledged while the links were slow.
async fn with_the_actives_links_slowed(
    id_prefix: &str,
    delay: Duration,
) -> (ReplicaSet, Workload, ActiveNode, u64) {
    let (set, workload, active) = loaded_proxied_set(id_prefix).await;
    set.slow_links_from(active.node_id, delay);
    let acknowledged_before = acknowledged_count(&workload.history);
    tokio::time::sleep(SLOW_LINKS_FOR).await;
    let acknowledged_while_slow = acknowledged_count(&workload.history) - acknowledged_before;
    (set, workload, active, acknowledged_while_slow)
}

/// An active whose links to the others are slower than a heartbeat interval is slow, not
/// gone: its heartbeats time out unanswered, but its replication connections stay open and
/// its writes are acknowledged, so no passive takes over. (Dropping the replication
/// sessions on the heartbeat's timeout made a passive see every connection of the active
/// close, and elect itself against a live active, in this test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_on_links_slower_than_a_heartbeat_keeps_its_role_and_acknowledges() {
    let (set, workload, active, acknowledged_while_slow) =
        with_the_actives_links_slowed("slow-links", LINK_SLOWER_THAN_A_HEARTBEAT).await;
    set.heal();
    let finished = finish(&set, workload, "slow links").await;
    eprintln!(
        "[slow links] node {} active in term {} with links {} ms slow each way: {} messages \
         acknowledged in {} s",
        active.node_id,
        active.term,
        LINK_SLOWER_THAN_A_HEARTBEAT.as_millis(),
        acknowledged_while_slow,
        SLOW_LINKS_FOR.as_secs()
    );
    let takeovers: Vec<&v1::FailoverEvent> = finished
        .failovers
        .iter()
        .filter(|failover| failover.term > active.term)
        .collect();
    assert!(
        takeovers.is_empty(),
        "a passive took over from a slow but live active: {takeovers:?}"
    );
    assert!(
        acknowledged_while_slow > 0,
        "the active acknowledged nothing while its links were slow"
    );
}

/// Links slower than this each way give a round trip longer than the active's lease
/// (300 ms): no majority confirms it in time, so it holds writes back and then refuses them,
/// while its heartbeats still reach the passives, late but steady.
const LINK_SLOWER_THAN_THE_LEASE: Duration = Duration::from_millis(250);

/// A loaded, proxied replica set (message ids `id_prefix-…`) whose load has run a moment,
/// with its active.
async fn loaded_proxied_set(id_prefix: &str) -> (ReplicaSet, Workload, ActiveNode) {
    let options = ReplicaSetOptions {
        proxied: true,
        ..ReplicaSetOptions::default()
    };
    let (set, workload) = loaded_replica_set(options, &shape(id_prefix)).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    (set, workload, active)
}

/// How a fault held on the active of a loaded, proxied replica set ended: the active it
/// struck, the one elected while it was held, when writes were acknowledged again (ms after
/// the fault), and the failover record of the new term (after healing and the history
/// check).
struct Replaced {
    active: ActiveNode,
    elected: ActiveNode,
    writes_again_ms: i64,
    recorded: v1::FailoverEvent,
}

/// Applies `fault` to the active of a loaded, proxied replica set (message ids `label-…`)
/// and holds it until another node is the active and writes are acknowledged in its term;
/// then heals, checks the history, and reports how the active was replaced.
async fn replace_the_active_by(label: &str, fault: impl FnOnce(&ReplicaSet, u64)) -> Replaced {
    let (set, workload, active) = loaded_proxied_set(label).await;
    let fault_at_ms = now_ms();
    fault(&set, active.node_id);
    let elected = set
        .wait_for_active_after(active.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    let writes_again_ms = wait_for_writes_after(&workload.history, fault_at_ms, active.term).await;
    set.heal();
    let finished = finish(&set, workload, label).await;
    let recorded = failover_to_term(&finished.failovers, elected.term)
        .expect("the new active is in the failover history")
        .clone();
    eprintln!(
        "[{label}] node {} active in term {}: node {} active in term {}, writes acknowledged \
         again {writes_again_ms} ms after the fault; recorded: {} (unavailable {} ms)",
        active.node_id,
        active.term,
        elected.node_id,
        elected.term,
        recorded.reason,
        recorded.unavailable_ms
    );
    assert_ne!(elected.node_id, active.node_id);
    Replaced {
        active,
        elected,
        writes_again_ms,
        recorded,
    }
}

/// An active whose links are slower than its lease stalls (a gray failure: every node is up,
/// no passive takes over) until it hands its role over by itself: writes are acknowledged
/// again in a new term while its links are still slow, and the failover history says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_on_links_slower_than_its_lease_hands_its_role_over_by_itself() {
    let replaced = replace_the_active_by("slower-than-lease", |set, active| {
        set.slow_links_from(active, LINK_SLOWER_THAN_THE_LEASE)
    })
    .await;
    let recorded = &replaced.recorded;
    let by_itself = format!(
        "node {} handed over the active role by itself",
        replaced.active.node_id
    );
    assert!(
        recorded.reason.starts_with(&by_itself),
        "the hand-over is recorded as {:?}",
        recorded.reason
    );
    assert!(
        recorded.unavailable_ms >= 1_000,
        "a stall of over a second is recorded as {} ms unavailable",
        recorded.unavailable_ms
    );
}

/// An active whose answers from the others are lost (a one-way cut) commits nothing while
/// its heartbeats go on. However it is replaced, the failover history counts the stall from
/// its start (the oldest entry it sent and never said was committed), not from its last
/// heartbeat, which came a moment before the new active took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_under_a_one_way_cut_is_recorded_whole_in_the_failover_history() {
    let replaced =
        replace_the_active_by("answers-cut", |set, active| set.cut_answers_to(active)).await;
    assert!(
        replaced.recorded.unavailable_ms * 2 >= replaced.writes_again_ms as u64,
        "writes were acknowledged again {} ms after the cut, but the history records {} ms \
         unavailable (node {} replaced by node {})",
        replaced.writes_again_ms,
        replaced.recorded.unavailable_ms,
        replaced.active.node_id,
        replaced.elected.node_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_and_failback_under_load_lose_nothing() {
    let (set, workload) = loaded_replica_set(ReplicaSetOptions::default(), &shape("switch")).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let original = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let target = set.others(original.node_id)[0];
    let there = switch_over(&set, original, target).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let back = switch_over(&set, there.active, original.node_id).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let finished = finish(&set, workload, "switchover").await;
    for switch in [&there, &back] {
        let recorded = failover_to_term(&finished.failovers, switch.active.term);
        eprintln!(
            "[switchover] to node {} (term {}): active seen after {} ms, writes acknowledged \
             again after {} ms; recorded: {:?}",
            switch.active.node_id,
            switch.active.term,
            switch.active_seen_ms,
            finished
                .history
                .first_acknowledgement_after(switch.requested_at_ms, switch.active.term - 1)
                .unwrap_or(-1),
            recorded.map(|failover| (&failover.reason, failover.unavailable_ms))
        );
        let reason = recorded.map(|failover| failover.reason.as_str());
        assert!(
            reason.is_some_and(|reason| reason.starts_with("switchover")),
            "the switchover to node {} is recorded as {reason:?}",
            switch.active.node_id
        );
    }
}

/// A switchover as measured.
struct Switch {
    active: ActiveNode,
    requested_at_ms: i64,
    active_seen_ms: i64,
}

/// Asks the active to hand its role to `target` and waits until `target` is the active.
async fn switch_over(set: &ReplicaSet, from: ActiveNode, target: u64) -> Switch {
    let requested_at_ms = now_ms();
    let mut cluster = ClusterClient::connect(set.grpc_url(from.node_id))
        .await
        .expect("connect to the active");
    let answer = tokio::time::timeout(
        CALL_TIMEOUT,
        cluster.switchover(v1::SwitchoverRequest {
            to_node: Some(target),
        }),
    )
    .await
    .expect("switchover answers in time")
    .expect("switchover accepted")
    .into_inner();
    assert_eq!(answer.active_node, target, "switchover chose another node");
    let active = set
        .wait_for_active_after(from.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    assert_eq!(
        active.node_id, target,
        "after a switchover to node {target}, node {} is the active",
        active.node_id
    );
    // The calls that follow may be single attempts: a just-elected active holds them until
    // a majority has confirmed it.
    Switch {
        active,
        requested_at_ms,
        active_seen_ms: now_ms() - requested_at_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_stopping_and_restarting_every_node() {
    let publishers_only = WorkloadShape {
        consumers: 0,
        ..shape("restart")
    };
    let (mut set, workload) =
        loaded_replica_set(ReplicaSetOptions::default(), &publishers_only).await;
    tokio::time::sleep(LOAD_BEFORE_FAULT * 2).await;
    for node_id in set.node_ids() {
        set.begin_stop(node_id);
    }
    for node_id in set.node_ids() {
        let status = set.finish_stop(node_id);
        assert!(status.success(), "node {node_id} stopped with {status}");
    }
    let history = workload.stop().await;
    let acknowledged = history.acknowledged_ids();
    let restarted_at = Instant::now();
    for node_id in set.node_ids() {
        set.restart(node_id);
    }
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let active_after_ms = restarted_at.elapsed().as_millis();
    set.wait_for_convergence(CATCH_UP_TIMEOUT).await;
    let mut stored_counts = Vec::new();
    for node in set.addresses() {
        let stored = stored_message_ids(node).await;
        let missing: Vec<&String> = acknowledged.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "node {}: {} acknowledged messages missing after the restart, e.g. {:?}",
            node.node_id,
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        let counted = stored_message_count(node).await;
        assert_eq!(
            counted,
            stored.len() as u64,
            "node {}: status counts {counted} messages, {} instances listed",
            node.node_id,
            stored.len()
        );
        stored_counts.push((node.node_id, stored.len()));
    }
    let disagreements = replica_disagreements(&set, "stop all", &history).await;
    let remaining = stored_message_ids(set.address(active.node_id)).await;
    let failovers = set.failovers(active.node_id).await;
    let report = history::check(&history, &remaining, &failovers);
    report.print("stop all");
    let violations: Vec<String> = report
        .violations()
        .into_iter()
        .chain(disagreements)
        .collect();
    assert!(
        violations.is_empty(),
        "[stop all] {}",
        violations.join("\n")
    );
    assert!(report.acknowledged >= MINIMUM_ACKNOWLEDGED);
    eprintln!(
        "[stop all] {} messages acknowledged before SIGTERM to all three nodes; after the \
         restart node {} was active within {active_after_ms} ms; stored per node: \
         {stored_counts:?}",
        acknowledged.len(),
        active.node_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_with_a_wiped_data_directory_rejoins_from_a_snapshot() {
    let options = ReplicaSetOptions {
        snapshot_every_entries: Some(SNAPSHOT_EVERY_ENTRIES),
        snapshot_min_log_percent: Some(0),
        ..ReplicaSetOptions::default()
    };
    let (mut set, workload) = loaded_replica_set(options, &shape("wipe")).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let compacted = set
        .wait_for_status(
            active.node_id,
            "a log compacted behind a snapshot",
            CATCH_UP_TIMEOUT * 2,
            |status| status.purged_index > 0,
        )
        .await;
    let victim = set.others(active.node_id)[0];
    set.kill(victim);
    set.wipe(victim);
    let rejoin_started = Instant::now();
    set.restart(victim);
    let rejoined = set
        .wait_for_status(
            victim,
            "passive, restored from a snapshot",
            CATCH_UP_TIMEOUT,
            |status| {
                status.role == "passive"
                    && status.snapshot_index >= compacted.purged_index
                    && status.applied_index >= compacted.committed_index
            },
        )
        .await;
    let rejoined_ms = rejoin_started.elapsed().as_millis();
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let finished = finish(&set, workload, "wipe").await;
    let final_active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let on_active = stored_message_ids(set.address(final_active.node_id)).await;
    let on_victim = stored_message_ids(set.address(victim)).await;
    assert_eq!(
        on_victim, on_active,
        "the rejoined node stores other messages than the active"
    );
    let counted = stored_message_count(set.address(victim)).await;
    assert_eq!(counted, on_active.len() as u64);
    let victim_status = set.status(victim).await.expect("the rejoined node answers");
    eprintln!(
        "[wipe] active node {} had purged its log up to {} (committed {}); node {victim} \
         wiped and restarted: passive with snapshot index {} after {rejoined_ms} ms; at the \
         end it applied {} and stores {counted} messages like the active; {} acknowledged",
        active.node_id,
        compacted.purged_index,
        compacted.committed_index,
        rejoined.snapshot_index,
        victim_status.applied_index,
        finished.report.acknowledged
    );
}

/// With one node of three left, a publish is answered `no_quorum` (never acknowledged
/// without a majority), within the write timeout: as soon as no majority has acknowledged
/// the active for its lease plus the minimum election timeout, or at the write timeout,
/// whichever comes first. Status still answers, and once a majority is back the same
/// message id is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_a_publish_answers_no_quorum_and_status_still_answers() {
    let options = ReplicaSetOptions {
        write_timeout_ms: SHORT_WRITE_TIMEOUT_MS,
        ..ReplicaSetOptions::default()
    };
    let mut set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    for other in set.others(active.node_id) {
        set.kill(other);
    }
    let history = History::default();
    let message_ids = ["alone-1".to_string()];
    let started = Instant::now();
    let answer = publish_once(set.address(active.node_id), &message_ids, &history).await;
    let answered_ms = started.elapsed().as_millis();
    let failure = match answer {
        Ok(outcomes) => panic!("a publish without a majority answered {outcomes:?}"),
        Err(failure) => failure,
    };
    assert!(
        matches!(&failure, CallFailure::Unknown(description) if description.starts_with("no_quorum")),
        "expected no_quorum, got {failure:?}"
    );
    assert!(
        answered_ms < CALL_TIMEOUT.as_millis(),
        "no_quorum after {answered_ms} ms with a write timeout of {SHORT_WRITE_TIMEOUT_MS} ms"
    );
    let status_started = Instant::now();
    let status = node_status(&set.grpc_url(active.node_id))
        .await
        .expect("the node alone still answers its status");
    let status_ms = status_started.elapsed().as_millis();
    eprintln!(
        "[no quorum] node {} alone: publish answered {failure:?} after {answered_ms} ms; \
         status answered in {status_ms} ms: role {} term {}",
        active.node_id, status.role, status.term
    );
    // Unconfirmed for longer than it takes an active to hand its role over by itself (to a
    // dead node, here): a publish is still answered no_quorum, not sent to another node.
    tokio::time::sleep(UNCONFIRMED_PAST_A_HAND_OVER.saturating_sub(started.elapsed())).await;
    let later = publish_once(set.address(active.node_id), &message_ids, &history).await;
    assert!(
        matches!(&later, Err(CallFailure::Unknown(description)) if description.starts_with("no_quorum")),
        "expected no_quorum {} ms after the majority was lost, got {later:?}",
        started.elapsed().as_millis()
    );
    // With a majority back, the same message id is acknowledged.
    let returning = set.others(active.node_id)[0];
    set.restart(returning);
    let mut acknowledged = false;
    for _attempt in 0..100 {
        let now_active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
        if let Ok(outcomes) =
            publish_once(set.address(now_active.node_id), &message_ids, &history).await
        {
            acknowledged = outcomes
                .iter()
                .all(|outcome| matches!(outcome, PublishOutcome::Acknowledged { .. }));
            if acknowledged {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        acknowledged,
        "the publish is acknowledged once a majority is back"
    );
    let stored =
        stored_message_ids(set.address(set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await.node_id))
            .await;
    assert!(stored.contains(&message_ids[0]));
}

/// Under heavy load a majority's acknowledgement can come later than the active's lease
/// although every node is healthy. A write arriving then must wait for the acknowledgement
/// (no other node can have been elected yet), not be refused. Both passives are paused past
/// the active's lease, a publish is sent, and the passives resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_a_late_majority_acknowledgement_instead_of_failing() {
    let options = ReplicaSetOptions {
        timing: Some(SLOW_ELECTIONS),
        ..ReplicaSetOptions::default()
    };
    let mut set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let passives = set.others(active.node_id);
    for &passive in &passives {
        set.pause(passive);
    }
    tokio::time::sleep(SLOW_ELECTIONS.election_timeout_max + Duration::from_millis(300)).await;

    let history = History::default();
    let message_ids = ["late-acknowledgement-1".to_string()];
    let address = set.address(active.node_id);
    let started = Instant::now();
    let (answer, ()) = tokio::join!(publish_once(address, &message_ids, &history), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for &passive in &passives {
            set.resume(passive);
        }
    });
    let answered_ms = started.elapsed().as_millis();
    eprintln!("[late acknowledgement] publish answered {answer:?} after {answered_ms} ms");
    let outcomes = answer.expect("the publish is answered");
    assert!(
        matches!(
            outcomes.as_slice(),
            [PublishOutcome::Acknowledged { term, node_id, .. }]
                if *term == active.term && *node_id == active.node_id
        ),
        "the publish must wait for the passives and be acknowledged by the same active: \
         {outcomes:?}"
    );
}

/// How long the just-elected active's links hold each request and each answer: its first
/// majority confirmation comes at least one round trip after it is elected, a window the
/// test's polls cannot miss. The round trip must stay within [`SLOW_HEARTBEATS`]: openraft
/// gives every AppendEntries three quarters of a heartbeat interval to be answered.
const SLOW_LINK_DELAY: Duration = Duration::from_millis(100);
const SLOW_HEARTBEATS: ElectionTiming = ElectionTiming {
    heartbeat_interval: Duration::from_millis(400),
    election_timeout_min: Duration::from_millis(2_000),
    election_timeout_max: Duration::from_millis(3_000),
};

/// A just-elected active holds a write until a majority has confirmed it, instead of
/// refusing it with `unavailable`: a client that sends a single call the moment a node
/// reports itself active gets an acknowledgement from that node in its new term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_just_elected_active_holds_its_first_write_until_a_majority_confirms_it() {
    let options = ReplicaSetOptions {
        proxied: true,
        timing: Some(SLOW_HEARTBEATS),
        ..ReplicaSetOptions::default()
    };
    let set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let target = set.others(active.node_id)[0];
    set.slow_links_from(target, SLOW_LINK_DELAY);
    let mut cluster = ClusterClient::connect(set.grpc_url(active.node_id))
        .await
        .expect("connect to the active");
    tokio::time::timeout(
        CALL_TIMEOUT,
        cluster.switchover(v1::SwitchoverRequest {
            to_node: Some(target),
        }),
    )
    .await
    .expect("switchover answers in time")
    .expect("switchover accepted");
    let elected = set
        .wait_for_active_after(active.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    assert_eq!(
        elected.node_id, target,
        "the switchover elected another node"
    );
    let before = set.status(target).await.expect("the new active answers");

    let history = History::default();
    let message_ids = ["just-elected-1".to_string()];
    let started = Instant::now();
    let answer = publish_once(set.address(target), &message_ids, &history).await;
    let answered_ms = started.elapsed().as_millis();
    eprintln!(
        "[just elected] confirmed {:?} ms ago when the publish was sent; answered {answer:?} \
         after {answered_ms} ms",
        before.quorum_acknowledged_ms_ago
    );
    assert_eq!(
        before.quorum_acknowledged_ms_ago, None,
        "the publish must be sent before a majority confirmed the new active"
    );
    let outcomes = answer.expect("the publish is answered");
    assert!(
        matches!(
            outcomes.as_slice(),
            [PublishOutcome::Acknowledged { term, node_id, .. }]
                if *term == elected.term && *node_id == target
        ),
        "the new active must hold the publish until it is confirmed, then acknowledge it: \
         {outcomes:?}"
    );
}

/// The snapshot test's store: bodies this big, this many of them left as a backlog.
const LARGE_BODY_BYTES: usize = 1024 * 1024;
const BACKLOG_MESSAGES: usize = 8;
/// The snapshot test's minimum of entries between snapshots: the ticker alone (five
/// entries a second) passes it in a few seconds.
const FEW_ENTRIES: u64 = 20;
/// How long the snapshot test watches for snapshots that must not happen: several times
/// [`FEW_ENTRIES`] ticks.
const WATCHED_FOR_SNAPSHOTS: Duration = Duration::from_secs(12);

/// A snapshot copies the whole store, so a large store is not snapshotted every few
/// entries: only once the log written since the last snapshot is as large as the store.
/// Here: a log of large messages that were delivered leaves a small store (snapshot), a
/// backlog of large messages then stays unsnapshotted through many entries and a passive's
/// kill -9 (it catches up from the log), and delivering the backlog makes the next snapshot
/// due on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_store_is_snapshotted_after_as_many_log_bytes_not_after_a_few_entries() {
    let options = ReplicaSetOptions {
        snapshot_every_entries: Some(FEW_ENTRIES),
        ..ReplicaSetOptions::default()
    };
    let mut set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let url = set.grpc_url(active.node_id);

    publish_large(&url, "delivered", BACKLOG_MESSAGES / 2).await;
    assert_eq!(deliver_all(&url).await, BACKLOG_MESSAGES / 2);
    let first = wait_for_snapshots(&set, "a first snapshot", &BTreeMap::new()).await;

    publish_large(&url, "backlog", BACKLOG_MESSAGES).await;
    set.wait_for_convergence(CATCH_UP_TIMEOUT).await;
    let before = wait_for_snapshots(&set, "the first snapshot", &BTreeMap::new()).await;
    let latest = before.values().copied().max().unwrap_or(0);
    let victim = set.others(active.node_id)[0];
    set.kill(victim);
    tokio::time::sleep(WATCHED_FOR_SNAPSHOTS / 2).await;
    set.restart(victim);
    tokio::time::sleep(WATCHED_FOR_SNAPSHOTS / 2).await;
    let applied = set.wait_for_convergence(CATCH_UP_TIMEOUT).await;
    assert!(
        applied >= latest + 2 * FEW_ENTRIES,
        "only {} entries since the snapshot at {latest}",
        applied.saturating_sub(latest)
    );
    for (node_id, index) in &before {
        let status = set.status(*node_id).await.expect("every node answers");
        assert_eq!(
            status.snapshot_index, *index,
            "node {node_id} snapshotted its large store after fewer log bytes than it holds"
        );
    }
    let on_victim = stored_message_ids(set.address(victim)).await;
    assert_eq!(
        on_victim.len(),
        BACKLOG_MESSAGES,
        "the backlog on node {victim}"
    );

    assert_eq!(deliver_all(&url).await, BACKLOG_MESSAGES);
    let after = wait_for_snapshots(&set, "a snapshot after the backlog", &before).await;
    eprintln!(
        "[snapshots] first at {first:?}; unchanged through a backlog of {BACKLOG_MESSAGES} \
         MiB, a kill -9 of node {victim} and {} entries; after delivering it: {after:?}",
        applied.saturating_sub(latest)
    );
}

/// Publishes `count` messages of [`LARGE_BODY_BYTES`] to the test route, one call each.
async fn publish_large(url: &str, prefix: &str, count: usize) {
    let mut client = MessageBoxClient::connect(url.to_string())
        .await
        .expect("connect to the active");
    for i in 0..count {
        let mut message = test_message(&format!("{prefix}-{i}"));
        message.body = vec![i as u8; LARGE_BODY_BYTES];
        let request = v1::PublishRequest {
            messages: vec![message],
            ..Default::default()
        };
        tokio::time::timeout(CALL_TIMEOUT, client.publish(request))
            .await
            .expect("publish answers in time")
            .expect("publish of a large message");
    }
}

/// Leases and completes every message of the test host; answers how many.
async fn deliver_all(url: &str) -> usize {
    let mut client = MessageBoxClient::connect(url.to_string())
        .await
        .expect("connect to the active");
    let mut delivered = 0;
    for _ in 0..BACKLOG_MESSAGES * 4 {
        let lease = v1::LeaseRequest {
            host: HOST.into(),
            holder: "snapshot-test".into(),
            // Within a plain gRPC client's 4 MiB answer.
            max_messages: 2,
            lease_duration_ms: 30_000,
            wait_ms: 0,
        };
        let leased = tokio::time::timeout(CALL_TIMEOUT, client.lease(lease))
            .await
            .expect("lease answers in time")
            .expect("lease")
            .into_inner()
            .messages;
        if leased.is_empty() {
            return delivered;
        }
        let settlements = support::completions(&leased);
        let settled = tokio::time::timeout(
            CALL_TIMEOUT,
            client.settle(v1::SettleBatchRequest { settlements }),
        )
        .await
        .expect("settle answers in time")
        .expect("settle")
        .into_inner();
        assert!(settled.results.iter().all(|result| result.error.is_none()));
        delivered += leased.len();
    }
    panic!("the test host still had messages after {delivered} deliveries");
}

/// Every node's snapshot index, once it is above the one in `past` (0 for a node not in it).
async fn wait_for_snapshots(
    set: &ReplicaSet,
    what: &str,
    past: &BTreeMap<u64, u64>,
) -> BTreeMap<u64, u64> {
    let mut indexes = BTreeMap::new();
    for node_id in set.node_ids() {
        let past_index = past.get(&node_id).copied().unwrap_or(0);
        let status = set
            .wait_for_status(node_id, what, CATCH_UP_TIMEOUT, |status| {
                status.snapshot_index > past_index
            })
            .await;
        indexes.insert(node_id, status.snapshot_index);
    }
    indexes
}

/// Messages published before and after the lease stream's failover test kills the active.
const STREAMED_BEFORE: usize = 20;
const STREAMED_AFTER: usize = 20;
/// Short leases, so that a message the old active leased but never handed over comes back
/// soon.
const STREAM_LEASE_MS: u64 = 2_000;
/// How long the stream may take to deliver every message, at most.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// A lease stream follows the active role: one `LeaseStream` delivers the messages
/// published before a kill -9 of the active and those published after it, reopening itself
/// on the new active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_stream_follows_the_active_through_a_kill_nine() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let client = client_of(&set);
    let request = v1::LeaseRequest {
        host: HOST.into(),
        holder: "stream-test".into(),
        max_messages: 16,
        lease_duration_ms: STREAM_LEASE_MS,
        wait_ms: 0,
    };
    let mut stream = client.lease_stream(request).await.expect("open the stream");
    let first_address = stream.address().to_string();
    let (received, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let consumer_client = client.clone();
    let consumer = tokio::spawn(async move {
        loop {
            let message = match stream.next().await {
                Ok(message) => message,
                Err(error) => return Err(error),
            };
            let settle = v1::SettleRequest {
                instance: message.instance,
                token: message.token,
            };
            // Refused after a failover if the lease was lost: the message comes again.
            let _ = consumer_client.complete(settle).await;
            if received
                .send((message.message_id, stream.address().to_string()))
                .is_err()
            {
                return Ok(());
            }
        }
    });

    publish_streamed(&client, "before", STREAMED_BEFORE).await;
    let mut seen = BTreeMap::new();
    await_streamed(&mut arrivals, &mut seen, STREAMED_BEFORE).await;
    set.kill(active.node_id);
    publish_streamed(&client, "after", STREAMED_AFTER).await;
    await_streamed(&mut arrivals, &mut seen, STREAMED_BEFORE + STREAMED_AFTER).await;
    consumer.abort();

    let new_active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    assert_ne!(new_active.node_id, active.node_id);
    let after_kill: BTreeSet<&String> = seen
        .iter()
        .filter(|(message_id, _)| message_id.starts_with("after-"))
        .map(|(_, address)| address)
        .collect();
    assert!(
        !after_kill.contains(&first_address),
        "messages published after the kill came from the killed node {first_address}"
    );
    eprintln!(
        "[lease stream] {} messages streamed, from {first_address} and, after its kill -9, \
         from {after_kill:?}",
        seen.len()
    );
}

/// A `TandemClient` given every node's address.
fn client_of(set: &ReplicaSet) -> TandemClient {
    let addresses: Vec<String> = set
        .addresses()
        .iter()
        .map(|node| node.grpc.to_string())
        .collect();
    TandemClient::open(&addresses.join(",")).expect("client")
}

/// Publishes `count` test messages named `prefix-i`, riding through any failover.
async fn publish_streamed(client: &TandemClient, prefix: &str, count: usize) {
    for i in 0..count {
        let request = v1::PublishRequest {
            messages: vec![test_message(&format!("{prefix}-{i}"))],
            ..Default::default()
        };
        client.publish(request).await.expect("publish");
    }
}

/// Waits until `seen` holds `count` distinct message ids from the stream.
async fn await_streamed(
    arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    seen: &mut BTreeMap<String, String>,
    count: usize,
) {
    let deadline = Instant::now() + STREAM_TIMEOUT;
    while seen.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, arrivals.recv()).await {
            Ok(Some((message_id, address))) => {
                seen.insert(message_id, address);
            }
            Ok(None) => panic!(
                "the stream's consumer stopped after {} messages",
                seen.len()
            ),
            Err(_) => panic!(
                "only {} of {count} messages streamed within {STREAM_TIMEOUT:?}: {:?}",
                seen.len(),
                seen.keys().collect::<Vec<_>>()
            ),
        }
    }
}

/// How long the client tests hold a silent active: far longer than a new active takes to be
/// elected (about half a second), and than a client takes to notice the silence.
const SILENT_ACTIVE_HOLD: Duration = Duration::from_secs(5);
/// Publishers of the client tests, each publishing one message at a time.
const CLIENT_PUBLISHERS: usize = 4;

/// How a client test silences the active.
#[derive(Clone, Copy, Debug)]
enum Silence {
    /// SIGSTOP: its connections stay open and its kernel acknowledges what it is sent.
    Pause,
    /// Every replication link cut: it is alive and answers clients, but reaches no other
    /// node.
    CutOff,
}

/// A `TandemClient` (the library, with its defaults) rides through a paused active: the
/// connection to the paused node answers no pings, so the calls on it fail over to the new
/// active while the old one is still paused (they used to wait for it to wake up, or for
/// the client's 30 s call timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_acknowledged_by_the_new_active_while_the_old_one_is_paused() {
    client_rides_through(Silence::Pause, ReplicaSetOptions::default()).await;
}

/// A `TandemClient` rides through an active cut off from the other nodes but not from the
/// client: its writes in flight are answered `no_quorum` once another node may have been
/// elected, instead of at the write timeout, and the client finds the new active while the
/// old one is still cut off. The write timeout is longer than the cut, so that waiting for
/// it would fail the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_acknowledged_by_the_new_active_while_the_old_one_is_cut_off() {
    let options = ReplicaSetOptions {
        proxied: true,
        write_timeout_ms: 2 * SILENT_ACTIVE_HOLD.as_millis() as u64,
        ..ReplicaSetOptions::default()
    };
    client_rides_through(Silence::CutOff, options).await;
}

/// Publishes through one `TandemClient` while the active is silenced for
/// [`SILENT_ACTIVE_HOLD`], and checks that publishes were acknowledged before it came back.
async fn client_rides_through(silence: Silence, options: ReplicaSetOptions) {
    let mut set = ReplicaSet::start(options).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let client = client_of(&set);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let publishers: Vec<_> = (0..CLIENT_PUBLISHERS)
        .map(|publisher| {
            let prefix = format!("ride-{silence:?}-{publisher}");
            tokio::spawn(publish_until_stopped(
                client.clone(),
                prefix,
                stopped.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(LOAD_BEFORE_FAULT).await;
    let silenced_at_ms = now_ms();
    match silence {
        Silence::Pause => set.pause(active.node_id),
        Silence::CutOff => set.isolate(active.node_id),
    }
    tokio::time::sleep(SILENT_ACTIVE_HOLD).await;
    let back_at_ms = now_ms();
    match silence {
        Silence::Pause => set.resume(active.node_id),
        Silence::CutOff => set.heal(),
    }
    tokio::time::sleep(LOAD_BETWEEN_FAULTS).await;
    stop.send_replace(true);
    let mut acknowledgements = Vec::new();
    for publisher in publishers {
        let acknowledged = tokio::time::timeout(CALL_TIMEOUT * 4, publisher)
            .await
            .expect("a publisher stops once told")
            .expect("a publisher does not panic");
        acknowledgements.extend(acknowledged);
    }
    let first_by_another_node = acknowledgements
        .iter()
        .filter(|(_, term)| *term > active.term)
        .map(|(at_ms, _)| *at_ms)
        .min();
    eprintln!(
        "[client through {silence:?}] node {} silenced for {} ms: {} publishes acknowledged \
         in all, the first in a later term {:?} ms after the silence began",
        active.node_id,
        back_at_ms - silenced_at_ms,
        acknowledgements.len(),
        first_by_another_node.map(|at_ms| at_ms - silenced_at_ms)
    );
    assert!(
        first_by_another_node.is_some_and(|at_ms| at_ms < back_at_ms),
        "no publish was acknowledged by a new active while node {} was silent ({silence:?}) \
         for {} ms",
        active.node_id,
        back_at_ms - silenced_at_ms
    );
}

/// Publishes one message at a time (ids `prefix-i`) until `stopped`, through the client's
/// retries; returns when each was acknowledged, and in which term.
async fn publish_until_stopped(
    client: TandemClient,
    prefix: String,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<(i64, u64)> {
    let mut acknowledgements = Vec::new();
    for index in 0.. {
        let request = v1::PublishRequest {
            messages: vec![test_message(&format!("{prefix}-{index}"))],
            ..Default::default()
        };
        tokio::select! {
            _ = stopped.wait_for(|stopped| *stopped) => break,
            answer = client.publish(request) => {
                if let Some(acknowledgement) = answer.ok().and_then(|answer| answer.acknowledgement) {
                    acknowledgements.push((now_ms(), acknowledgement.term));
                }
            }
        }
    }
    acknowledgements
}

/// A request to `message` that asks the node to relay it to the active.
fn relayed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        tandem_protocol::FORWARD_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

fn publish_request(message_id: &str) -> v1::PublishRequest {
    v1::PublishRequest {
        publisher: "relay-test".into(),
        messages: vec![test_message(message_id)],
    }
}

/// A passive relays to the active the calls that ask for it (`tandem-forward`), unary and
/// streaming, and answers `not_active` to the others; when the active is killed with a
/// relayed stream open, the stream ends and the next relayed call reaches the new active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_relays_to_the_active_the_calls_that_ask_for_it() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    declare_route(&set.addresses()).await;
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
    let passive = set.others(active.node_id)[0];
    let mut client = set.message_box(passive).await;

    let plain = client.publish(publish_request("relay-plain")).await;
    let refusal = plain.expect_err("a passive answers a plain publish not_active");
    let failure = CallFailure::of(&refusal);
    assert!(
        matches!(failure, CallFailure::NotActive { .. }),
        "{failure:?}"
    );
    let acknowledgement = client
        .publish(relayed(publish_request("relay-1")))
        .await
        .expect("the passive relays the publish")
        .into_inner()
        .acknowledgement
        .expect("an acknowledgement");
    assert_eq!(
        (acknowledgement.node_id, acknowledgement.term),
        (active.node_id, active.term),
        "acknowledged by the active"
    );

    let lease = v1::LeaseRequest {
        host: HOST.into(),
        holder: "relay-test".into(),
        max_messages: 1,
        lease_duration_ms: 30_000,
        wait_ms: 0,
    };
    let mut stream = client
        .lease_stream(relayed(lease))
        .await
        .expect("the passive relays the lease stream")
        .into_inner();
    let leased = tokio::time::timeout(CALL_TIMEOUT, stream.message())
        .await
        .expect("a leased message in time")
        .expect("the relayed stream")
        .expect("a message");
    assert_eq!(leased.message_id, "relay-1");

    set.kill(active.node_id);
    let ended = tokio::time::timeout(CALL_TIMEOUT * 2, stream.message())
        .await
        .expect("the relayed stream ends once the active is gone");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "the relayed stream went on after the active was killed: {ended:?}"
    );
    let elected = set
        .wait_for_active_after(active.term, ACTIVE_WAIT_TIMEOUT)
        .await;
    // The node asked relays to the new active, or is the new active itself.
    let mut relays = set.message_box(passive).await;
    let mut acknowledged_by = None;
    for _attempt in 0..50 {
        if let Ok(response) = relays.publish(relayed(publish_request("relay-2"))).await {
            acknowledged_by = response
                .into_inner()
                .acknowledgement
                .map(|acknowledgement| (acknowledgement.node_id, acknowledgement.term));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        acknowledged_by,
        Some((elected.node_id, elected.term)),
        "relayed to the new active"
    );
}
