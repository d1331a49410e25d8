//! The Raft log with `Execution::Inline`: openraft's storage suite passes, it gives the same
//! answers as with its writer thread, and a runtime dropped without dropping the log (a
//! simulated crash) leaves every fsynced write behind and no connection open. (That no thread
//! is started is checked in `inline_threads.rs`, in a process of its own.)

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{
    EntryResponder, RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder,
    RaftStateMachine, Snapshot,
};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::alias::SnapshotOf;
use openraft::{OptionalSend, StorageError};
use tandem_cluster::log_store::{LOG_DATABASE_FILE, LogStore};
use tandem_cluster::types::{
    Entry, LogId, ProposalResult, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};
use tandem_store::Execution;
use tempfile::TempDir;

const NODE_ID: u64 = 1;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term,
            node_id: NODE_ID,
        },
        index,
    )
}

fn entries(term: u64, first: u64, last: u64) -> Vec<Entry> {
    (first..=last)
        .map(|index| Entry::new_blank(log_id(term, index)))
        .collect()
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---- openraft's suite, inline ----

/// The least state machine openraft's suite needs (as in `log_store.rs`).
#[derive(Default)]
struct MetadataStateMachine {
    state: Arc<Mutex<MachineState>>,
}

#[derive(Default)]
struct MachineState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<SnapshotMeta>,
}

struct MetadataSnapshotBuilder {
    state: Arc<Mutex<MachineState>>,
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataSnapshotBuilder {
    type SnapshotData = ();

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, ()>> {
        let mut state = self.state.lock().unwrap();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        state.snapshot = Some(meta.clone());
        Ok(Snapshot { meta, snapshot: () })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotData = ();
    type SnapshotBuilder = MetadataSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let state = self.state.lock().unwrap();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Stream>(&mut self, mut entries: Stream) -> io::Result<()>
    where
        Stream: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut state = self.state.lock().unwrap();
                state.last_applied = Some(entry.log_id());
                if let Some(membership) = entry.get_membership() {
                    state.membership = StoredMembership::new(Some(entry.log_id()), membership);
                }
            }
            if let Some(responder) = responder {
                responder.send(ProposalResult::default());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MetadataSnapshotBuilder {
        MetadataSnapshotBuilder {
            state: Arc::clone(&self.state),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, _snapshot: ()) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.snapshot = Some(meta.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<SnapshotOf<TypeConfig, ()>>> {
        let state = self.state.lock().unwrap();
        Ok(state
            .snapshot
            .clone()
            .map(|meta| Snapshot { meta, snapshot: () }))
    }
}

struct InlineStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, MetadataStateMachine, TempDir> for InlineStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, MetadataStateMachine), StorageError<TypeConfig>> {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = LogStore::open_with(directory.path(), Execution::Inline).expect("open the log");
        Ok((directory, store, MetadataStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite_passes_inline_on_a_current_thread_runtime() {
    current_thread_runtime()
        .block_on(Suite::test_all(InlineStoreBuilder))
        .unwrap();
}

// ---- the same answers in both executions ----

/// Appends, a vote, a committed id, a truncation and a purge, then what the log reads back,
/// before and after it is opened again.
async fn transcript(directory: &Path, execution: Execution) -> Vec<String> {
    let mut lines = Vec::new();
    let mut store = LogStore::open_with(directory, execution).expect("open the log");
    store
        .blocking_append(entries(1, 0, 9))
        .await
        .expect("append");
    store
        .save_vote(&Vote::new_committed(2, NODE_ID))
        .await
        .expect("save the vote");
    store
        .save_committed(Some(log_id(1, 5)))
        .await
        .expect("save the committed id");
    store
        .truncate_after(Some(log_id(1, 7)))
        .await
        .expect("truncate");
    store
        .blocking_append(entries(2, 8, 12))
        .await
        .expect("append");
    store.purge(log_id(1, 3)).await.expect("purge");
    lines.extend(read_back(&mut store).await);
    drop(store);
    let mut store = LogStore::open_with(directory, execution).expect("open the log again");
    lines.extend(read_back(&mut store).await);
    lines
}

async fn read_back(store: &mut LogStore) -> Vec<String> {
    let mut reader = store.get_log_reader().await;
    vec![
        format!("{:?}", store.get_log_state().await.expect("log state")),
        format!("{:?}", store.read_committed().await.expect("committed")),
        format!("{:?}", reader.read_vote().await.expect("vote")),
        format!(
            "{:?}",
            reader.try_get_log_entries(0..100).await.expect("read")
        ),
        format!(
            "{:?}",
            reader.try_get_log_entries(6..=9).await.expect("read")
        ),
    ]
}

#[test]
fn inline_and_threads_logs_give_the_same_answers() {
    let threads_dir = tempfile::tempdir().expect("temp dir");
    let inline_dir = tempfile::tempdir().expect("temp dir");
    let threads = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(transcript(threads_dir.path(), Execution::Threads));
    let inline =
        current_thread_runtime().block_on(transcript(inline_dir.path(), Execution::Inline));
    assert_eq!(inline, threads);
    assert!(threads[3].contains("index: 12"), "{}", threads[3]);
}

// ---- a crash of the runtime ----

#[test]
fn a_dropped_runtime_leaves_the_fsynced_log_and_no_open_connection() {
    let directory = tempfile::tempdir().expect("temp dir");
    let runtime = current_thread_runtime();
    let stale = runtime.block_on(async {
        let mut store =
            LogStore::open_with(directory.path(), Execution::Inline).expect("open the log");
        store
            .blocking_append(entries(1, 0, 4))
            .await
            .expect("append");
        store
            .save_vote(&Vote::new_committed(1, NODE_ID))
            .await
            .expect("save the vote");
        store
    });
    // A crash: the runtime goes, and the writer task with it; the log is never dropped.
    drop(runtime);
    current_thread_runtime().block_on(async {
        let mut stale = stale;
        let error = stale
            .blocking_append(entries(1, 5, 5))
            .await
            .expect_err("the writer of the crashed runtime is gone");
        assert!(error.to_string().contains("writer"), "{error}");
        drop(stale);
        assert_no_connection_is_open(directory.path());
        let mut store =
            LogStore::open_with(directory.path(), Execution::Inline).expect("open the log again");
        let mut reader = store.get_log_reader().await;
        let read = reader.try_get_log_entries(0..10).await.expect("read");
        assert_eq!(read, entries(1, 0, 4));
        assert_eq!(
            reader.read_vote().await.expect("vote"),
            Some(Vote::new_committed(1, NODE_ID))
        );
    });
}

/// Taking the file out of WAL mode needs every other connection to it closed.
fn assert_no_connection_is_open(directory: &Path) {
    let connection =
        rusqlite::Connection::open(directory.join(LOG_DATABASE_FILE)).expect("open the file");
    connection
        .execute_batch("PRAGMA busy_timeout = 0;")
        .expect("set the busy timeout");
    let mode = connection.query_row("PRAGMA journal_mode = DELETE", [], |row| {
        row.get::<_, String>(0)
    });
    assert_eq!(
        mode.as_deref().ok(),
        Some("delete"),
        "a connection to the log is still open: {mode:?}"
    );
}
