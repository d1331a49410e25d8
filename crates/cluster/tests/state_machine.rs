//! The state machine applies committed entries to the store in log order, however many it
//! is given at once, and remembers how far it got. `apply` only queues entries on the store;
//! a storage failure it did not wait for is reported by the next `apply`.

use std::time::{Duration, Instant};

use futures_util::stream;
use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use tandem_cluster::state_machine::{self, StateMachine};
use tandem_cluster::types::{Entry, Proposal, log_id};
use tandem_core::Command;
use tandem_store::{Store, StoreHandle};

/// More entries than one scheduling budget: a reordering of the store's queue shows here.
const ENTRIES: u64 = 600;
/// How long a test waits for the store to commit what `apply` queued.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

fn create_host_entry(index: u64) -> Entry {
    create_named_host_entry(index, &format!("h{index}"))
}

fn create_named_host_entry(index: u64, name: &str) -> Entry {
    Entry::new_normal(
        log_id(1, 1, index),
        Proposal::Commands {
            timestamp_ms: 1_700_000_000_000 + index as i64,
            commands: vec![Command::CreateHost {
                name: name.to_string(),
            }]
            .into(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_entries_applied_at_once_reach_the_store_in_log_order() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = open_store(directory.path()).await;
    let mut state_machine =
        StateMachine::open(store.handle(), directory.path().join("snapshots")).expect("opens");
    let entries = (1..=ENTRIES).map(|index| Ok((create_host_entry(index), None)));
    state_machine
        .apply(stream::iter(entries))
        .await
        .expect("entries apply");
    wait_for_commit(&store.handle(), ENTRIES).await;

    let catalog = store.handle().catalog();
    assert_eq!(catalog.hosts.len() as u64, ENTRIES);
    for host in &catalog.hosts {
        // Host ids are handed out in apply order: entry i must have created host i.
        assert_eq!(
            host.name,
            format!("h{}", host.id),
            "applied out of log order"
        );
    }
    let (applied, _) = state_machine.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|log_id| log_id.index()), Some(ENTRIES));
    drop(state_machine);
    close(store).await;
}

async fn open_store(directory: &std::path::Path) -> Store {
    let path = directory.to_path_buf();
    tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .expect("open task")
        .expect("store opens")
}

async fn close(store: Store) {
    tokio::task::spawn_blocking(move || store.close())
        .await
        .expect("close");
}

/// Waits (boundedly) until the store has committed the entry at `index`.
async fn wait_for_commit(store: &StoreHandle, index: u64) {
    let deadline = Instant::now() + COMMIT_WAIT;
    while state_machine::committed_index(store) < index {
        assert!(
            Instant::now() < deadline,
            "the store committed up to {} of {index} within {COMMIT_WAIT:?}",
            state_machine::committed_index(store)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_transaction_is_reported_by_the_next_apply() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = open_store(directory.path()).await;
    let mut state_machine =
        StateMachine::open(store.handle(), directory.path().join("snapshots")).expect("opens");
    state_machine
        .apply(stream::iter([Ok((create_host_entry(1), None))]))
        .await
        .expect("entry 1 applies");
    wait_for_commit(&store.handle(), 1).await;
    // A trigger added behind the store's back makes creating host 'poison' fail.
    let saboteur = rusqlite::Connection::open(directory.path().join("messagebox.sqlite"))
        .expect("open the database");
    saboteur
        .execute_batch(
            "PRAGMA busy_timeout = 5000; CREATE TRIGGER poison BEFORE INSERT ON hosts \
             WHEN NEW.name = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .expect("add the trigger");

    let queued = [
        Ok((create_named_host_entry(2, "poison"), None)),
        Ok((create_host_entry(3), None)),
    ];
    state_machine
        .apply(stream::iter(queued))
        .await
        .expect("apply only queues the entries");
    let deadline = Instant::now() + COMMIT_WAIT;
    let error = loop {
        let next = state_machine
            .apply(stream::iter([Ok((create_host_entry(4), None))]))
            .await;
        match next {
            Err(error) => break error,
            Ok(()) => {
                assert!(
                    Instant::now() < deadline,
                    "no apply reported the failed transaction within {COMMIT_WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert!(
        error.to_string().contains("injected failure"),
        "the failure is not named: {error}"
    );
    assert_eq!(
        state_machine::committed_index(&store.handle()),
        1,
        "nothing after the failed entry may be committed"
    );
    let hosts: Vec<String> = store
        .handle()
        .catalog()
        .hosts
        .iter()
        .map(|host| host.name.clone())
        .collect();
    assert_eq!(hosts, ["h1"]);
    drop(state_machine);
    close(store).await;
    drop(saboteur);
}
