//! The `tandem` command against a real node: declare a route (and one with a backup
//! transport, then redefine it), publish, consume, inspect, and the error paths a person
//! meets first (no route, malformed filter, no node, an output closed early), and a
//! tracking purge larger than one call to the node.

mod support;

use std::path::Path;

use support::command::{Finished, run_tandem, run_tandem_with_closed_output};
use support::{NodeProcess, runtime};
use tandem_core::limits;
use tandem_protocol::v1;

const ORDER_FILTER: &str = r#"MessageType == "Order" and Total > 1000"#;

/// Runs `tandem --server <node> …`.
fn run_against(node: &NodeProcess, arguments: &[&str]) -> Finished {
    let server = node.grpc.to_string();
    let mut full = vec!["--server", server.as_str()];
    full.extend_from_slice(arguments);
    run_tandem(&full)
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn publish_route_consume_and_inspect_through_the_cli() {
    let data = tempfile::tempdir().expect("temp dir");
    let files = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(data.path(), &[]);

    declare_the_order_route(&node);
    publish_an_order(&node, files.path());
    consume_the_order(&node);
    history_shows_the_order_life(&node);
    unroutable_messages_are_refused_with_a_hint(&node);
    malformed_filters_name_the_position(&node);
    status_lists_the_host(&node);
    a_closed_output_ends_a_listing_quietly(&node);
    a_backup_transport_is_declared_and_listed(&node);
    a_subscription_is_redefined_in_one_step(&node);

    let exit = node.stop();
    assert!(exit.success(), "node exited with {exit:?} after SIGTERM");
    let check = run_tandem(&["node", "check", "--data-dir", path_text(data.path())]);
    let check = check.expect_success();
    assert!(check.stdout.contains("healthy"), "{}", check.describe());
}

fn declare_the_order_route(node: &NodeProcess) {
    let created = run_against(node, &["host", "create", "orders"]).expect_success();
    assert!(created.stdout.contains("orders"), "{}", created.describe());
    let arguments = [
        "subscription",
        "create",
        "--host",
        "orders",
        "--filter",
        ORDER_FILTER,
        "--name",
        "big-orders",
    ];
    let created = run_against(node, &arguments).expect_success();
    assert!(
        created.stdout.contains("big-orders"),
        "{}",
        created.describe()
    );
}

fn publish_an_order(node: &NodeProcess, directory: &Path) {
    let body_path = directory.join("order.json");
    std::fs::write(&body_path, r#"{"order": 42, "total": 1500}"#).expect("write body");
    let body = format!("@{}", path_text(&body_path));
    let arguments = [
        "publish",
        "--message-id",
        "order-42",
        "--property",
        "MessageType=Order",
        "--property",
        "Total:int=1500",
        "--body",
        body.as_str(),
    ];
    let published = run_against(node, &arguments).expect_success();
    assert_eq!(
        published.stdout.trim(),
        "order-42",
        "{}",
        published.describe()
    );
    let again = run_against(node, &arguments).expect_success();
    assert!(again.stdout.contains("(duplicate)"), "{}", again.describe());
}

fn consume_the_order(node: &NodeProcess) {
    let consumed = run_against(node, &["consume", "--host", "orders", "--max", "1"]);
    let consumed = consumed.expect_success();
    let text = &consumed.stdout;
    assert!(text.contains("order-42"), "{}", consumed.describe());
    assert!(text.contains("Total = 1500"), "{}", consumed.describe());
    assert!(text.contains(r#""order": 42"#), "{}", consumed.describe());
    assert!(text.contains("completed"), "{}", consumed.describe());
}

fn history_shows_the_order_life(node: &NodeProcess) {
    let history = run_against(node, &["message", "history", "order-42"]).expect_success();
    let events: Vec<&str> = ["received", "leased", "completed"]
        .into_iter()
        .filter(|kind| !history.stdout.contains(kind))
        .collect();
    assert!(
        events.is_empty(),
        "missing {events:?}:\n{}",
        history.describe()
    );
    let received = history.stdout.find("received").unwrap_or(usize::MAX);
    let completed = history.stdout.rfind("completed").unwrap_or(0);
    assert!(
        received < completed,
        "events out of order:\n{}",
        history.describe()
    );
}

fn unroutable_messages_are_refused_with_a_hint(node: &NodeProcess) {
    let arguments = [
        "publish",
        "--property",
        "MessageType=Invoice",
        "--body",
        "x",
    ];
    let refused = run_against(node, &arguments).expect_exit_code(1);
    assert!(
        refused.stderr.contains("no_route"),
        "{}",
        refused.describe()
    );
    assert!(refused.stderr.contains("hint:"), "{}", refused.describe());
}

fn malformed_filters_name_the_position(node: &NodeProcess) {
    let arguments = [
        "subscription",
        "create",
        "--host",
        "orders",
        "--filter",
        "MessageType ==",
    ];
    let refused = run_against(node, &arguments).expect_exit_code(1);
    assert!(
        refused.stderr.contains("line 1, column"),
        "{}",
        refused.describe()
    );
}

fn status_lists_the_host(node: &NodeProcess) {
    let status = run_against(node, &["--json", "status"]).expect_success();
    let document: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("status --json prints JSON");
    let hosts = document["hosts"].as_array().expect("hosts array");
    assert!(
        hosts.iter().any(|host| host["name"] == "orders"),
        "{}",
        status.describe()
    );
    let queue = run_against(node, &["queue"]).expect_success();
    assert!(queue.stdout.contains("orders"), "{}", queue.describe());
}

/// `tandem queue | head -0`: the reader is gone before anything is printed. The command
/// must end without a panic (Rust ignores SIGPIPE, so the print used to panic).
fn a_closed_output_ends_a_listing_quietly(node: &NodeProcess) {
    let server = node.grpc.to_string();
    let finished = run_tandem_with_closed_output(&["--server", &server, "queue"]);
    assert!(
        !finished.stderr.contains("panicked") && finished.status.code() != Some(101),
        "{}",
        finished.describe()
    );
}

fn a_backup_transport_is_declared_and_listed(node: &NodeProcess) {
    let arguments = [
        "subscription",
        "create",
        "--host",
        "orders",
        "--filter",
        r#"MessageType == "Refund""#,
        "--name",
        "refunds",
        "--backup-retry-count",
        "2",
        "--backup-retry-interval",
        "30s",
    ];
    run_against(node, &arguments).expect_success();
    let listed = run_against(node, &["subscription", "list"]).expect_success();
    assert!(
        listed.stdout.contains("2 retries, 30s, fixed"),
        "{}",
        listed.describe()
    );
    let listed = run_against(node, &["--json", "subscription", "list"]).expect_success();
    let document: serde_json::Value =
        serde_json::from_str(&listed.stdout).expect("subscription list --json prints JSON");
    let backups: Vec<&serde_json::Value> = document["subscriptions"]
        .as_array()
        .expect("subscriptions array")
        .iter()
        .map(|subscription| &subscription["backup"])
        .collect();
    let refunds = serde_json::json!({
        "retry_count": 2,
        "retry_interval_ms": 30_000,
        "exponential_backoff": false,
    });
    assert_eq!(backups, [&serde_json::Value::Null, &refunds]);
}

/// The ids and names of the node's subscriptions, from `subscription list --json`.
fn subscriptions(node: &NodeProcess) -> Vec<(u64, String, String)> {
    let listed = run_against(node, &["--json", "subscription", "list"]).expect_success();
    let document: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    document["subscriptions"]
        .as_array()
        .expect("subscriptions array")
        .iter()
        .map(|subscription| {
            (
                subscription["id"].as_u64().expect("id"),
                subscription["name"].as_str().expect("name").to_string(),
                subscription["filter"].as_str().expect("filter").to_string(),
            )
        })
        .collect()
}

fn a_subscription_is_redefined_in_one_step(node: &NodeProcess) {
    let before = subscriptions(node);
    let (refunds_id, _, _) = before
        .iter()
        .find(|(_, name, _)| name == "refunds")
        .cloned()
        .expect("the refunds subscription");
    let redefine = |id: u64, filter: &str| {
        let id = id.to_string();
        let arguments = [
            "subscription",
            "create",
            "--host",
            "orders",
            "--filter",
            filter,
            "--name",
            "refunds",
            "--replaces",
            id.as_str(),
        ];
        run_against(node, &arguments)
    };

    let refused = redefine(refunds_id, "MessageType ==").expect_exit_code(1);
    assert!(refused.stderr.contains("filter"), "{}", refused.describe());
    assert_eq!(
        subscriptions(node),
        before,
        "a refused replacement changes nothing"
    );

    let replaced = redefine(refunds_id, r#"MessageType == "Return""#).expect_success();
    assert!(
        replaced
            .stdout
            .contains(&format!("redefined subscription {refunds_id} (refunds)")),
        "{}",
        replaced.describe()
    );
    let after = subscriptions(node);
    assert_eq!(after.len(), before.len());
    let redefined = |(id, name, filter): &(u64, String, String)| {
        *id == refunds_id && name == "refunds" && filter.contains("Return")
    };
    assert!(after.iter().any(redefined), "{after:?}");

    let unknown = redefine(999_999, "MessageType exists").expect_exit_code(1);
    assert!(
        unknown.stderr.contains("subscription list"),
        "{}",
        unknown.describe()
    );
}

#[test]
fn tracking_purge_repeats_until_every_old_event_is_gone() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(data.path(), &[]);
    declare_the_order_route(&node);
    // Each stored message has its "received" event: more than one purge call removes.
    let messages = limits::MAX_TRACKING_PURGE_PER_COMMAND + 500;
    runtime().block_on(publish_orders(&node, messages));

    let purge = ["--json", "tracking", "purge", "--older-than", "0s"];
    let first = run_against(&node, &purge).expect_success();
    let purged = first.json()["purged_events"].as_u64().expect("a count");
    assert!(
        purged >= messages as u64,
        "one purge command removed {purged} of at least {messages} events"
    );
    let second = run_against(&node, &purge).expect_success();
    assert_eq!(second.json()["purged_events"], 0, "{}", second.describe());
    let exit = node.stop();
    assert!(exit.success(), "node exited with {exit:?} after SIGTERM");
}

/// Publishes `count` routable orders in calls of the largest batch.
async fn publish_orders(node: &NodeProcess, count: usize) {
    let mut message_box = node.message_box().await;
    let properties = vec![
        property(
            "MessageType",
            v1::property::Value::StringValue("Order".into()),
        ),
        property("Total", v1::property::Value::IntValue(1500)),
    ];
    let ids: Vec<usize> = (0..count).collect();
    for batch in ids.chunks(limits::MAX_PUBLISH_BATCH) {
        let messages = batch
            .iter()
            .map(|index| v1::PublishMessage {
                message_id: format!("purge-{index}"),
                body: b"{}".to_vec(),
                properties: properties.clone(),
            })
            .collect();
        let request = v1::PublishRequest {
            publisher: "tests".into(),
            messages,
        };
        let results = message_box
            .publish(request)
            .await
            .expect("publish")
            .into_inner();
        assert!(
            results.results.iter().all(|result| result.error.is_none()),
            "a publish was refused: {results:?}"
        );
    }
}

fn property(name: &str, value: v1::property::Value) -> v1::Property {
    v1::Property {
        name: name.as_bytes().to_vec(),
        value: Some(value),
        written: false,
    }
}

#[test]
fn an_unreachable_node_is_reported_with_what_to_do() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    let failed = run_tandem(&["--server", &address, "host", "list"]).expect_exit_code(1);
    assert!(
        failed.stderr.contains("unavailable"),
        "{}",
        failed.describe()
    );
    assert!(
        failed.stderr.contains("tandem node start"),
        "{}",
        failed.describe()
    );
    // While it retries, it says so rather than leaving the terminal silent.
    assert!(
        failed
            .stderr
            .contains(&format!("no answer yet from {address}; trying for")),
        "{}",
        failed.describe()
    );
}

#[test]
fn usage_errors_exit_two_and_name_the_flag() {
    let failed = run_tandem(&["publish", "--property", "Total:int"]).expect_exit_code(2);
    assert!(
        failed.stderr.contains("--property"),
        "{}",
        failed.describe()
    );
    assert!(failed.stderr.contains("no '='"), "{}", failed.describe());
    let failed = run_tandem(&["consume", "--host", "h", "--lease", "soon"]).expect_exit_code(2);
    assert!(failed.stderr.contains("--lease"), "{}", failed.describe());
    let arguments = [
        "subscription",
        "create",
        "--host",
        "h",
        "--filter",
        "A == 1",
        "--backup-retry-interval",
        "soon",
    ];
    let failed = run_tandem(&arguments).expect_exit_code(2);
    assert!(
        failed.stderr.contains("--backup-retry-interval"),
        "{}",
        failed.describe()
    );
}
