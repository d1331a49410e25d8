//! `Execution::Inline`: the store gives the same answers as with its committer thread, a
//! runtime dropped without closing the store (a simulated crash) leaves the committed data and
//! a free data directory behind, and `shutdown` lets a runtime reopen the directory it closed.
//! (That no thread is started is checked in `tandem-cluster`'s `inline_threads` test, in a
//! process of its own.)

mod common;

use std::path::Path;

use common::{catalog_commands, lease, new_message, publish, stored_instances, timeless};
use tandem_core::Command;
use tandem_core::instance::InstanceState;
use tandem_store::{
    Batch, ClusterEvent, Execution, InstanceQuery, Store, StoreError, StoreHandle, schema,
};

const START_MS: i64 = 1_700_000_000_000;

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn open_inline(dir: &Path) -> Store {
    match Store::open_with(dir, Execution::Inline) {
        Ok(store) => store,
        Err(error) => panic!("cannot open the store in {}: {error}", dir.display()),
    }
}

fn replicated(index: u8, commands: Vec<Command>, event: Option<&str>) -> Batch {
    Batch {
        timestamp_ms: START_MS + i64::from(index) * 1_000,
        commands,
        event: event.map(|record| ClusterEvent {
            at_ms: START_MS + i64::from(index),
            record: record.to_string(),
        }),
        position: Some(vec![index]),
    }
}

/// A small replicated history: the catalog, publishes (several per batch, one duplicate, one
/// to no subscriber), a recorded event, and leases.
fn history() -> Vec<Batch> {
    let publish_many = |ids: &[&str], kind: &str| Command::Publish {
        publisher: "test".to_string(),
        messages: ids.iter().map(|id| new_message(id, kind)).collect(),
    };
    vec![
        replicated(1, catalog_commands(), None),
        replicated(2, vec![publish("m0", "a"), publish("m1", "b")], None),
        replicated(
            3,
            vec![publish_many(&["m2", "m3", "m4"], "a")],
            Some("failover"),
        ),
        replicated(4, vec![publish("m1", "b"), publish("m5", "none")], None),
        replicated(5, vec![lease("h0", 3), lease("h1", 1)], None),
        replicated(6, vec![publish("m6", "b"), lease("h0", 10)], None),
    ]
}

/// Applies [`history`] (every batch submitted before any answer is awaited, so that they
/// share transactions), writes a snapshot and installs it again, and writes down every
/// answer and what the reads find.
async fn transcript(handle: &StoreHandle, snapshot: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut answers = Vec::new();
    for batch in history() {
        answers.push(
            handle
                .submit(batch)
                .await
                .expect("the store takes the batch"),
        );
    }
    for answer in answers {
        let outcomes = answer.await.expect("the batch commits");
        let outcomes: Vec<_> = outcomes.into_iter().map(timeless).collect();
        lines.push(format!("{outcomes:?}"));
    }
    // Replicated batches are answered before their transaction commits; the position is
    // saved with the commit.
    handle.settled().await;
    lines.push(format!("position {:?}", handle.position()));
    let position = handle
        .write_snapshot(snapshot.to_path_buf())
        .await
        .expect("the snapshot is written");
    lines.push(format!("snapshot at {position:?}"));
    handle
        .install_snapshot(snapshot.to_path_buf())
        .await
        .expect("the snapshot installs");
    let catalog = handle.catalog();
    lines.push(format!("{:?}", catalog.hosts));
    lines.push(format!("{:?}", catalog.subscriptions));
    lines.push(format!("{:?}", catalog.state));
    for state in [
        None,
        Some(InstanceState::Ready),
        Some(InstanceState::Leased),
    ] {
        let query = InstanceQuery {
            state,
            limit: 100,
            ..InstanceQuery::default()
        };
        let instances = handle.instances(query).await.expect("instances");
        lines.push(format!("{state:?}: {instances:?}"));
    }
    for id in ["m1", "m5", "missing"] {
        let history = handle.message_history(id.to_string()).await;
        let body = handle.message_body(id.to_string()).await;
        lines.push(format!("{id}: {history:?} {body:?}"));
    }
    lines.push(format!("{:?}", handle.cluster_events(10).await));
    lines
}

