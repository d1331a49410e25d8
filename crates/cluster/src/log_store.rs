//! The durable Raft log of one node: the entries, the vote, the committed log id and the last
//! purged log id, in one SQLite file ([`LOG_DATABASE_FILE`]) in the node's data directory.
//!
//! The file runs in WAL mode with `synchronous = FULL`: every append, vote and purge is
//! fsynced before it is reported done, which is what lets the active acknowledge an entry once
//! a majority holds it.
//!
//! One writer thread owns the write connection and takes every write in the order openraft
//! issued it. `append` only hands its entries to that thread (and to the in-memory
//! [`RecentEntries`], so that readers see them at once) and returns: the thread writes every
//! append waiting in its queue in one transaction with one fsync (group commit of the log),
//! then reports each one flushed. The active therefore sends entries to the passives while its
//! own fsync runs. Votes, truncations and purges wait for their fsync before they return; the
//! committed log id, a hint for restarts, is queued and not waited for, and a transaction that
//! holds nothing else is committed without an fsync (the next fsync covers it).
//! Every [`LogReader`] reads the recent entries held in memory (unflushed ones, and the newest
//! flushed ones up to a byte budget) and only goes to the file, through a second, read-only
//! connection, for older ones: replication reads never wait behind an fsync, and the state
//! machine's apply of a just-committed entry decodes nothing.
//!
//! A purge records the last purged log id (fsynced) and returns; readers stop seeing the
//! purged entries at once. The writer then deletes them in steps of at most
//! [`limits::RAFT_LOG_PURGE_STEP_BYTES`], one at the start of each transaction of appends
//! and, while no write is waiting, one after the other. Deleting an entry reads every page
//! of it, so a purge of the gigabytes a large backlog leaves in the log, done at once, had
//! held up every append (and so every write of the replica set) for seconds. Entries are
//! only deleted up to a purge already fsynced, so a crash leaves no hole: the next writer
//! deletes whatever is left.
//!
//! That is [`Execution::Threads`], the default. With [`Execution::Inline`] (a single-threaded
//! simulation) the writer is a task on the runtime that opened the log instead of a thread,
//! with the same group commit, and reads run in place instead of on tokio's blocking pool:
//! every operation runs on that runtime's thread. Dropping the runtime drops the task and its
//! connection.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::ops::{Bound, ControlFlow, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tandem_core::limits;
use tandem_store::Execution;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{decode, encode};
use crate::recent_entries::RecentEntries;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The log's file name inside the node's data directory.
pub const LOG_DATABASE_FILE: &str = "raft-log.db";

/// The on-disk format, kept in `PRAGMA user_version`. A file with another version is refused.
pub const LOG_FORMAT_VERSION: i64 = 1;

/// After a checkpoint, SQLite truncates a WAL file larger than this, so one large append (a
/// follower catching up) does not leave a large file behind.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

