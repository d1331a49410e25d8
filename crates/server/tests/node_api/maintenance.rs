//! Maintenance keeps up: a tick that reached its bound is followed at once by another.

use std::time::{Duration, Instant};

use tandem_core::limits;
use tandem_protocol::v1;

use crate::support::{TestNode, bounded, host_with_subscription, order_message, publish, status};

/// Long enough that one interval's ticks are told apart from the next interval's.
const TICK_INTERVAL_MS: u64 = 5_000;

/// The orders host's ready and leased counts.
async fn ready_and_leased(node: &TestNode) -> (u64, u64) {
    let status = status(node).await;
    let host = status
        .hosts
        .iter()
        .find(|host| host.name == "orders")
        .expect("the orders host");
    let depth = host.depth.expect("a queue depth");
    (depth.ready, depth.leased)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_past_one_ticks_bound_all_return_within_one_interval() {
    let node = TestNode::start(|config| config.tick_interval_ms = TICK_INTERVAL_MS).await;
    bounded(async {
        host_with_subscription(&node, "orders", r#"MessageType == "Order""#).await;
        let backlog = 2 * limits::MAX_SWEEP_PER_TICK + 500;
        let messages: Vec<v1::PublishMessage> = (0..backlog)
            .map(|index| order_message(&format!("order-{index}"), b"x"))
            .collect();
        for batch in messages.chunks(limits::MAX_PUBLISH_BATCH) {
            publish(&node, batch.to_vec()).await;
        }
        let mut message_box = node.message_box().await;
        let mut leased = 0;
        while leased < backlog {
            let lease = v1::LeaseRequest {
                host: "orders".into(),
                holder: "crashed-instance".into(),
                max_messages: limits::MAX_LEASE_BATCH,
                lease_duration_ms: limits::MIN_LEASE_DURATION_MS,
                wait_ms: 0,
            };
            let batch = message_box.lease(lease).await.expect("lease");
            leased += batch.into_inner().messages.len();
        }

        // The next interval's ticks expire them; one tick alone would expire only
        // MAX_SWEEP_PER_TICK, and the rest would wait for the intervals after it.
        let first_returned = loop {
            let (ready, _) = ready_and_leased(&node).await;
            if ready > 0 {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let all_returned = loop {
            let (ready, leased) = ready_and_leased(&node).await;
            if ready == backlog as u64 && leased == 0 {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let spread = all_returned.duration_since(first_returned);
        assert!(
            spread < Duration::from_millis(TICK_INTERVAL_MS / 2),
            "the expired leases came back over {spread:?}: over more than one interval"
        );
    })
    .await;
    node.shutdown().await;
}
