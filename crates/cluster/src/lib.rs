//! # Tandem cluster
//!
//! The replica set: every MessageBox command goes through an openraft log, replicated and
//! fsynced on a majority of voters before it is applied and acknowledged. Only this crate
//! knows openraft.
//!
//! # Layout
//!
//! - [`types`]: the openraft type configuration: entries, results, members.
//! - [`clock`]: the wall clock stamped into entries (simulated on a simulation's thread).
//! - [`codec`]: binary encoding and length-prefixed frames.
//! - [`log_store`]: the durable Raft log and vote (SQLite, fsync per append).
//! - [`recent_entries`]: the log's newest entries in memory, for replication and apply.
//! - [`state_machine`]: the node's store as openraft's state machine; snapshots.
//! - [`snapshot_policy`]: when a snapshot is due (entries and log bytes against the store's
//!   size).
//! - [`network`]: replication RPCs over TCP with hard timeouts.
//! - [`proposer`]: many commands per log entry, stamped with the replica set's time.
//! - [`replica_set_time`]: that time: the median of the voters' clocks.
//! - [`failover`]: the failover history the new active writes into the log.
//! - [`hand_over`]: an active no majority confirms hands its role over by itself.
//! - [`status`]: roles, terms, indexes and lag, from openraft's metrics.
//! - [`runtime`]: tokio for openraft, with seedable election timeouts.
//! - [`settings`]: node identity and replication timings.
//! - [`replica`]: [`Replica`], what the node uses: execute, status, membership.

pub mod clock;
pub mod codec;
pub mod failover;
pub mod hand_over;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod recent_entries;
pub mod replica;
pub mod replica_set_time;
pub mod runtime;
pub mod settings;
pub mod snapshot_policy;
pub mod state_machine;
pub mod status;
pub mod types;

#[cfg(test)]
mod test_files;

pub use clock::wall_clock_ms;
pub use proposer::Acknowledged;
pub use replica::Replica;
pub use replica_set_time::ReplicaSetTime;
pub use settings::ReplicaSettings;
pub use status::{MemberStatus, ReplicaStatus, Role};
pub use types::{FailoverRecord, Member, NodeId};

/// Why replication could not start.
#[derive(Debug)]
pub enum ClusterError {
    Storage(String),
    Settings(String),
    Raft(String),
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterError::Storage(reason) => {
                write!(formatter, "cannot open replication storage: {reason}")
            }
            ClusterError::Settings(reason) => {
                write!(formatter, "invalid replication settings: {reason}")
            }
            ClusterError::Raft(reason) => write!(formatter, "cannot start replication: {reason}"),
        }
    }
}

impl std::error::Error for ClusterError {}
