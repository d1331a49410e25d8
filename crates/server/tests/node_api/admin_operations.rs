//! Failures, the suspended queue, resume and terminate, listings and tracking purge.

use serde_json::json;
use tandem_protocol::v1;

use crate::support::{TestNode, bounded, http_request, order_message, publish};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_are_suspended_resumed_and_terminated() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        let mut admin = node.admin().await;
        admin
            .create_host(v1::CreateHostRequest {
                name: "orders".into(),
            })
            .await
            .expect("host");
        let subscription = admin
            .create_subscription(v1::CreateSubscriptionRequest {
                host: "orders".into(),
                filter: r#"MessageType == "Order""#.into(),
                retry_count: Some(0),
                ..Default::default()
            })
            .await
            .expect("subscription")
            .into_inner();
        assert_eq!(subscription.name, "orders-sub-1");
        assert_eq!(subscription.priority, 5);
        assert_eq!(subscription.retry_count, 0);
        let listed = admin
            .list_subscriptions(v1::ListSubscriptionsRequest {})
            .await
            .expect("list")
            .into_inner()
            .subscriptions;
        assert_eq!(listed[0].host, "orders");

        publish(&node, vec![order_message("failing", b"x")]).await;
        let mut message_box = node.message_box().await;
        let lease = v1::LeaseRequest {
            host: "orders".into(),
            ..Default::default()
        };
        let leased = message_box
            .lease(lease.clone())
            .await
            .expect("lease")
            .into_inner()
            .messages;
        let failed = message_box
            .fail(v1::FailRequest {
                instance: leased[0].instance,
                token: leased[0].token,
                reason: "the partner is down".into(),
            })
            .await
            .expect("fail")
            .into_inner();
        assert!(failed.suspended);

        let suspended = admin
            .list_instances(v1::ListInstancesRequest {
                host: "orders".into(),
                state: "suspended".into(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .instances;
        assert_eq!(suspended.len(), 1);
        assert_eq!(suspended[0].host, "orders");
        assert!(
            suspended[0].last_error.contains("partner"),
            "{}",
            suspended[0].last_error
        );
        let bad_state = admin
            .list_instances(v1::ListInstancesRequest {
                state: "finished".into(),
                ..Default::default()
            })
            .await
            .expect_err("unknown state");
        assert_eq!(bad_state.code(), tonic::Code::InvalidArgument);
        let unknown_host = admin
            .list_instances(v1::ListInstancesRequest {
                host: "nowhere".into(),
                ..Default::default()
            })
            .await
            .expect_err("unknown host");
        assert_eq!(unknown_host.code(), tonic::Code::NotFound);

        let instance = suspended[0].id;
        admin
            .resume(v1::ResumeRequest { instance })
            .await
            .expect("resume");
        let again = message_box
            .lease(lease)
            .await
            .expect("lease")
            .into_inner()
            .messages;
        assert_eq!(again[0].instance, instance);
        message_box
            .fail(v1::FailRequest {
                instance,
                token: again[0].token,
                reason: "still down".into(),
            })
            .await
            .expect("fail");

        let address = node.http();
        let listed = http_request(
            address,
            "GET",
            "/v1/instances?state=suspended&host=orders",
            "",
        )
        .await;
        assert_eq!(listed.json()["instances"][0]["id"], instance);
        let path = format!("/v1/instances/{instance}/terminate");
        let terminated = http_request(address, "POST", &path, "").await;
        assert_eq!(terminated.status, 200, "{}", terminated.body);
        let listed = http_request(address, "GET", "/v1/instances", "").await;
        assert_eq!(listed.json()["instances"], json!([]));
        let bad_query = http_request(address, "GET", "/v1/instances?limit=lots", "").await;
        assert_eq!(bad_query.status, 400);

        let purged = http_request(
            address,
            "POST",
            "/v1/tracking/purge",
            r#"{"older_than_ms":0}"#,
        )
        .await;
        assert!(
            purged.json()["events"]
                .as_u64()
                .is_some_and(|events| events > 0)
        );
        let deleted = http_request(
            address,
            "DELETE",
            &format!("/v1/subscriptions/{}", subscription.id),
            "",
        )
        .await;
        assert_eq!(deleted.status, 200, "{}", deleted.body);
        let subscriptions = http_request(address, "GET", "/v1/subscriptions", "").await;
        assert_eq!(subscriptions.json()["subscriptions"], json!([]));
    })
    .await;
    node.shutdown().await;
}

