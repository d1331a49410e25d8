//! Snapshots: a store written to a file and installed into another store gives back the
//! same catalog, instances and log position; a file that is not a snapshot, or a sound
//! SQLite file that does not load as a Tandem store, is refused and changes nothing.

mod common;

use std::path::Path;

use common::{
    big_messages, catalog_commands, database, new_message, open, runtime, stored_instances,
};
use tandem_core::Command;
use tandem_store::schema::{DATABASE_FILE, NEW_STORE_PAGE_SIZE};
use tandem_store::{Batch, StoreError};

fn replicated(commands: Vec<Command>, position: &[u8]) -> Batch {
    Batch {
        timestamp_ms: 1_700_000_000_000,
        commands,
        event: None,
        position: Some(position.to_vec()),
    }
}

#[test]
fn a_snapshot_installed_elsewhere_gives_back_the_same_state_and_position() {
    let source_dir = tempfile::tempdir().expect("temp dir");
    let target_dir = tempfile::tempdir().expect("temp dir");
    snapshot_and_install(source_dir.path(), target_dir.path());
}

/// Stores created by older binaries have SQLite's default 4 KiB pages, new ones 8 KiB; a
/// snapshot installs across the difference, both ways (a node upgraded and wiped rejoins an
/// older active, an older node rejoins an upgraded one), and the store keeps its own size.
#[test]
fn a_snapshot_installs_into_a_store_of_another_page_size() {
    for (source_page_size, target_page_size) in
        [(4096, NEW_STORE_PAGE_SIZE), (NEW_STORE_PAGE_SIZE, 4096)]
    {
        let source_dir = tempfile::tempdir().expect("temp dir");
        let target_dir = tempfile::tempdir().expect("temp dir");
        create_with_page_size(source_dir.path(), source_page_size);
        create_with_page_size(target_dir.path(), target_page_size);
        snapshot_and_install(source_dir.path(), target_dir.path());
        assert_eq!(page_size_of(target_dir.path()), target_page_size);
    }
}

/// Publishes into a store at `source_dir`, snapshots it, installs the snapshot into the store
/// at `target_dir`, and checks both hold the same state and log position, also on reopening.
fn snapshot_and_install(source_dir: &Path, target_dir: &Path) {
    let snapshot_dir = tempfile::tempdir().expect("temp dir");
    let snapshot_path = snapshot_dir.path().join("snapshot.sqlite");
    let source = open(source_dir);
    let target = open(target_dir);
    let runtime = runtime();
    runtime.block_on(async {
        let handle = source.handle();
        handle
            .apply(replicated(catalog_commands(), b"position-1"))
            .await
            .expect("catalog applies");
        let publish = Command::Publish {
            messages: (0..5).map(|i| new_message(&format!("m{i}"), "a")).collect(),
            publisher: "test".into(),
        };
        handle
            .apply(replicated(vec![publish], b"position-2"))
            .await
            .expect("publish applies");
        handle.settled().await;
        assert_eq!(handle.position().as_deref(), Some(&b"position-2"[..]));

        let position = handle
            .write_snapshot(snapshot_path.clone())
            .await
            .expect("snapshot written");
        assert_eq!(position.as_deref(), Some(&b"position-2"[..]));

        target
            .handle()
            .install_snapshot(snapshot_path.clone())
            .await
            .expect("snapshot installs");
    });
    let (before, after) = (source.handle().catalog(), target.handle().catalog());
    assert_eq!(after.hosts, before.hosts);
    assert_eq!(after.subscriptions, before.subscriptions);
    assert_eq!(after.state, before.state);
    assert_eq!(
        target.handle().position().as_deref(),
        Some(&b"position-2"[..])
    );
    source.close();
    target.close();
    assert_eq!(stored_instances(target_dir), stored_instances(source_dir));
    // The installed store reopens with its position, and keeps taking commands.
    let installed = stored_instances(target_dir).len();
    let reopened = open(target_dir);
    assert_eq!(
        reopened.handle().position().as_deref(),
        Some(&b"position-2"[..])
    );
    runtime.block_on(async {
        reopened
            .handle()
            .apply(replicated(
                vec![publish_one("after-install")],
                b"position-3",
            ))
            .await
            .expect("the installed store takes commands");
    });
    reopened.close();
    assert!(stored_instances(target_dir).len() > installed);
}

fn publish_one(id: &str) -> Command {
    Command::Publish {
        messages: vec![new_message(id, "a")],
        publisher: "test".into(),
    }
}

/// Creates an empty WAL database of the given page size where a store opens, as an older
/// binary (4 KiB) or this one (8 KiB) would have.
fn create_with_page_size(dir: &Path, page_size: u32) {
    rusqlite::Connection::open(dir.join(DATABASE_FILE))
        .and_then(|connection| {
            connection.execute_batch(&format!(
                "PRAGMA page_size = {page_size}; PRAGMA journal_mode = WAL;"
            ))
        })
        .expect("create the database");
    open(dir).close();
    assert_eq!(page_size_of(dir), page_size);
}

