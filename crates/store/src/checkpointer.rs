//! [`Checkpointer`]: copies the WAL into the database file on a thread of its own, so that
//! the committer seldom pays for it.
//!
//! A WAL checkpoint fsyncs the WAL, copies its newest frame of every page into the database
//! file and fsyncs that. Run inline by the committer (SQLite's automatic checkpoint), the
//! committer sat blocked in those fsyncs for about 8 % of a consuming load and nothing was
//! committed meanwhile. The committer now nudges this thread after every commit; at most every
//! [`CHECKPOINT_INTERVAL`] it runs a passive checkpoint on its own connection, which copies
//! what is there without blocking the committer. The committer's automatic checkpoint stays
//! as the backstop: when the WAL still reaches its limit (this thread is behind, or a long
//! snapshot read held it back), the committer finishes the little that is left, and a
//! checkpoint that has copied everything lets the next transaction start the WAL over.
//!
//! Only [`crate::Execution::Threads`] runs one; inline execution stays on one thread.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// The shortest time between two checkpoints. The committer commits up to about a hundred
/// times a second; checkpointing after each commit would fsync the database as often and
/// contend with the Raft log's fsyncs on the same disk.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// The checkpoint thread; stops (and is waited for) when dropped.
pub struct Checkpointer {
    nudges: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to the database at `database` and starts the thread.
    pub fn start(database: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(database)?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let (nudges, nudged) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("tandem-checkpoint".into())
            .spawn(move || checkpoint_when_nudged(&connection, &nudged))
            .map_err(|error| StoreError::io("cannot start the checkpoint thread".into(), error))?;
        Ok(Checkpointer {
            nudges: Some(nudges),
            thread: Some(thread),
        })
    }

    /// Tells the thread that the WAL has grown (a transaction committed). Never blocks:
    /// nudges that arrive while one is pending are one nudge.
    pub fn nudge(&self) {
        if let Some(nudges) = &self.nudges {
            // Full: a nudge is pending already. Disconnected: the thread ended (it only
            // does when this side is dropped).
            let _ = nudges.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudges = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits for a nudge, then for the rest of [`CHECKPOINT_INTERVAL`] since the last
/// checkpoint (later nudges fold into this one), then checkpoints; returns when the
/// committer's side is gone. A failed checkpoint (the database busy, say) is left to the next
/// one or to the committer's backstop.
fn checkpoint_when_nudged(connection: &Connection, nudged: &Receiver<()>) {
    let mut last_checkpoint = Instant::now();
    while nudged.recv().is_ok() {
        loop {
            let waited = last_checkpoint.elapsed();
            let Some(remaining) = CHECKPOINT_INTERVAL.checked_sub(waited) else {
                break;
            };
            match nudged.recv_timeout(remaining) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        last_checkpoint = Instant::now();
    }
}
