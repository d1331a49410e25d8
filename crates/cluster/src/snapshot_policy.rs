//! When a node takes a snapshot. A snapshot copies the whole store, so counting entries
//! alone (openraft's own policy) copies a large store as often as a small one: a backlog of
//! gigabytes, with the ticker's five small entries a second, meant a full copy of it every
//! quarter of an hour even while nothing else happened. [`take_snapshots_when_due`]
//! triggers a snapshot once both of these hold since the last one (taken here or installed
//! from the active):
//!
//! - at least `min_entries` entries were applied, and
//! - the log made durable at least `min_log_percent` % of the store's size in entry bytes,
//!   or [`ENTRY_CAP_FACTOR`] times `min_entries` entries were applied (a log of many tiny
//!   entries is compacted too: the ticker's five a second reach the cap after about a day).
//!
//! With the default of 100 %, copying the store costs about as much as writing the log
//! did, and the log between two snapshots holds about the store's size at most, so the disk
//! a node needs stays a small multiple of its store. `min_log_percent = 0` counts entries
//! only. After a restart, the entries the log holds past the last snapshot count as
//! written since it.
//!
//! A due snapshot waits while the disk cannot take it: a snapshot is a new file of the
//! store's pages in use, and one that fails for want of space stops the node's replication
//! (openraft takes it as a storage failure), on every replica at once, since their disks
//! fill alike. It is taken once the disk has the store's size free plus
//! [`limits::SNAPSHOT_SPARE_BYTES`] for the writes that go on meanwhile; until then the log
//! keeps growing, and the node says so once. A passive sent a snapshot it has no room to
//! install refuses it the same way ([`received_snapshot_fits`], used by the replication
//! server): a failed install would stop it, and again at every restart.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tandem_core::byte_size::format_bytes;
use tandem_core::condition::Change;
use tandem_core::limits;
use tandem_store::StoreHandle;
use tandem_store::free_space::filesystem_free_bytes;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::log_store::{LogGrowth, LogReader};
use crate::types::{LogId, Raft};

/// A snapshot is due after this many times the minimum of entries, whatever their size.
pub const ENTRY_CAP_FACTOR: u64 = 100;
/// How often the rule is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// When a snapshot is due (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRule {
    pub min_entries: u64,
    pub min_log_percent: u64,
}

/// What happened since the last snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinceSnapshot {
    /// Entries applied.
    pub entries: u64,
    /// Entry bytes the log made durable.
    pub log_bytes: u64,
}

impl SnapshotRule {
    /// Whether a snapshot of a store of `store_bytes` is due after `since`.
    pub fn is_due(&self, since: SinceSnapshot, store_bytes: u64) -> bool {
        let log_needed = u128::from(store_bytes) * u128::from(self.min_log_percent);
        let enough_log = u128::from(since.log_bytes) * 100 >= log_needed;
        let many_entries = since.entries >= self.min_entries.saturating_mul(ENTRY_CAP_FACTOR);
        since.entries >= self.min_entries && (enough_log || many_entries)
    }
}

/// The last snapshot this task saw, and the log's byte count when it was taken.
struct LastSnapshot {
    index: u64,
    log_bytes: u64,
    /// Bytes written past this snapshot before the log was opened (this node restarted).
    written_before_start: u64,
    /// The log's byte count when this task triggered a snapshot that has not shown up yet
    /// (no other is triggered meanwhile).
    triggered_at_log_bytes: Option<u64>,
}

