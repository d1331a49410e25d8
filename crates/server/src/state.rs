//! [`AppState`]: what every request handler shares: the replica (writes go through its
//! log), the store handle (reads), the configuration, the start time, the disk guard, the
//! work wake-up signal, the shutdown flag and the request counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tandem_cluster::{Acknowledged, Replica};
use tandem_core::outcome::PublishReceipt;
use tandem_core::{Command, Outcome};
use tandem_store::StoreHandle;
use tokio::sync::watch;

use crate::NodeConfig;
use crate::disk_space::DiskGuard;
use crate::metrics::{Api, RequestCounters};
use crate::wake_up::{WorkSignal, WorkWatcher};

pub struct AppState {
    pub replica: Arc<Replica>,
    pub store: StoreHandle,
    pub config: NodeConfig,
    pub started_at_ms: i64,
    pub requests: RequestCounters,
    pub disk: DiskGuard,
    published_messages: AtomicU64,
    work_signal: WorkSignal,
    shutdown: watch::Sender<bool>,
}

/// The handle request handlers hold.
pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(replica: Arc<Replica>, store: StoreHandle, config: NodeConfig) -> AppState {
        AppState {
            replica,
            store,
            disk: DiskGuard::new(config.min_free_disk_bytes),
            config,
            started_at_ms: tandem_cluster::wall_clock_ms(),
            requests: RequestCounters::default(),
            published_messages: AtomicU64::new(0),
            work_signal: WorkSignal::default(),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Executes a command through the replicated log and wakes waiting leases when it may
    /// have made work ready.
    pub async fn execute(&self, command: Command) -> tandem_core::error::Result<Outcome> {
        self.execute_acknowledged(command)
            .await
            .map(|acknowledged| acknowledged.outcome)
    }

    /// [`AppState::execute`], with the term and log index that acknowledged the command.
    pub async fn execute_acknowledged(
        &self,
        command: Command,
    ) -> tandem_core::error::Result<Acknowledged> {
        let acknowledged = self.replica.execute(command).await?;
        let outcome = &acknowledged.outcome;
        if may_make_work_ready(outcome) {
            self.work_signal.notify();
        }
        if let Outcome::Published(results) = outcome {
            let stored = results.iter().filter(|result| is_stored(result)).count();
            self.published_messages
                .fetch_add(stored as u64, Ordering::Relaxed);
        }
        Ok(acknowledged)
    }

    /// Whether this node refuses publishes now: past the replicated message-count throttle,
    /// or, as the active, short of room on its disk or told so by another member.
    pub fn publish_throttled(&self) -> bool {
        let disk_low = self.disk.is_low() || self.disk.low_member().is_some();
        self.store.catalog().throttled || (self.replica.is_active() && disk_low)
    }

    pub fn count_request(&self, api: Api, operation: &'static str) {
        self.requests.count(api, operation);
    }

    pub fn published_messages(&self) -> u64 {
        self.published_messages.load(Ordering::Relaxed)
    }

    pub fn watch_work(&self) -> WorkWatcher {
        self.work_signal.watch()
    }

    /// Tells long polls, lease streams, servers and the ticker to finish.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn shutdown_begun(&self) {
        let mut receiver = self.shutdown.subscribe();
        // The sender lives as long as `self`, so this only returns once the flag is set.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

fn is_stored(result: &tandem_core::error::Result<PublishReceipt>) -> bool {
    matches!(result, Ok(receipt) if !receipt.duplicate)
}

fn may_make_work_ready(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Published(results) => results
            .iter()
            .any(|result| matches!(result, Ok(receipt) if !receipt.instances.is_empty())),
        Outcome::Abandoned | Outcome::Resumed => true,
        Outcome::Failed { suspended } => !suspended,
        Outcome::Ticked(report) => report.leases_expired > 0 || report.retries_released > 0,
        _ => false,
    }
}