#[test]
fn inline_and_threads_give_the_same_answers() {
    let threads_dir = tempfile::tempdir().expect("temp dir");
    let inline_dir = tempfile::tempdir().expect("temp dir");
    let snapshots = tempfile::tempdir().expect("temp dir");

    let store = common::open(threads_dir.path());
    let threads = common::runtime().block_on(transcript(
        &store.handle(),
        &snapshots.path().join("threads.sqlite"),
    ));
    store.close();

    let inline = current_thread_runtime().block_on(async {
        let store = open_inline(inline_dir.path());
        let lines = transcript(&store.handle(), &snapshots.path().join("inline.sqlite")).await;
        store.shutdown().await;
        lines
    });

    assert_eq!(inline, threads);
    assert_eq!(
        stored_instances(inline_dir.path()),
        stored_instances(threads_dir.path())
    );
    let (inline_catalog, threads_catalog) = (
        common::database(inline_dir.path()),
        common::database(threads_dir.path()),
    );
    let tracking = |connection: &rusqlite::Connection| -> i64 {
        connection
            .query_row("SELECT count(*) FROM tracking", [], |row| row.get(0))
            .expect("count the tracking events")
    };
    assert_eq!(tracking(&inline_catalog), tracking(&threads_catalog));
}

/// What a simulated node sees after a crash of its runtime: the data committed before it and
/// a data directory it can open again.
fn assert_recovered(dir: &Path, stale: Option<&Store>) {
    current_thread_runtime().block_on(async {
        let store = Store::open_with(dir, Execution::Inline)
            .expect("the crashed runtime released the data directory");
        let handle = store.handle();
        assert_eq!(handle.position(), Some(vec![3]));
        assert_eq!(handle.catalog().state.message_count, 5);
        assert_eq!(
            handle.message_body("m4".to_string()).await.expect("a read"),
            Some(b"m4".to_vec())
        );
        if let Some(stale) = stale {
            let answer = stale.handle().apply(replicated(9, vec![], None)).await;
            assert!(
                matches!(answer, Err(StoreError::Stopped)),
                "the store of the crashed runtime answered {answer:?}"
            );
        }
        let outcome = handle
            .apply(replicated(4, vec![publish("m9", "a")], None))
            .await
            .expect("the reopened store commits");
        assert!(outcome[0].is_ok(), "{outcome:?}");
        store.shutdown().await;
    });
}

/// Opens an Inline store and commits the first three batches of [`history`].
async fn write_some(dir: &Path) -> Store {
    let store = open_inline(dir);
    let handle = store.handle();
    for batch in history().into_iter().take(3) {
        handle.apply(batch).await.expect("the batch commits");
    }
    store
}

#[test]
fn a_dropped_runtime_releases_a_store_it_never_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = current_thread_runtime();
    let store = runtime.block_on(write_some(dir.path()));
    // A crash: the runtime goes, and its committer task with it; the store is never closed
    // and outlives it.
    drop(runtime);
    assert_recovered(dir.path(), Some(&store));
    drop(store);
}

#[test]
fn a_dropped_runtime_releases_a_store_owned_by_one_of_its_tasks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        let store = write_some(dir.path()).await;
        // A simulated node owns its store in a task that never ends.
        tokio::spawn(async move {
            let _store = store;
            std::future::pending::<()>().await
        });
        tokio::task::yield_now().await;
    });
    drop(runtime);
    assert_no_connection_is_open(dir.path());
    assert_recovered(dir.path(), None);
}

/// Taking the database out of WAL mode needs every other connection to it closed.
fn assert_no_connection_is_open(dir: &Path) {
    let connection = common::database(dir);
    connection
        .execute_batch("PRAGMA busy_timeout = 0;")
        .expect("set the busy timeout");
    let mode = connection.query_row("PRAGMA journal_mode = DELETE", [], |row| {
        row.get::<_, String>(0)
    });
    assert_eq!(
        mode.as_deref().ok(),
        Some("delete"),
        "a connection to the store is still open: {mode:?}"
    );
}

#[test]
fn shutdown_frees_the_directory_for_the_same_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    current_thread_runtime().block_on(async {
        let store = write_some(dir.path()).await;
        store.shutdown().await;
        let store = Store::open_with(dir.path(), Execution::Inline)
            .expect("a shut down store released the directory");
        assert_eq!(store.handle().position(), Some(vec![3]));
        store.shutdown().await;
    });
    assert!(dir.path().join(schema::DATABASE_FILE).exists());
}

#[test]
fn a_closed_inline_store_serves_what_was_queued_before_it_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    current_thread_runtime().block_on(async {
        let store = open_inline(dir.path());
        let handle = store.handle();
        let answer = handle
            .submit(replicated(1, catalog_commands(), None))
            .await
            .expect("the store takes the batch");
        store.close();
        assert!(answer.await.is_ok(), "a queued batch is committed");
        let late = handle
            .apply(replicated(2, vec![publish("m0", "a")], None))
            .await;
        assert!(matches!(late, Err(StoreError::Stopped)), "{late:?}");
    });
}

#[test]
fn inline_execution_outside_a_runtime_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = match Store::open_with(dir.path(), Execution::Inline) {
        Ok(_) => panic!("an inline store opened without a runtime"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("tokio runtime"), "{error}");
    // Nothing was left holding the directory.
    drop(common::open(dir.path()));
}
