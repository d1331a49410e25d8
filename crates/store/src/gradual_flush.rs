//! [`GradualFlush`]: writes a large file out to disk while it is being written, instead of
//! all at once at its final fsync.
//!
//! A snapshot is a copy of the whole store, gigabytes for a large one. Left to the kernel,
//! it stays in the page cache (under the dirty-page thresholds of a large machine) until the
//! snapshot's fsync writes it out in one burst, and every fsync queued behind that burst
//! waits for it: the Raft log's, which each acknowledgement needs. With a 1.3 GB store, ack
//! latency peaked at over a second after each snapshot. Flushed every
//! [`FLUSH_INTERVAL`] while it is written, the copy reaches the disk in small pieces that
//! the log's fsyncs are interleaved with.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often what was written since is flushed.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Flushes the file at a path every [`FLUSH_INTERVAL`] (once it exists) until dropped.
pub struct GradualFlush {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GradualFlush {
    pub fn start(path: PathBuf) -> GradualFlush {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tandem-flush".into())
            .spawn(move || {
                let mut file = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(FLUSH_INTERVAL) {
                    if file.is_none() {
                        file = File::open(&path).ok();
                    }
                    // A failed flush costs nothing here: the writer's own fsync decides.
                    if let Some(file) = &file {
                        let _ = file.sync_data();
                    }
                }
            })
            .ok();
        GradualFlush {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for GradualFlush {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Drops `flush` on another thread and waits for that to finish, at most 10 s.
    fn dropped_in_time(flush: GradualFlush) -> bool {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            drop(flush);
            let _ = done.send(());
        });
        finished.recv_timeout(Duration::from_secs(10)).is_ok()
    }

    #[test]
    fn it_flushes_a_file_created_after_it_started_and_stops_when_dropped() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("copy");
        let flush = GradualFlush::start(path.clone());
        let mut file = File::create(&path).expect("create");
        for _ in 0..5 {
            file.write_all(&[7u8; 64 * 1024]).expect("write");
            std::thread::sleep(FLUSH_INTERVAL);
        }
        assert!(dropped_in_time(flush), "the flushing thread did not stop");
        let written = std::fs::read(&path).expect("read back");
        assert!(written.len() == 5 * 64 * 1024 && written.iter().all(|&byte| byte == 7));
    }

    #[test]
    fn it_stops_when_dropped_though_the_file_never_appeared() {
        let directory = tempfile::tempdir().expect("temp dir");
        let flush = GradualFlush::start(directory.path().join("never"));
        std::thread::sleep(FLUSH_INTERVAL * 2);
        assert!(dropped_in_time(flush), "the flushing thread did not stop");
        assert!(
            !directory.path().join("never").exists(),
            "it created the file"
        );
    }
}
