//! The SQLite raft log against openraft's storage suite, and against what Tandem relies on:
//! range reads, truncation, purge (deleted in steps that let appends through), errors that
//! name the file, a bounded file, and what
//! survives closing and reopening it; with `Execution::Inline`, the same answers as with its
//! writer thread, and a runtime dropped without dropping the log (a simulated crash) leaving
//! every fsynced write behind and no connection open. (That inline starts no thread is
//! checked in `inline_threads.rs`, in a process of its own.)

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, TryStreamExt};
use openraft::OptionalSend;
use openraft::StorageError;
use openraft::entry::RaftEntry;
use openraft::storage::{
    EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftLogStorageExt,
    RaftSnapshotBuilder, RaftStateMachine, Snapshot,
};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::SnapshotOf;
use tandem_cluster::log_store::{LOG_DATABASE_FILE, LOG_FORMAT_VERSION, LogStore};
use tandem_cluster::types::{
    Entry, FailoverRecord, LogId, Proposal, ProposalResult, SnapshotMeta, StoredMembership,
    TypeConfig, Vote,
};
use tandem_store::Execution;
use tempfile::TempDir;

const NODE_ID: u64 = 1;

fn log_id(term: u64, index: u64) -> LogId {
    tandem_cluster::types::log_id(term, NODE_ID, index)
}

/// A normal entry whose payload the codec must carry, not just a blank one.
fn failover_entry(term: u64, index: u64) -> Entry {
    failover_entry_with_reason(term, index, format!("entry {index}"))
}

fn failover_entry_with_reason(term: u64, index: u64, reason: String) -> Entry {
    Entry::new_normal(
        log_id(term, index),
        Proposal::Failover(FailoverRecord {
            term,
            at_ms: 1_700_000_000_000 + index as i64,
            from: Some(2),
            to: NODE_ID,
            reason,
            unavailable_ms: index,
        }),
    )
}

/// Entries `first..=last` in `term`: failover entries, so every one has a distinct payload.
fn entries(term: u64, first: u64, last: u64) -> Vec<Entry> {
    (first..=last)
        .map(|index| failover_entry(term, index))
        .collect()
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.index()).collect()
}

async fn append(store: &mut LogStore, entries: Vec<Entry>) {
    store.blocking_append(entries).await.expect("append");
}

async fn read(store: &mut LogStore, range: impl std::ops::RangeBounds<u64>) -> Vec<u64> {
    let mut reader = store.get_log_reader().await;
    let range = (range.start_bound().cloned(), range.end_bound().cloned());
    indexes(&reader.try_get_log_entries(range).await.expect("read"))
}

async fn log_state(store: &mut LogStore) -> LogState<TypeConfig> {
    store.get_log_state().await.expect("log state")
}

// ---- openraft's suite ----

/// The least state machine openraft's suite needs: what was applied last, the membership, and
/// a snapshot that is nothing but its metadata.
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

/// Every suite test gets a fresh log file in its own temporary directory, run as given, with
/// the default budget for recent entries held in memory or with the one given.
struct TemporaryStoreBuilder(Execution, Option<usize>);

impl StoreBuilder<TypeConfig, LogStore, MetadataStateMachine, TempDir> for TemporaryStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, MetadataStateMachine), StorageError<TypeConfig>> {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = match self.1 {
            None => LogStore::open_with(directory.path(), self.0),
            Some(budget) => LogStore::open_with_budget(directory.path(), self.0, budget),
        }
        .expect("open the log");
        Ok((directory, store, MetadataStateMachine::default()))
    }
}

#[tokio::test]
async fn openraft_storage_suite_passes_on_a_current_thread_runtime() {
    Suite::test_all(TemporaryStoreBuilder(Execution::Threads, None))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_a_multi_thread_runtime() {
    Suite::test_all(TemporaryStoreBuilder(Execution::Threads, None))
        .await
        .unwrap();
}

#[tokio::test]
async fn openraft_storage_suite_passes_inline_on_a_current_thread_runtime() {
    Suite::test_all(TemporaryStoreBuilder(Execution::Inline, None))
        .await
        .unwrap();
}

/// With no budget, every read of a flushed entry goes to the file.
#[tokio::test]
async fn openraft_storage_suite_passes_reading_flushed_entries_from_the_file() {
    Suite::test_all(TemporaryStoreBuilder(Execution::Threads, Some(0)))
        .await
        .unwrap();
}

// ---- Tandem's expectations ----

#[tokio::test]
async fn appended_entries_read_back_by_range_with_their_payloads() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 4)).await;
    append(&mut store, entries(2, 5, 9)).await;

    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(3..7).await.unwrap(),
        [entries(1, 3, 4), entries(2, 5, 6)].concat()
    );
    assert_eq!(read(&mut store, ..).await, (0..=9).collect::<Vec<_>>());
    assert_eq!(read(&mut store, 8..).await, [8, 9]);
    assert_eq!(read(&mut store, ..=2).await, [0, 1, 2]);
    assert_eq!(read(&mut store, 5..5).await, Vec::<u64>::new());
    assert_eq!(read(&mut store, 9..100).await, [9]);
    assert_eq!(read(&mut store, 10..).await, Vec::<u64>::new());
    assert_eq!(read(&mut store, u64::MAX..).await, Vec::<u64>::new());
    assert_eq!(
        log_state(&mut store).await,
        LogState {
            last_purged_log_id: None,
            last_log_id: Some(log_id(2, 9)),
        }
    );
}

