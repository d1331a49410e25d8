//! A closed and reopened store holds exactly what it held; its directory lock keeps a
//! second node out; stores of older formats are upgraded on open (their JSON contexts still
//! read, their dedupe entries kept); files of another format, or not written by Tandem, are
//! refused; a WAL that a long read let grow is truncated again.

mod common;

use std::path::Path;

use tandem_core::command::Command;
use tandem_core::context::{Context, Property};
use tandem_core::ids::MessageId;
use tandem_core::instance::Instance;
use tandem_core::message::NewMessage;
use tandem_core::outcome::Outcome;
use tandem_core::settings::Settings;
use tandem_core::subscription::RetryPolicy;
use tandem_core::tracking::TrackingKind;
use tandem_core::value::Value;
use tandem_store::{InstanceQuery, Store, StoreError, context_codec, integrity, schema};

use common::{
    DELIVERED, configure, create_catalog, history_kinds, lease, leased, open, publish, runtime,
};

/// Publishes ten messages (15 instances), leases four of h0 (the `b` ones, priority 1),
/// completes two (and so their messages), fails one.
fn populate(dir: &Path) {
    let store = open(dir);
    let handle = store.handle();
    runtime().block_on(async {
        create_catalog(&handle).await;
        for index in 0..10 {
            let kind = if index % 2 == 0 { "a" } else { "b" };
            let outcome = handle.execute(publish(&format!("m{index}"), kind)).await;
            assert!(outcome.is_ok(), "publish m{index}: {outcome:?}");
        }
        let leases = leased(handle.execute(lease("h0", 4)).await);
        assert_eq!(leases.len(), 4);
        for lease in &leases[..2] {
            let completed = handle
                .execute(Command::Complete {
                    instance: lease.instance,
                    token: lease.token,
                })
                .await;
            assert_eq!(completed, Ok(Outcome::Completed));
        }
        let failed = handle
            .execute(Command::Fail {
                instance: leases[2].instance,
                token: leases[2].token,
                reason: "refused".to_string(),
            })
            .await;
        assert!(matches!(failed, Ok(Outcome::Failed { .. })), "{failed:?}");
    });
    store.close();
}

fn all_instances(store: &Store) -> Vec<Instance> {
    let handle = store.handle();
    runtime()
        .block_on(handle.instances(InstanceQuery {
            limit: 1000,
            ..InstanceQuery::default()
        }))
        .expect("list instances")
}

fn open_error(dir: &Path) -> StoreError {
    match Store::open(dir) {
        Ok(_) => panic!("opening {} should have failed", dir.display()),
        Err(error) => error,
    }
}

#[test]
fn reopening_gives_back_the_same_catalog_and_instances() {
    let dir = tempfile::tempdir().expect("temp dir");
    populate(dir.path());
    let store = open(dir.path());
    let before_catalog = store.handle().catalog();
    let before_instances = all_instances(&store);
    assert_eq!(
        before_catalog.state.message_count, 8,
        "two single-instance messages completed"
    );
    assert_eq!(before_instances.len(), 13, "15 instances, 2 completed");
    store.close();

    let store = open(dir.path());
    let after = store.handle().catalog();
    assert_eq!(after.hosts, before_catalog.hosts, "hosts and depths");
    assert_eq!(after.subscriptions, before_catalog.subscriptions);
    let backups: Vec<Option<RetryPolicy>> = after
        .subscriptions
        .iter()
        .map(|subscription| subscription.backup)
        .collect();
    assert_eq!(
        backups,
        [
            None,
            None,
            Some(RetryPolicy {
                retry_count: 1,
                retry_interval_ms: 50,
                exponential_backoff: false,
            }),
        ],
        "backup transports"
    );
    assert_eq!(after.state, before_catalog.state, "counters and settings");
    assert_eq!(all_instances(&store), before_instances, "instances");

    // Fencing survives the restart: a new lease gets a token above every earlier one.
    let highest = before_instances.iter().map(|i| i.lease_token).max();
    let handle = store.handle();
    let leases = leased(runtime().block_on(handle.execute(lease("h1", 1))));
    assert_eq!(leases.len(), 1);
    assert!(Some(leases[0].token) > highest, "token reused after reopen");
    store.close();

    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
    assert_eq!((report.messages, report.instances), (8, 13));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = open(dir.path());
    let error = open_error(dir.path());
    assert!(
        matches!(error, StoreError::Locked(_)),
        "expected Locked, got {error}"
    );
    let text = error.to_string();
    assert!(text.contains("is in use"), "unclear message: {text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    first.close();
    open(dir.path()).close();
}

#[test]
fn a_database_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    populate(dir.path());
    let other = schema::FORMAT_VERSION + 1;
    common::database(dir.path())
        .pragma_update(None, "user_version", other)
        .expect("set user_version");
    let error = open_error(dir.path());
    assert!(
        matches!(error, StoreError::Format(_)),
        "expected Format, got {error}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("format version {other}")),
        "the error names the version found: {error}"
    );
    assert!(
        matches!(integrity::check(dir.path()), Err(StoreError::Format(_))),
        "the integrity check refuses it too"
    );
}

