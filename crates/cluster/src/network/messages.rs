//! The replication messages as they travel in frames: one [`Request`] from a leader or
//! candidate, one [`Response`] from the peer (in a pipelined replication session, one
//! [`Response::Appended`] per AppendEntries, in order).

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::hand_over::HandOverCause;
use crate::types::{SnapshotMeta, TypeConfig, Vote};

/// What one member asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    /// The active hands its role over, for this cause.
    TransferLeader(TransferLeaderRequest<TypeConfig>, HandOverCause),
    /// Announces a snapshot: exactly `total_bytes` raw bytes of the snapshot file follow this
    /// frame on the same connection, then the peer answers with
    /// [`Response::InstallSnapshot`].
    InstallSnapshot {
        vote: Vote,
        meta: SnapshotMeta,
        total_bytes: u64,
    },
    /// Opens a pipelined replication session on this connection
    /// ([`super::append_stream`]): the peer answers [`Response::AppendStreamOpened`], then
    /// every later frame is a [`Request::AppendEntries`], each answered in order by
    /// [`Response::Appended`] without waiting for the next.
    AppendStream,
}

/// The answer to one [`Request`], of the matching variant, or [`Response::Failed`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    PreVote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    InstallSnapshot(SnapshotResponse<TypeConfig>),
    AppendStreamOpened,
    Appended(StreamAppendResult<TypeConfig>),
    /// The peer's Raft could not handle the request: it is shutting down or has stopped.
    Failed {
        reason: String,
    },
}
