//! Snapshots: a store written to a file and installed into another store gives back the
//! same catalog, instances and log position; a file that is not a snapshot is refused and
//! changes nothing.

mod common;

use common::{catalog_commands, new_message, open, runtime, stored_instances};
use tandem_core::Command;
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
    let snapshot_dir = tempfile::tempdir().expect("temp dir");
    let snapshot_path = snapshot_dir.path().join("snapshot.sqlite");
    let source = open(source_dir.path());
    let target = open(target_dir.path());
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
    assert_eq!(
        stored_instances(target_dir.path()),
        stored_instances(source_dir.path())
    );
    // The installed store reopens with its position.
    let reopened = open(target_dir.path());
    assert_eq!(
        reopened.handle().position().as_deref(),
        Some(&b"position-2"[..])
    );
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