/// The subscriptions table as format version 2 wrote it: no backup transport columns.
const VERSION_2_SUBSCRIPTIONS: &str = "
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    host_id INTEGER NOT NULL,
    filter TEXT NOT NULL,
    priority INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    retry_interval_ms INTEGER NOT NULL,
    exponential_backoff INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);";

/// Rewrites every stored context as JSON text, as formats 2 and 3 stored them.
fn contexts_as_json(transaction: &rusqlite::Transaction<'_>) {
    let contexts: Vec<(i64, Vec<u8>)> = transaction
        .prepare("SELECT seq, context FROM messages")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    for (seq, binary) in contexts {
        let context = context_codec::decode(&binary).expect("a binary context");
        let json = serde_json::to_string(&context).expect("JSON");
        transaction
            .execute(
                "UPDATE messages SET context = ?2 WHERE seq = ?1",
                rusqlite::params![seq, json],
            )
            .expect("rewrite the context");
    }
}

/// Every stored message's id and context, as the operator queries read them.
fn stored_contexts(store: &Store, message_ids: &[&str]) -> Vec<(String, Context)> {
    let handle = store.handle();
    runtime().block_on(async {
        let mut contexts = Vec::new();
        for message_id in message_ids {
            let history = handle
                .message_history(message_id.to_string())
                .await
                .expect("history");
            for message in history.messages {
                contexts.push((message.message_id.to_string(), message.context));
            }
        }
        contexts
    })
}

/// Gives the messages table the shape formats 2 to 4 had (body and context in the message's
/// row), and deleted messages' dedupe entries back to the `dedupe` table (the latest publish
/// time per id).
fn messages_as_format_4_kept_them(transaction: &rusqlite::Transaction<'_>) {
    transaction
        .execute_batch(
            "CREATE TABLE messages_v4 (
                 seq INTEGER PRIMARY KEY,
                 message_id TEXT NOT NULL,
                 body BLOB NOT NULL,
                 context TEXT NOT NULL,
                 received_at_ms INTEGER NOT NULL,
                 publisher TEXT NOT NULL
             );
             INSERT INTO messages_v4
                 SELECT m.seq, m.message_id, p.body, p.context, m.received_at_ms, m.publisher
                 FROM messages AS m JOIN message_payloads AS p ON p.seq = m.seq;
             CREATE TABLE dedupe (
                 message_id TEXT PRIMARY KEY,
                 published_at_ms INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE INDEX dedupe_by_time ON dedupe(published_at_ms);
             INSERT INTO dedupe SELECT message_id, MAX(received_at_ms) FROM messages
                 WHERE removed = 1 GROUP BY message_id;
             DROP TABLE messages;
             DROP TABLE message_payloads;
             ALTER TABLE messages_v4 RENAME TO messages;
             CREATE INDEX messages_by_message_id ON messages(message_id);",
        )
        .expect("messages as format 4 kept them");
}