fn page_size_of(dir: &Path) -> u32 {
    database(dir)
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .expect("page size")
}

#[test]
fn a_file_that_is_not_a_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bogus = dir.path().join("bogus.sqlite");
    std::fs::write(&bogus, b"this is not a database").expect("write");
    let store_dir = tempfile::tempdir().expect("temp dir");
    let store = open(store_dir.path());
    let runtime = runtime();
    runtime.block_on(async {
        store
            .handle()
            .apply(replicated(catalog_commands(), b"p1"))
            .await
            .expect("catalog applies");
        let error = store
            .handle()
            .install_snapshot(bogus)
            .await
            .expect_err("garbage is refused");
        assert!(
            matches!(error, StoreError::Corrupt(_) | StoreError::Sqlite(_)),
            "{error}"
        );
    });
    assert_eq!(store.handle().catalog().hosts.len(), 2);
    assert_eq!(store.handle().position().as_deref(), Some(&b"p1"[..]));
}

/// A snapshot that SQLite finds sound but that does not load as a Tandem store (here its
/// machine state is not JSON, or a table is missing) is refused before it replaces anything:
/// the store keeps its state and still opens.
#[test]
fn a_sound_file_that_does_not_load_is_refused_before_it_replaces_the_store() {
    let tampering = [
        (
            "UPDATE meta SET value = 'not json' WHERE key = 'machine_state'",
            "machine state does not parse",
        ),
        (
            "DROP TABLE instances",
            "has no column instances.attempts INTEGER NOT NULL",
        ),
        (
            "UPDATE subscriptions SET filter = 'Kind =='",
            "stored subscription 's0' has a bad filter",
        ),
    ];
    for (tamper, reason) in tampering {
        let source_dir = tempfile::tempdir().expect("temp dir");
        let snapshot_dir = tempfile::tempdir().expect("temp dir");
        let snapshot_path = snapshot_dir.path().join("snapshot.sqlite");
        let source = open(source_dir.path());
        let runtime = runtime();
        runtime.block_on(async {
            source
                .handle()
                .apply(replicated(catalog_commands(), b"p1"))
                .await
                .expect("catalog applies");
            source
                .handle()
                .write_snapshot(snapshot_path.clone())
                .await
                .expect("snapshot written");
        });
        source.close();
        rusqlite::Connection::open(&snapshot_path)
            .and_then(|snapshot| snapshot.execute_batch(tamper))
            .expect("tamper with the snapshot");

        let store_dir = tempfile::tempdir().expect("temp dir");
        let store = open(store_dir.path());
        runtime.block_on(async {
            store
                .handle()
                .apply(replicated(catalog_commands()[..1].to_vec(), b"mine"))
                .await
                .expect("catalog applies");
            let error = store
                .handle()
                .install_snapshot(snapshot_path)
                .await
                .expect_err("a snapshot that does not load is refused");
            assert!(
                matches!(&error, StoreError::Corrupt(text) if text.contains(reason)),
                "{tamper}: {error}"
            );
        });
        assert_eq!(store.handle().catalog().hosts.len(), 1, "{tamper}");
        assert_eq!(store.handle().position().as_deref(), Some(&b"mine"[..]));
        store.close();
        let reopened = open(store_dir.path());
        assert_eq!(reopened.handle().catalog().hosts.len(), 1, "{tamper}");
        assert_eq!(
            reopened.handle().position().as_deref(),
            Some(&b"mine"[..]),
            "{tamper}"
        );
    }
}

/// What decides when a replica snapshots: the bytes a snapshot would copy grow with the
/// stored bodies and fall again when the messages are completed (free pages do not count).
#[test]
fn used_bytes_follow_the_stored_messages_not_the_file_size() {
    const BODY_BYTES: usize = 256 * 1024;
    const MESSAGES: usize = 8;
    let directory = tempfile::tempdir().expect("temp dir");
    let store = open(directory.path());
    let runtime = runtime();
    runtime.block_on(async {
        let handle = store.handle();
        for command in catalog_commands() {
            handle.execute(command).await.expect("catalog applies");
        }
        let empty = handle.used_bytes().await.expect("size of the empty store");
        handle
            .execute(Command::Publish {
                messages: big_messages(MESSAGES, BODY_BYTES, "b"),
                publisher: "test".into(),
            })
            .await
            .expect("publish applies");
        let full = handle.used_bytes().await.expect("size with the messages");
        let bodies = (BODY_BYTES * MESSAGES) as u64;
        assert!(
            full >= empty + bodies,
            "{full} bytes in use after storing {bodies} bytes of bodies into {empty}"
        );

        let leases = common::leased(handle.execute(common::lease("h0", 100)).await);
        assert_eq!(leases.len(), MESSAGES);
        for lease in leases {
            handle
                .execute(Command::Complete {
                    instance: lease.instance,
                    token: lease.token,
                })
                .await
                .expect("complete applies");
        }
        let drained = handle.used_bytes().await.expect("size after completing");
        assert!(
            drained < empty + bodies / 4,
            "{drained} bytes still in use after completing every message (empty: {empty})"
        );
    });
    store.close();
}
