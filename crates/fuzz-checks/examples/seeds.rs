//! Writes the binary seeds of the fuzz corpora under `fuzz/corpus/`: gRPC requests encoded
//! by prost, replication frames written by the cluster's codec, and snapshot files taken by
//! the store. (The text seeds, `filter_parser` and `bindings_parser`, are written by hand.)
//! Seeds named `valid-*` must be accepted and `bad-*` refused; `tests/corpus.rs` holds them
//! to that on every test run.
//!
//! ```sh
//! cargo run -p tandem-fuzz-checks --example seeds
//! ```
//!
//! The store writes snapshots with SQLite's 4 KiB pages (about 76 KiB for this small
//! store); the seeds are the same files repacked with 512-byte pages (`PRAGMA page_size`,
//! `VACUUM`), which keeps them under 15 KiB and changes nothing the check looks at.

use std::path::{Path, PathBuf};

use prost::Message;
use rusqlite::Connection;
use serde_json::{Value as Json, json};
use tandem_cluster::codec;
use tandem_cluster::network::messages::{Request, Response};
use tandem_cluster::types::Proposal;
use tandem_core::message::NewMessage;
use tandem_core::subscription::RetryPolicy;
use tandem_core::{Command, MessageId, Property, Value};
use tandem_protocol::v1;
use tandem_store::{Batch, Store};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    grpc_request(&Seeds::new(&corpus, "grpc_request"));
    runtime.block_on(replication_frame(&Seeds::new(&corpus, "replication_frame")));
    snapshot_reader(&Seeds::new(&corpus, "snapshot_reader"), &runtime);
}

/// One target's corpus folder.
struct Seeds {
    target: &'static str,
    folder: PathBuf,
}

impl Seeds {
    fn new(corpus: &Path, target: &'static str) -> Seeds {
        let folder = corpus.join(target);
        std::fs::create_dir_all(&folder).expect("create the corpus folder");
        Seeds { target, folder }
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.folder.join(name), bytes).expect("write a seed");
        println!("fuzz/corpus/{}/{name}: {} bytes", self.target, bytes.len());
    }
}

fn property(name: &[u8], value: Option<v1::property::Value>) -> v1::Property {
    v1::Property {
        name: name.to_vec(),
        value,
        written: false,
    }
}

fn order_properties() -> Vec<v1::Property> {
    use v1::property::Value as Wire;
    vec![
        property(b"MessageType", Some(Wire::StringValue("Order".into()))),
        property(b"Total", Some(Wire::IntValue(1500))),
        property(b"Rate", Some(Wire::FloatValue(0.25))),
        property(b"Urgent", Some(Wire::BoolValue(true))),
        property(b"At", Some(Wire::TimestampMs(1_764_151_200_000))),
    ]
}

fn publish(properties: Vec<v1::Property>, message_id: &str) -> v1::PublishRequest {
    v1::PublishRequest {
        publisher: "fuzz".into(),
        messages: vec![v1::PublishMessage {
            message_id: message_id.into(),
            body: br#"{"type":"Order","total":1500}"#.to_vec(),
            properties,
        }],
    }
}

fn subscription(filter: &str) -> v1::CreateSubscriptionRequest {
    v1::CreateSubscriptionRequest {
        name: "big-orders".into(),
        host: "orders".into(),
        filter: filter.into(),
        priority: 3,
        retry_count: Some(2),
        retry_interval_ms: Some(5_000),
        exponential_backoff: true,
        backup: Some(v1::RetryPolicy {
            retry_count: 1,
            retry_interval_ms: 1_000,
            exponential_backoff: false,
        }),
        replaces: None,
    }
}

fn settlement(verdict: i32, reason: &str) -> v1::Settlement {
    v1::Settlement {
        instance: 7,
        token: 9,
        verdict,
        reason: reason.into(),
    }
}

/// The kind byte `grpc_request` reads first, then the encoded message.
fn request(kind: u8, message: &impl Message) -> Vec<u8> {
    let mut bytes = vec![kind];
    message.encode(&mut bytes).expect("encode into a Vec");
    bytes
}