/// Gives the messages and tracking tables the shape formats 2 to 5 had: a deleted message's
/// row without its deletion time, every tracking event indexed by message id, none by seq.
fn tables_as_format_5_kept_them(transaction: &rusqlite::Transaction<'_>) {
    transaction
        .execute_batch(
            "DROP INDEX messages_removed;
             ALTER TABLE messages DROP COLUMN removed_at_ms;
             CREATE INDEX messages_removed ON messages(received_at_ms) WHERE removed = 1;
             DROP INDEX tracking_by_message_seq;
             DROP INDEX tracking_legacy_by_message_id;
             ALTER TABLE tracking DROP COLUMN message_seq;
             CREATE INDEX tracking_by_message ON tracking(message_id);",
        )
        .expect("tables as format 5 kept them");
}

/// Sets the format version in the header and the meta table.
fn set_version(transaction: &rusqlite::Transaction<'_>, version: i64) {
    transaction
        .execute_batch(&format!(
            "UPDATE meta SET value = '{version}' WHERE key = 'format_version';
             PRAGMA user_version = {version};"
        ))
        .expect("set the format version");
}

/// Turns the closed store in `dir` into a format-version-5 store: deleted messages' rows
/// without their deletion time, tracking events without a message seq.
fn downgrade_to_version_5(dir: &Path) {
    let mut connection = common::database(dir);
    let transaction = connection.transaction().expect("transaction");
    tables_as_format_5_kept_them(&transaction);
    set_version(&transaction, 5);
    transaction.commit().expect("commit");
}

/// Turns the closed store in `dir` into a format-version-4 store: the same messages (bodies
/// and contexts in their rows) and instances, deleted messages' dedupe entries in the
/// `dedupe` table.
fn downgrade_to_version_4(dir: &Path) {
    let mut connection = common::database(dir);
    let transaction = connection.transaction().expect("transaction");
    tables_as_format_5_kept_them(&transaction);
    messages_as_format_4_kept_them(&transaction);
    set_version(&transaction, 4);
    transaction.commit().expect("commit");
}

/// Turns the closed store in `dir` into a format-version-2 store: the same rows, the
/// subscriptions and messages tables in their version-2 shape, contexts as JSON text, dedupe
/// entries in their own table, version 2 in the header and the meta table.
fn downgrade_to_version_2(dir: &Path) {
    let mut connection = common::database(dir);
    let transaction = connection.transaction().expect("transaction");
    tables_as_format_5_kept_them(&transaction);
    messages_as_format_4_kept_them(&transaction);
    contexts_as_json(&transaction);
    transaction
        .execute_batch(&format!(
            "ALTER TABLE subscriptions RENAME TO subscriptions_v3;
             {VERSION_2_SUBSCRIPTIONS}
             INSERT INTO subscriptions SELECT id, name, host_id, filter, priority, retry_count,
                 retry_interval_ms, exponential_backoff, created_at_ms FROM subscriptions_v3;
             DROP TABLE subscriptions_v3;"
        ))
        .expect("rewrite as version 2");
    set_version(&transaction, 2);
    transaction.commit().expect("commit");
}