const SCHEMA: &str = "
CREATE TABLE log (
    log_index INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// How long a connection waits for another one's write to finish before it fails: the writer
/// of a log just dropped in this process may still be finishing a step of a purge.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The keys of the `meta` table.
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";

/// The Raft log storage handed to openraft.
pub struct LogStore {
    path: PathBuf,
    writes: mpsc::Sender<Write>,
    recent: Arc<RecentEntries>,
    reader: Arc<Database>,
    growth: LogGrowth,
    purged: FirstKeptIndex,
}

/// The index of the first entry not purged: readers skip the purged entries the file still
/// holds while the writer deletes them. Cheap to clone.
#[derive(Clone, Debug, Default)]
struct FirstKeptIndex(Arc<AtomicU64>);

impl FirstKeptIndex {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Entries up to `last_purged` are purged (a purge never moves it back).
    fn purged_through(&self, last_purged: u64) {
        self.0
            .fetch_max(last_purged.saturating_add(1), Ordering::AcqRel);
    }
}

/// How many bytes of entries (encoded, as stored) the log has made durable since it was
/// opened: what the snapshot policy weighs against the size of the store. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LogGrowth(Arc<AtomicU64>);

impl LogGrowth {
    pub fn bytes_written(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Reads entries and the vote for replication and apply; cheap to clone.
#[derive(Clone)]
pub struct LogReader {
    database: Arc<Database>,
    recent: Arc<RecentEntries>,
    purged: FirstKeptIndex,
}

type ChangeFn = Box<dyn FnOnce(&Connection) -> Result<(), Failure> + Send>;

/// One write for the writer thread.
enum Write {
    Append {
        entries: Vec<Entry>,
        /// Each entry's encoded size, once the writer has stored it.
        encoded_bytes: Vec<usize>,
        callback: IOFlushed<TypeConfig>,
    },
    /// A change no one waits for (the committed log id). A transaction of hints alone is
    /// committed without an fsync: the next fsync of the WAL (an append's, say) covers every
    /// frame written before it, a checkpoint syncs what it copies, and a crash before either
    /// loses only hints.
    Hint {
        operation: String,
        change: Option<ChangeFn>,
    },
    /// Any other change (vote, truncation), answered once it is fsynced.
    Change {
        operation: String,
        change: Option<ChangeFn>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Records the last purged log id, answered once it is fsynced; the entries up to it are
    /// deleted in later steps.
    Purge {
        log_id: LogId,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// One connection to the log file, the file's path for error messages, and where its work
/// runs.
struct Database {
    path: PathBuf,
    connection: Mutex<Connection>,
    execution: Execution,
}

/// Why an operation failed, before the file and the operation are named.
enum Failure {
    Sqlite(rusqlite::Error),
    Io(io::Error),
}

impl LogStore {
    /// Opens `directory/`[`LOG_DATABASE_FILE`], creating the directory and the file if they are
    /// missing, with a writer thread ([`Execution::Threads`]). Refuses a file written with
    /// another [`LOG_FORMAT_VERSION`] or by another program.
    pub fn open(directory: &Path) -> io::Result<LogStore> {
        LogStore::open_with(directory, Execution::Threads)
    }

    /// Opens the log like [`LogStore::open`], to run as `execution` says.
    /// [`Execution::Inline`] needs to be called inside the tokio runtime that will run the
    /// writer task.
    pub fn open_with(directory: &Path, execution: Execution) -> io::Result<LogStore> {
        LogStore::open_with_recent_entries(directory, execution, RecentEntries::default())
    }

    /// Opens the log like [`LogStore::open_with`], holding recently flushed entries in memory
    /// up to `recent_entries_budget_bytes` (of memory, as
    /// [`crate::recent_entries::memory_bytes`] counts it) instead of the default
    /// ([`crate::recent_entries::DEFAULT_BUDGET_BYTES`]); 0 sends every read of a flushed entry
    /// to the file.
    pub fn open_with_budget(
        directory: &Path,
        execution: Execution,
        recent_entries_budget_bytes: usize,
    ) -> io::Result<LogStore> {
        let recent = RecentEntries::with_budget(recent_entries_budget_bytes);
        LogStore::open_with_recent_entries(directory, execution, recent)
    }

    fn open_with_recent_entries(
        directory: &Path,
        execution: Execution,
        recent: RecentEntries,
    ) -> io::Result<LogStore> {
        let runtime = match execution {
            Execution::Threads => None,
            Execution::Inline => Some(tokio::runtime::Handle::try_current().map_err(|error| {
                io::Error::other(format!(
                    "raft log in {}: inline execution needs a tokio runtime to run the writer: \
                     {error}",
                    directory.display()
                ))
            })?),
        };
        fs::create_dir_all(directory).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "cannot create the directory {}: {error}",
                    directory.display()
                ),
            )
        })?;
        let path = directory.join(LOG_DATABASE_FILE);
        let mut connection =
            Connection::open(&path).map_err(|error| describe(&path, "open", error.into()))?;
        create_or_check_schema(&mut connection)
            .map_err(|failure| describe(&path, "open", failure))?;
        let (purged, deleting_through) = purged_at_open(&connection)
            .map_err(|failure| describe(&path, "read the last purged log id", failure))?;
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| describe(&path, "open for reading", error.into()))?;
        reader
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|error| describe(&path, "open for reading", error.into()))?;
        let recent = Arc::new(recent);
        let growth = LogGrowth::default();
        let (writes, queue) = mpsc::channel(limits::RAFT_LOG_WRITE_QUEUE_CAPACITY);
        let writer = Writer {
            path: path.clone(),
            connection,
            recent: Arc::clone(&recent),
            growth: growth.clone(),
            deleting_through,
            failed: None,
        };
        match runtime {
            None => {
                std::thread::Builder::new()
                    .name("tandem-raft-log".into())
                    .spawn(move || writer.run(queue))
                    .map_err(|error| describe(&path, "start the writer thread", error.into()))?;
            }
            Some(runtime) => {
                runtime.spawn(writer.run_inline(queue));
            }
        }
        Ok(LogStore {
            path: path.clone(),
            writes,
            recent,
            reader: Arc::new(Database {
                path,
                connection: Mutex::new(reader),
                execution,
            }),
            growth,
            purged,
        })
    }

    /// The count of entry bytes this log makes durable from now on.
    pub fn growth(&self) -> LogGrowth {
        self.growth.clone()
    }

    /// Hands `change` to the writer thread and waits until it is fsynced.
    async fn change(
        &self,
        operation: impl Into<String>,
        change: impl FnOnce(&Connection) -> Result<(), Failure> + Send + 'static,
    ) -> io::Result<()> {
        let operation = operation.into();
        let change = Some(Box::new(change) as ChangeFn);
        self.write_and_wait(operation.clone(), |done| Write::Change {
            operation,
            change,
            done,
        })
        .await
    }

    /// Hands `change` to the writer thread as a [`Write::Hint`], behind the writes already
    /// queued, and returns without waiting for it.
    async fn queue_hint(
        &self,
        operation: &str,
        change: impl FnOnce(&Connection) -> Result<(), Failure> + Send + 'static,
    ) -> io::Result<()> {
        let write = Write::Hint {
            operation: operation.to_string(),
            change: Some(Box::new(change)),
        };
        self.send(write, operation).await
    }

    /// Hands the write `make` builds to the writer thread and waits until it is fsynced.
    async fn write_and_wait(
        &self,
        operation: String,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Write,
    ) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        self.send(make(done), &operation).await?;
        answer
            .await
            .map_err(|_| stopped_writer(&self.path, &operation))?
    }

    async fn send(&self, write: Write, operation: &str) -> io::Result<()> {
        self.writes
            .send(write)
            .await
            .map_err(|_| stopped_writer(&self.path, operation))
    }

    /// The bytes the log occupies on disk: the database file and its WAL.
    /// A file that does not exist (yet) counts as zero.
    pub fn disk_bytes(&self) -> u64 {
        let database = &self.path;
        let mut wal = database.clone().into_os_string();
        wal.push("-wal");
        [database.as_path(), Path::new(&wal)]
            .iter()
            .map(|path| fs::metadata(path).map_or(0, |metadata| metadata.len()))
            .sum()
    }
}