#[tokio::test]
async fn truncate_after_keeps_the_entries_up_to_the_given_log_id() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 9)).await;

    store.truncate_after(Some(log_id(1, 6))).await.unwrap();
    assert_eq!(read(&mut store, ..).await, (0..=6).collect::<Vec<_>>());
    assert_eq!(log_state(&mut store).await.last_log_id, Some(log_id(1, 6)));

    // A new leader's entries replace the truncated ones.
    append(&mut store, entries(3, 7, 8)).await;
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(6..).await.unwrap(),
        [entries(1, 6, 6), entries(3, 7, 8)].concat()
    );

    store.truncate_after(None).await.unwrap();
    assert_eq!(read(&mut store, ..).await, Vec::<u64>::new());
    assert_eq!(log_state(&mut store).await, LogState::default());
}

/// What a log of entries 0 to 9 in term 1 reads after a purge up to entry 4.
async fn assert_reads_entries_5_to_9_after_a_purge_of_4(store: &mut LogStore) {
    assert_eq!(read(store, ..).await, (5..=9).collect::<Vec<_>>());
    assert_eq!(
        log_state(store).await,
        LogState {
            last_purged_log_id: Some(log_id(1, 4)),
            last_log_id: Some(log_id(1, 9)),
        }
    );
}

#[tokio::test]
async fn purge_removes_the_entries_up_to_the_given_log_id_and_remembers_it() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 9)).await;

    store.purge(log_id(1, 4)).await.unwrap();
    assert_reads_entries_5_to_9_after_a_purge_of_4(&mut store).await;

    // Purging past the end (after a snapshot was installed) leaves an empty log whose last
    // log id is the purged one.
    store.purge(log_id(2, 20)).await.unwrap();
    assert_eq!(read(&mut store, ..).await, Vec::<u64>::new());
    let expected = LogState {
        last_purged_log_id: Some(log_id(2, 20)),
        last_log_id: Some(log_id(2, 20)),
    };
    assert_eq!(log_state(&mut store).await, expected);

    drop(store);
    let mut store = LogStore::open(directory.path()).unwrap();
    assert_eq!(log_state(&mut store).await, expected);
    append(&mut store, entries(2, 21, 22)).await;
    assert_eq!(read(&mut store, ..).await, [21, 22]);
}

#[tokio::test]
async fn vote_and_committed_log_id_survive_reopening() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    assert_eq!(
        store.get_log_reader().await.read_vote().await.unwrap(),
        None
    );
    assert_eq!(store.read_committed().await.unwrap(), None);

    store.save_vote(&Vote::new(3, 2)).await.unwrap();
    store
        .save_vote(&Vote::new_committed(4, NODE_ID))
        .await
        .unwrap();
    store.save_committed(Some(log_id(4, 17))).await.unwrap();
    // Waits for the queued write (save_committed does not).
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(4, 17)));
    drop(store);

    let mut store = LogStore::open(directory.path()).unwrap();
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.read_vote().await.unwrap(),
        Some(Vote::new_committed(4, NODE_ID))
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(4, 17)));

    store.save_committed(None).await.unwrap();
    assert_eq!(store.read_committed().await.unwrap(), None);
    drop(store);
    let mut store = LogStore::open(directory.path()).unwrap();
    assert_eq!(store.read_committed().await.unwrap(), None);
}