#[test]
fn a_version_2_store_is_upgraded_on_open_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    populate(dir.path());
    let before = all_instances(&open(dir.path()));
    downgrade_to_version_2(dir.path());
    let refused = integrity::check(dir.path()).expect_err("a read-only check does not upgrade");
    assert!(
        refused
            .to_string()
            .contains("starting a node on it upgrades it"),
        "{refused}"
    );

    let store = open(dir.path());
    let catalog = store.handle().catalog();
    let names: Vec<&str> = catalog
        .subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["s0", "s1", "s2"]);
    assert!(
        catalog.subscriptions.iter().all(|s| s.backup.is_none()),
        "a version-2 subscription has no backup transport: {:?}",
        catalog.subscriptions
    );
    assert_eq!(
        all_instances(&store),
        before,
        "instances survive the upgrade"
    );
    let backup = RetryPolicy {
        retry_count: 2,
        retry_interval_ms: 10,
        exponential_backoff: true,
    };
    let created = runtime().block_on(store.handle().execute(Command::CreateSubscription {
        name: "s3".into(),
        host: "h1".into(),
        filter: "Kind == \"c\"".into(),
        priority: 5,
        retry: RetryPolicy::default(),
        backup: Some(backup),
    }));
    assert!(created.is_ok(), "{created:?}");
    store.close();

    let connection = common::database(dir.path());
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    let meta: String = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'format_version'",
            [],
            |row| row.get(0),
        )
        .expect("meta format_version");
    assert_eq!(
        (version, meta),
        (schema::FORMAT_VERSION, schema::FORMAT_VERSION.to_string())
    );
    schema::check_tables(&connection).expect(
        "an upgraded store has every table and column of the format (its snapshots install)",
    );
    drop(connection);
    let store = open(dir.path());
    let reopened = store.handle().catalog();
    assert_eq!(
        reopened.subscriptions.last().and_then(|s| s.backup),
        Some(backup)
    );
    store.close();
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
}

#[test]
fn a_sqlite_file_not_written_by_tandem_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::database(dir.path())
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .expect("create a foreign table");
    let error = open_error(dir.path());
    assert!(
        matches!(error, StoreError::Format(_)),
        "expected Format, got {error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("invoices") && text.contains("not written by Tandem"),
        "unclear message: {text}"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(schema::DATABASE_FILE),
        b"this is not a database, just some text that is long enough to look like a header",
    )
    .expect("write garbage");
    let error = open_error(dir.path());
    assert!(
        matches!(error, StoreError::Sqlite(_)),
        "expected a SQLite error, got {error}"
    );
}

/// A server opens and closes its store from async code; that must not panic.
#[tokio::test]
async fn settings_persist_and_open_and_close_work_inside_an_async_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        tracking: false,
        ..Settings::default()
    };
    let Ok(store) = Store::open(dir.path()) else {
        panic!("open inside a runtime failed");
    };
    let outcome = store
        .handle()
        .execute(Command::Configure(settings.clone()))
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let outcome = store.handle().execute(Command::Tick).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    store.close();
    let Ok(store) = Store::open(dir.path()) else {
        panic!("reopen inside a runtime failed");
    };
    assert_eq!(store.handle().catalog().state.settings, settings);
    drop(store);
}

/// A long read (a snapshot being written) keeps checkpoints from finishing, so the WAL grows
/// past its usual size; once the read ends, the next checkpoints bring the file back under
/// the limit instead of leaving it that large.
#[test]
fn a_wal_that_grew_during_a_long_read_is_truncated_afterwards() {
    const BODY_BYTES: usize = 1024 * 1024;
    let limit = schema::WAL_SIZE_LIMIT_BYTES as u64;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let wal = dir.path().join(format!("{}-wal", schema::DATABASE_FILE));
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
    let runtime = runtime();
    let handle = store.handle();
    let publish_big = |first: usize, count: usize| {
        runtime.block_on(async {
            for i in first..first + count {
                let mut message = common::new_message(&format!("big-{i}"), "b");
                message.body = vec![i as u8; BODY_BYTES];
                let command = Command::Publish {
                    messages: vec![message],
                    publisher: "test".into(),
                };
                handle.execute(command).await.expect("publish");
            }
        })
    };
    runtime.block_on(create_catalog(&handle));

    let reader = rusqlite::Connection::open(dir.path().join(schema::DATABASE_FILE)).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
        .unwrap();
    let grown_by = (limit as usize) / BODY_BYTES + 8;
    publish_big(0, grown_by);
    let grown = wal_bytes();
    assert!(grown > limit, "the WAL holds {grown} bytes during the read");

    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // An automatic checkpoint comes every 4,096 pages of WAL and truncates it; one that
    // finds the checkpoint thread at work may leave it be, so keep publishing (bounded).
    let mut published = grown_by;
    for _ in 0..10 {
        publish_big(published, 40);
        published += 40;
        if wal_bytes() <= limit {
            break;
        }
    }
    let after = wal_bytes();
    assert!(
        after <= limit,
        "the WAL still holds {after} bytes after {} more publishes (it grew to {grown}; the \
         limit is {limit})",
        published - grown_by
    );
    store.close();
}