/// A subscription with a backup transport: both APIs create and list its policy, a lease
/// says which transport to deliver through, and the message is suspended only after the
/// backup transport's delivery failed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_transport_delivers_after_the_primary_before_suspension() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        let address = node.http();
        let host = http_request(address, "POST", "/v1/hosts", r#"{"name":"orders"}"#).await;
        assert_eq!(host.status, 201, "{}", host.body);
        let backup = v1::RetryPolicy {
            retry_count: 0,
            retry_interval_ms: 0,
            exponential_backoff: false,
        };
        let mut admin = node.admin().await;
        let created = admin
            .create_subscription(v1::CreateSubscriptionRequest {
                name: "orders-with-backup".into(),
                host: "orders".into(),
                filter: r#"MessageType == "Order""#.into(),
                retry_count: Some(0),
                backup: Some(backup),
                ..Default::default()
            })
            .await
            .expect("subscription")
            .into_inner();
        assert_eq!(created.backup, Some(backup));
        let over_http = json!({
            "name": "invoices-with-backup",
            "host": "orders",
            "filter": r#"MessageType == "Invoice""#,
            "backup": {"retry_count": 2, "retry_interval_ms": 30000, "exponential_backoff": true},
        });
        let created =
            http_request(address, "POST", "/v1/subscriptions", &over_http.to_string()).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let without = json!({"name": "plain", "host": "orders", "filter": "Total > 100"});
        http_request(address, "POST", "/v1/subscriptions", &without.to_string()).await;
        let listed = http_request(address, "GET", "/v1/subscriptions", "")
            .await
            .json();
        let backups: Vec<&serde_json::Value> = listed["subscriptions"]
            .as_array()
            .expect("subscriptions")
            .iter()
            .map(|subscription| &subscription["backup"])
            .collect();
        assert_eq!(
            backups,
            [
                &json!({"retry_count": 0, "retry_interval_ms": 0, "exponential_backoff": false}),
                &json!({"retry_count": 2, "retry_interval_ms": 30000, "exponential_backoff": true}),
                &serde_json::Value::Null,
            ]
        );
        let listed = admin
            .list_subscriptions(v1::ListSubscriptionsRequest {})
            .await
            .expect("list")
            .into_inner()
            .subscriptions;
        assert_eq!(
            listed[1].backup,
            Some(v1::RetryPolicy {
                retry_count: 2,
                retry_interval_ms: 30_000,
                exponential_backoff: true,
            })
        );

        publish(&node, vec![order_message("backed-up", b"x")]).await;
        let mut message_box = node.message_box().await;
        let primary = message_box
            .lease(v1::LeaseRequest {
                host: "orders".into(),
                ..Default::default()
            })
            .await
            .expect("lease")
            .into_inner()
            .messages;
        assert!(!primary[0].backup_transport);
        let failed = message_box
            .fail(v1::FailRequest {
                instance: primary[0].instance,
                token: primary[0].token,
                reason: "the partner is down".into(),
            })
            .await
            .expect("fail")
            .into_inner();
        assert!(!failed.suspended, "the backup transport is next");
        let leased = http_request(address, "POST", "/v1/hosts/orders/lease", "").await;
        let message = &leased.json()["messages"][0];
        assert_eq!(message["backup_transport"], true, "{}", leased.body);
        assert_eq!(message["attempt"], 2);
        let failed = message_box
            .fail(v1::FailRequest {
                instance: primary[0].instance,
                token: message["token"].as_u64().expect("token"),
                reason: "the backup partner is down too".into(),
            })
            .await
            .expect("fail")
            .into_inner();
        assert!(failed.suspended);
        let suspended = http_request(address, "GET", "/v1/instances?state=suspended", "").await;
        let last_error = &suspended.json()["instances"][0]["last_error"];
        assert_eq!(last_error, "the backup partner is down too");
    })
    .await;
    node.shutdown().await;
}
