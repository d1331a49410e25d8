//! Copies the write-ahead log into the database file on its own thread and connection, so
//! that the committer never spends its time on checkpoints, and keeps the WAL bounded.
//!
//! Every tick it runs a PASSIVE checkpoint, which never blocks the committer. If the WAL
//! still grows past [`WAL_RESTART_FRAMES`] (a checkpoint never caught up under sustained
//! load), it runs a RESTART checkpoint, which briefly holds writers back and lets the next
//! commit start the log from the beginning again.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the checkpointer looks at the WAL.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);
/// WAL frames (pages) past which a blocking checkpoint bounds the log: 256 MiB at 4 KiB pages.
pub const WAL_RESTART_FRAMES: i64 = 65_536;

pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(database: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(database)?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-checkpointer".into())
            .spawn(move || run(connection, signal))
            .map_err(|error| StoreError::io("cannot start the checkpointer".into(), error))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(connection: Connection, stop: Arc<(Mutex<bool>, Condvar)>) {
    let (stopped, wake) = &*stop;
    let mut guard = stopped
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let (next, _) = wake
            .wait_timeout(guard, CHECKPOINT_INTERVAL)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard = next;
        if *guard {
            return;
        }
        if let Err(error) = checkpoint(&connection) {
            eprintln!("tandem: WAL checkpoint failed (will retry): {error}");
        }
    }
}

fn checkpoint(connection: &Connection) -> rusqlite::Result<()> {
    let log_frames = wal_checkpoint(connection, "PASSIVE")?;
    if log_frames > WAL_RESTART_FRAMES {
        wal_checkpoint(connection, "RESTART")?;
    }
    Ok(())
}

/// Runs one checkpoint and answers how many frames the WAL holds.
fn wal_checkpoint(connection: &Connection, mode: &str) -> rusqlite::Result<i64> {
    connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(1)
    })
}