/// openraft awaits `save_committed` before every apply: it must return once queued, not
/// after a transaction and an fsync of its own, and land behind the appends queued before it.
/// Inline on a current-thread runtime, the writer is a task that runs only when the test
/// waits, so a `save_committed` that waited for it could not finish on its first poll.
#[test]
fn the_committed_log_id_is_queued_behind_earlier_appends_without_waiting_for_its_fsync() {
    let directory = tempfile::tempdir().expect("temp dir");
    current_thread_runtime().block_on(async {
        let mut store =
            LogStore::open_with(directory.path(), Execution::Inline).expect("open the log");
        let (flushed, appended) = TypeConfig::oneshot();
        store
            .append(entries(1, 0, 9), IOFlushed::signal(flushed))
            .now_or_never()
            .expect("an append only queues its entries")
            .expect("append");
        store
            .save_committed(Some(log_id(1, 9)))
            .now_or_never()
            .expect("save_committed waited for the writer")
            .expect("save the committed id");
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 9))
        );
        appended
            .await
            .expect("flush reported")
            .expect("append flushed");
        drop(store);
        let mut store =
            LogStore::open_with(directory.path(), Execution::Inline).expect("open the log again");
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 9))
        );
        assert_eq!(read(&mut store, ..).await, (0..=9).collect::<Vec<_>>());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_state_and_entries_survive_reopening() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 3)).await;
    append(&mut store, entries(2, 4, 8)).await;
    store.purge(log_id(1, 2)).await.unwrap();
    store.truncate_after(Some(log_id(2, 7))).await.unwrap();
    let state_before = log_state(&mut store).await;
    let entries_before = store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .unwrap();
    drop(store);

    let mut store = LogStore::open(directory.path()).unwrap();
    assert_eq!(
        log_state(&mut store).await,
        LogState {
            last_purged_log_id: Some(log_id(1, 2)),
            last_log_id: Some(log_id(2, 7)),
        }
    );
    assert_eq!(log_state(&mut store).await, state_before);
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(..).await.unwrap(),
        entries_before
    );
    assert_eq!(indexes(&entries_before), [3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn a_file_of_another_format_version_or_program_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    drop(LogStore::open(directory.path()).unwrap());
    let path = directory.path().join(LOG_DATABASE_FILE);
    let other_version = LOG_FORMAT_VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", other_version)
        .unwrap();

    let error = LogStore::open(directory.path()).err().expect("refused");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("format version {other_version}")),
        "{message}"
    );

    let foreign = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(foreign.path().join(LOG_DATABASE_FILE))
        .unwrap()
        .execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .unwrap();
    let error = LogStore::open(foreign.path()).err().expect("refused");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("'orders'"), "{error}");
}

#[tokio::test]
async fn a_hole_in_the_file_is_reported_not_skipped() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open_with_budget(directory.path(), Execution::Threads, 0).unwrap();
    append(&mut store, entries(1, 0, 9)).await;
    rusqlite::Connection::open(directory.path().join(LOG_DATABASE_FILE))
        .unwrap()
        .execute("DELETE FROM log WHERE log_index = 5", [])
        .unwrap();

    let mut reader = store.get_log_reader().await;
    assert_eq!(
        indexes(&reader.try_get_log_entries(6..).await.unwrap()),
        [6, 7, 8, 9]
    );
    let error = reader.try_get_log_entries(3..8).await.expect_err("a hole");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains(LOG_DATABASE_FILE), "{error}");
}

/// Deletes the file's rows `first..=last` behind the log's back.
fn delete_rows(directory: &Path, first: u64, last: u64) {
    rusqlite::Connection::open(directory.join(LOG_DATABASE_FILE))
        .unwrap()
        .execute(
            "DELETE FROM log WHERE log_index BETWEEN ?1 AND ?2",
            [first, last],
        )
        .unwrap();
}

#[tokio::test]
async fn recently_flushed_entries_are_read_from_memory() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 9)).await;
    delete_rows(directory.path(), 3, 5);

    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(2..=6).await.unwrap(),
        entries(1, 2, 6),
        "flushed entries are still held in memory"
    );

    // A truncation and a purge drop what memory holds too.
    store.truncate_after(Some(log_id(1, 7))).await.unwrap();
    store.purge(log_id(1, 1)).await.unwrap();
    assert_eq!(read(&mut store, 8..=9).await, Vec::<u64>::new());
    assert_eq!(read(&mut store, 0..=7).await, [2, 3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn entries_past_the_memory_budget_are_read_from_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let reason = "r".repeat(1000);
    let one_entry = failover_entry_with_reason(1, 0, reason.clone());
    let one_entry_bytes = tandem_cluster::recent_entries::memory_bytes(
        &one_entry,
        tandem_cluster::codec::encode(&one_entry).unwrap().len(),
    );
    let mut store =
        LogStore::open_with_budget(directory.path(), Execution::Threads, 3 * one_entry_bytes)
            .unwrap();
    let batch: Vec<Entry> = (0..=9)
        .map(|index| failover_entry_with_reason(1, index, reason.clone()))
        .collect();
    for entry in batch.clone() {
        append(&mut store, vec![entry]).await;
    }
    delete_rows(directory.path(), 0, 9);

    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(7..=9).await.unwrap(),
        batch[7..=9],
        "the newest three fit the budget"
    );
    assert_eq!(
        indexes(&reader.try_get_log_entries(6..=9).await.unwrap()),
        [7, 8, 9],
        "entry 6 was dropped from memory, so it was looked for in the (emptied) file"
    );
}