/// Where the last purge left the file: the index of the first entry kept, and the last purged
/// index while the file still holds entries up to it (a purge a crash interrupted).
fn purged_at_open(connection: &Connection) -> Result<(FirstKeptIndex, Option<u64>), Failure> {
    let purged = FirstKeptIndex::default();
    let Some(last_purged) = read_meta::<LogId>(connection, LAST_PURGED_KEY)? else {
        return Ok((purged, None));
    };
    let index = last_purged.index();
    purged.purged_through(index);
    let left: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM log WHERE log_index <= ?1)",
        [sql_index(index)?],
        |row| row.get(0),
    )?;
    Ok((purged, left.then_some(index)))
}

/// Checks the format version of an existing file, or creates the tables in a new one, and sets
/// the durability pragmas.
fn create_or_check_schema(connection: &mut Connection) -> Result<(), Failure> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let is_new = version == 0;
    if is_new {
        let table: Option<String> = connection
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(table) = table {
            return Err(invalid_data(format!(
                "the file has tables (e.g. '{table}') but no format version; it is not a Tandem \
                 raft log"
            )));
        }
    } else if version != LOG_FORMAT_VERSION {
        return Err(invalid_data(format!(
            "the file holds raft log format version {version}; this binary reads version \
             {LOG_FORMAT_VERSION}"
        )));
    }
    let journal_mode: String =
        connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the file system does not support WAL mode (journal mode is {journal_mode})"),
        )));
    }
    connection.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
    ))?;
    if is_new {
        let transaction = connection.transaction()?;
        transaction.execute_batch(SCHEMA)?;
        transaction.pragma_update(None, "user_version", LOG_FORMAT_VERSION)?;
        transaction.commit()?;
    }
    Ok(())
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_held = self.recent.last_log_id();
        let state = self
            .reader
            .run("read the log state", |connection| {
                let last_purged_log_id: Option<LogId> = read_meta(connection, LAST_PURGED_KEY)?;
                let last_entry: Option<Vec<u8>> = connection
                    .query_row(
                        "SELECT entry FROM log ORDER BY log_index DESC LIMIT 1",
                        [],
                        |row| row.get(0),
                    )
                    .optional()?;
                let last_stored = last_entry
                    .map(|bytes| decode::<Entry>(&bytes).map(|entry| entry.log_id()))
                    .transpose()?;
                // The file may still hold purged entries (see the module documentation).
                let last_log_id = match (last_stored, last_purged_log_id) {
                    (Some(stored), Some(purged)) if stored.index() <= purged.index() => {
                        Some(purged)
                    }
                    (stored, purged) => stored.or(purged),
                };
                Ok(LogState {
                    last_purged_log_id,
                    last_log_id,
                })
            })
            .await?;
        Ok(LogState {
            last_log_id: state.last_log_id.max(last_held),
            ..state
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            database: Arc::clone(&self.reader),
            recent: Arc::clone(&self.recent),
            purged: self.purged.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let vote = *vote;
        self.change("save the vote", move |connection| {
            write_meta(connection, VOTE_KEY, Some(&vote))
        })
        .await
    }

    /// Queues the committed log id behind the writes already queued and returns without
    /// waiting for its fsync: openraft awaits this before every apply, and waiting for a
    /// transaction of its own there cost every acknowledgement one fsync more. It is only a
    /// hint for a restart (a value lost in a crash leaves an earlier one, and the entries up
    /// to it are re-applied once the active commits again). A value that is stored never
    /// runs ahead of the entries it names: they were queued first, so they are in the same
    /// transaction or an earlier one.
    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.queue_hint("save the committed log id", move |connection| {
            write_meta(connection, COMMITTED_KEY, committed.as_ref())
        })
        .await
    }

    /// Waits for every write queued before it (a committed log id among them), then reads.
    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.change("wait for the queued writes", |_| Ok(()))
            .await?;
        self.reader
            .run("read the committed log id", |connection| {
                read_meta(connection, COMMITTED_KEY)
            })
            .await
    }

    /// Makes `entries` readable at once and hands them to the writer thread, which reports
    /// to `callback` once they are fsynced.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.recent.appended(&entries);
        let write = Write::Append {
            entries,
            encoded_bytes: Vec::new(),
            callback,
        };
        self.send(write, "append entries").await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let operation = match &last_log_id {
            Some(log_id) => format!("delete the entries after index {}", log_id.index()),
            None => "delete every entry".to_string(),
        };
        let first_deleted = last_log_id.map_or(0, |log_id| log_id.index() + 1);
        self.recent.remove_from(first_deleted);
        self.change(operation, move |connection| {
            connection.execute(
                "DELETE FROM log WHERE log_index >= ?1",
                [sql_index(first_deleted)?],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the purge and returns once it is fsynced; the writer deletes the entries
    /// afterwards, step by step (see the module documentation).
    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let operation = format!("purge the entries up to index {}", log_id.index());
        self.recent.remove_up_to(log_id.index());
        self.purged.purged_through(log_id.index());
        self.write_and_wait(operation, |done| Write::Purge { log_id, done })
            .await
    }
}

impl LogReader {
    /// The encoded bytes of the entries in the file after `index` (SQLite reads their
    /// lengths without reading the entries).
    pub async fn stored_bytes_after(&self, index: u64) -> io::Result<u64> {
        let operation = format!("measure the entries after index {index}");
        self.database
            .run(operation, move |connection| {
                let bytes: i64 = connection.query_row(
                    "SELECT coalesce(sum(length(entry)), 0) FROM log WHERE log_index > ?1",
                    [sql_index(index)?],
                    |row| row.get(0),
                )?;
                Ok(u64::try_from(bytes).unwrap_or(0))
            })
            .await
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    /// Returns the entries of `range` that the log holds, in order. A gap between two of them
    /// (which a correct log never has) is an error, not a short answer.
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> io::Result<Vec<Entry>>
    where
        RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend,
    {
        let operation = format!("read the entries {range:?}");
        let Some((first_index, last_index)) = sql_bounds(&range) else {
            return Ok(Vec::new());
        };
        let first_kept = i64::try_from(self.purged.get()).unwrap_or(i64::MAX);
        let first_index = first_index.max(first_kept);
        if first_index > last_index {
            return Ok(Vec::new());
        }
        // Memory first: an entry flushed (and dropped from memory) after this look is in the
        // file by the next one.
        let held = self.recent.range(first_index as u64, last_index as u64);
        if held.len() as u64 == (last_index - first_index) as u64 + 1 {
            return Ok(held.into_values().collect());
        }
        self.database
            .run(operation, move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT log_index, entry FROM log
                     WHERE log_index BETWEEN ?1 AND ?2 ORDER BY log_index",
                )?;
                let mut rows = statement.query([first_index, last_index])?;
                let mut stored: BTreeMap<u64, Entry> = BTreeMap::new();
                while let Some(row) = rows.next()? {
                    let row_index = row.get::<_, i64>(0)? as u64;
                    let bytes = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                    stored.insert(row_index, decode(bytes)?);
                }
                stored.extend(held);
                let mut entries: Vec<Entry> = Vec::with_capacity(stored.len());
                for (row_index, entry) in stored {
                    let expected_index = entries.last().map(|previous| previous.index() + 1);
                    let follows = expected_index.is_none_or(|expected| expected == row_index);
                    if entry.index() != row_index || !follows {
                        return Err(invalid_data(format!(
                            "row {row_index} holds entry {} after entry {expected_index:?}",
                            entry.index()
                        )));
                    }
                    entries.push(entry);
                }
                Ok(entries)
            })
            .await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.database
            .run("read the vote", |connection| {
                read_meta(connection, VOTE_KEY)
            })
            .await
    }
}

