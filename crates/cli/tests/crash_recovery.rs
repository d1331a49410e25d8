//! kill -9 of a node under concurrent publish load, twenty times in a row. After every crash
//! the store passes its integrity check; at the end every acknowledged message is stored, and
//! nothing is stored that was never published.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{NodeProcess, check_data_dir};
use tandem_protocol::v1;

const CRASHES: usize = 20;
const PUBLISHERS: usize = 8;
const MESSAGES_PER_CALL: usize = 4;
/// The load must be real: fewer acknowledged publishes than this would prove nothing.
const MINIMUM_ACKNOWLEDGED: usize = 1000;

#[derive(Default)]
struct History {
    attempted: BTreeSet<String>,
    acknowledged: BTreeSet<String>,
}

#[test]
fn acknowledged_publishes_survive_repeated_kill_nine() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let history = Arc::new(Mutex::new(History::default()));
    for round in 0..CRASHES {
        let mut node = NodeProcess::start(data.path(), &[]);
        if round == 0 {
            runtime.block_on(declare_route(&node));
        }
        let load_ms = 150 + (round as u64 * 53) % 350;
        runtime.block_on(publish_until_killed(
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
    let history = history.lock().unwrap();
    let lost: Vec<&String> = history.acknowledged.difference(&stored).collect();
    let unexpected: Vec<&String> = stored.difference(&history.attempted).collect();
    eprintln!(
        "crash test: {CRASHES} crashes, {} publishes attempted, {} acknowledged, {} stored",
        history.attempted.len(),
        history.acknowledged.len(),
        stored.len()
    );
    assert!(
        history.acknowledged.len() >= MINIMUM_ACKNOWLEDGED,
        "too little load to prove anything: {} acknowledged",
        history.acknowledged.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        unexpected.is_empty(),
        "{} messages stored that were never published",
        unexpected.len()
    );
}

async fn declare_route(node: &NodeProcess) {
    let mut admin = node.admin().await;
    admin
        .create_host(v1::CreateHostRequest {
            name: "crash".into(),
        })
        .await
        .unwrap();
    admin
        .create_subscription(v1::CreateSubscriptionRequest {
            name: "crash-all".into(),
            host: "crash".into(),
            filter: "Kind == \"crash-test\"".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Runs publishers against the node for `load_ms`, then kills it with SIGKILL mid-load.
async fn publish_until_killed(
    node: &mut NodeProcess,
    round: usize,
    load_ms: u64,
    history: Arc<Mutex<History>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let (url, stop, history) = (node.grpc_url(), stop.clone(), history.clone());
            tokio::spawn(async move {
                publish_loop(url, format!("r{round}-p{publisher}"), stop, history).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(load_ms)).await;
    node.kill_hard();
    stop.store(true, Ordering::SeqCst);
    for publisher in publishers {
        tokio::time::timeout(Duration::from_secs(30), publisher)
            .await
            .expect("publisher stops")
            .unwrap();
    }
}

async fn publish_loop(
    url: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let Ok(mut client) = v1::message_box_client::MessageBoxClient::connect(url).await else {
        return;
    };
    let mut sequence = 0;
    while !stop.load(Ordering::SeqCst) {
        let ids: Vec<String> = (0..MESSAGES_PER_CALL)
            .map(|offset| format!("{prefix}-{}", sequence + offset))
            .collect();
        sequence += MESSAGES_PER_CALL;
        history
            .lock()
            .unwrap()
            .attempted
            .extend(ids.iter().cloned());
        let request = v1::PublishRequest {
            publisher: prefix.clone(),
            messages: ids.iter().map(|id| crash_message(id)).collect(),
        };
        let call = tokio::time::timeout(Duration::from_secs(10), client.publish(request)).await;
        let Ok(Ok(response)) = call else { return };
        let mut history = history.lock().unwrap();
        for result in response.into_inner().results {
            assert!(
                result.error.is_none(),
                "publish refused: {:?}",
                result.error
            );
            history.acknowledged.insert(result.message_id);
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
            host: "crash".into(),
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
