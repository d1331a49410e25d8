//! The proposer: gathers the commands waiting on the active into one log entry stamped with
//! the replica set's time ([`crate::replica_set_time`]), proposes it, and answers each
//! caller with its own outcome and the term that acknowledged it. Several entries may be in
//! flight at once; while they are, new commands queue up and make the next entry bigger
//! (group commit across the replica set: one append and one fsync per node for many
//! commands).
//!
//! openraft refuses a write when a majority has not acknowledged the active within its
//! leader lease (the maximum election timeout). Under heavy load an acknowledgement can come
//! that late although every node is healthy; so while no other node can have been elected yet
//! (the last acknowledgement is younger than the lease plus the minimum election timeout),
//! the proposer proposes the refused entry again, until the write timeout. Past that, the
//! active may be cut off and a new one elected: the caller is told at once (`no_quorum`), to
//! look for it; so is a write that an active refuses while it hands its role over for want
//! of a majority (`hand_over`).
//! A just-elected active, which no majority has acknowledged yet, holds a refused entry the
//! same way, for as long counted from when the entry was first proposed: its first
//! acknowledgement is one round trip away, and a client should not be sent away meanwhile.
//!
//! An entry openraft accepted waits for its commit until the write timeout, but no longer
//! than that same grace: once no majority has acknowledged the active for the lease plus
//! the minimum election timeout, another node may be the active, and the callers are
//! answered `no_quorum` (the outcome is unknown: the entry may still commit) so that they
//! look for it. A cut-off active held its clients for the whole write timeout (5 s by
//! default) where a new active was serving after half a second.

use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{ClientWriteError, ForwardReason, RaftError};
use tandem_core::error::{Error, ErrorCode, Redirect, Result};
use tandem_core::{Command, Outcome, limits};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::replica_set_time::ReplicaSetTime;
use crate::types::{NodeId, Proposal, ProposalResult, Raft, TypeConfig};

/// An outcome and the log position that made it durable.
#[derive(Clone, Debug, PartialEq)]
pub struct Acknowledged {
    pub outcome: Outcome,
    /// The term of the active that committed it.
    pub term: u64,
    pub log_index: u64,
}

pub struct Pending {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Acknowledged>>,
}

/// How long an entry refused for an expired leader lease waits before it is proposed again.
const LEASE_RETRY_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug)]
pub struct ProposerTimeouts {
    /// A write not committed within this long answers `no_quorum`.
    pub write_timeout: Duration,
    /// Until the last majority acknowledgement is this old, no other node can have been
    /// elected (the leader lease plus the minimum election timeout).
    pub unconfirmed_grace: Duration,
}

pub async fn run_proposer(
    raft: Raft,
    mut pending: mpsc::Receiver<Pending>,
    time: Arc<ReplicaSetTime>,
    timeouts: ProposerTimeouts,
) {
    let in_flight = Arc::new(Semaphore::new(limits::MAX_PROPOSALS_IN_FLIGHT));
    while let Some(first) = pending.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (commands, replies) = gather(first, &mut pending);
        let (raft, time) = (raft.clone(), time.clone());
        tokio::spawn(async move {
            let result = propose(&raft, commands, &time, timeouts).await;
            drop(permit);
            answer(replies, result);
        });
    }
}

fn gather(
    first: Pending,
    pending: &mut mpsc::Receiver<Pending>,
) -> (Vec<Command>, Vec<oneshot::Sender<Result<Acknowledged>>>) {
    let mut commands = Vec::new();
    let mut replies = Vec::new();
    let mut messages = 0;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        messages += item.command.message_weight();
        commands.push(item.command);
        replies.push(item.reply);
        if commands.len() >= limits::MAX_COMMANDS_PER_COMMIT
            || messages >= limits::MAX_MESSAGES_PER_COMMIT
        {
            break;
        }
        next = pending.try_recv().ok();
    }
    (commands, replies)
}

struct Committed {
    result: ProposalResult,
    term: u64,
    log_index: u64,
}

async fn propose(
    raft: &Raft,
    commands: Vec<Command>,
    time: &ReplicaSetTime,
    timeouts: ProposerTimeouts,
) -> Result<Committed> {
    let commands = Arc::new(commands);
    let first_proposed = Instant::now();
    let deadline = first_proposed + timeouts.write_timeout;
    loop {
        let proposal = Proposal::Commands {
            timestamp_ms: time.stamp_ms(crate::status::voter_count(raft)).await,
            commands: commands.clone(),
        };
        let written = tokio::select! {
            written = tokio::time::timeout_at(deadline, raft.client_write(proposal)) => written,
            unconfirmed_for = another_active_may_exist(
                raft,
                first_proposed,
                timeouts.unconfirmed_grace,
            ) => return Err(no_quorum_unconfirmed_for(unconfirmed_for)),
        };
        match written {
            Ok(Ok(response)) => {
                return Ok(Committed {
                    term: response.log_id.leader_id.term,
                    log_index: response.log_id.index,
                    result: response.data,
                });
            }
            // Nothing was appended: proposing the entry again cannot duplicate it.
            Ok(Err(error))
                if awaits_confirmation(
                    raft,
                    &error,
                    first_proposed.elapsed(),
                    timeouts.unconfirmed_grace,
                ) =>
            {
                if Instant::now() + LEASE_RETRY_INTERVAL >= deadline {
                    return Err(no_quorum(timeouts.write_timeout));
                }
                tokio::time::sleep(LEASE_RETRY_INTERVAL).await;
            }
            Ok(Err(error)) => {
                return Err(match unconfirmed_beyond(raft, timeouts.unconfirmed_grace) {
                    Some(unconfirmed_for) => no_quorum_unconfirmed_for(unconfirmed_for),
                    None => write_error(raft, error),
                });
            }
            Err(_) => return Err(no_quorum(timeouts.write_timeout)),
        }
    }
}