fn grpc_request(seeds: &Seeds) {
    use v1::property::Value as Wire;
    let order = publish(order_properties(), "order-1");
    seeds.write("valid-publish", &request(0, &order));
    seeds.write(
        "valid-publish-without-id",
        &request(0, &publish(order_properties(), "")),
    );
    let invalid_utf8 = publish(vec![property(b"Total\xff", Some(Wire::IntValue(1)))], "m");
    seeds.write("bad-publish-invalid-utf8-name", &request(0, &invalid_utf8));
    let no_value = publish(vec![property(b"Total", None)], "m");
    seeds.write("bad-publish-property-without-value", &request(0, &no_value));
    let nan = publish(
        vec![property(b"Rate", Some(Wire::FloatValue(f64::NAN)))],
        "m",
    );
    seeds.write("bad-publish-nan-float", &request(0, &nan));
    let bad_name = publish(vec![property(b"1st", Some(Wire::IntValue(1)))], "m");
    seeds.write("bad-publish-property-name", &request(0, &bad_name));
    let encoded = request(0, &order);
    seeds.write("bad-publish-truncated", &encoded[..encoded.len() - 3]);
    // Field 2 (messages) with wire type 7, which protobuf does not have.
    seeds.write("bad-publish-wire-type", &[0, 0x17, 0x01]);

    let settle = v1::SettleBatchRequest {
        settlements: vec![
            settlement(v1::Verdict::Complete as i32, ""),
            settlement(v1::Verdict::Abandon as i32, ""),
            settlement(v1::Verdict::Fail as i32, "partner answered 503"),
        ],
    };
    seeds.write("valid-settle-batch", &request(1, &settle));
    let unknown = v1::SettleBatchRequest {
        settlements: vec![settlement(42, "")],
    };
    seeds.write("bad-settle-unknown-verdict", &request(1, &unknown));

    let filter = r#"MessageType == "Order" and Total > 1000 or Urgent exists"#;
    seeds.write(
        "valid-create-subscription",
        &request(2, &subscription(filter)),
    );
    seeds.write(
        "bad-create-subscription-filter",
        &request(2, &subscription("MessageType = Order")),
    );
    let host = |name: &str| v1::CreateHostRequest { name: name.into() };
    seeds.write("valid-create-host", &request(3, &host("orders")));
    seeds.write("bad-create-host-name", &request(3, &host("orders/eu")));
}

fn log_id(index: u64) -> Json {
    json!({"leader_id": {"term": 2, "node_id": 1}, "index": index})
}

fn vote(term: u64, node_id: u64, committed: bool) -> Json {
    json!({"leader_id": {"term": term, "node_id": node_id}, "committed": committed})
}

fn membership() -> Json {
    let member = |port: u16| {
        json!({
            "raft_address": format!("127.0.0.1:{}", port + 2),
            "grpc_address": format!("127.0.0.1:{port}"),
            "http_address": format!("127.0.0.1:{}", port + 1),
        })
    };
    json!({
        "configs": [[1, 2, 3]],
        "nodes": {"1": member(7400), "2": member(7410), "3": member(7420)},
    })
}

/// A log entry's payload as the proposer writes it: commands stamped with the active's clock.
fn commands_payload() -> Json {
    let message = NewMessage {
        message_id: MessageId("order-1".into()),
        body: b"{}".to_vec(),
        properties: vec![Property {
            name: "MessageType".into(),
            value: Value::String("Order".into()),
            promoted: true,
        }],
    };
    let proposal = Proposal::Commands {
        timestamp_ms: 1_764_151_200_000,
        commands: vec![
            Command::CreateHost {
                name: "orders".into(),
            },
            Command::CreateSubscription {
                name: "all-orders".into(),
                host: "orders".into(),
                filter: r#"MessageType == "Order""#.into(),
                priority: 5,
                retry: RetryPolicy::default(),
                backup: None,
            },
            Command::Publish {
                publisher: "fuzz".into(),
                messages: vec![message],
            },
        ]
        .into(),
    };
    json!({"Normal": serde_json::to_value(proposal).expect("proposal as JSON")})
}

/// One frame as the codec writes it.
async fn frame<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    codec::write_frame(&mut bytes, value)
        .await
        .expect("write a frame");
    bytes
}

async fn requests(requests: &[Json]) -> Vec<u8> {
    let mut stream = vec![0];
    for request in requests {
        let request: Request =
            serde_json::from_value(request.clone()).expect("a replication request");
        stream.extend(frame(&request).await);
    }
    stream
}