impl Write {
    fn is_hint(&self) -> bool {
        matches!(self, Write::Hint { .. })
    }
}

/// The writer thread (or task): owns the write connection.
struct Writer {
    path: PathBuf,
    connection: Connection,
    recent: Arc<RecentEntries>,
    growth: LogGrowth,
    /// The last purged index, while the file still holds entries up to it.
    deleting_through: Option<u64>,
    /// Why a transaction of writes failed, once one has: every later write is refused.
    failed: Option<String>,
}

/// What the writer does next.
enum NextWork {
    Write(Write),
    /// No write is waiting: delete a step of purged entries.
    DeletePurged,
    /// The store is dropped.
    Stop,
}

impl Writer {
    /// The writer thread: [`Writer::write_waiting`] for each write it blocks for, and steps
    /// of a purge while none waits, until the store is dropped.
    fn run(mut self, mut queue: mpsc::Receiver<Write>) {
        loop {
            let next = match self.next_without_waiting(&mut queue) {
                Some(next) => next,
                None => queue
                    .blocking_recv()
                    .map_or(NextWork::Stop, NextWork::Write),
            };
            if self.work(next, &mut queue).is_break() {
                return;
            }
        }
    }

    /// The writer as a task ([`Execution::Inline`]): the same as [`Writer::run`], awaiting the
    /// queue instead of blocking on it, and letting the runtime's other tasks run between
    /// steps of a purge.
    async fn run_inline(mut self, mut queue: mpsc::Receiver<Write>) {
        loop {
            let next = match self.next_without_waiting(&mut queue) {
                Some(next) => next,
                None => queue.recv().await.map_or(NextWork::Stop, NextWork::Write),
            };
            let deleted_a_step = matches!(next, NextWork::DeletePurged);
            if self.work(next, &mut queue).is_break() {
                return;
            }
            if deleted_a_step {
                tokio::task::yield_now().await;
            }
        }
    }

