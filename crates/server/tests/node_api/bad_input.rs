//! Bad input gets a clear error and changes nothing.

use std::time::Duration;

use serde_json::json;
use tandem_protocol::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    TestNode, bounded, error_code, host_with_subscription, http_raw, http_request, order_message,
    publish, status, string_property,
};

/// What bad input must not change: stored messages, queues, subscriptions.
async fn snapshot(node: &TestNode) -> (u64, u64, Vec<(String, Option<v1::QueueDepth>)>) {
    let status = status(node).await;
    let hosts = status
        .hosts
        .into_iter()
        .map(|host| (host.name, host.depth))
        .collect();
    (status.message_count, status.subscription_count, hosts)
}

async fn orders_node(customize: impl FnOnce(&mut tandem_server::NodeConfig)) -> TestNode {
    let node = TestNode::start(customize).await;
    host_with_subscription(&node, "orders", r#"MessageType == "Order""#).await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_on_both_apis() {
    let node = orders_node(|config| config.max_body_bytes = 1024).await;
    bounded(async {
        let before = snapshot(&node).await;
        let results = publish(&node, vec![order_message("big", &[b'x'; 2000])]).await;
        let error = results[0].error.clone().expect("refused");
        assert_eq!(error.code, "too_large");
        assert!(error.message.contains("2000 bytes"), "{}", error.message);

        let message = json!({
            "message_id": "big-http",
            "properties": {"MessageType": "Order"},
            "body": "x".repeat(2000),
        });
        let answer = http_request(node.http(), "POST", "/v1/messages", &message.to_string()).await;
        assert_eq!(answer.status, 413, "{}", answer.body);
        assert_eq!(answer.error_code(), "too_large");

        // Beyond what the HTTP layer reads at all: still a JSON 413.
        let huge = format!("{{\"body\":\"{}\"}}", "x".repeat(1_200_000));
        let answer = http_request(node.http(), "POST", "/v1/messages", &huge).await;
        assert_eq!(answer.status, 413, "{}", answer.body);
        assert_eq!(answer.error_code(), "too_large");
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_named() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let before = snapshot(&node).await;
        let mut message = order_message("bad-name", b"x");
        message.properties.push(v1::Property {
            name: vec![b'A', 0xc3, 0x28],
            value: Some(v1::property::Value::IntValue(1)),
            written: false,
        });
        let results = publish(&node, vec![message, order_message("good", b"y")]).await;
        let error = results[0].error.clone().expect("refused");
        assert_eq!(error.code, "invalid_argument");
        assert!(error.message.contains("UTF-8"), "{}", error.message);
        assert_eq!(results[0].message_id, "bad-name");
        assert!(
            results[1].error.is_none(),
            "the other message is still published"
        );

        let invalid_json = b"{\"message_id\":\"a\xff\"}";
        let answer = http_raw(
            node.http(),
            "POST",
            "/v1/messages",
            Some("application/json"),
            invalid_json,
        )
        .await;
        assert_eq!(answer.status, 400);
        assert!(
            answer.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("UTF-8")
        );
        let after = snapshot(&node).await;
        assert_eq!(after.0, before.0 + 1, "only the good message was stored");
    })
    .await;
    node.shutdown().await;
}

/// A malformed HTTP request and what its JSON error must say.
struct MalformedRequest {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: &'static [u8],
    status: u16,
    message_contains: &'static str,
}

const JSON: Option<&str> = Some("application/json");

const MALFORMED_REQUESTS: [MalformedRequest; 6] = [
    MalformedRequest {
        method: "POST",
        path: "/v1/hosts",
        content_type: Some("text/plain"),
        body: b"{\"name\":\"x\"}",
        status: 400,
        message_contains: "Content-Type",
    },
    MalformedRequest {
        method: "POST",
        path: "/v1/hosts",
        content_type: JSON,
        body: b"{\"name\":",
        status: 400,
        message_contains: "line 1 column",
    },
    MalformedRequest {
        method: "POST",
        path: "/v1/hosts",
        content_type: JSON,
        body: b"{\"name\":\"x\",\"color\":1}",
        status: 400,
        message_contains: "unknown field",
    },
    MalformedRequest {
        method: "POST",
        path: "/v1/instances/abc/complete",
        content_type: JSON,
        body: b"{\"token\":1}",
        status: 400,
        message_contains: "path",
    },
    MalformedRequest {
        method: "GET",
        path: "/v1/nowhere",
        content_type: None,
        body: b"",
        status: 404,
        message_contains: "no such endpoint",
    },
    MalformedRequest {
        method: "DELETE",
        path: "/health",
        content_type: None,
        body: b"",
        status: 405,
        message_contains: "not allowed",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors() {
    let node = orders_node(|_| {}).await;
    let address = node.http();
    bounded(async {
        let before = snapshot(&node).await;
        for case in MALFORMED_REQUESTS {
            let (method, path) = (case.method, case.path);
            let answer = http_raw(address, method, path, case.content_type, case.body).await;
            assert_eq!(
                answer.status, case.status,
                "{method} {path}: {}",
                answer.body
            );
            let message = answer.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                message.contains(case.message_contains),
                "{method} {path}: {message}"
            );
        }
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_filters_name_line_and_column() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let before = snapshot(&node).await;
        let refused = node
            .admin()
            .await
            .create_subscription(v1::CreateSubscriptionRequest {
                host: "orders".into(),
                filter: "Total >> 5".into(),
                ..Default::default()
            })
            .await
            .expect_err("bad filter");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(error_code(&refused), "invalid_argument");
        assert!(
            refused.message().contains("line 1, column"),
            "{}",
            refused.message()
        );

        let body = json!({"host": "orders", "filter": "Total >> 5"}).to_string();
        let answer = http_request(node.http(), "POST", "/v1/subscriptions", &body).await;
        assert_eq!(answer.status, 400);
        assert!(answer.body.contains("line 1, column"), "{}", answer.body);
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_are_not_found() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let before = snapshot(&node).await;
        let refused = node
            .admin()
            .await
            .create_subscription(v1::CreateSubscriptionRequest {
                host: "nowhere".into(),
                filter: "A == 1".into(),
                ..Default::default()
            })
            .await
            .expect_err("unknown host");
        assert_eq!(refused.code(), tonic::Code::NotFound);
        assert!(
            refused.message().contains("nowhere"),
            "{}",
            refused.message()
        );
        let refused = node
            .message_box()
            .await
            .lease(v1::LeaseRequest {
                host: "nowhere".into(),
                ..Default::default()
            })
            .await
            .expect_err("unknown host");
        assert_eq!(refused.code(), tonic::Code::NotFound);
        let answer = http_request(node.http(), "POST", "/v1/hosts/nowhere/lease", "").await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (404, "not_found")
        );
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_wrong_and_expired_tokens() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        publish(&node, vec![order_message("fenced", b"x")]).await;
        let mut message_box = node.message_box().await;
        let leased = message_box
            .lease(v1::LeaseRequest {
                host: "orders".into(),
                lease_duration_ms: 100,
                ..Default::default()
            })
            .await
            .expect("lease")
            .into_inner()
            .messages
            .remove(0);
        let wrong = message_box
            .complete(v1::SettleRequest {
                instance: leased.instance,
                token: leased.token + 1000,
            })
            .await
            .expect_err("wrong token");
        assert_eq!(wrong.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error_code(&wrong), "lease_mismatch");
        let body = json!({"token": leased.token + 1000}).to_string();
        let path = format!("/v1/instances/{}/complete", leased.instance);
        let answer = http_request(node.http(), "POST", &path, &body).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (409, "lease_mismatch")
        );

        tokio::time::sleep(Duration::from_millis(300)).await;
        let expired = message_box
            .complete(v1::SettleRequest {
                instance: leased.instance,
                token: leased.token,
            })
            .await
            .expect_err("expired");
        assert_eq!(expired.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error_code(&expired), "lease_expired");
        let depth = status(&node).await.hosts[0].depth.expect("depth");
        assert_eq!(
            (depth.ready, depth.leased),
            (1, 0),
            "the message is offered again"
        );
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_stored_once() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let first = publish(&node, vec![order_message("once", b"x")]).await;
        assert!(!first[0].duplicate);
        let count = status(&node).await.message_count;
        let again = publish(&node, vec![order_message("once", b"x")]).await;
        assert!(again[0].duplicate);
        assert!(again[0].instances.is_empty());
        let body = json!({"message_id": "once", "properties": {"MessageType": "Order"}});
        let answer = http_request(node.http(), "POST", "/v1/messages", &body.to_string()).await;
        assert_eq!(answer.json()["duplicate"], true);
        assert_eq!(status(&node).await.message_count, count);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_messages_are_refused() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let before = snapshot(&node).await;
        let message = v1::PublishMessage {
            message_id: "lost".into(),
            body: b"x".to_vec(),
            properties: vec![string_property("MessageType", "Invoice")],
        };
        let results = publish(&node, vec![message]).await;
        let error = results[0].error.clone().expect("refused");
        assert_eq!(error.code, "no_route");
        let body = json!({"message_id": "lost-http", "properties": {"MessageType": "Invoice"}});
        let answer = http_request(node.http(), "POST", "/v1/messages", &body.to_string()).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (422, "no_route")
        );
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_throttles_with_a_retry_hint() {
    let node = orders_node(|config| config.throttle_message_count = 2).await;
    bounded(async {
        publish(
            &node,
            vec![order_message("t-1", b"x"), order_message("t-2", b"x")],
        )
        .await;
        let before = snapshot(&node).await;
        assert!(status(&node).await.throttled);
        let results = publish(&node, vec![order_message("t-3", b"x")]).await;
        let error = results[0].error.clone().expect("throttled");
        assert_eq!(error.code, "throttled");
        assert!(error.retry_after_ms > 0);

        let body = json!({"message_id": "t-4", "properties": {"MessageType": "Order"}});
        let answer = http_request(node.http(), "POST", "/v1/messages", &body.to_string()).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (429, "throttled")
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(answer.json()["error"]["retry_after_ms"].as_u64().is_some());
        let metrics = http_request(node.http(), "GET", "/metrics", "").await;
        assert!(
            metrics.body.contains("tandem_throttled 1"),
            "{}",
            metrics.body
        );
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}

/// A floor above any disk's free space: the real measurement is always below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_short_of_room_throttles_publishes_but_not_other_writes() {
    let node = orders_node(|_| {}).await;
    let published = publish(&node, vec![order_message("d-0", b"x")]).await;
    assert!(published[0].error.is_none(), "{published:?}");
    // A floor above any disk's free space: the node's real measurement is below it.
    let node = node
        .restart(|config| config.min_free_disk_bytes = u64::MAX)
        .await;
    bounded(async {
        let before = snapshot(&node).await;
        let status_now = status(&node).await;
        assert!(status_now.disk_low && status_now.throttled);
        assert!(status_now.disk_room_bytes.is_some_and(|room| room > 0));
        assert_eq!(status_now.min_free_disk_bytes, u64::MAX);

        let refused = node
            .message_box()
            .await
            .publish(v1::PublishRequest {
                publisher: "tests".into(),
                messages: vec![order_message("d-1", b"x")],
            })
            .await
            .expect_err("the whole call is refused");
        assert_eq!(error_code(&refused), "throttled");
        let data_dir = node.data_dir.path().display().to_string();
        assert!(
            refused.message().contains(&data_dir)
                && refused.message().contains("min_free_disk_bytes"),
            "{}",
            refused.message()
        );
        assert!(
            refused
                .metadata()
                .get(tandem_protocol::RETRY_AFTER_METADATA)
                .is_some()
        );

        let body = json!({"message_id": "d-2", "properties": {"MessageType": "Order"}});
        let answer = http_request(node.http(), "POST", "/v1/messages", &body.to_string()).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (429, "throttled")
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        let metrics = http_request(node.http(), "GET", "/metrics", "").await.body;
        assert!(metrics.contains("tandem_throttled 1"), "{metrics}");
        assert!(metrics.contains("tandem_disk_room_bytes "), "{metrics}");

        // A retry of a message already stored is answered (it stores nothing), so its
        // publisher learns it is safe; a call with one new message among them is not.
        let retried = publish(&node, vec![order_message("d-0", b"x")]).await;
        assert!(
            retried[0].duplicate && retried[0].error.is_none(),
            "{retried:?}"
        );
        let mixed = node
            .message_box()
            .await
            .publish(v1::PublishRequest {
                publisher: "tests".into(),
                messages: vec![order_message("d-0", b"x"), order_message("d-3", b"x")],
            })
            .await
            .expect_err("a call with a new message is refused");
        assert_eq!(error_code(&mixed), "throttled");
        assert_eq!(snapshot(&node).await, before);

        // Writes that add no messages go on: consumers must be able to drain the store.
        let leased = node
            .message_box()
            .await
            .lease(v1::LeaseRequest {
                host: "orders".into(),
                max_messages: 1,
                ..Default::default()
            })
            .await
            .expect("leasing is not throttled")
            .into_inner()
            .messages;
        let leased: Vec<&str> = leased
            .iter()
            .map(|message| message.message_id.as_str())
            .collect();
        assert_eq!(leased, ["d-0"]);
        let created = http_request(node.http(), "POST", "/v1/hosts", r#"{"name":"more"}"#).await;
        assert_eq!(created.status, 201, "{}", created.body);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_wire_does_not_hurt_the_node() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let before = snapshot(&node).await;
        let mut garbage: Vec<u8> = (0..4096u32)
            .map(|index| (index * 7919 % 251) as u8)
            .collect();
        garbage.extend_from_slice(b"\r\n\r\n");
        for address in [node.node.grpc_address(), node.http()] {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let _ = stream.write_all(&garbage).await;
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        }
        // A request that looks like HTTP but is not.
        let mut stream = TcpStream::connect(node.http()).await.expect("connect");
        let _ = stream.write_all(b"GET / HTTP/9.9\r\nHost\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;

        assert_eq!(snapshot(&node).await, before);
        let results = publish(&node, vec![order_message("after-garbage", b"x")]).await;
        assert!(results[0].error.is_none());
        let health = http_request(node.http(), "GET", "/health", "").await;
        assert_eq!(health.status, 200);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_fail_the_whole_call() {
    let node = orders_node(|_| {}).await;
    bounded(async {
        let before = snapshot(&node).await;
        let batch_limit = tandem_core::limits::MAX_PUBLISH_BATCH;
        let messages = (0..=batch_limit)
            .map(|index| order_message(&format!("batch-{index}"), b""))
            .collect();
        let refused = node
            .message_box()
            .await
            .publish(v1::PublishRequest {
                publisher: "tests".into(),
                messages,
            })
            .await
            .expect_err("too many messages");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("at most"),
            "{}",
            refused.message()
        );
        assert_eq!(snapshot(&node).await, before);
    })
    .await;
    node.shutdown().await;
}
