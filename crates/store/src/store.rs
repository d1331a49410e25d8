//! A node's store: opens (or creates) the data directory, takes its lock, starts the group
//! committer, and hands out cheap handles for applying batches, snapshots and reading.
//!
//! With [`Execution::Threads`] the committer is a thread and the store holds the directory
//! lock; reads and snapshot writes run on tokio's blocking pool. With [`Execution::Inline`] the
//! committer is a task on the runtime that opened the store and holds the directory lock
//! itself, so that dropping that runtime (a simulated crash) releases the connection and the
//! lock; reads and snapshot writes run in place.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tandem_core::error::{Error, Result};
use tandem_core::{Command, Outcome};
use tokio::sync::{mpsc, oneshot};

use crate::batch::{Batch, ClusterEvent};
use crate::catalog::{Catalog, CatalogCell};
use crate::checkpointer::{BackstopHold, Checkpointer};
use crate::commit_progress::{CommitWatch, commit_progress};
use crate::committer::{BatchResult, Committer, Request};
use crate::execution::Execution;
use crate::loader::load_machine;
use crate::metrics::StoreMetrics;
use crate::position::PositionCell;
use crate::reader::{InstanceQuery, MessageHistory, Reader};
use crate::{StoreError, schema, snapshot};

/// The lock file that keeps two nodes off one data directory.
pub const LOCK_FILE: &str = "node.lock";

pub struct Store {
    handle: StoreHandle,
    committer: Option<Running>,
}

/// The running committer, and who holds the data directory's lock.
enum Running {
    /// [`Execution::Threads`]: the committer thread; the store holds the lock until the thread
    /// has stopped.
    Thread { thread: JoinHandle<()>, lock: File },
    /// [`Execution::Inline`]: the committer task, which holds the lock itself. Sending on (or
    /// dropping) `stop` ends it once no request is waiting.
    Task {
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    },
}

/// Cheap to clone; every server task holds one.
#[derive(Clone)]
pub struct StoreHandle {
    requests: mpsc::Sender<Request>,
    catalog: Arc<CatalogCell>,
    position: Arc<PositionCell>,
    reader: Arc<Mutex<Reader>>,
    /// What reads wait for: transactions that answered callers before committing.
    commits: CommitWatch,
    metrics: Arc<StoreMetrics>,
    data_dir: PathBuf,
    execution: Execution,
    /// Held while a snapshot is written, so that the committer leaves the checkpoint its
    /// read held back to the checkpoint thread (`None` without one).
    backstop_hold: Option<Arc<BackstopHold>>,
}

impl Store {
    /// Opens the store in `data_dir` (created if missing), with a committer thread
    /// ([`Execution::Threads`]).
    pub fn open(data_dir: &Path) -> std::result::Result<Store, StoreError> {
        Store::open_with(data_dir, Execution::Threads)
    }

