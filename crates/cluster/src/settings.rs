//! [`ReplicaSettings`]: who this node is in the replica set and the replication timings,
//! with defaults that suit a LAN: a new active serves within about a second of the old
//! one's crash.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::ClusterError;
use crate::snapshot_policy::SnapshotRule;
use crate::types::{Member, NodeId};

/// The active sends a heartbeat this often.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 50;
/// The election timeout range. openraft lets a passive campaign once its lease on the active
/// (the maximum) and then a random timeout in this range have passed without a heartbeat, so
/// a paused or cut-off active is replaced after 450–600 ms plus an election round trip. (A
/// crashed active is noticed at once: see `failover`.)
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 150;
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 300;
/// A write that has not reached a majority after this long answers `no_quorum` (sooner when
/// the active goes unacknowledged long enough for another node to be elected: `proposer`).
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
/// An active whose writes no majority has confirmed in time at every look for this long
/// hands its role over by itself (`hand_over`); 0 never does.
pub const DEFAULT_HAND_OVER_AFTER_MS: u64 = 1_500;
/// A snapshot is taken after at least this many log entries, and the log before it purged.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 5_000;
/// ... and once the log has written at least this percentage of the store's size since the
/// last snapshot (see `snapshot_policy`).
pub const DEFAULT_SNAPSHOT_MIN_LOG_PERCENT: u64 = 100;
/// Entries kept in the log behind a snapshot, so a briefly lagging passive catches up from
/// the log rather than from a snapshot.
pub const DEFAULT_LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT: u64 = 1_000;
/// Entries sent in one replication request at most.
pub const MAX_ENTRIES_PER_APPEND: u64 = 32;
/// Sending or installing a snapshot may take this long.
pub const SNAPSHOT_TRANSFER_TIMEOUT_MS: u64 = 120_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSettings {
    pub node_id: NodeId,
    /// How the other members and clients reach this node.
    pub member: Member,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub write_timeout_ms: u64,
    pub hand_over_after_ms: u64,
    pub snapshot_every_entries: u64,
    pub snapshot_min_log_percent: u64,
    pub log_entries_kept_behind_snapshot: u64,
    /// Peers this node dials at another replication address than the membership's.
    pub peer_routes: BTreeMap<NodeId, String>,
}

impl ReplicaSettings {
    pub fn new(node_id: NodeId, member: Member) -> ReplicaSettings {
        ReplicaSettings {
            node_id,
            member,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
            hand_over_after_ms: DEFAULT_HAND_OVER_AFTER_MS,
            snapshot_every_entries: DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            snapshot_min_log_percent: DEFAULT_SNAPSHOT_MIN_LOG_PERCENT,
            log_entries_kept_behind_snapshot: DEFAULT_LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT,
            peer_routes: BTreeMap::new(),
        }
    }

    /// How long no majority may confirm the active before its writes are refused: its lease
    /// plus the minimum election timeout, after which another node may have been elected.
    pub fn unconfirmed_grace(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms + self.election_timeout_min_ms)
    }

    /// When this node takes a snapshot.
    pub fn snapshot_rule(&self) -> SnapshotRule {
        SnapshotRule {
            min_entries: self.snapshot_every_entries,
            min_log_percent: self.snapshot_min_log_percent,
        }
    }

    /// openraft's configuration, checked.
    pub fn raft_config(&self) -> Result<Config, ClusterError> {
        if self.heartbeat_interval_ms * 3 > self.election_timeout_min_ms {
            return Err(ClusterError::Settings(format!(
                "the election timeout ({} ms) must be at least three heartbeat intervals \
                 ({} ms each), or passives start elections while the active is healthy",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            )));
        }
        if self.snapshot_every_entries == 0 {
            return Err(ClusterError::Settings(
                "snapshot_every_entries must be at least 1".into(),
            ));
        }
        Config {
            cluster_name: "tandem".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: SNAPSHOT_TRANSFER_TIMEOUT_MS,
            max_payload_entries: MAX_ENTRIES_PER_APPEND,
            // Snapshots are triggered by `snapshot_policy`, which weighs the store's size too.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.log_entries_kept_behind_snapshot,
            enable_pre_vote: Some(true),
            // The log store makes an append readable before its fsync: start sending it to
            // the passives at once, so the active's fsync and theirs overlap.
            broadcast_submitted_on_append: Some(true),
            // A member whose data directory was wiped comes back with an empty log; the
            // active then replicates to it from the start (a snapshot) instead of refusing.
            allow_log_reversion: Some(true),
            ..Config::default()
        }
        .validate()
        .map_err(|error| ClusterError::Settings(error.to_string()))
    }
}
