//! Batch settle: one call completes, abandons and fails many leases; each settlement stands
//! or falls on its own, and a refused one changes nothing.

use serde_json::json;
use tandem_protocol::v1;

use crate::support::{TestNode, bounded, error_code, http_request, order_message, publish, status};

/// A host `orders` whose subscription suspends on the first failure (no retries).
async fn orders_without_retries(node: &TestNode) {
    let mut admin = node.admin().await;
    admin
        .create_host(v1::CreateHostRequest {
            name: "orders".into(),
        })
        .await
        .expect("host");
    admin
        .create_subscription(v1::CreateSubscriptionRequest {
            host: "orders".into(),
            filter: r#"MessageType == "Order""#.into(),
            retry_count: Some(0),
            ..Default::default()
        })
        .await
        .expect("subscription");
}

async fn lease_all(node: &TestNode, count: u32) -> Vec<v1::LeasedMessage> {
    node.message_box()
        .await
        .lease(v1::LeaseRequest {
            host: "orders".into(),
            holder: "batch-worker".into(),
            max_messages: count,
            ..Default::default()
        })
        .await
        .expect("lease")
        .into_inner()
        .messages
}

fn settlement(message: &v1::LeasedMessage, verdict: v1::Verdict) -> v1::Settlement {
    v1::Settlement {
        instance: message.instance,
        token: message.token,
        verdict: verdict as i32,
        reason: String::new(),
    }
}

/// (ready, delayed, leased, suspended) of the one host.
async fn depth(node: &TestNode) -> (u64, u64, u64, u64) {
    let depth = status(node).await.hosts[0].depth.expect("depth");
    (depth.ready, depth.delayed, depth.leased, depth.suspended)
}

async fn history(node: &TestNode, message_id: &str) -> v1::MessageHistoryResponse {
    node.admin()
        .await
        .message_history(v1::MessageHistoryRequest {
            message_id: message_id.into(),
        })
        .await
        .expect("history")
        .into_inner()
}