    /// Opens the store in `data_dir` (created if missing) to run as `execution` says.
    /// [`Execution::Inline`] needs to be called inside the tokio runtime that will run the
    /// committer task.
    pub fn open_with(
        data_dir: &Path,
        execution: Execution,
    ) -> std::result::Result<Store, StoreError> {
        let runtime = match execution {
            Execution::Threads => None,
            Execution::Inline => Some(tokio::runtime::Handle::try_current().map_err(|error| {
                StoreError::io(
                    "inline execution needs a tokio runtime to run the committer".into(),
                    std::io::Error::other(error),
                )
            })?),
        };
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::io(format!("cannot create {}", data_dir.display()), error)
        })?;
        let lock = lock_data_dir(data_dir)?;
        let database = data_dir.join(schema::DATABASE_FILE);
        let mut connection = Connection::open(&database)?;
        schema::configure(&connection)?;
        connection
            .set_prepared_statement_cache_capacity(crate::sqlite_tables::STATEMENT_CACHE_CAPACITY);
        schema::create_or_check(&mut connection)?;
        let machine = load_machine(&connection)?;
        let catalog = Arc::new(CatalogCell::new(Catalog::from_machine(&machine, None)));
        let position = Arc::new(PositionCell::new(snapshot::read_position(&connection)?));
        let metrics = Arc::new(StoreMetrics::default());
        let (progress, commits) = commit_progress();
        let (requests, receiver) = mpsc::channel(tandem_core::limits::COMMIT_QUEUE_CAPACITY);
        let committer = Committer {
            connection,
            machine,
            catalog: catalog.clone(),
            position: position.clone(),
            metrics: metrics.clone(),
            halted: None,
            progress,
            transactions: 0,
            checkpointer: match execution {
                Execution::Threads => Some(Checkpointer::start(&database)?),
                Execution::Inline => None,
            },
            backstop_on: true,
        };
        let backstop_hold = committer
            .checkpointer
            .as_ref()
            .map(|checkpointer| checkpointer.hold().clone());
        let handle = StoreHandle {
            requests,
            catalog,
            position,
            reader: Arc::new(Mutex::new(Reader::open(&database)?)),
            commits,
            metrics,
            data_dir: data_dir.to_path_buf(),
            execution,
            backstop_hold,
        };
        let running = match runtime {
            None => {
                let thread = std::thread::Builder::new()
                    .name("tandem-committer".into())
                    .spawn(move || committer.run(receiver))
                    .map_err(|error| {
                        StoreError::io("cannot start the committer thread".into(), error)
                    })?;
                Running::Thread { thread, lock }
            }
            Some(runtime) => {
                let (stop, stopped) = oneshot::channel();
                let task = runtime.spawn(async move {
                    committer.run_inline(receiver, stopped).await;
                    drop(lock);
                });
                Running::Task { stop, task }
            }
        };
        Ok(Store {
            handle,
            committer: Some(running),
        })
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Finishes the commands already queued, then stops the committer. A committer thread
    /// is waited for; a committer task ([`Execution::Inline`]) is only told to stop, and
    /// releases the connection and the directory lock when it next runs (or when its runtime
    /// is dropped): [`Store::shutdown`] waits for that.
    pub fn close(mut self) {
        self.stop();
    }

    /// Like [`Store::close`], but also waits for a committer task to end, so that the data
    /// directory can be opened again on the same runtime once this returns. (A committer
    /// thread is waited for in place, blocking the caller as `close` does.)
    pub async fn shutdown(mut self) {
        if let Some(Running::Task { stop, task }) = self.committer.take() {
            let _ = stop.send(());
            let _ = task.await;
        } else {
            self.stop();
        }
    }

    fn stop(&mut self) {
        match self.committer.take() {
            Some(Running::Thread { thread, lock }) => {
                let requests = &self.handle.requests;
                outside_runtime(|| {
                    let _ = requests.blocking_send(Request::Stop);
                });
                let _ = thread.join();
                drop(lock);
            }
            Some(Running::Task { stop, .. }) => {
                let _ = stop.send(());
            }
            None => {}
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

impl StoreHandle {
    /// Applies a batch: the answer comes once it is applied if it carries a log position,
    /// else once its transaction has committed (see [`crate::committer`]). Concurrent
    /// batches share one transaction (group commit).
    pub async fn apply(&self, batch: Batch) -> BatchResult {
        self.submit(batch).await?.await
    }

    /// Queues a batch and returns at once with the future of its answer: batches submitted
    /// one after the other are applied in exactly that order (a replicated log needs this),
    /// and still share transactions.
    pub async fn submit(
        &self,
        batch: Batch,
    ) -> std::result::Result<impl Future<Output = BatchResult> + use<>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Apply { batch, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        Ok(async move { answer.await.map_err(|_| StoreError::Stopped)? })
    }

    /// Applies one command at this node's clock, outside any replicated log (tools and
    /// tests that use a store on its own).
    pub async fn execute(&self, command: Command) -> Result<Outcome> {
        let batch = Batch::local(command, wall_clock_ms());
        match self.apply(batch).await {
            Ok(mut outcomes) => outcomes
                .pop()
                .unwrap_or_else(|| Err(Error::unavailable("the store answered nothing"))),
            Err(error) => Err(Error::unavailable(format!(
                "the node could not write to its store ({error}); nothing was acknowledged, \
                 retrying is safe"
            ))),
        }
    }

    /// The replicated log position of the last committed batch that carried one (batches
    /// answered early may be ahead of it until [`StoreHandle::settled`]).
    pub fn position(&self) -> Option<Vec<u8>> {
        self.position.get()
    }

    /// Writes a consistent copy of the store to `target` and returns its log position. The
    /// copy covers at least every batch answered before the call.
    pub async fn write_snapshot(
        &self,
        target: PathBuf,
    ) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        self.settled().await;
        let database = self.data_dir.join(schema::DATABASE_FILE);
        let _held = self.backstop_hold.as_deref().map(SnapshotReading::start);
        self.execution
            .run_blocking(move || snapshot::write(&database, &target))
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    /// Replaces the whole store by the snapshot at `path`, between two batches.
    pub async fn install_snapshot(&self, path: PathBuf) -> std::result::Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::InstallSnapshot { path, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current()
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where this store's blocking work runs; file work that goes with it (its snapshot
    /// files) runs there too.
    pub fn execution(&self) -> Execution {
        self.execution
    }

    pub async fn instances(
        &self,
        query: InstanceQuery,
    ) -> Result<Vec<tandem_core::instance::Instance>> {
        self.read(move |reader| reader.instances(&query)).await
    }

    pub async fn message_history(&self, message_id: String) -> Result<MessageHistory> {
        self.read(move |reader| reader.message_history(&message_id))
            .await
    }

    pub async fn message_body(&self, message_id: String) -> Result<Option<Vec<u8>>> {
        self.read(move |reader| reader.message_body(&message_id))
            .await
    }

    /// When each of `message_ids` was last published, as dedupe sees it.
    pub async fn last_published_at(&self, message_ids: Vec<String>) -> Result<Vec<Option<i64>>> {
        self.read(move |reader| reader.last_published_at(&message_ids))
            .await
    }

    /// The bytes a snapshot of the store would copy now (its pages in use).
    pub async fn used_bytes(&self) -> Result<u64> {
        self.read(|reader| reader.used_bytes()).await
    }

    /// The latest replica-set events, newest last.
    pub async fn cluster_events(&self, limit: usize) -> Result<Vec<ClusterEvent>> {
        self.read(move |reader| reader.cluster_events(limit)).await
    }

    /// Waits until every transaction that has answered a caller has finished (committed, or
    /// failed and been rolled back): then [`StoreHandle::position`] and the read queries
    /// cover everything answered so far.
    pub async fn settled(&self) {
        self.commits.settled().await;
    }

    /// Runs `query` on the read connection once [`StoreHandle::settled`]: a read never misses
    /// what a caller was already told.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Reader) -> std::result::Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        self.settled().await;
        let reader = self.reader.clone();
        let answer = self
            .execution
            .run_blocking(move || query(&lock_reader(&reader)))
            .await
            .map_err(|_| Error::unavailable("a read query panicked"))?;
        answer.map_err(|error| Error::unavailable(format!("read failed: {error}")))
    }
}

/// A snapshot being read, for the backstop's hold: ends when dropped, however the write
/// ends.
struct SnapshotReading<'a>(&'a BackstopHold);

impl SnapshotReading<'_> {
    fn start(hold: &BackstopHold) -> SnapshotReading<'_> {
        hold.snapshot_started();
        SnapshotReading(hold)
    }
}

impl Drop for SnapshotReading<'_> {
    fn drop(&mut self) {
        self.0.snapshot_ended();
    }
}

fn lock_reader(reader: &Mutex<Reader>) -> std::sync::MutexGuard<'_, Reader> {
    reader
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tokio's blocking channel calls panic inside a runtime, and open, close and drop may
/// well run there (a server's async main): there they block on a helper thread instead.
fn outside_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(work)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// This node's clock in ms since the epoch, for batches applied outside a replicated log.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn lock_data_dir(data_dir: &Path) -> std::result::Result<File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| StoreError::io(format!("cannot open {}", path.display()), error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(error)) => Err(StoreError::io(
            format!("cannot lock {}", path.display()),
            error,
        )),
    }
}
