//! The front door a simulated node offers its clients: one request, one response, in the
//! cluster's length-prefixed frames over simulated TCP. It stands where a node's gRPC
//! service stands and does what that service does with a data-plane call: hand the command
//! to the replica (which refuses it on a passive) and answer with the acknowledgement's term
//! and log index.

use serde::{Deserialize, Serialize};
use tandem_core::error::Error;
use tandem_core::{Command, Outcome};

/// The front door's port on every node.
pub const CLIENT_PORT: u16 = 7100;
/// The replication port on every node.
pub const RAFT_PORT: u16 = 7000;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Replicate and apply a command (on the active).
    Execute(Command),
    /// Every message id the node stores, in any state, and its failover history.
    Inventory,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Executed(Result<Executed, Error>),
    Inventory(Result<Inventory, Error>),
}

/// A command the active acknowledged.
#[derive(Debug, Serialize, Deserialize)]
pub struct Executed {
    pub outcome: Outcome,
    pub term: u64,
    pub log_index: u64,
    pub node_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub node_id: u64,
    /// Whether the node was the active when it answered.
    pub active: bool,
    /// The node's term, last log index and last applied index when it answered.
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub message_ids: Vec<String>,
    /// (term, at_ms) of each recorded failover, oldest first.
    pub failovers: Vec<(u64, i64)>,
}

pub fn node_name(node_id: u64) -> String {
    format!("node{node_id}")
}