#[tokio::test]
async fn a_failed_append_reports_to_the_callback_and_writes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 1)).await;

    // The second entry cannot be stored (SQLite integers are signed): the whole append fails.
    let batch = vec![failover_entry(1, 2), failover_entry(1, u64::MAX)];
    let (sender, receiver) = TypeConfig::oneshot();
    store
        .append(batch, IOFlushed::signal(sender))
        .await
        .expect("the append is accepted; the write happens later");
    let reported = receiver
        .await
        .unwrap()
        .expect_err("callback gets the error");

    let message = reported.to_string();
    assert!(message.contains(LOG_DATABASE_FILE), "{message}");
    assert!(message.contains("append entries 2..="), "{message}");
    assert_eq!(reported.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(read(&mut store, ..).await, [0, 1]);
}

/// The appends openraft queues behind one that fails (a full disk) must not reach the file:
/// it would then hold entries after missing ones, and their flush would vouch for the missing
/// ones too.
#[tokio::test]
async fn after_a_failed_append_no_later_write_reaches_the_file_until_it_is_reopened() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 1)).await;
    let failing = vec![failover_entry(1, 2), failover_entry(1, u64::MAX)];
    store
        .blocking_append(failing)
        .await
        .expect_err("entry u64::MAX cannot be stored");

    let later = store
        .blocking_append(entries(1, 3, 4))
        .await
        .expect_err("an append after a failed one is refused");
    let message = later.to_string();
    assert!(message.contains("an earlier one failed"), "{message}");
    assert!(message.contains("append entries 2..="), "{message}");
    store
        .save_vote(&Vote::new(2, 1))
        .await
        .expect_err("so is any other write");
    assert_eq!(read(&mut store, ..).await, [0, 1]);
    assert_eq!(rows_in_file(directory.path(), 0, u64::MAX >> 1), 2);

    drop(store);
    let mut reopened = LogStore::open(directory.path()).unwrap();
    append(&mut reopened, entries(1, 2, 3)).await;
    assert_eq!(read(&mut reopened, ..).await, [0, 1, 2, 3]);
}

#[tokio::test]
async fn the_file_stays_bounded_when_purges_follow_appends() {
    const ENTRIES_PER_APPEND: u64 = 20;
    const ENTRIES_KEPT: u64 = 100;
    const APPENDS: u64 = 1500;
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    let payload = "x".repeat(1024);
    let mut next_index = 0;
    let mut bytes_after_warm_up = 0;
    for append_number in 1..=APPENDS {
        let batch = (next_index..next_index + ENTRIES_PER_APPEND)
            .map(|index| failover_entry_with_reason(1, index, payload.clone()))
            .collect::<Vec<_>>();
        next_index += ENTRIES_PER_APPEND;
        append(&mut store, batch).await;
        if next_index > ENTRIES_KEPT {
            store
                .purge(log_id(1, next_index - ENTRIES_KEPT - 1))
                .await
                .unwrap();
        }
        if append_number == APPENDS / 3 {
            bytes_after_warm_up = store.disk_bytes();
        }
    }
    assert_eq!(read(&mut store, ..).await.len() as u64, ENTRIES_KEPT);
    let written_bytes = APPENDS * ENTRIES_PER_APPEND * 1024;
    let final_bytes = store.disk_bytes();
    assert!(bytes_after_warm_up > 0);
    assert!(
        final_bytes <= bytes_after_warm_up + 1024 * 1024,
        "the file grew from {bytes_after_warm_up} to {final_bytes} bytes"
    );
    assert!(
        final_bytes < written_bytes / 2,
        "{final_bytes} bytes on disk for {written_bytes} written"
    );
}

/// Rows `first..=last` the file still holds, counted behind the log's back.
fn rows_in_file(directory: &Path, first: u64, last: u64) -> u64 {
    rusqlite::Connection::open(directory.join(LOG_DATABASE_FILE))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM log WHERE log_index BETWEEN ?1 AND ?2",
            [first, last],
            |row| row.get(0),
        )
        .unwrap()
}

