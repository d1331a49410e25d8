//! kill -9 of a node under concurrent publish and consume load, twenty times in a row. After
//! every crash the store passes its integrity check. At the end: every acknowledged publish is
//! stored unless a completion of it was attempted (a completion whose answer the crash swallowed
//! may or may not have happened), no acknowledged completion comes back, and nothing is stored
//! that was never published.
//!
//! A node whose store fails a transaction must not apply the log entries behind it (that
//! would skip the failed one for good): it exits with a clear error instead, and applies the
//! entry when it restarts.

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{FREE_LOOPBACK_PORTS, NodeProcess, check_data_dir, runtime};
use tandem_protocol::v1;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tandem_store::schema::DATABASE_FILE;
use tonic::transport::Channel;

const CRASHES: usize = 20;
const PUBLISHERS: usize = 6;
const CONSUMERS: usize = 2;
const MESSAGES_PER_CALL: usize = 4;
const HOST: &str = "crash";
/// The load must be real: fewer acknowledgements than these would prove nothing.
const MINIMUM_PUBLISHES_ACKNOWLEDGED: usize = 1000;
const MINIMUM_COMPLETIONS_ACKNOWLEDGED: usize = 100;
/// No call may hang a test: a node that does not answer within this is as good as dead.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the clients saw: each operation attempted and each acknowledged.
#[derive(Default)]
struct History {
    publishes_attempted: BTreeSet<String>,
    publishes_acknowledged: BTreeSet<String>,
    completions_attempted: BTreeSet<String>,
    completions_acknowledged: BTreeSet<String>,
}

#[test]
fn acknowledged_publishes_and_completions_survive_repeated_kill_nine() {
    let runtime = runtime();
    let data = tempfile::tempdir().unwrap();
    let history = Arc::new(Mutex::new(History::default()));
    for round in 0..CRASHES {
        let mut node = NodeProcess::start(data.path(), &[]);
        if round == 0 {
            runtime.block_on(declare_route(&node));
        }
        let load_ms = 150 + (round as u64 * 53) % 350;
        runtime.block_on(load_until_killed(
            &mut node,
            round,
            load_ms,
            history.clone(),
        ));
        let (healthy, report) = check_data_dir(data.path());
        assert!(
            healthy,
            "integrity check failed after crash {round}:\n{report}"
        );
    }
    let node = NodeProcess::start(data.path(), &[]);
    let stored = runtime.block_on(stored_message_ids(&node));
    check_history(&history.lock().unwrap(), &stored);
}

fn check_history(history: &History, stored: &BTreeSet<String>) {
    eprintln!(
        "crash test: {CRASHES} crashes; publishes: {} attempted, {} acknowledged; \
         completions acknowledged: {}; stored at the end: {}",
        history.publishes_attempted.len(),
        history.publishes_acknowledged.len(),
        history.completions_acknowledged.len(),
        stored.len()
    );
    assert!(history.publishes_acknowledged.len() >= MINIMUM_PUBLISHES_ACKNOWLEDGED);
    assert!(history.completions_acknowledged.len() >= MINIMUM_COMPLETIONS_ACKNOWLEDGED);
    let lost: Vec<&String> = history
        .publishes_acknowledged
        .iter()
        .filter(|id| !stored.contains(*id) && !history.completions_attempted.contains(*id))
        .collect();
    let resurrected: Vec<&String> = history
        .completions_acknowledged
        .intersection(stored)
        .collect();
    let unexpected: Vec<&String> = stored.difference(&history.publishes_attempted).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged publishes lost: {:?}",
        lost.len(),
        first(&lost)
    );
    assert!(
        resurrected.is_empty(),
        "{} acknowledged completions came back: {:?}",
        resurrected.len(),
        first(&resurrected)
    );
    assert!(
        unexpected.is_empty(),
        "stored but never published: {:?}",
        first(&unexpected)
    );
}