async fn replication_frame(seeds: &Seeds) {
    let append_entries = json!({"AppendEntries": {
        "vote": vote(2, 1, true),
        "prev_log_id": log_id(4),
        "entries": [
            {"log_id": log_id(5), "payload": "Blank"},
            {"log_id": log_id(6), "payload": commands_payload()},
            {"log_id": log_id(7), "payload": {"Membership": membership()}},
        ],
        "leader_commit": log_id(4),
    }});
    let heartbeat = json!({"AppendEntries": {
        "vote": vote(2, 1, true), "prev_log_id": log_id(7), "entries": [],
        "leader_commit": log_id(7),
    }});
    let vote_request = |variant: &str| {
        json!({variant: {
            "vote": vote(3, 2, false), "last_log_id": log_id(7), "leadership_transfer": false,
        }})
    };
    let transfer_leader = json!({"TransferLeader": [
        {"from_leader": vote(2, 1, true), "to_node_id": 2, "last_log_id": log_id(7)},
        {"Unconfirmed": {"for_ms": 1950}},
    ]});
    let install_snapshot = json!({"InstallSnapshot": {
        "vote": vote(2, 1, true),
        "meta": {
            "last_log_id": log_id(7),
            "last_membership": {"log_id": log_id(7), "membership": membership()},
            "snapshot_id": "",
        },
        "total_bytes": 16,
    }});

    seeds.write(
        "valid-append-entries",
        &requests(std::slice::from_ref(&append_entries)).await,
    );
    seeds.write(
        "valid-heartbeat",
        &requests(std::slice::from_ref(&heartbeat)).await,
    );
    seeds.write("valid-vote", &requests(&[vote_request("Vote")]).await);
    seeds.write(
        "valid-pre-vote",
        &requests(&[vote_request("PreVote")]).await,
    );
    seeds.write("valid-transfer-leader", &requests(&[transfer_leader]).await);
    let mut snapshot = requests(std::slice::from_ref(&install_snapshot)).await;
    snapshot.extend(b"SQLite format 3\0");
    seeds.write("valid-install-snapshot", &snapshot);
    seeds.write(
        "bad-install-snapshot-short",
        &snapshot[..snapshot.len() - 4],
    );
    seeds.write(
        "valid-connection",
        &requests(&[
            vote_request("PreVote"),
            heartbeat.clone(),
            append_entries.clone(),
        ])
        .await,
    );

    seeds.write(
        "valid-append-stream",
        &requests(&[json!("AppendStream"), heartbeat, append_entries.clone()]).await,
    );

    let responses: [Response; 4] = [
        serde_json::from_value(json!({"AppendEntries": "Success"})).expect("a response"),
        serde_json::from_value(json!({"Vote": {
            "vote": vote(3, 2, false), "vote_granted": true, "last_log_id": log_id(7),
        }}))
        .expect("a response"),
        serde_json::from_value(json!({"InstallSnapshot": {"vote": vote(2, 1, true)}}))
            .expect("a response"),
        Response::Failed {
            reason: "the peer's Raft has stopped".into(),
        },
    ];
    let mut answers = vec![1];
    for response in &responses {
        answers.extend(frame(response).await);
    }
    seeds.write("valid-responses", &answers);
    let stream_answers: [Response; 4] = [
        Response::AppendStreamOpened,
        serde_json::from_value(json!({"Appended": {"Ok": log_id(7)}})).expect("a response"),
        serde_json::from_value(json!({"Appended": {"Ok": null}})).expect("a response"),
        serde_json::from_value(json!({"Appended": {"Err": {"Conflict": log_id(8)}}}))
            .expect("a response"),
    ];
    let mut answers = vec![1];
    for response in &stream_answers {
        answers.extend(frame(response).await);
    }
    seeds.write("valid-append-stream-answers", &answers);

    let whole = requests(&[append_entries]).await;
    seeds.write("bad-truncated-frame", &whole[..whole.len() / 2]);
    let mut oversized = vec![0];
    oversized.extend(u32::MAX.to_be_bytes());
    seeds.write("bad-oversized-length", &oversized);
    seeds.write("bad-length-only", &[0, 0, 0, 0, 8]);
    let mut unknown = vec![0];
    unknown.extend(frame(&json!({"Gossip": {"term": 3}})).await);
    seeds.write("bad-unknown-request", &unknown);
    seeds.write("bad-request-as-response", &[&[1][..], &whole[1..]].concat());
    seeds.write("bad-empty-stream", &[0]);
}