    /// While purged entries remain to be deleted: the next write if one waits, else a step of
    /// the purge. `None` when there is nothing to do but wait for a write (or the file has
    /// failed: it is not touched again).
    fn next_without_waiting(&self, queue: &mut mpsc::Receiver<Write>) -> Option<NextWork> {
        if self.failed.is_some() {
            return None;
        }
        self.deleting_through?;
        Some(match queue.try_recv() {
            Ok(write) => NextWork::Write(write),
            Err(mpsc::error::TryRecvError::Empty) => NextWork::DeletePurged,
            Err(mpsc::error::TryRecvError::Disconnected) => NextWork::Stop,
        })
    }

    fn work(&mut self, next: NextWork, queue: &mut mpsc::Receiver<Write>) -> ControlFlow<()> {
        match next {
            NextWork::Write(first) => self.write_waiting(first, queue),
            NextWork::DeletePurged => self.delete_purged_step_alone(),
            NextWork::Stop => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// One step of a purge in a transaction of its own. A failure is reported and the rest
    /// left for the next purge or the next start; it loses nothing, so writes go on.
    fn delete_purged_step_alone(&mut self) {
        let Some(through) = self.deleting_through else {
            return;
        };
        let stepped = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Failure::from)
            .and_then(|transaction| {
                let more = delete_purged_step(&transaction, through)?;
                transaction.commit()?;
                Ok(more)
            });
        match stepped {
            Ok(more) => self.deleting_through = more.then_some(through),
            Err(failure) => {
                eprintln!(
                    "tandem: {}",
                    purge_step_failed(&self.path, through, failure)
                );
                self.deleting_through = None;
            }
        }
    }

    /// Takes `first` and every write waiting behind it, applies them in order in one
    /// transaction, fsyncs once, then reports each.
    ///
    /// Once a transaction has failed (a full disk, an I/O error), every later write is
    /// refused without touching the file. openraft stops at the first error it is told of,
    /// but appends it had already queued would otherwise still be written: the file would
    /// hold entries after the missing ones, and their flush would tell openraft that the
    /// missing ones were durable too.
    fn write_waiting(&mut self, first: Write, queue: &mut mpsc::Receiver<Write>) {
        let mut writes = vec![first];
        while writes.len() < limits::RAFT_LOG_WRITE_QUEUE_CAPACITY {
            let Ok(next) = queue.try_recv() else {
                break;
            };
            writes.push(next);
        }
        let result = match &self.failed {
            Some(cause) => Err(refused_after_failure(&self.path, cause)),
            None => self.write_all(&mut writes),
        };
        if let Err(error) = &result {
            self.failed.get_or_insert_with(|| error.to_string());
        }
        self.report(writes, result);
    }

    /// Applies `writes` in order in one transaction, after a step of a purge if one is under
    /// way; a failure rolls all of them back. The commit is fsynced unless every write is a
    /// [`Write::Hint`].
    fn write_all(&mut self, writes: &mut [Write]) -> io::Result<()> {
        if !writes.iter().all(Write::is_hint) {
            return self.write_in_one_transaction(writes);
        }
        self.set_synchronous("NORMAL")?;
        let written = self.write_in_one_transaction(writes);
        self.set_synchronous("FULL")?;
        written
    }

    /// SQLite's `synchronous` level for the next commits: `FULL` fsyncs the WAL at every
    /// commit, `NORMAL` only at checkpoints.
    fn set_synchronous(&self, level: &str) -> io::Result<()> {
        self.connection
            .pragma_update(None, "synchronous", level)
            .map_err(|error| describe(&self.path, "set the flush level", error.into()))
    }

    fn write_in_one_transaction(&mut self, writes: &mut [Write]) -> io::Result<()> {
        // Immediate: the write lock is taken (or waited for) first. A deferred transaction
        // that reads (a purge step) and then writes fails at once, without waiting, when
        // another connection committed in between: the writer of this log just dropped in
        // this process, finishing a step of its own.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| describe(&self.path, "begin a transaction", error.into()))?;
        let deleting_after = match self.deleting_through {
            Some(through) => {
                let more = delete_purged_step(&transaction, through)
                    .map_err(|failure| purge_step_failed(&self.path, through, failure))?;
                more.then_some(through)
            }
            None => None,
        };
        for write in writes.iter_mut() {
            match write {
                Write::Append {
                    entries,
                    encoded_bytes,
                    ..
                } => {
                    *encoded_bytes = insert_entries(&transaction, entries)
                        .map_err(|failure| describe(&self.path, &appending(entries), failure))?;
                }
                Write::Change {
                    operation, change, ..
                }
                | Write::Hint { operation, change } => {
                    if let Some(change) = change.take() {
                        change(&transaction)
                            .map_err(|failure| describe(&self.path, operation, failure))?;
                    }
                }
                Write::Purge { log_id, .. } => {
                    write_meta(&transaction, LAST_PURGED_KEY, Some(&*log_id)).map_err(
                        |failure| describe(&self.path, "record the last purged log id", failure),
                    )?;
                }
            }
        }
        transaction
            .commit()
            .map_err(|error| describe(&self.path, "commit", error.into()))?;
        self.deleting_through = deleting_after;
        Ok(())
    }

    fn report(&mut self, writes: Vec<Write>, result: io::Result<()>) {
        for write in writes {
            match write {
                Write::Append {
                    entries,
                    encoded_bytes,
                    callback,
                } => {
                    match &result {
                        Ok(()) => {
                            self.growth.add(encoded_bytes.iter().sum());
                            self.recent.flushed(&entries, &encoded_bytes);
                        }
                        Err(_) => self.recent.failed(&entries),
                    }
                    callback.io_completed(copy_result(&result));
                }
                Write::Change { done, .. } => {
                    let _ = done.send(copy_result(&result));
                }
                Write::Hint { .. } => {}
                Write::Purge { log_id, done } => {
                    if result.is_ok() {
                        let through = self.deleting_through.unwrap_or(0).max(log_id.index());
                        self.deleting_through = Some(through);
                    }
                    let _ = done.send(copy_result(&result));
                }
            }
        }
    }
}

/// Deletes the oldest entries up to `through` still in the file: at most
/// [`limits::RAFT_LOG_PURGE_STEP_BYTES`] of them (SQLite reads their lengths without reading
/// them), and at least one. Answers whether any may remain.
fn delete_purged_step(connection: &Connection, through: u64) -> Result<bool, Failure> {
    // `+?2`: with a bare `LIMIT ?2`, SQLite compiles the statement again each time it runs.
    let mut statement = connection.prepare_cached(
        "SELECT log_index, length(entry) FROM log WHERE log_index <= ?1 \
         ORDER BY log_index LIMIT +?2",
    )?;
    let step_entries = i64::try_from(limits::RAFT_LOG_PURGE_STEP_ENTRIES).unwrap_or(i64::MAX);
    let mut rows = statement.query((sql_index(through)?, step_entries))?;
    let mut last_deleted = None;
    let mut bytes: u64 = 0;
    while let Some(row) = rows.next()? {
        last_deleted = Some(row.get::<_, i64>(0)?);
        bytes += u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        if bytes >= limits::RAFT_LOG_PURGE_STEP_BYTES {
            break;
        }
    }
    drop(rows);
    let Some(last_deleted) = last_deleted else {
        return Ok(false);
    };
    connection.execute("DELETE FROM log WHERE log_index <= ?1", [last_deleted])?;
    Ok(last_deleted < sql_index(through)?)
}

fn purge_step_failed(path: &Path, through: u64, failure: Failure) -> io::Error {
    let operation = format!("delete the entries purged up to index {through}");
    describe(path, &operation, failure)
}

fn appending(entries: &[Entry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => format!("append entries {}..={}", first.index(), last.index()),
        _ => "append no entries".to_string(),
    }
}

fn refused_after_failure(path: &Path, cause: &str) -> io::Error {
    io::Error::other(format!(
        "raft log {}: refusing the write: an earlier one failed ({cause}); restart the node \
         to write again",
        path.display()
    ))
}

fn copy_result(result: &io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
    }
}

