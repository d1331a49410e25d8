//! [`Checkpointer`]: copies the WAL into the database file on a thread of its own, so that
//! the committer seldom pays for it.
//!
//! A WAL checkpoint fsyncs the WAL, copies its newest frame of every page into the database
//! file and fsyncs that. Run inline by the committer (SQLite's automatic checkpoint), the
//! committer sat blocked in those fsyncs for about 8 % of a consuming load and nothing was
//! committed meanwhile. The committer now nudges this thread after every commit; at most every
//! [`CHECKPOINT_INTERVAL`] it runs a passive checkpoint on its own connection, which copies
//! what is there without blocking the committer. The committer's automatic checkpoint stays
//! as the backstop: when the WAL still reaches its limit (this thread is behind), the
//! committer finishes the little that is left, and a checkpoint that has copied everything
//! lets the next transaction start the WAL over.
//!
//! A snapshot's read (`VACUUM INTO`, seconds on a large store) keeps every checkpoint from
//! passing it, so the WAL grows meanwhile, and the committer's backstop used to copy that
//! whole backlog inside the first commit after the read ended: commits of 120 to 920 ms, and
//! acknowledgements as late, after each snapshot of a 1.2 GB store. [`BackstopHold`] turns
//! the backstop off from a snapshot's start until this thread has caught up after its end.
//!
//! Only [`crate::Execution::Threads`] runs one; inline execution stays on one thread.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// The shortest time between two checkpoints. The committer commits up to about a hundred
/// times a second; checkpointing after each commit would fsync the database as often and
/// contend with the Raft log's fsyncs on the same disk.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Whether the committer's backstop checkpoint holds off: while a snapshot is read, and
/// after it until the checkpoint thread has copied the whole WAL once.
#[derive(Debug, Default)]
pub struct BackstopHold {
    state: AtomicU8,
}

const BACKSTOP_FREE: u8 = 0;
const SNAPSHOT_READING: u8 = 1;
const CATCHING_UP: u8 = 2;

impl BackstopHold {
    pub fn snapshot_started(&self) {
        self.state.store(SNAPSHOT_READING, Ordering::Release);
    }

    pub fn snapshot_ended(&self) {
        let _ = self.state.compare_exchange(
            SNAPSHOT_READING,
            CATCHING_UP,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A checkpoint finished; `complete` when it copied every frame of the WAL.
    pub fn checkpoint_finished(&self, complete: bool) {
        if complete {
            let _ = self.state.compare_exchange(
                CATCHING_UP,
                BACKSTOP_FREE,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// True while the committer should leave checkpoints to the checkpoint thread.
    pub fn holds(&self) -> bool {
        self.state.load(Ordering::Acquire) != BACKSTOP_FREE
    }
}

/// The checkpoint thread; stops (and is waited for) when dropped.
pub struct Checkpointer {
    nudges: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    hold: Arc<BackstopHold>,
}

impl Checkpointer {
    /// Opens a connection to the database at `database` and starts the thread.
    pub fn start(database: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(database)?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let (nudges, nudged) = std::sync::mpsc::sync_channel(1);
        let hold = Arc::new(BackstopHold::default());
        let thread_hold = hold.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-checkpoint".into())
            .spawn(move || checkpoint_when_nudged(&connection, &nudged, &thread_hold))
            .map_err(|error| StoreError::io("cannot start the checkpoint thread".into(), error))?;
        Ok(Checkpointer {
            nudges: Some(nudges),
            thread: Some(thread),
            hold,
        })
    }

    /// When the committer's backstop holds off (shared with the snapshot writer).
    pub fn hold(&self) -> &Arc<BackstopHold> {
        &self.hold
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
fn checkpoint_when_nudged(connection: &Connection, nudged: &Receiver<()>, hold: &BackstopHold) {
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
        // (busy, frames in the WAL, frames copied): complete when it copied them all.
        let checkpoint = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        });
        if let Ok((busy, frames, copied)) = checkpoint {
            hold.checkpoint_finished(busy == 0 && frames == copied);
        }
        last_checkpoint = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backstop_holds_from_a_snapshots_start_until_a_complete_checkpoint_after_its_end() {
        let hold = BackstopHold::default();
        assert!(!hold.holds());
        hold.snapshot_started();
        hold.checkpoint_finished(true);
        assert!(hold.holds(), "a checkpoint during the read cannot pass it");
        hold.snapshot_ended();
        hold.checkpoint_finished(false);
        assert!(hold.holds(), "an incomplete checkpoint leaves the backlog");
        hold.checkpoint_finished(true);
        assert!(!hold.holds());
        hold.snapshot_ended();
        assert!(!hold.holds(), "an end without a start holds nothing");
    }
}
