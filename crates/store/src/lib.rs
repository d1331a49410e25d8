//! # Tandem store
//!
//! Durability on one node: the MessageBox's tables in SQLite (WAL), group commit (many
//! batches per transaction), snapshots, the on-disk format version,
//! read queries for operators, and an integrity check.
//!
//! # Layout
//!
//! - [`schema`]: pragmas, tables, indexes, format version.
//! - [`sqlite_tables`]: core's `Tables` trait on a SQLite transaction.
//! - [`context_codec`]: the binary encoding of a stored message's context.
//! - [`loader`]: rebuilds the state machine from disk.
//! - [`batch`]: what the committer applies: stamped commands and their log position.
//! - [`committer`]: group commit: the committer thread (or task, see [`execution`]).
//! - [`commit_progress`]: which transactions answered early, so that reads wait for them.
//! - [`checkpointer`]: WAL checkpoints on a thread of their own, off the commit path.
//! - [`execution`]: where storage work runs: OS threads, or inline on the calling runtime.
//! - [`free_space`]: the free space of the filesystem holding the node's files.
//! - [`position`]: the replicated log position applied so far.
//! - [`snapshot`]: consistent copies of the store, written and restored.
//! - [`gradual_flush`]: a snapshot written out to disk as it grows, not in one burst.
//! - [`btree_kinds`]: every b-tree page of a received snapshot checked to be of its kind.
//! - [`catalog`]: the read-only catalog view the committer publishes.
//! - [`reader`]: operator queries on a separate read connection.
//! - [`store`]: opening a data directory, its lock, and the handle servers use.
//! - [`integrity`]: SQLite's and Tandem's own consistency checks.
//! - [`metrics`]: commit counters.

pub mod batch;
pub mod btree_kinds;
pub mod catalog;
pub mod checkpointer;
pub mod commit_progress;
pub mod committer;
pub mod context_codec;
pub mod execution;
pub mod free_space;
pub mod gradual_flush;
pub mod integrity;
pub mod loader;
pub mod metrics;
pub mod position;
pub mod reader;
pub mod schema;
pub mod snapshot;
pub mod sqlite_tables;
pub mod store;

pub use batch::{Batch, ClusterEvent};
pub use catalog::Catalog;
pub use committer::BatchResult;
pub use execution::Execution;
pub use reader::{InstanceQuery, MessageHistory};
pub use store::{Store, StoreHandle};

use std::path::PathBuf;

/// Why a store could not be opened or read.
#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Another node process holds the data directory.
    Locked(PathBuf),
    /// There is no store where one was expected.
    Missing(PathBuf),
    /// Written by another format version or not by Tandem.
    Format(String),
    /// The data does not make sense.
    Corrupt(String),
    /// The configured settings are not valid.
    Settings(String),
    /// A write failed and was rolled back.
    Failed(String),
    Stopped,
}

impl StoreError {
    pub fn io(context: String, source: std::io::Error) -> StoreError {
        StoreError::Io { context, source }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(error) => write!(formatter, "SQLite: {error}"),
            StoreError::Io { context, source } => write!(formatter, "{context}: {source}"),
            StoreError::Locked(dir) => write!(
                formatter,
                "data directory {} is in use by another tandem node (lock file {} is held)",
                dir.display(),
                store::LOCK_FILE
            ),
            StoreError::Missing(path) => {
                write!(
                    formatter,
                    "no Tandem store here: {} does not exist",
                    path.display()
                )
            }
            StoreError::Format(reason) => write!(formatter, "unsupported data format: {reason}"),
            StoreError::Corrupt(reason) => write!(formatter, "corrupt store: {reason}"),
            StoreError::Settings(reason) => write!(formatter, "invalid settings: {reason}"),
            StoreError::Failed(reason) => write!(formatter, "write failed, rolled back: {reason}"),
            StoreError::Stopped => write!(formatter, "the store has stopped"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(error)
    }
}