/// Triggers a snapshot whenever `rule` says one is due, until `stopped` changes.
pub async fn take_snapshots_when_due(
    raft: Raft,
    log: LogGrowth,
    log_reader: LogReader,
    store: StoreHandle,
    rule: SnapshotRule,
    mut stopped: watch::Receiver<bool>,
) {
    let mut checks =
        tokio::time::interval_at(tokio::time::Instant::now() + CHECK_INTERVAL, CHECK_INTERVAL);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // From openraft's own state: its metrics may not show the snapshot loaded at start yet.
    let Ok(index) = raft
        .with_raft_state(|state| state.snapshot_meta.last_log_id.map_or(0, |id| id.index))
        .await
    else {
        return;
    };
    let mut room = SnapshotRoom::default();
    let mut last = LastSnapshot {
        index,
        log_bytes: log.bytes_written(),
        written_before_start: log_reader.stored_bytes_after(index).await.unwrap_or(0),
        triggered_at_log_bytes: None,
    };
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = checks.tick() => {}
        }
        let (applied, snapshot) = {
            let metrics = raft.metrics().borrow_watched().clone();
            let index = |log_id: Option<LogId>| log_id.map_or(0, |id| id.index);
            (index(metrics.last_applied), index(metrics.snapshot))
        };
        // Metrics can lag behind (a snapshot index never goes down): only a newer one counts.
        if snapshot > last.index {
            // Seen up to a check interval late: count from the trigger when there was one
            // (one installed from the active counts from now).
            last = LastSnapshot {
                index: snapshot,
                log_bytes: last
                    .triggered_at_log_bytes
                    .unwrap_or_else(|| log.bytes_written()),
                written_before_start: 0,
                triggered_at_log_bytes: None,
            };
        }
        let since = SinceSnapshot {
            entries: applied.saturating_sub(snapshot),
            log_bytes: log.bytes_written().saturating_sub(last.log_bytes)
                + last.written_before_start,
        };
        if last.triggered_at_log_bytes.is_some() || since.entries < rule.min_entries {
            continue;
        }
        let Ok(store_bytes) = store.used_bytes().await else {
            continue;
        };
        if rule.is_due(since, store_bytes) {
            if !room.allows_snapshot(&store, store_bytes) {
                continue;
            }
            let log_bytes = log.bytes_written();
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            last.triggered_at_log_bytes = Some(log_bytes);
        }
    }
}

/// Whether the disk can take a snapshot now, remembering whether one waits for room so as
/// to say so once.
#[derive(Default)]
struct SnapshotRoom {
    waiting: bool,
}

impl SnapshotRoom {
    /// True when the disk holding the store has room for a snapshot of `store_bytes`, or when
    /// its free space cannot be measured (the snapshot is then tried).
    fn allows_snapshot(&mut self, store: &StoreHandle, store_bytes: u64) -> bool {
        let Ok(free_bytes) = filesystem_free_bytes(store.data_dir()) else {
            return true;
        };
        let (fits, change) = self.weigh(free_bytes, store_bytes);
        match change {
            Some(Change::Starts) => eprintln!(
                "tandem: a snapshot is due but waits for room: it takes about {} and the disk \
                 under {} has {} free ({} kept spare); the log grows until then: drain \
                 messages, purge tracking or give the disk more space",
                format_bytes(store_bytes),
                store.data_dir().display(),
                format_bytes(free_bytes),
                format_bytes(limits::SNAPSHOT_SPARE_BYTES)
            ),
            Some(Change::Ends) => {
                eprintln!("tandem: the disk has room for the snapshot that was waiting; taking it")
            }
            None => {}
        }
        fits
    }

    /// Whether a snapshot of `store_bytes` fits in `free_bytes`, and how waiting for room
    /// changed since the last call.
    fn weigh(&mut self, free_bytes: u64, store_bytes: u64) -> (bool, Option<Change>) {
        let fits = snapshot_fits(free_bytes, store_bytes);
        let change = Change::between(self.waiting, !fits);
        self.waiting = !fits;
        (fits, change)
    }
}

/// Whether `free_bytes` of disk take a snapshot of a store of `store_bytes` (its pages in
/// use) with [`limits::SNAPSHOT_SPARE_BYTES`] to spare.
fn snapshot_fits(free_bytes: u64, store_bytes: u64) -> bool {
    free_bytes >= store_bytes.saturating_add(limits::SNAPSHOT_SPARE_BYTES)
}

