//! [`ReplicaStatus`]: what one node knows about the replica set, from openraft's metrics:
//! its role, term, log and applied indexes, the active, and (on the active) how far each
//! member has replicated and how lately it answered.

use openraft::async_runtime::{Instant as _, WatchReceiver};
use serde::Serialize;

use crate::types::{Member, NodeId, Raft, TypeConfig};

/// A node's role, in Tandem's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes (the Raft leader).
    Active,
    /// Replicates and votes (a follower).
    Passive,
    /// Campaigning to become the active.
    Candidate,
    /// Replicates but does not vote (not yet promoted, or not a member).
    Learner,
    ShuttingDown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Passive => "passive",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplicaStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    /// The last entry this node's store has committed: what its reads see. (openraft's own
    /// applied index can run one store transaction ahead; see `state_machine`.)
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// The highest index this node knows a majority has stored (from the active).
    pub cluster_committed_index: u64,
    /// On the active: how long ago a majority last acknowledged it (its leader lease).
    pub quorum_acknowledged_ms_ago: Option<u64>,
    pub active: Option<NodeId>,
    pub members: Vec<MemberStatus>,
    /// True once this node has joined a replica set (or formed one).
    pub initialized: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub member: Member,
    pub voter: bool,
    /// On the active: the last index the member has stored, when known.
    pub matched_index: Option<u64>,
    /// On the active: entries the member is behind the active's log.
    pub lag: Option<u64>,
    /// On the active, for the other members: how long ago the member last acknowledged a
    /// heartbeat or an append. A member answers only once its log is flushed, so a slow
    /// disk shows here first; a majority's answers keep the active's lease.
    pub acknowledged_ms_ago: Option<u64>,
}

/// How many voters the membership this node holds has (0 before it knows one).
pub(crate) fn voter_count(raft: &Raft) -> usize {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    metrics.membership_config.membership().voter_ids().count()
}

/// On the active: how long ago a majority last acknowledged it. A lone voter is its own
/// majority, acknowledged all the time: openraft leaves its acknowledgement time where the
/// election set it, so a one-node set looked unconfirmed a moment after it started
/// (`/health/active` answered 503, and writes in flight were answered `no_quorum`).
fn quorum_acknowledged_ms_ago(metrics: &openraft::RaftMetrics<TypeConfig>) -> Option<u64> {
    let mut voters = metrics.membership_config.membership().voter_ids();
    let lone_voter = voters.next() == Some(metrics.id) && voters.next().is_none();
    if metrics.state == openraft::ServerState::Leader && lone_voter {
        return Some(0);
    }
    metrics
        .last_quorum_acked
        .as_ref()
        .map(|acknowledged| acknowledged.elapsed().as_millis() as u64)
}

/// [`ReplicaStatus::quorum_acknowledged_ms_ago`] alone, without building the whole status:
/// the proposer reads it for every entry it proposes.
pub(crate) fn quorum_acknowledged_ms_ago_of(raft: &Raft) -> Option<u64> {
    quorum_acknowledged_ms_ago(&raft.metrics().borrow_watched())
}

impl ReplicaStatus {
    pub fn of(raft: &Raft) -> ReplicaStatus {
        let metrics = raft.metrics().borrow_watched().clone();
        let role = match metrics.state {
            openraft::ServerState::Leader => Role::Active,
            openraft::ServerState::Follower => Role::Passive,
            openraft::ServerState::Candidate => Role::Candidate,
            openraft::ServerState::Learner => Role::Learner,
            openraft::ServerState::Shutdown => Role::ShuttingDown,
        };
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(node_id, member)| {
                let matched_index = metrics
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(node_id).cloned())
                    .map(|matched| matched.map(|id| id.index).unwrap_or(0));
                let acknowledged_ms_ago = metrics
                    .heartbeat
                    .as_ref()
                    .filter(|_| *node_id != metrics.id)
                    .and_then(|heartbeats| heartbeats.get(node_id).cloned().flatten())
                    .map(|acknowledged| acknowledged.elapsed().as_millis() as u64);
                MemberStatus {
                    node_id: *node_id,
                    member: member.clone(),
                    voter: voters.contains(node_id),
                    matched_index,
                    lag: matched_index.map(|matched| last_log_index.saturating_sub(matched)),
                    acknowledged_ms_ago,
                }
            })
            .collect::<Vec<_>>();
        ReplicaStatus {
            node_id: metrics.id,
            role,
            term: metrics.current_term,
            last_log_index,
            committed_index: metrics.local_committed.map(|id| id.index).unwrap_or(0),
            applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
            snapshot_index: metrics.snapshot.map(|id| id.index).unwrap_or(0),
            purged_index: metrics.purged.map(|id| id.index).unwrap_or(0),
            cluster_committed_index: metrics.cluster_committed.map(|id| id.index).unwrap_or(0),
            quorum_acknowledged_ms_ago: quorum_acknowledged_ms_ago(&metrics),
            active: metrics.current_leader,
            initialized: !members.is_empty(),
            members,
        }
    }

    /// The active's member record, when this node knows it.
    pub fn active_member(&self) -> Option<&Member> {
        let active = self.active?;
        self.members
            .iter()
            .find(|member| member.node_id == active)
            .map(|member| &member.member)
    }
}
