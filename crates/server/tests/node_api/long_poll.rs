//! A waiting lease answers as soon as work is published, not at its deadline.

use std::time::{Duration, Instant};

use serde_json::json;
use tandem_protocol::v1;

use crate::support::{
    TestNode, bounded, host_with_subscription, http_request, order_message, publish,
};

/// How soon after the publish a waiting lease must answer.
const PROMPT_ANSWER: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_grpc_lease_wakes_on_publish() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        host_with_subscription(&node, "orders", r#"MessageType == "Order""#).await;
        let mut message_box = node.message_box().await;
        let waiting = tokio::spawn(async move {
            let leased = message_box
                .lease(v1::LeaseRequest {
                    host: "orders".into(),
                    wait_ms: 2000,
                    ..Default::default()
                })
                .await;
            (leased, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let published_at = Instant::now();
        publish(&node, vec![order_message("awaited", b"x")]).await;
        let (leased, answered_at) = waiting.await.expect("lease task");
        let messages = leased.expect("lease").into_inner().messages;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].message_id, "awaited");
        assert!(answered_at.duration_since(published_at) < PROMPT_ANSWER);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_http_lease_wakes_on_publish_and_times_out_empty() {
    let node = TestNode::start(|_| {}).await;
    let address = node.http();
    bounded(async {
        host_with_subscription(&node, "orders", r#"MessageType == "Order""#).await;
        let started = Instant::now();
        let empty = http_request(
            address,
            "POST",
            "/v1/hosts/orders/lease",
            r#"{"wait_ms":300}"#,
        )
        .await;
        assert_eq!(empty.json()["messages"], json!([]));
        assert!(started.elapsed() >= Duration::from_millis(300));

        let waiting = tokio::spawn(async move {
            http_request(
                address,
                "POST",
                "/v1/hosts/orders/lease",
                r#"{"wait_ms":2000}"#,
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let published_at = Instant::now();
        publish(&node, vec![order_message("awaited", b"x")]).await;
        let answer = waiting.await.expect("lease task");
        assert!(published_at.elapsed() < PROMPT_ANSWER);
        assert_eq!(answer.json()["messages"][0]["message_id"], "awaited");
    })
    .await;
    node.shutdown().await;
}
