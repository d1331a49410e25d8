//! The same journey over HTTP/JSON, plus `/health` and `/metrics`.

use serde_json::{Value as Json, json};

use crate::support::{TestNode, bounded, http_request};

/// Longer than the active's lease (the maximum election timeout, 300 ms by default).
const PAST_THE_LEASE: std::time::Duration = std::time::Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_lease_complete_over_http() {
    let node = TestNode::start(|_| {}).await;
    let address = node.http();
    bounded(async {
        let health = http_request(address, "GET", "/health", "").await;
        assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));

        let host = http_request(address, "POST", "/v1/hosts", r#"{"name":"orders"}"#).await;
        assert_eq!(host.status, 201, "{}", host.body);
        assert_eq!(host.json()["name"], "orders");
        let subscription = json!({"host": "orders", "filter": "Total > 100"}).to_string();
        let created = http_request(address, "POST", "/v1/subscriptions", &subscription).await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.json()["priority"], 5);
        assert_eq!(created.json()["host"], "orders");

        let message = json!({
            "message_id": "web-1",
            "properties": {"Total": 150, "Note": {"type": "string", "value": "n", "promoted": false}},
            "body_base64": "aGVsbG8=",
        });
        let published =
            http_request(address, "POST", "/v1/messages", &message.to_string()).await;
        assert_eq!(published.status, 200, "{}", published.body);
        assert_eq!(published.json()["duplicate"], false);
        assert_eq!(published.json()["instances"].as_array().map(Vec::len), Some(1));

        let leased = http_request(address, "POST", "/v1/hosts/orders/lease", "").await;
        assert_eq!(leased.status, 200, "{}", leased.body);
        let message = &leased.json()["messages"][0];
        assert_eq!(message["body"], "hello");
        assert_eq!(message["body_base64"], "aGVsbG8=");
        assert_eq!(message["properties"]["Total"], 150);
        assert_eq!(message["properties"]["Note"]["promoted"], false);
        let instance = message["instance"].as_u64().expect("instance");
        let token = message["token"].as_u64().expect("token");

        let path = format!("/v1/instances/{instance}/complete");
        let completed =
            http_request(address, "POST", &path, &json!({"token": token}).to_string()).await;
        assert_eq!(completed.status, 200, "{}", completed.body);

        let hosts = http_request(address, "GET", "/v1/hosts", "").await.json();
        assert_eq!(hosts["hosts"][0]["depth"]["ready"], 0);
        assert_eq!(hosts["hosts"][0]["depth"]["leased"], 0);
        let history = http_request(address, "GET", "/v1/messages/web-1/history", "").await;
        let kinds: Vec<String> = history.json()["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|event| event["kind"].as_str().map(str::to_string))
            .collect();
        assert_eq!(kinds, ["received", "leased", "completed"]);

        let metrics = http_request(address, "GET", "/metrics", "").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.header("content-type").is_some_and(|value| value.starts_with("text/plain")));
        for series in [
            "# TYPE tandem_messages_stored gauge",
            "tandem_messages_stored 0",
            "tandem_throttled 0",
            "tandem_queue_depth{host=\"orders\",state=\"ready\"} 0",
            "tandem_queue_depth{host=\"orders\",state=\"suspended\"} 0",
            "tandem_routing_failures 0",
            "tandem_subscriptions 1",
            "tandem_store_commits_total ",
            "tandem_store_commands_total ",
            "tandem_store_commit_seconds_total ",
            "tandem_store_failures_total 0",
            "tandem_requests_total{api=\"http\",operation=\"publish\"} 1",
            "tandem_published_messages_total 1",
            "tandem_replica_role{role=\"active\"} 1",
            "tandem_replica_role{role=\"passive\"} 0",
            "tandem_replica_term 1",
            "tandem_replica_applied_index ",
        ] {
            assert!(metrics.body.contains(series), "missing {series:?} in\n{}", metrics.body);
        }
        let status = http_request(address, "GET", "/v1/status", "").await.json();
        assert_eq!(status["message_count"], 0);
        assert_eq!(status["subscription_count"], 1);

        // A one-node replica set: this node is the active, never an in-sync passive.
        assert_eq!(http_request(address, "GET", "/health/active", "").await.status, 200);
        assert_eq!(http_request(address, "GET", "/health/passive", "").await.status, 503);
        // And it stays the serving active once its lease has passed with nothing written: a
        // lone voter is its own majority. (openraft left its acknowledgement time where the
        // election set it, and this answered 503 a moment after the node started.)
        tokio::time::sleep(PAST_THE_LEASE).await;
        assert_eq!(http_request(address, "GET", "/health/active", "").await.status, 200);
        let cluster = http_request(address, "GET", "/v1/cluster", "").await.json();
        assert_eq!(cluster["role"], "active");
        assert!(cluster["disk_room_bytes"].as_u64().is_some(), "{cluster}");
        assert_eq!(status["disk_low"], false, "{status}");
        assert_eq!(cluster["members"].as_array().map(Vec::len), Some(1));
        // Its own majority: confirmed all the time, and no other member to hear from.
        assert!(
            cluster["quorum_acknowledged_ms_ago"].as_u64().is_some(),
            "{cluster}"
        );
        assert_eq!(cluster["members"][0]["acknowledged_ms_ago"], Json::Null);
        let metrics = http_request(address, "GET", "/metrics", "").await.body;
        for series in [
            "tandem_replica_quorum_acknowledged_age_seconds ",
            "# TYPE tandem_replica_member_acknowledged_age_seconds gauge",
        ] {
            assert!(metrics.contains(series), "missing {series:?} in\n{metrics}");
        }
        assert_eq!(cluster["failovers"][0]["to"], 1, "{cluster}");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_each_message() {
    let node = TestNode::start(|_| {}).await;
    let address = node.http();
    bounded(async {
        http_request(address, "POST", "/v1/hosts", r#"{"name":"h"}"#).await;
        let subscription = json!({"host": "h", "filter": "Kind == \"a\""}).to_string();
        http_request(address, "POST", "/v1/subscriptions", &subscription).await;
        let batch = json!({"messages": [
            {"message_id": "b-1", "properties": {"Kind": "a"}, "body": "one"},
            {"message_id": "b-2", "properties": {"Kind": "z"}, "body": "two"},
            {"message_id": "b-3", "properties": {"Kind": {"type": "int", "value": "x"}}},
        ]});
        let answer = http_request(address, "POST", "/v1/messages", &batch.to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let results = answer.json()["results"].clone();
        assert_eq!(results[0]["message_id"], "b-1");
        assert!(results[0].get("error").is_none());
        assert_eq!(results[1]["error"]["code"], "no_route");
        assert_eq!(results[2]["message_id"], "b-3");
        assert_eq!(results[2]["error"]["code"], "invalid_argument");
        let status = http_request(address, "GET", "/v1/status", "").await.json();
        assert_eq!(status["message_count"], 1);
    })
    .await;
    node.shutdown().await;
}
