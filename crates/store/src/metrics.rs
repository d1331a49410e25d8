//! Counters the store keeps for `/metrics`: commits, commands, commit time, failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct StoreMetrics {
    commits: AtomicU64,
    commands: AtomicU64,
    commit_micros: AtomicU64,
    storage_failures: AtomicU64,
}

/// A consistent-enough copy of the counters for rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreMetricsSnapshot {
    pub commits: u64,
    pub commands: u64,
    pub commit_seconds: f64,
    pub storage_failures: u64,
}

impl StoreMetrics {
    pub fn record_commit(&self, commands: usize, elapsed: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
        self.commit_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn record_storage_failure(&self) {
        self.storage_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StoreMetricsSnapshot {
        StoreMetricsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            commit_seconds: self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
            storage_failures: self.storage_failures.load(Ordering::Relaxed),
        }
    }
}
