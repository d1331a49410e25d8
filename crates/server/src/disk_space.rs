//! [`DiskGuard`]: the room a node's data directory has left, measured every
//! [`limits::DISK_ROOM_SAMPLE_INTERVAL_MS`], and the refusal of publishes on the active
//! while it is below `min_free_disk_bytes`.
//!
//! Replicas hold the same data, so their disks fill together: a backlog that outgrows the
//! disk would stop every node of the replica set at once (each exits when a write fails).
//! With the guard the active refuses new messages first, while there is still room to
//! lease, complete, snapshot and compact; consumers drain the backlog in the meantime.
//!
//! The room is the free space of the data directory's filesystem less what the next
//! snapshot will write: the store's pages in use. Consuming messages frees pages in the
//! store, so the room comes back as consumers drain the backlog, although neither the store
//! nor the log file ever gives space back to the filesystem (new rows reuse their free
//! pages).

use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_core::byte_size::format_bytes;
use tandem_core::{Error, ErrorCode, limits};
use tandem_store::StoreHandle;
use tandem_store::free_space::filesystem_free_bytes;

use crate::state::SharedState;

/// What [`DiskGuard::room_bytes`] holds before the first measurement and after a failed one:
/// a publish is never refused for want of a measurement.
const UNKNOWN: u64 = u64::MAX;

/// The room left under the data directory, the floor below which publishes are refused,
/// and (on the active) the other member short of room, if one reports it.
pub struct DiskGuard {
    min_free_bytes: u64,
    room_bytes: AtomicU64,
    low_member: Mutex<Option<LowMember>>,
}

/// A voting member that reported its room below its own floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowMember {
    pub node_id: u64,
    pub room_bytes: u64,
    pub min_free_bytes: u64,
}

impl DiskGuard {
    /// `min_free_bytes` of 0 turns the guard off.
    pub fn new(min_free_bytes: u64) -> DiskGuard {
        DiskGuard {
            min_free_bytes,
            room_bytes: AtomicU64::new(UNKNOWN),
            low_member: Mutex::new(None),
        }
    }

    /// The other member short of room that holds publishes back, as last polled.
    pub fn low_member(&self) -> Option<LowMember> {
        self.low_member
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set_low_member(&self, member: Option<LowMember>) {
        *self
            .low_member
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = member;
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    /// The room measured last, if any measurement succeeded yet.
    pub fn room_bytes(&self) -> Option<u64> {
        Some(self.room_bytes.load(Ordering::Relaxed)).filter(|&room| room != UNKNOWN)
    }

    /// True while the room measured last is below the floor.
    pub fn is_low(&self) -> bool {
        self.room_bytes()
            .is_some_and(|room| room < self.min_free_bytes)
    }

    /// Refuses a publish as throttled while this node's room is below its floor, or another
    /// member reported its own below its floor: replicas write the same data, so a member
    /// short of room would stop first and leave the replica set a node short.
    pub fn admit_publish(&self, data_dir: &Path) -> Result<(), Error> {
        if let Some(room) = self.room_bytes().filter(|&room| room < self.min_free_bytes) {
            let whose = format!("the active's data directory {}", data_dir.display());
            return Err(short_of_room(&whose, room, self.min_free_bytes));
        }
        match self.low_member() {
            Some(member) => Err(short_of_room(
                &format!("node {}", member.node_id),
                member.room_bytes,
                member.min_free_bytes,
            )),
            None => Ok(()),
        }
    }

    /// Measures the room now: free space on the filesystem, less what the next snapshot of
    /// the store will write (its pages in use).
    pub async fn measure(&self, store: &StoreHandle) -> io::Result<u64> {
        let measured = async {
            let filesystem = filesystem_free_bytes(store.data_dir())?;
            let next_snapshot = store.used_bytes().await.map_err(io::Error::other)?;
            Ok(filesystem.saturating_sub(next_snapshot))
        }
        .await;
        self.room_bytes
            .store(*measured.as_ref().unwrap_or(&UNKNOWN), Ordering::Relaxed);
        measured
    }
}

fn short_of_room(whose: &str, room_bytes: u64, min_free_bytes: u64) -> Error {
    Error {
        code: ErrorCode::Throttled,
        message: format!(
            "the disk of {whose} has {} of room left, below its min_free_disk_bytes of {}; \
             new messages are refused until consumers drain the queues, old tracking events \
             are purged (`tandem tracking purge`) or the disk is given more space",
            format_bytes(room_bytes),
            format_bytes(min_free_bytes)
        ),
        retry_after_ms: Some(limits::THROTTLE_RETRY_AFTER_MS),
        redirect: None,
    }
}

/// Measures the room every [`limits::DISK_ROOM_SAMPLE_INTERVAL_MS`] until shutdown begins; a
/// failure is logged once until a measurement succeeds again.
pub async fn watch_disk_room(state: SharedState) {
    let mut samples =
        tokio::time::interval(Duration::from_millis(limits::DISK_ROOM_SAMPLE_INTERVAL_MS));
    samples.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = samples.tick() => {}
            () = state.shutdown_begun() => return,
        }
        match state.disk.measure(&state.store).await {
            Ok(_) if failing => {
                failing = false;
                eprintln!("tandem: the data directory's free space is measured again");
            }
            Ok(_) => {}
            Err(error) if !failing => {
                failing = true;
                eprintln!(
                    "tandem: cannot measure the free space of {}: {error}; publishes are not \
                     held back for disk space meanwhile",
                    state.store.data_dir().display()
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_is_refused_only_while_the_measured_room_is_below_the_floor() {
        let guard = DiskGuard::new(1 << 30);
        let directory = Path::new("/data/tandem");
        assert!(
            guard.admit_publish(directory).is_ok(),
            "nothing measured yet"
        );
        guard.room_bytes.store(1 << 30, Ordering::Relaxed);
        assert!(guard.admit_publish(directory).is_ok());
        assert!(!guard.is_low());

        guard.room_bytes.store((1 << 30) - 1, Ordering::Relaxed);
        assert!(guard.is_low());
        let refusal = guard.admit_publish(directory).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::Throttled);
        assert_eq!(
            refusal.retry_after_ms,
            Some(limits::THROTTLE_RETRY_AFTER_MS)
        );
        assert!(
            refusal
                .message
                .contains("/data/tandem has 1024.0 MiB of room left")
                && refusal.message.contains("min_free_disk_bytes of 1.0 GiB"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn a_member_short_of_room_holds_publishes_back_until_it_has_room_again() {
        let guard = DiskGuard::new(1 << 30);
        guard.room_bytes.store(5 << 30, Ordering::Relaxed);
        guard.set_low_member(Some(LowMember {
            node_id: 3,
            room_bytes: 100 << 20,
            min_free_bytes: 2 << 30,
        }));
        let refusal = guard.admit_publish(Path::new("/data")).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::Throttled);
        assert!(
            refusal
                .message
                .starts_with("the disk of node 3 has 100.0 MiB of room left, below its min_free_disk_bytes of 2.0 GiB"),
            "{}",
            refusal.message
        );
        assert!(!guard.is_low(), "this node's own disk has room");
        guard.set_low_member(None);
        assert!(guard.admit_publish(Path::new("/data")).is_ok());
    }

    #[test]
    fn a_floor_of_zero_never_refuses() {
        let guard = DiskGuard::new(0);
        guard.room_bytes.store(0, Ordering::Relaxed);
        assert!(!guard.is_low());
        assert!(guard.admit_publish(Path::new("/")).is_ok());
    }
}