fn stopped_writer(path: &Path, operation: &str) -> io::Error {
    io::Error::other(format!(
        "raft log {}: cannot {operation}: the writer has stopped",
        path.display()
    ))
}

impl Database {
    /// Runs `work` on a blocking thread and awaits it ([`Execution::Threads`]), or runs it in
    /// place ([`Execution::Inline`]).
    async fn run<T, W>(self: &Arc<Self>, operation: impl Into<String>, work: W) -> io::Result<T>
    where
        T: Send + 'static,
        W: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        let operation = operation.into();
        let database = Arc::clone(self);
        self.execution
            .run_blocking(move || database.locked(&operation, work))
            .await
            .map_err(|error| io::Error::other(format!("raft log task failed: {error}")))?
    }

    /// Runs `work` on this thread with the connection locked; errors name the file and
    /// `operation`.
    fn locked<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&mut Connection) -> Result<T, Failure>,
    ) -> io::Result<T> {
        let mut connection = self.connection.lock().map_err(|_| {
            let cause = io::Error::other("an earlier operation panicked while holding the file");
            describe(&self.path, operation, Failure::Io(cause))
        })?;
        work(&mut connection).map_err(|failure| describe(&self.path, operation, failure))
    }
}

/// Stores `entries`; answers each one's encoded size.
fn insert_entries(connection: &Connection, entries: &[Entry]) -> Result<Vec<usize>, Failure> {
    let mut statement = connection
        .prepare_cached("INSERT OR REPLACE INTO log (log_index, entry) VALUES (?1, ?2)")?;
    let mut encoded_bytes = Vec::with_capacity(entries.len());
    for entry in entries {
        let encoded = encode(entry)?;
        encoded_bytes.push(encoded.len());
        statement.execute((sql_index(entry.index())?, encoded))?;
    }
    Ok(encoded_bytes)
}

