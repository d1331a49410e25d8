//! Helpers shared by the store's integration tests.
//!
//! `Store::open` and `Store::close` block (they talk to the committer thread with blocking
//! sends), so tests call them outside the runtime and drive `execute` with `block_on`.

#![allow(dead_code)]

use std::path::Path;

use rusqlite::Connection;
use tandem_core::command::Command;
use tandem_core::context::Property;
use tandem_core::error::{ErrorCode, Result};
use tandem_core::ids::MessageId;
use tandem_core::instance::Instance;
use tandem_core::message::NewMessage;
use tandem_core::outcome::{LeasedMessage, Outcome};
use tandem_core::settings::Settings;
use tandem_core::subscription::RetryPolicy;
use tandem_core::tracking::TrackingKind;
use tandem_core::value::Value;
use tandem_store::sqlite_tables::{instance_from_row, instance_select};
use tandem_store::{Store, StoreHandle, schema};

pub const HOSTS: [&str; 2] = ["h0", "h1"];

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn open(dir: &Path) -> Store {
    match Store::open(dir) {
        Ok(store) => store,
        Err(error) => panic!("cannot open the store in {}: {error}", dir.display()),
    }
}

/// Two hosts and three subscriptions: `a` goes to both hosts, `b` to h0 only (with a
/// backup transport).
pub fn catalog_commands() -> Vec<Command> {
    let subscription = |name: &str,
                        host: &str,
                        kind: &str,
                        priority: u8,
                        retry: RetryPolicy,
                        backup: Option<RetryPolicy>| {
        Command::CreateSubscription {
            name: name.to_string(),
            host: host.to_string(),
            filter: format!("Kind == \"{kind}\""),
            priority,
            retry,
            backup,
        }
    };
    let retry = |retry_count, retry_interval_ms, exponential_backoff| RetryPolicy {
        retry_count,
        retry_interval_ms,
        exponential_backoff,
    };
    let mut commands: Vec<Command> = HOSTS
        .iter()
        .map(|name| Command::CreateHost {
            name: name.to_string(),
        })
        .collect();
    commands.push(subscription("s0", "h0", "a", 2, retry(1, 0, false), None));
    commands.push(subscription("s1", "h1", "a", 1, retry(0, 0, false), None));
    commands.push(subscription(
        "s2",
        "h0",
        "b",
        1,
        retry(2, 1_000, true),
        Some(retry(1, 50, false)),
    ));
    commands
}

pub async fn create_catalog(handle: &StoreHandle) {
    for command in catalog_commands() {
        let description = format!("{command:?}");
        let outcome = handle.execute(command).await;
        assert!(outcome.is_ok(), "{description} failed: {outcome:?}");
    }
}

pub fn new_message(id: &str, kind: &str) -> NewMessage {
    NewMessage {
        message_id: MessageId(id.to_string()),
        body: id.as_bytes().to_vec(),
        properties: vec![Property {
            name: "Kind".to_string(),
            value: Value::String(kind.to_string()),
            promoted: true,
        }],
    }
}

/// `count` messages of kind `kind` with bodies of `body_bytes` bytes, ids `big-0`, `big-1`….
pub fn big_messages(count: usize, body_bytes: usize, kind: &str) -> Vec<NewMessage> {
    (0..count)
        .map(|i| {
            let mut message = new_message(&format!("big-{i}"), kind);
            message.body = vec![i as u8; body_bytes];
            message
        })
        .collect()
}

pub fn publish(id: &str, kind: &str) -> Command {
    Command::Publish {
        publisher: "test".to_string(),
        messages: vec![new_message(id, kind)],
    }
}

pub fn lease(host: &str, max_messages: u32) -> Command {
    Command::Lease {
        host: host.to_string(),
        holder: "worker".to_string(),
        max_messages,
        lease_duration_ms: 3_600_000,
    }
}

pub fn leased(outcome: Result<Outcome>) -> Vec<LeasedMessage> {
    match outcome {
        Ok(Outcome::Leased(leases)) => leases,
        other => panic!("expected a lease, got {other:?}"),
    }
}

/// An outcome without the wall-clock times the store stamps, and errors by code only.
pub fn timeless(result: Result<Outcome>) -> std::result::Result<Outcome, ErrorCode> {
    let mut outcome = result.map_err(|error| error.code)?;
    match &mut outcome {
        Outcome::Leased(leases) => {
            for lease in leases {
                lease.expires_at_ms = 0;
                lease.received_at_ms = 0;
            }
        }
        Outcome::LeaseRenewed { expires_at_ms } => *expires_at_ms = 0,
        Outcome::HostCreated(host) => host.created_at_ms = 0,
        Outcome::SubscriptionCreated(subscription) => subscription.created_at_ms = 0,
        _ => {}
    }
    Ok(outcome)
}

pub fn timeless_instance(mut instance: Instance) -> Instance {
    instance.visible_at_ms = 0;
    instance.lease_expires_at_ms = 0;
    instance.enqueued_at_ms = 0;
    instance
}

pub fn database(dir: &Path) -> Connection {
    Connection::open(dir.join(schema::DATABASE_FILE)).expect("open the database file")
}

/// Every instance row of a closed store, by id.
pub fn stored_instances(dir: &Path) -> Vec<Instance> {
    let connection = database(dir);
    let mut statement = connection
        .prepare(&instance_select("ORDER BY id"))
        .expect("prepare");
    statement
        .query_map([], instance_from_row)
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("read instances")
}

/// Replaces the replicated settings.
pub async fn configure(handle: &StoreHandle, settings: Settings) {
    assert_eq!(
        handle.execute(Command::Configure(settings)).await,
        Ok(Outcome::Configured)
    );
}

/// The history of a message published, leased and completed.
pub const DELIVERED: [TrackingKind; 3] = [
    TrackingKind::Received,
    TrackingKind::Leased,
    TrackingKind::Completed,
];

/// The kinds of the events recorded under `message_id`, oldest first.
pub async fn history_kinds(handle: &StoreHandle, message_id: &str) -> Vec<TrackingKind> {
    let history = handle
        .message_history(message_id.to_string())
        .await
        .expect("history");
    history.events.iter().map(|event| event.kind).collect()
}