/// A message with a property of every value type, promoted and written.
fn message_of_every_type(id: &str) -> NewMessage {
    let property = |name: &str, value: Value, promoted: bool| Property {
        name: name.to_string(),
        value,
        promoted,
    };
    NewMessage {
        message_id: MessageId(id.to_string()),
        body: b"typed".to_vec(),
        properties: vec![
            property("Kind", Value::String("a".to_string()), true),
            property("Total", Value::Int(-1500), true),
            property("Rate", Value::Float(0.25), false),
            property("Urgent", Value::Bool(true), true),
            property("Due", Value::Timestamp(1_700_000_000_123), false),
            property(
                "Note",
                Value::String("ünïcode \"quoted\"".to_string()),
                false,
            ),
        ],
    }
}

#[test]
fn a_version_3_store_keeps_its_json_contexts_readable_and_stores_new_ones_in_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let handle = store.handle();
    runtime().block_on(async {
        create_catalog(&handle).await;
        let typed = Command::Publish {
            publisher: "test".to_string(),
            messages: vec![message_of_every_type("typed")],
        };
        assert!(handle.execute(typed).await.is_ok());
    });
    let before = stored_contexts(&store, &["typed"]);
    assert_eq!(before.len(), 1);
    store.close();
    {
        let mut connection = common::database(dir.path());
        let transaction = connection.transaction().expect("transaction");
        tables_as_format_5_kept_them(&transaction);
        messages_as_format_4_kept_them(&transaction);
        contexts_as_json(&transaction);
        set_version(&transaction, 3);
        transaction.commit().expect("commit");
    }

    let store = open(dir.path());
    assert_eq!(
        stored_contexts(&store, &["typed"]),
        before,
        "read from JSON"
    );
    let handle = store.handle();
    runtime().block_on(async {
        let leases = leased(handle.execute(lease("h0", 10)).await);
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].context, before[0].1, "leased from JSON");
        let fresh = Command::Publish {
            publisher: "test".to_string(),
            messages: vec![message_of_every_type("fresh")],
        };
        assert!(handle.execute(fresh).await.is_ok());
    });
    assert_eq!(stored_contexts(&store, &["fresh"])[0].1, before[0].1);
    store.close();

    let connection = common::database(dir.path());
    let stored_as = |id: &str| -> String {
        connection
            .query_row(
                "SELECT typeof(p.context) FROM messages AS m \
                 JOIN message_payloads AS p ON p.seq = m.seq WHERE m.message_id = ?1",
                [id],
                |row| row.get(0),
            )
            .expect("typeof")
    };
    assert_eq!(
        (stored_as("typed"), stored_as("fresh")),
        ("text".into(), "blob".into())
    );
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, schema::FORMAT_VERSION);
    drop(connection);
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
}

/// The ids of the messages `populate` deleted (and whose dedupe entries remain).
fn deleted_message_ids(dir: &Path) -> Vec<String> {
    common::database(dir)
        .prepare("SELECT message_id FROM messages WHERE removed = 1 ORDER BY message_id")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("deleted message ids")
}