/// True when openraft refused the write only because the active's lease expired (or has not
/// begun), and the last majority acknowledgement is recent enough that no other node can
/// have been elected; an active never acknowledged yet (just elected) waits as long from
/// when the write was first proposed, `waited` ago.
fn awaits_confirmation(
    raft: &Raft,
    error: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    waited: Duration,
    unconfirmed_grace: Duration,
) -> bool {
    let RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) = error else {
        return false;
    };
    if forward.reason != ForwardReason::LeaseExpired {
        return false;
    }
    let status = crate::status::ReplicaStatus::of(raft);
    let unconfirmed_for = status
        .quorum_acknowledged_ms_ago
        .map_or(waited, Duration::from_millis);
    status.role == crate::status::Role::Active && unconfirmed_for < unconfirmed_grace
}

/// Resolves once no majority has acknowledged this active for `unconfirmed_grace` (never
/// acknowledged: since `first_proposed`), so that another node may have been elected; with
/// how long it has been unconfirmed. (A lone voter is its own majority, acknowledged all
/// the time: see `status`.)
async fn another_active_may_exist(
    raft: &Raft,
    first_proposed: Instant,
    unconfirmed_grace: Duration,
) -> Duration {
    loop {
        let unconfirmed_for = crate::status::quorum_acknowledged_ms_ago_of(raft)
            .map_or_else(|| first_proposed.elapsed(), Duration::from_millis);
        match unconfirmed_grace.checked_sub(unconfirmed_for) {
            Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
            _ => return unconfirmed_for,
        }
    }
}

/// How long no majority has acknowledged this node, when it is the active and that is
/// `unconfirmed_grace` or longer: then it refuses writes (its lease expired, or it is
/// handing its role over) because another node may be the active, for want of a quorum.
fn unconfirmed_beyond(raft: &Raft, unconfirmed_grace: Duration) -> Option<Duration> {
    if !raft.is_leader() {
        return None;
    }
    let unconfirmed_for =
        Duration::from_millis(crate::status::quorum_acknowledged_ms_ago_of(raft)?);
    (unconfirmed_for >= unconfirmed_grace).then_some(unconfirmed_for)
}

/// The answer to a write on an active that another node may have replaced: in flight, or
/// refused by an active whose majority no longer acknowledges it.
fn no_quorum_unconfirmed_for(unconfirmed_for: Duration) -> Error {
    Error::new(
        ErrorCode::NoQuorum,
        format!(
            "no quorum: no majority of voters has acknowledged this active for {} ms, so \
             another node may be the active now; the outcome is unknown and retrying with the \
             same message id is safe",
            unconfirmed_for.as_millis()
        ),
    )
}

fn no_quorum(write_timeout: Duration) -> Error {
    Error::new(
        ErrorCode::NoQuorum,
        format!(
            "no quorum: the active could not replicate to a majority of voters within \
             {} ms; the outcome is unknown and retrying with the same message id is safe",
            write_timeout.as_millis()
        ),
    )
}

fn answer(replies: Vec<oneshot::Sender<Result<Acknowledged>>>, result: Result<Committed>) {
    match result {
        Ok(committed) => {
            let mut outcomes = committed.result.outcomes.into_iter();
            for reply in replies {
                let outcome = outcomes
                    .next()
                    .unwrap_or_else(|| Err(Error::unavailable("the log answered no outcome")));
                let _ = reply.send(outcome.map(|outcome| Acknowledged {
                    outcome,
                    term: committed.term,
                    log_index: committed.log_index,
                }));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Maps openraft's refusal of a write to what a client can act on.
pub fn write_error(
    raft: &Raft,
    error: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> Error {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            let status = crate::status::ReplicaStatus::of(raft);
            if forward.leader_id.is_none() && status.role == crate::status::Role::Active {
                unconfirmed_active(status.node_id, status.term)
            } else {
                not_active(*raft.node_id(), forward.leader_id, forward.leader_node)
            }
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => Error::unavailable(
            "the active changed while this write was in flight; its outcome is unknown and \
             retrying with the same message id is safe",
        ),
        RaftError::APIError(other) => Error::unavailable(format!("write refused: {other}")),
        RaftError::Fatal(fatal) => Error::unavailable(format!("replication stopped: {fatal}")),
    }
}

/// The error of an active whose majority has not confirmed it lately: just elected, or cut
/// off from the others (then, after the election timeout, another node takes over).
pub fn unconfirmed_active(this_node: NodeId, term: u64) -> Error {
    Error::unavailable(format!(
        "node {this_node} is the active of term {term} but a majority of voters has not \
         confirmed it recently (it was just elected, or it is cut off from the others); \
         retry in a moment"
    ))
}

/// The error a passive node answers: a redirect when the active is known.
pub fn not_active(
    this_node: NodeId,
    leader: Option<NodeId>,
    leader_member: Option<crate::types::Member>,
) -> Error {
    match (leader, leader_member) {
        (Some(node_id), Some(member)) if node_id != this_node => Error::not_active(
            format!(
                "node {this_node} is passive; the active is node {node_id} (grpc {}, http {})",
                member.grpc_address, member.http_address
            ),
            Redirect {
                node_id,
                grpc_address: member.grpc_address,
                http_address: member.http_address,
            },
        ),
        _ => Error::unavailable(format!(
            "node {this_node} is passive and no active is known yet (an election is under way); \
             retry in a moment"
        )),
    }
}