fn event_kinds(history: &v1::MessageHistoryResponse) -> Vec<String> {
    history
        .events
        .iter()
        .map(|event| event.kind.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_settles_each_lease_on_its_own() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        orders_without_retries(&node).await;
        let ids = ["done", "given-back", "broken", "stale-token", "untouched"];
        let messages = ids.iter().map(|id| order_message(id, b"x")).collect();
        publish(&node, messages).await;
        let leased = lease_all(&node, 5).await;
        let by_id = |id: &str| {
            leased
                .iter()
                .find(|message| message.message_id == id)
                .unwrap_or_else(|| panic!("{id} was leased"))
                .clone()
        };
        assert_eq!(depth(&node).await, (0, 0, 5, 0));

        let mut fail = settlement(&by_id("broken"), v1::Verdict::Fail);
        fail.reason = "the partner is down".into();
        let mut stale = settlement(&by_id("stale-token"), v1::Verdict::Complete);
        stale.token += 1_000;
        let unknown = v1::Settlement {
            instance: 999_999,
            token: 1,
            ..Default::default()
        };
        let settlements = vec![
            settlement(&by_id("done"), v1::Verdict::Complete),
            settlement(&by_id("given-back"), v1::Verdict::Abandon),
            fail,
            stale,
            unknown,
        ];
        let results = node
            .message_box()
            .await
            .settle(v1::SettleBatchRequest { settlements })
            .await
            .expect("a well-formed batch succeeds")
            .into_inner()
            .results;

        let instances: Vec<u64> = results.iter().map(|result| result.instance).collect();
        let expected_instances = vec![
            by_id("done").instance,
            by_id("given-back").instance,
            by_id("broken").instance,
            by_id("stale-token").instance,
            999_999,
        ];
        assert_eq!(
            instances, expected_instances,
            "results come in request order"
        );
        for accepted in &results[..3] {
            assert!(accepted.error.is_none(), "{accepted:?}");
        }
        assert!(!results[0].suspended && !results[1].suspended);
        assert!(results[2].suspended, "no retries: the failure suspends");
        let codes: Vec<&str> = results[3..]
            .iter()
            .map(|result| {
                result
                    .error
                    .as_ref()
                    .map_or("", |error| error.code.as_str())
            })
            .collect();
        assert_eq!(codes, ["lease_mismatch", "not_found"]);
        assert!(!results[3].suspended && !results[4].suspended);

        // done: gone; given-back: ready; broken: suspended; stale-token and untouched: leased.
        assert_eq!(depth(&node).await, (1, 0, 2, 1));
        assert_eq!(status(&node).await.message_count, 4);

        let done = history(&node, "done").await;
        assert!(done.instances.is_empty());
        assert!(event_kinds(&done).contains(&"completed".to_string()));

        let given_back = history(&node, "given-back").await;
        assert_eq!(given_back.instances[0].state, "ready");
        assert_eq!(
            given_back.instances[0].attempts, 0,
            "abandon counts no attempt"
        );
        assert!(event_kinds(&given_back).contains(&"abandoned".to_string()));

        let broken = history(&node, "broken").await;
        assert_eq!(broken.instances[0].state, "suspended");
        assert_eq!(broken.instances[0].last_error, "the partner is down");
        assert!(event_kinds(&broken).contains(&"failed".to_string()));

        let stale = history(&node, "stale-token").await;
        assert_eq!(stale.instances[0].state, "leased");
        assert_eq!(
            event_kinds(&stale),
            ["received", "leased"],
            "refused: no change"
        );

        // The stale lease is still good with its real token.
        let retried = node
            .message_box()
            .await
            .settle(v1::SettleBatchRequest {
                settlements: vec![settlement(&by_id("stale-token"), v1::Verdict::Complete)],
            })
            .await
            .expect("settle")
            .into_inner()
            .results;
        assert!(retried[0].error.is_none(), "{:?}", retried[0]);
        assert_eq!(depth(&node).await, (1, 0, 1, 1));

        let metrics = http_request(node.http(), "GET", "/metrics", "").await.body;
        let series = "tandem_requests_total{api=\"grpc\",operation=\"settle\"} 2";
        assert!(metrics.contains(series), "missing {series:?} in\n{metrics}");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_abandoned_in_a_batch_reaches_a_waiting_lease() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        orders_without_retries(&node).await;
        publish(
            &node,
            vec![order_message("a", b"x"), order_message("b", b"y")],
        )
        .await;
        let leased = lease_all(&node, 2).await;
        let waiting = {
            let mut message_box = node.message_box().await;
            tokio::spawn(async move {
                message_box
                    .lease(v1::LeaseRequest {
                        host: "orders".into(),
                        wait_ms: 20_000,
                        ..Default::default()
                    })
                    .await
                    .expect("lease")
                    .into_inner()
                    .messages
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let settlements = leased
            .iter()
            .map(|message| settlement(message, v1::Verdict::Abandon))
            .collect();
        node.message_box()
            .await
            .settle(v1::SettleBatchRequest { settlements })
            .await
            .expect("settle");
        let woken = waiting.await.expect("lease task");
        assert!(!woken.is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the waiting lease got the work, not a timeout"
        );
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_beyond_the_lease_limit_are_refused_whole() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        orders_without_retries(&node).await;
        publish(&node, vec![order_message("kept", b"x")]).await;
        let leased = lease_all(&node, 1).await;
        let limit = tandem_core::limits::MAX_LEASE_BATCH as usize;
        let settlements = vec![settlement(&leased[0], v1::Verdict::Complete); limit + 1];
        let refused = node
            .message_box()
            .await
            .settle(v1::SettleBatchRequest { settlements })
            .await
            .expect_err("too many settlements");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(error_code(&refused), "invalid_argument");
        assert!(
            refused.message().contains("at most 1000 settlements")
                && refused.message().contains("1001"),
            "{}",
            refused.message()
        );
        assert_eq!(depth(&node).await, (0, 0, 1, 0), "nothing was settled");

        let settlements: Vec<serde_json::Value> = (0..=limit)
            .map(|_| json!({"instance": leased[0].instance, "token": leased[0].token, "verdict": "complete"}))
            .collect();
        let body = json!({ "settlements": settlements }).to_string();
        let answer = http_request(node.http(), "POST", "/v1/settle", &body).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.error_code(), "invalid_argument");
        assert_eq!(depth(&node).await, (0, 0, 1, 0), "nothing was settled");

        // Exactly at the limit is accepted: the first completes, the repeats are refused.
        let settlements = vec![settlement(&leased[0], v1::Verdict::Complete); limit];
        let results = node
            .message_box()
            .await
            .settle(v1::SettleBatchRequest { settlements })
            .await
            .expect("a batch at the limit")
            .into_inner()
            .results;
        assert_eq!(results.len(), limit);
        assert!(results[0].error.is_none(), "{:?}", results[0]);
        assert!(results[1..].iter().all(|result| result.error.is_some()));
        assert_eq!(depth(&node).await, (0, 0, 0, 0));
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_over_http() {
    let node = TestNode::start(|_| {}).await;
    let address = node.http();
    bounded(async {
        orders_without_retries(&node).await;
        publish(
            &node,
            vec![order_message("h-1", b"x"), order_message("h-2", b"y")],
        )
        .await;
        let leased = http_request(
            address,
            "POST",
            "/v1/hosts/orders/lease",
            r#"{"max_messages":2}"#,
        )
        .await
        .json();
        let lease = |index: usize| {
            let message = &leased["messages"][index];
            (
                message["instance"].as_u64().expect("instance"),
                message["token"].as_u64().expect("token"),
            )
        };
        let ((first, first_token), (second, second_token)) = (lease(0), lease(1));

        // A bad verdict refuses the whole call with a JSON error, and changes nothing.
        let bad = json!({"settlements": [
            {"instance": first, "token": first_token, "verdict": "complete"},
            {"instance": second, "token": second_token, "verdict": "finish"},
        ]});
        let answer = http_request(address, "POST", "/v1/settle", &bad.to_string()).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.error_code(), "invalid_argument");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("finish"), "{message}");
        assert_eq!(depth(&node).await, (0, 0, 2, 0));

        let batch = json!({"settlements": [
            {"instance": first, "token": first_token, "verdict": "complete"},
            {"instance": second, "token": second_token, "verdict": "fail", "reason": "bad data"},
            {"instance": first, "token": first_token, "verdict": "abandon"},
        ]});
        let answer = http_request(address, "POST", "/v1/settle", &batch.to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let results = answer.json()["results"].clone();
        assert_eq!(results[0], json!({"instance": first, "suspended": false}));
        assert_eq!(results[1], json!({"instance": second, "suspended": true}));
        assert_eq!(results[2]["instance"], first);
        assert_eq!(
            results[2]["error"]["code"], "not_found",
            "already completed"
        );
        assert_eq!(depth(&node).await, (0, 0, 0, 1));
        let failed = history(&node, "h-2").await;
        assert_eq!(failed.instances[0].last_error, "bad data");

        let metrics = http_request(address, "GET", "/metrics", "").await.body;
        // The malformed call was refused before reaching the handler, like any bad body.
        let series = "tandem_requests_total{api=\"http\",operation=\"settle\"} 1";
        assert!(metrics.contains(series), "missing {series:?} in\n{metrics}");
    })
    .await;
    node.shutdown().await;
}
