//! The openraft type configuration: what a log entry carries ([`Proposal`]), what applying
//! it answers ([`ProposalResult`]), and how a member is reached ([`Member`]).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tandem_core::error::Result;
use tandem_core::{Command, Outcome};

/// A node's identity in the replica set. Never reuse the id of a removed node.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Tandem's replica set types.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = NodeId,
        Node = Member,
        AsyncRuntime = crate::runtime::ClusterRuntime,
);

pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// The id of log entry `index`, proposed by the active `node_id` in `term`.
pub fn log_id(term: u64, node_id: NodeId, index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId { term, node_id },
        index,
    )
}

/// How to reach one member: the replication port and the two client-facing ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub raft_address: String,
    pub grpc_address: String,
    pub http_address: String,
}

impl fmt::Display for Member {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "raft {} grpc {} http {}",
            self.raft_address, self.grpc_address, self.http_address
        )
    }
}

/// One log entry's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Proposal {
    /// Commands in the order the active received them, stamped with the active's clock:
    /// every replica applies them with this timestamp, never its own.
    ///
    /// The commands are shared, not copied, between the log's in-memory entries, replication
    /// and apply (serialized exactly as a plain list).
    Commands {
        timestamp_ms: i64,
        commands: Arc<Vec<Command>>,
    },
    /// A new active records how it took over, so every node shows the same history.
    Failover(FailoverRecord),
}

impl fmt::Display for Proposal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proposal::Commands {
                timestamp_ms,
                commands,
            } => write!(formatter, "{} commands at {timestamp_ms}", commands.len()),
            Proposal::Failover(record) => {
                write!(
                    formatter,
                    "failover to node {} in term {}",
                    record.to, record.term
                )
            }
        }
    }
}

/// One failover (or switchover) as the new active saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub term: u64,
    /// When the new active committed its first entry (its clock, ms since the epoch).
    pub at_ms: i64,
    /// The previous active, when known.
    pub from: Option<NodeId>,
    pub to: NodeId,
    pub reason: String,
    /// From the last contact with the previous active to the new active's first commit.
    pub unavailable_ms: u64,
}

/// What applying one entry answered: one result per command, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalResult {
    pub outcomes: Vec<Result<Outcome>>,
}

/// A snapshot of the state machine: a consistent SQLite database file.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: std::path::PathBuf,
}
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