fn read_meta<T: DeserializeOwned>(
    connection: &Connection,
    key: &str,
) -> Result<Option<T>, Failure> {
    let bytes: Option<Vec<u8>> = connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(bytes.map(|bytes| decode(&bytes)).transpose()?)
}

/// Stores `value` under `key`, or removes the key when `value` is `None`.
fn write_meta<T: Serialize>(
    connection: &Connection,
    key: &str,
    value: Option<&T>,
) -> Result<(), Failure> {
    match value {
        Some(value) => connection.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            (key, encode(value)?),
        )?,
        None => connection.execute("DELETE FROM meta WHERE key = ?1", [key])?,
    };
    Ok(())
}

/// A log index as an SQLite integer.
fn sql_index(index: u64) -> Result<i64, Failure> {
    i64::try_from(index).map_err(|_| {
        Failure::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log index {index} is beyond SQLite's integer range"),
        ))
    })
}

/// The first and last index of `range` as SQLite integers, or `None` when it is empty.
fn sql_bounds(range: &impl RangeBounds<u64>) -> Option<(i64, i64)> {
    let first = match range.start_bound() {
        Bound::Included(&index) => index,
        Bound::Excluded(&index) => index.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let last = match range.end_bound() {
        Bound::Included(&index) => index,
        Bound::Excluded(&index) => index.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    let first = i64::try_from(first).ok()?;
    let last = i64::try_from(last).unwrap_or(i64::MAX);
    (first <= last).then_some((first, last))
}

fn invalid_data(message: String) -> Failure {
    Failure::Io(io::Error::new(io::ErrorKind::InvalidData, message))
}

fn describe(path: &Path, operation: &str, failure: Failure) -> io::Error {
    let (kind, cause) = match failure {
        Failure::Sqlite(error) => (io::ErrorKind::Other, error.to_string()),
        Failure::Io(error) => (error.kind(), error.to_string()),
    };
    io::Error::new(
        kind,
        format!("raft log {}: cannot {operation}: {cause}", path.display()),
    )
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Failure {
        Failure::Sqlite(error)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Io(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_in(directory: &Path) -> Writer {
        let path = directory.join(LOG_DATABASE_FILE);
        let mut connection = Connection::open(&path).expect("open the log file");
        create_or_check_schema(&mut connection).unwrap_or_else(|_| panic!("the log's schema"));
        Writer {
            path,
            connection,
            recent: Arc::new(RecentEntries::with_budget(0)),
            growth: LogGrowth::default(),
            deleting_through: None,
            failed: None,
        }
    }

    /// A change that records the `synchronous` level its transaction commits with.
    fn recording_level(levels: &Arc<Mutex<Vec<i64>>>) -> Option<ChangeFn> {
        let levels = Arc::clone(levels);
        Some(Box::new(move |connection: &Connection| {
            let level = connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
            levels.lock().unwrap().push(level);
            Ok(())
        }))
    }

    fn hint(levels: &Arc<Mutex<Vec<i64>>>) -> Write {
        Write::Hint {
            operation: "record".into(),
            change: recording_level(levels),
        }
    }

    fn change(levels: &Arc<Mutex<Vec<i64>>>) -> Write {
        Write::Change {
            operation: "record".into(),
            change: recording_level(levels),
            done: oneshot::channel().0,
        }
    }

    /// SQLite's levels: `NORMAL` syncs the WAL only at checkpoints, `FULL` at every commit.
    const NORMAL: i64 = 1;
    const FULL: i64 = 2;

    /// Hints alone skip the fsync; with anything else, and for every round after them, the
    /// commit is fsynced.
    #[test]
    fn only_a_transaction_of_hints_alone_commits_without_an_fsync() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut writer = writer_in(directory.path());
        let levels = Arc::new(Mutex::new(Vec::new()));
        writer
            .write_all(&mut [hint(&levels), hint(&levels)])
            .expect("hints written");
        writer
            .write_all(&mut [hint(&levels), change(&levels)])
            .expect("a hint and a change written");
        writer
            .write_all(&mut [change(&levels)])
            .expect("a change written");
        assert_eq!(*levels.lock().unwrap(), [NORMAL, NORMAL, FULL, FULL, FULL]);
    }
}