/// Waits (at most 10 s) until the file holds none of the rows `first..=last`.
async fn wait_until_deleted(directory: &Path, first: u64, last: u64) {
    for _ in 0..1000 {
        if rows_in_file(directory, first, last) == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "rows {first}..={last} are still in the file: {}",
        rows_in_file(directory, first, last)
    );
}

/// A purge of a large log does not hold up the appends behind it: it is recorded at once,
/// and the writer deletes the purged entries a few megabytes at a time between them. (Done
/// at once, deleting gigabytes stalled every write of the replica set for seconds.) Inline on
/// one thread, the interleaving is the same on every run.
#[test]
fn an_append_after_a_large_purge_is_flushed_before_the_purged_entries_are_deleted() {
    const ENTRIES: u64 = 64;
    let directory = tempfile::tempdir().unwrap();
    current_thread_runtime().block_on(async {
        let mut store = LogStore::open_with(directory.path(), Execution::Inline).unwrap();
        let megabyte = "m".repeat(1024 * 1024);
        let batch = (0..ENTRIES)
            .map(|index| failover_entry_with_reason(1, index, megabyte.clone()))
            .collect();
        append(&mut store, batch).await;

        store.purge(log_id(1, ENTRIES - 1)).await.unwrap();
        append(&mut store, entries(1, ENTRIES, ENTRIES)).await;
        let left = rows_in_file(directory.path(), 0, ENTRIES - 1);
        assert!(
            left > ENTRIES / 2,
            "the append waited for the purge to delete {} of {ENTRIES} entries",
            ENTRIES - left
        );
        assert_eq!(
            read(&mut store, ..).await,
            [ENTRIES],
            "purged entries are not read"
        );
        assert_eq!(
            log_state(&mut store).await,
            LogState {
                last_purged_log_id: Some(log_id(1, ENTRIES - 1)),
                last_log_id: Some(log_id(1, ENTRIES)),
            }
        );
        wait_until_deleted(directory.path(), 0, ENTRIES - 1).await;
        assert_eq!(read(&mut store, ..).await, [ENTRIES]);
    });
}

/// A crash between a purge and the deletion of its entries leaves them in the file under a
/// recorded purge; the next writer deletes them, and they are never read meanwhile.
#[tokio::test]
async fn entries_of_a_purge_a_crash_interrupted_are_deleted_after_reopening() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    append(&mut store, entries(1, 0, 9)).await;
    drop(store);
    rusqlite::Connection::open(directory.path().join(LOG_DATABASE_FILE))
        .unwrap()
        .execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_purged', ?1)",
            [tandem_cluster::codec::encode(&log_id(1, 4)).unwrap()],
        )
        .unwrap();

    let mut store = LogStore::open(directory.path()).unwrap();
    assert_reads_entries_5_to_9_after_a_purge_of_4(&mut store).await;
    wait_until_deleted(directory.path(), 0, 4).await;
    assert_eq!(rows_in_file(directory.path(), 5, 9), 5);
}

/// The snapshot policy weighs the log's bytes against the store's size: every durable
/// append counts, and after a restart the entries past the snapshot are measured in the file.
#[tokio::test]
async fn the_log_counts_the_entry_bytes_it_made_durable_and_measures_those_it_holds() {
    const PAYLOAD_BYTES: usize = 10_000;
    let directory = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(directory.path()).unwrap();
    let growth = store.growth();
    assert_eq!(growth.bytes_written(), 0);
    let payload = "x".repeat(PAYLOAD_BYTES);
    let batch = (0..4)
        .map(|index| failover_entry_with_reason(1, index, payload.clone()))
        .collect::<Vec<_>>();
    append(&mut store, batch).await;
    let written = growth.bytes_written();
    assert!(
        (4 * PAYLOAD_BYTES..5 * PAYLOAD_BYTES).contains(&(written as usize)),
        "{written} bytes counted for four entries of {PAYLOAD_BYTES}"
    );
    append(&mut store, vec![failover_entry(1, 4)]).await;
    let with_small_entry = growth.bytes_written();
    assert!(with_small_entry > written && with_small_entry < written + 1_000);
    drop(store);

    let mut reopened = LogStore::open(directory.path()).unwrap();
    assert_eq!(reopened.growth().bytes_written(), 0);
    let reader = reopened.get_log_reader().await;
    assert_eq!(
        reader.stored_bytes_after(0).await.unwrap() + written / 4,
        with_small_entry
    );
    assert_eq!(
        reader.stored_bytes_after(3).await.unwrap(),
        with_small_entry - written
    );
    assert_eq!(reader.stored_bytes_after(4).await.unwrap(), 0);
}

// ---- Execution::Inline gives the same answers as threads ----

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

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