/// Format 4 kept deleted messages' dedupe entries in a `dedupe` table; the upgrade makes each
/// a removed message row, which a retried publish still finds and a tick past the window
/// forgets.
#[test]
fn a_version_4_store_keeps_the_dedupe_entries_of_its_deleted_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    populate(dir.path());
    let deleted = deleted_message_ids(dir.path());
    assert_eq!(deleted.len(), 2, "populate completes two messages");
    downgrade_to_version_4(dir.path());
    let entries: i64 = common::database(dir.path())
        .query_row("SELECT COUNT(*) FROM dedupe", [], |row| row.get(0))
        .expect("count the dedupe table");
    assert_eq!(entries, 2);

    let store = open(dir.path());
    let handle = store.handle();
    runtime().block_on(async {
        for id in &deleted {
            let retried = handle.execute(publish(id, "b")).await;
            let Ok(Outcome::Published(receipts)) = retried else {
                panic!("publish {id}: {retried:?}");
            };
            assert!(
                matches!(&receipts[..], [Ok(receipt)] if receipt.duplicate),
                "a retried publish of {id} is a duplicate: {receipts:?}"
            );
        }
    });
    store.close();
    assert_eq!(deleted_message_ids(dir.path()), deleted);
    let connection = common::database(dir.path());
    let negative: i64 = connection
        .query_row("SELECT COUNT(*) FROM messages WHERE seq < 0", [], |row| {
            row.get(0)
        })
        .expect("count");
    assert_eq!(
        negative, 2,
        "each migrated entry has a seq of its own below 1"
    );
    schema::check_tables(&connection).expect("the upgraded store has every table of the format");
    drop(connection);
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);

    let store = open(dir.path());
    let handle = store.handle();
    runtime().block_on(async {
        // The entries go once the dedupe window has passed and the history is purged.
        let settings = Settings {
            dedupe_window_ms: 1,
            tracking_retention_ms: 1,
            ..Settings::default()
        };
        assert!(handle.execute(Command::Configure(settings)).await.is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let ticked = handle.execute(Command::Tick).await;
        let Ok(Outcome::Ticked(report)) = ticked else {
            panic!("tick: {ticked:?}");
        };
        assert_eq!(report.dedupe_entries_forgotten, 2);
    });
    store.close();
    assert!(deleted_message_ids(dir.path()).is_empty());
}

/// The kinds and instances of the events recorded under each message id `m0` to `m9`.
fn histories(store: &Store) -> Vec<Vec<(TrackingKind, Option<u64>)>> {
    runtime().block_on(async {
        let mut histories = Vec::new();
        for index in 0..10 {
            let history = store
                .handle()
                .message_history(format!("m{index}"))
                .await
                .expect("history");
            histories.push(
                history
                    .events
                    .iter()
                    .map(|event| (event.kind, event.instance))
                    .collect(),
            );
        }
        histories
    })
}

/// Events recorded before format 6 have no message seq: they are still found by message
/// id, and a message stored before the upgrade keeps its history whole as it goes on. A
/// deleted message's row stays past the dedupe window while its history is kept.
#[test]
fn a_version_5_store_keeps_finding_the_history_of_its_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    populate(dir.path());
    let store = open(dir.path());
    let before = histories(&store);
    store.close();
    downgrade_to_version_5(dir.path());

    let store = open(dir.path());
    assert_eq!(histories(&store), before, "every earlier event is found");
    let handle = store.handle();
    let delivered = runtime().block_on(async {
        let short_window = Settings {
            dedupe_window_ms: 1,
            ..Settings::default()
        };
        configure(&handle, short_window).await;
        let leases = leased(handle.execute(lease("h0", 1)).await);
        let complete = Command::Complete {
            instance: leases[0].instance,
            token: leases[0].token,
        };
        assert_eq!(handle.execute(complete).await, Ok(Outcome::Completed));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let Ok(Outcome::Ticked(report)) = handle.execute(Command::Tick).await else {
            panic!("tick failed");
        };
        assert_eq!(
            report.dedupe_entries_forgotten, 0,
            "past the dedupe window, a deleted message's row stays with its history: \
             {report:?}"
        );
        leases[0].message_id.to_string()
    });
    assert_eq!(
        runtime().block_on(history_kinds(&handle, &delivered)),
        DELIVERED,
        "{delivered}: received before the upgrade, delivered after it"
    );
    store.close();
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
}