fn first<'a>(ids: &'a [&'a String]) -> &'a [&'a String] {
    &ids[..ids.len().min(5)]
}

async fn declare_route(node: &NodeProcess) {
    let mut admin = node.admin().await;
    admin
        .create_host(v1::CreateHostRequest { name: HOST.into() })
        .await
        .unwrap();
    admin
        .create_subscription(v1::CreateSubscriptionRequest {
            name: "crash-all".into(),
            host: HOST.into(),
            filter: "Kind == \"crash-test\"".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Runs publishers and consumers against the node for `load_ms`, then kills it with SIGKILL.
async fn load_until_killed(
    node: &mut NodeProcess,
    round: usize,
    load_ms: u64,
    history: Arc<Mutex<History>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for publisher in 0..PUBLISHERS {
        let (url, stop, history) = (node.grpc_url(), stop.clone(), history.clone());
        let prefix = format!("r{round}-p{publisher}");
        clients.spawn(async move { publish_loop(url, prefix, stop, history).await });
    }
    for consumer in 0..CONSUMERS {
        let (url, stop, history) = (node.grpc_url(), stop.clone(), history.clone());
        let holder = format!("r{round}-c{consumer}");
        clients.spawn(async move { consume_loop(url, holder, stop, history).await });
    }
    tokio::time::sleep(Duration::from_millis(load_ms)).await;
    node.kill_hard();
    stop.store(true, Ordering::SeqCst);
    let all_stopped = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(result) = clients.join_next().await {
            result.unwrap();
        }
    });
    all_stopped
        .await
        .expect("clients stop once the node is gone");
}

async fn connect(url: String) -> Option<MessageBoxClient<Channel>> {
    MessageBoxClient::connect(url).await.ok()
}

async fn publish_loop(
    url: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let Some(mut client) = connect(url).await else {
        return;
    };
    let mut sequence = 0;
    while !stop.load(Ordering::SeqCst) {
        let ids: Vec<String> = (sequence..sequence + MESSAGES_PER_CALL)
            .map(|number| format!("{prefix}-{number}"))
            .collect();
        sequence += MESSAGES_PER_CALL;
        history
            .lock()
            .unwrap()
            .publishes_attempted
            .extend(ids.iter().cloned());
        let request = v1::PublishRequest {
            publisher: prefix.clone(),
            messages: ids.iter().map(|id| crash_message(id)).collect(),
        };
        let Ok(Ok(response)) = tokio::time::timeout(CALL_TIMEOUT, client.publish(request)).await
        else {
            return;
        };
        let mut history = history.lock().unwrap();
        for result in response.into_inner().results {
            assert!(
                result.error.is_none(),
                "publish refused: {:?}",
                result.error
            );
            history.publishes_acknowledged.insert(result.message_id);
        }
    }
}

/// Leases a few messages at a time and completes them in one settle call.
async fn consume_loop(
    url: String,
    holder: String,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let Some(mut client) = connect(url).await else {
        return;
    };
    while !stop.load(Ordering::SeqCst) {
        let lease = v1::LeaseRequest {
            host: HOST.into(),
            holder: holder.clone(),
            max_messages: 8,
            lease_duration_ms: 60_000,
            wait_ms: 50,
        };
        let Ok(Ok(leased)) = tokio::time::timeout(CALL_TIMEOUT, client.lease(lease)).await else {
            return;
        };
        let leased = leased.into_inner().messages;
        let ids = leased.iter().map(|message| message.message_id.clone());
        history.lock().unwrap().completions_attempted.extend(ids);
        let settlements = support::completions(&leased);
        let settle = client.settle(v1::SettleBatchRequest { settlements });
        let Ok(Ok(settled)) = tokio::time::timeout(CALL_TIMEOUT, settle).await else {
            return;
        };
        let mut history = history.lock().unwrap();
        for (message, result) in leased.iter().zip(settled.into_inner().results) {
            assert!(
                result.error.is_none(),
                "complete refused: {:?}",
                result.error
            );
            history
                .completions_acknowledged
                .insert(message.message_id.clone());
        }
    }
}

fn crash_message(id: &str) -> v1::PublishMessage {
    v1::PublishMessage {
        message_id: id.to_string(),
        body: vec![b'x'; 1024],
        properties: vec![v1::Property {
            name: b"Kind".to_vec(),
            value: Some(v1::property::Value::StringValue("crash-test".into())),
            written: false,
        }],
    }
}

async fn stored_message_ids(node: &NodeProcess) -> BTreeSet<String> {
    let mut admin = node.admin().await;
    let mut stored = BTreeSet::new();
    let mut after = 0;
    for _page in 0..10_000 {
        let request = v1::ListInstancesRequest {
            host: HOST.into(),
            state: String::new(),
            after,
            limit: 1000,
        };
        let instances = admin
            .list_instances(request)
            .await
            .unwrap()
            .into_inner()
            .instances;
        let Some(last) = instances.last() else { break };
        after = last.id;
        stored.extend(instances.into_iter().map(|instance| instance.message_id));
    }
    stored
}

/// A trigger added behind the node's back makes storing message `poison` fail.
const POISON_TRIGGER: &str = "CREATE TRIGGER poison BEFORE INSERT ON instances \
     WHEN NEW.message_id = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;";

#[test]
fn a_node_whose_store_fails_exits_and_applies_the_entry_when_it_restarts() {
    let runtime = runtime();
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("create the node's log");
    let mut node = NodeProcess::launch(data.path(), &FREE_LOOPBACK_PORTS, Stdio::from(log));
    runtime.block_on(declare_route(&node));
    let saboteur = rusqlite::Connection::open(data.path().join(DATABASE_FILE)).unwrap();
    saboteur
        .execute_batch(&format!("PRAGMA busy_timeout = 5000; {POISON_TRIGGER}"))
        .expect("add the trigger");

    let answer = runtime.block_on(publish_one(&node, "poison"));
    assert!(
        answer.is_err(),
        "a publish whose transaction failed must not be acknowledged"
    );
    // The ticker's next entry finds the store halted; replication stops; the node exits.
    let status = node.wait_for_exit();
    let log = std::fs::read_to_string(&log_path).expect("read the node's log");
    let last_lines: Vec<&str> = log.lines().rev().take(4).collect();
    eprintln!("[store failure] the node exited ({status}); its log ends with {last_lines:#?}");
    assert!(
        !status.success(),
        "the node must exit with an error: {status}"
    );
    assert!(
        log.contains("replication stopped on this node") && log.contains("injected failure"),
        "the node's log must say why it exited:\n{log}"
    );

    saboteur
        .execute_batch("DROP TRIGGER poison;")
        .expect("drop the trigger");
    drop(saboteur);
    let node = NodeProcess::start(data.path(), &[]);
    let stored = runtime.block_on(stored_message_ids(&node));
    assert!(
        stored.contains("poison"),
        "the restarted node applies the entry from its log: stored {stored:?}"
    );
}

/// Publishes one message; the error when it is not acknowledged.
async fn publish_one(node: &NodeProcess, message_id: &str) -> Result<(), String> {
    let mut client = node.message_box().await;
    let request = v1::PublishRequest {
        publisher: "store-failure".into(),
        messages: vec![crash_message(message_id)],
    };
    let response = tokio::time::timeout(CALL_TIMEOUT, client.publish(request))
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
        .map_err(|status| status.to_string())?;
    match response.into_inner().results.pop() {
        Some(result) if result.error.is_none() => Ok(()),
        other => Err(format!("{other:?}")),
    }
}
