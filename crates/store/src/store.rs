//! A node's store: opens (or creates) the data directory, takes its lock, starts the group
//! committer, and hands out cheap handles for executing commands and reading.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tandem_core::error::{Error, Result};
use tandem_core::settings::Settings;
use tandem_core::{Command, Outcome};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::catalog::{Catalog, CatalogCell};
use crate::committer::{Committer, Request};
use crate::loader::load_machine;
use crate::metrics::StoreMetrics;
use crate::reader::{InstanceQuery, MessageHistory, Reader};
use crate::schema;

/// The lock file that keeps two nodes off one data directory.
pub const LOCK_FILE: &str = "node.lock";

pub struct Store {
    handle: StoreHandle,
    committer: Option<JoinHandle<()>>,
    _lock: File,
}

/// Cheap to clone; every server task holds one.
#[derive(Clone)]
pub struct StoreHandle {
    requests: mpsc::Sender<Request>,
    catalog: Arc<CatalogCell>,
    reader: Arc<Mutex<Reader>>,
    metrics: Arc<StoreMetrics>,
    data_dir: PathBuf,
}

impl Store {
    /// Opens the store in `data_dir` (created if missing) and applies `settings` if they
    /// differ from the stored ones.
    pub fn open(data_dir: &Path, settings: Settings) -> std::result::Result<Store, StoreError> {
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
        let metrics = Arc::new(StoreMetrics::default());
        let (requests, receiver) = mpsc::channel(tandem_core::limits::COMMIT_QUEUE_CAPACITY);
        let committer = Committer {
            connection,
            machine,
            catalog: catalog.clone(),
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tandem-committer".into())
            .spawn(move || committer.run(receiver))
            .map_err(|error| StoreError::io("cannot start the committer thread".into(), error))?;
        let handle = StoreHandle {
            requests,
            catalog,
            reader: Arc::new(Mutex::new(Reader::open(&database)?)),
            metrics,
            data_dir: data_dir.to_path_buf(),
        };
        let store = Store {
            handle,
            committer: Some(thread),
            _lock: lock,
        };
        store.apply_settings(settings)?;
        Ok(store)
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Finishes the commands already queued, then stops the committer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.committer.take() {
            let requests = &self.handle.requests;
            outside_runtime(|| {
                let _ = requests.blocking_send(Request::Stop);
            });
            let _ = thread.join();
        }
    }

    fn apply_settings(&self, settings: Settings) -> std::result::Result<(), StoreError> {
        if self.handle.catalog().state.settings == settings {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let requests = &self.handle.requests;
        outside_runtime(move || {
            requests
                .blocking_send(Request::Execute {
                    command: Command::Configure(settings),
                    reply,
                })
                .map_err(|_| StoreError::Stopped)?;
            match answer.blocking_recv() {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(StoreError::Settings(error.message)),
                Err(_) => Err(StoreError::Stopped),
            }
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

impl StoreHandle {
    /// Applies a command durably: the answer comes after its batch is committed and fsynced.
    pub async fn execute(&self, command: Command) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Execute { command, reply })
            .await
            .map_err(|_| Error::unavailable("the node is shutting down"))?;
        answer
            .await
            .map_err(|_| Error::unavailable("the node is shutting down"))?
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

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Reader) -> std::result::Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let reader = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&reader)
        })
        .await
        .map_err(|_| Error::unavailable("a read query panicked"))?
        .map_err(|error| Error::unavailable(format!("read failed: {error}")))
    }
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