/// Whether `free_bytes` of disk take a snapshot of `snapshot_bytes` sent by the active and
/// its install, with [`limits::SNAPSHOT_SPARE_BYTES`] to spare: the received file, and the
/// store's copy of it, which goes through the store's WAL before it replaces the store.
pub fn received_snapshot_fits(free_bytes: u64, snapshot_bytes: u64) -> bool {
    free_bytes
        >= snapshot_bytes
            .saturating_mul(2)
            .saturating_add(limits::SNAPSHOT_SPARE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_snapshot_needs_room_for_itself_and_the_stores_copy_of_it() {
        let snapshot_bytes = 100 << 20;
        let needed = 2 * snapshot_bytes + limits::SNAPSHOT_SPARE_BYTES;
        assert!(received_snapshot_fits(needed, snapshot_bytes));
        assert!(!received_snapshot_fits(needed - 1, snapshot_bytes));
        assert!(!received_snapshot_fits(u64::MAX / 2, u64::MAX / 2));
    }

    const RULE: SnapshotRule = SnapshotRule {
        min_entries: 100,
        min_log_percent: 100,
    };

    fn since(entries: u64, log_bytes: u64) -> SinceSnapshot {
        SinceSnapshot { entries, log_bytes }
    }

    #[test]
    fn a_large_store_waits_for_as_many_log_bytes_as_it_holds() {
        let store_bytes = 10 << 30;
        assert!(!RULE.is_due(since(5_000, 1 << 30), store_bytes));
        assert!(!RULE.is_due(since(5_000, store_bytes - 1), store_bytes));
        assert!(RULE.is_due(since(5_000, store_bytes), store_bytes));
    }

    #[test]
    fn many_small_entries_are_snapshotted_whatever_the_store_size() {
        let cap = RULE.min_entries * ENTRY_CAP_FACTOR;
        assert!(!RULE.is_due(since(cap - 1, 1 << 20), 10 << 30));
        assert!(RULE.is_due(since(cap, 1 << 20), 10 << 30));
    }

    #[test]
    fn a_small_store_still_waits_for_the_minimum_of_entries() {
        assert!(!RULE.is_due(since(99, 1 << 30), 4096));
        assert!(RULE.is_due(since(100, 4096), 4096));
    }

    #[test]
    fn the_percentage_scales_the_log_bytes_needed() {
        let half = SnapshotRule {
            min_log_percent: 50,
            ..RULE
        };
        assert!(!half.is_due(since(100, 499), 1000));
        assert!(half.is_due(since(100, 500), 1000));
        let twice = SnapshotRule {
            min_log_percent: 200,
            ..RULE
        };
        assert!(!twice.is_due(since(100, 1999), 1000));
        assert!(twice.is_due(since(100, 2000), 1000));
    }

    #[test]
    fn zero_percent_counts_entries_only() {
        let entries_only = SnapshotRule {
            min_log_percent: 0,
            ..RULE
        };
        assert!(entries_only.is_due(since(100, 0), u64::MAX));
        assert!(!entries_only.is_due(since(99, u64::MAX), 0));
    }

    #[test]
    fn a_snapshot_waits_until_the_disk_holds_the_store_and_the_spare() {
        let store_bytes = 10 << 30;
        let needed = store_bytes + limits::SNAPSHOT_SPARE_BYTES;
        assert!(!snapshot_fits(needed - 1, store_bytes));
        assert!(snapshot_fits(needed, store_bytes));
        assert!(!snapshot_fits(u64::MAX - 1, u64::MAX), "no overflow");
    }

    #[test]
    fn a_waiting_snapshot_is_reported_once_and_again_when_it_is_taken() {
        let mut room = SnapshotRoom::default();
        let store_bytes = 1 << 30;
        let short = store_bytes;
        let enough = store_bytes + limits::SNAPSHOT_SPARE_BYTES;
        assert_eq!(room.weigh(enough, store_bytes), (true, None));
        assert_eq!(
            room.weigh(short, store_bytes),
            (false, Some(Change::Starts))
        );
        assert_eq!(room.weigh(short, store_bytes), (false, None));
        assert_eq!(room.weigh(enough, store_bytes), (true, Some(Change::Ends)));
        assert_eq!(room.weigh(enough, store_bytes), (true, None));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let rule = SnapshotRule {
            min_entries: 1,
            min_log_percent: u64::MAX,
        };
        assert!(!rule.is_due(since(1, u64::MAX), u64::MAX));
        assert!(rule.is_due(since(1, u64::MAX), 0));
    }
}
