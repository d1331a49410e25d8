//! The replica-set operations both APIs share: this node's view of the replica set with
//! the failover history, and the health verdicts load balancers ask for.

use tandem_cluster::{FailoverRecord, ReplicaStatus, Role};
use tandem_core::error::Result;

use crate::state::AppState;

/// Failover records shown with a node's status, at most.
pub const FAILOVER_HISTORY_SHOWN: usize = 50;
/// A passive whose applied index is this far behind what a majority has stored is not
/// in sync (it is catching up).
pub const IN_SYNC_MAX_LAG_ENTRIES: u64 = 1_000;

/// One node's view of the replica set.
pub struct ClusterView {
    pub status: ReplicaStatus,
    pub failovers: Vec<FailoverRecord>,
}

impl AppState {
    pub async fn cluster_view(&self) -> Result<ClusterView> {
        Ok(ClusterView {
            status: self.replica.status(),
            failovers: self
                .replica
                .failover_history(FAILOVER_HISTORY_SHOWN)
                .await?,
        })
    }

    /// The active, and a majority acknowledged it within the election timeout: it can
    /// commit writes now.
    pub fn is_serving_active(&self) -> bool {
        let status = self.replica.status();
        status.role == Role::Active
            && status
                .quorum_acknowledged_ms_ago
                .is_some_and(|ago| ago <= self.config.election_timeout_max_ms)
    }

    /// A passive that knows the active and has applied nearly everything committed.
    pub fn is_in_sync_passive(&self) -> bool {
        let status = self.replica.status();
        status.role == Role::Passive
            && status.active.is_some()
            && status.cluster_committed_index
                <= status.applied_index.saturating_add(IN_SYNC_MAX_LAG_ENTRIES)
    }
}