/// A real snapshot of a small store: hosts, subscriptions (one with a backup transport),
/// published messages, one leased, at a replicated log position.
fn store_snapshot(runtime: &tokio::runtime::Runtime, folder: &Path) -> PathBuf {
    let data_dir = folder.join("store");
    let store = Store::open(&data_dir).expect("open a store");
    let handle = store.handle();
    let retry = RetryPolicy {
        retry_count: 2,
        retry_interval_ms: 1_000,
        exponential_backoff: true,
    };
    let commands = vec![
        Command::CreateHost {
            name: "orders".into(),
        },
        Command::CreateSubscription {
            name: "big-orders".into(),
            host: "orders".into(),
            filter: r#"MessageType == "Order" and Total > 1000"#.into(),
            priority: 3,
            retry,
            backup: Some(RetryPolicy::default()),
        },
        Command::Publish {
            publisher: "fuzz".into(),
            messages: (0..3)
                .map(|number| NewMessage {
                    message_id: MessageId(format!("order-{number}")),
                    body: format!("{{\"order\":{number}}}").into_bytes(),
                    properties: vec![
                        Property {
                            name: "MessageType".into(),
                            value: Value::String("Order".into()),
                            promoted: true,
                        },
                        Property {
                            name: "Total".into(),
                            value: Value::Int(1_500 + number),
                            promoted: true,
                        },
                    ],
                })
                .collect(),
        },
        Command::Lease {
            host: "orders".into(),
            holder: "fuzz".into(),
            max_messages: 1,
            lease_duration_ms: 30_000,
        },
    ];
    let snapshot = folder.join("snapshot");
    runtime.block_on(async {
        let batch = Batch {
            timestamp_ms: 1_764_151_200_000,
            commands,
            event: None,
            position: Some(b"term 2, index 7".to_vec()),
        };
        for outcome in handle.apply(batch).await.expect("the batch commits") {
            outcome.expect("every command succeeds");
        }
        handle
            .write_snapshot(snapshot.clone())
            .await
            .expect("write the snapshot");
    });
    store.close();
    snapshot
}

/// A copy of `snapshot` repacked with 512-byte pages, changed by `sql` first.
fn repacked(snapshot: &Path, folder: &Path, sql: &str) -> Vec<u8> {
    let copy = folder.join("copy");
    std::fs::copy(snapshot, &copy).expect("copy the snapshot");
    let connection = Connection::open(&copy).expect("open the copy");
    connection
        .execute_batch(&format!("{sql}; PRAGMA page_size = 512; VACUUM;"))
        .expect("repack the copy");
    drop(connection);
    let bytes = std::fs::read(&copy).expect("read the copy");
    std::fs::remove_file(&copy).expect("remove the copy");
    bytes
}

fn snapshot_reader(seeds: &Seeds, runtime: &tokio::runtime::Runtime) {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let snapshot = store_snapshot(runtime, folder.path());
    let valid = repacked(&snapshot, folder.path(), "SELECT 1");
    seeds.write("valid-snapshot", &valid);
    let tampered = [
        ("bad-format-version", "PRAGMA user_version = 99"),
        (
            "bad-machine-state",
            "UPDATE meta SET value = '{\"next_host_id\":' WHERE key = 'machine_state'",
        ),
        (
            "bad-stored-filter",
            "UPDATE subscriptions SET filter = 'Total >'",
        ),
        ("bad-missing-table", "DROP TABLE instances"),
        (
            "bad-missing-column",
            "ALTER TABLE subscriptions DROP COLUMN backup_retry_count",
        ),
        (
            "bad-not-tandem",
            "DROP TABLE meta; DROP TABLE hosts; DROP TABLE subscriptions",
        ),
    ];
    for (name, sql) in tampered {
        seeds.write(name, &repacked(&snapshot, folder.path(), sql));
    }
    seeds.write("bad-truncated", &valid[..valid.len() / 2]);
    seeds.write("bad-header-only", &valid[..100]);
    seeds.write("bad-not-a-database", b"this is not a snapshot\n");
    seeds.write("bad-empty", b"");
}
