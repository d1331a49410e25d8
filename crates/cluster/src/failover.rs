//! Failover: electing a new active at once when the old one's process is gone, and the
//! failover history.
//!
//! A passive that sees every replication connection of the active close (a killed process
//! closes its sockets) waits one heartbeat interval per rank (the lowest-numbered voter goes
//! first, so two passives do not split the vote), and if the active is still gone it starts
//! an election without waiting for the election timeout. The wait tells a dead process from
//! a live active that dropped its connections after a timeout and reconnects with its next
//! heartbeat; the first in rank skips it when the active's replication port refuses a
//! connection, which proves its process gone. The other passive, having seen the
//! same, grants its vote despite its lease on the old active (see `network::server`), or,
//! when the candidate's log is behind its own, refuses it and elects itself at once. A paused
//! or cut-off active keeps its connections open: then openraft's timer elects a new active
//! (with a pre-vote) once the passives' lease on it (the maximum election timeout) and their
//! election timeout have run out.
//!
//! When a node becomes the active and its first entry of the new term commits, it writes a
//! [`FailoverRecord`] into the log: when, from which node, why, and how long writes were
//! unavailable (until that first commit: from the last contact with the previous active, or
//! from the oldest entry it sent and never said was committed, or from its last confirmation
//! by a majority when it handed over for want of one, whichever is earliest). Every node applies the record, so every node shows the same history. Why is what
//! this node saw: a fast election's cause, a hand-over from the previous active in its term
//! (an operator's switchover, or an active no majority confirmed: `hand_over`;
//! [`LeaderContact::handed_over_by`]), or else silence longer than the election timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::hand_over::HandOverCause;
use crate::network::leader_contact::HandOver;
use crate::network::{Contact, LeaderContact, NetworkFactory};
use crate::replica_set_time::ReplicaSetTime;
use crate::types::{FailoverRecord, NodeId, Proposal, Raft};

pub fn to_json(record: &FailoverRecord) -> std::io::Result<String> {
    serde_json::to_string(record).map_err(std::io::Error::other)
}

pub fn from_json(text: &str) -> Option<FailoverRecord> {
    serde_json::from_str(text).ok()
}

/// An election this node started because the active's process was gone: when, and what
/// showed it gone.
#[derive(Debug, Default)]
pub struct FastElection {
    started: Mutex<Option<(Instant, GoneBecause)>>,
}

/// What showed the active's process gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoneBecause {
    /// Its replication connections closed and stayed closed for the wait.
    ConnectionsClosed,
    /// Its replication connections closed and its replication port refused a connection.
    PortRefused,
    /// Its replication connections closed, and this node refused its vote to a candidate
    /// whose log was behind its own (then it need not wait its turn).
    CandidateBehind,
}

/// How recent a fast election must be to explain the failover that followed it.
const FAST_ELECTION_EXPLAINS_MS: u64 = 5_000;

impl FastElection {
    fn start(&self, because: GoneBecause) {
        *self.lock() = Some((Instant::now(), because));
    }

    /// Why the active was gone, if a fast election started recently.
    fn started_recently(&self) -> Option<GoneBecause> {
        self.lock()
            .filter(|(at, _)| at.elapsed() < Duration::from_millis(FAST_ELECTION_EXPLAINS_MS))
            .map(|(_, because)| because)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, GoneBecause)>> {
        self.started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts an election as soon as the active's process is gone (see the module doc).
pub async fn elect_when_the_active_is_gone(
    raft: Raft,
    network: NetworkFactory,
    contact: Arc<LeaderContact>,
    fast_election: Arc<FastElection>,
    heartbeat_interval_ms: u64,
    mut stopped: watch::Receiver<bool>,
) {
    let mut losses = contact.subscribe_to_losses();
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            changed = losses.changed() => if changed.is_err() { return },
        }
        let Some(lost) = contact.last_contact() else {
            continue;
        };
        let Some(rank) = election_rank(&raft, lost.leader_id) else {
            continue;
        };
        let mut candidates_behind = contact.subscribe_to_candidates_behind();
        let heartbeat_interval = Duration::from_millis(heartbeat_interval_ms);
        let waited = wait_for_rank(&raft, &network, lost.leader_id, rank, heartbeat_interval);
        let because = tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = candidates_behind.changed() => GoneBecause::CandidateBehind,
            because = waited => because,
        };
        if may_elect(&raft, &contact, &lost, because) {
            fast_election.start(because);
            // A real vote, not a pre-vote: openraft's pre-vote always respects the lease.
            let _ = raft.trigger().elect(false).await;
        }
    }
}

/// Whether this node may still elect itself once its wait is over: the active is still
/// gone, and no election has begun since it was lost (unless this node has just refused a
/// candidate whose log was behind: then no other node may have become the active).
fn may_elect(raft: &Raft, contact: &LeaderContact, lost: &Contact, because: GoneBecause) -> bool {
    let metrics = raft.metrics().borrow_watched().clone();
    let no_rival = match because {
        GoneBecause::CandidateBehind => metrics
            .current_leader
            .is_none_or(|leader| leader == lost.leader_id),
        GoneBecause::ConnectionsClosed | GoneBecause::PortRefused => {
            metrics.current_term == lost.term
        }
    };
    contact.active_is_gone() && metrics.state == ServerState::Follower && no_rival
}

/// How often the first in rank tries the lost active's port again while it accepts: a
/// dying process may close its connections a moment before its listener.
const PORT_PROBE_INTERVAL: Duration = Duration::from_millis(5);

/// Waits this node's turn to elect after the loss of `lost_active`: one heartbeat interval
/// per rank, or less for the first in rank once the lost active's replication port refuses
/// a connection (tried again and again until its turn).
async fn wait_for_rank(
    raft: &Raft,
    network: &NetworkFactory,
    lost_active: NodeId,
    rank: u64,
    heartbeat_interval: Duration,
) -> GoneBecause {
    let turn = Instant::now() + heartbeat_interval * rank as u32;
    let lost_member = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .get_node(&lost_active)
        .cloned();
    if rank == 1
        && let Some(member) = lost_member
    {
        while Instant::now() + PORT_PROBE_INTERVAL < turn {
            let left = turn - Instant::now();
            if network
                .refuses_connections(lost_active, &member, left)
                .await
            {
                return GoneBecause::PortRefused;
            }
            tokio::time::sleep(PORT_PROBE_INTERVAL).await;
        }
    }
    tokio::time::sleep_until(turn).await;
    GoneBecause::ConnectionsClosed
}

/// 1 for the lowest-numbered voter other than the lost active, 2 for the next, …; `None`
/// when this node is not a voter.
fn election_rank(raft: &Raft, lost_active: NodeId) -> Option<u64> {
    let metrics = raft.metrics().borrow_watched().clone();
    let mut voters: Vec<NodeId> = metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|voter| *voter != lost_active)
        .collect();
    voters.sort_unstable();
    let position = voters.iter().position(|voter| *voter == metrics.id)?;
    Some(position as u64 + 1)
}

/// Watches this node's Raft metrics and records each term in which it became the active.
/// `recorded_term` is the term of the last record already in the log: an active that
/// restarts and resumes leading in the same term records nothing new.
pub async fn record_failovers(
    raft: Raft,
    contact: Arc<LeaderContact>,
    fast_election: Arc<FastElection>,
    time: Arc<ReplicaSetTime>,
    mut recorded_term: u64,
    mut stopped: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
        let snapshot = metrics.borrow_watched().clone();
        let term = snapshot.current_term;
        let committed_in_term = snapshot
            .local_committed
            .is_some_and(|committed| committed.leader_id.term == term);
        if snapshot.state != ServerState::Leader || term == recorded_term || !committed_in_term {
            continue;
        }
        recorded_term = term;
        let takeover = describe(
            snapshot.id,
            term,
            &contact,
            fast_election.started_recently(),
        );
        eprintln!(
            "tandem: node {} is the active in term {term} ({}; writes were unavailable for {} ms)",
            takeover.to, takeover.reason, takeover.unavailable_ms
        );
        let (raft, time) = (raft.clone(), time.clone());
        tokio::spawn(async move {
            // Its time becomes the state machine's: stamped as every entry is, once the
            // voters' clocks are known (a set restarted a moment ago has no readings yet).
            let voters = crate::status::voter_count(&raft);
            let record = takeover.recorded_at(time.stamp_ms(voters).await);
            // A leader change before this commits loses the record, not any data.
            let _ = raft.client_write(Proposal::Failover(record)).await;
        });
    }
}

/// A failover as this node saw it when it became the active: a [`FailoverRecord`] but for
/// its time, which is stamped as every entry's is.
struct Takeover {
    term: u64,
    from: Option<NodeId>,
    to: NodeId,
    reason: String,
    unavailable_ms: u64,
}

impl Takeover {
    fn recorded_at(self, at_ms: i64) -> FailoverRecord {
        FailoverRecord {
            term: self.term,
            at_ms,
            from: self.from,
            to: self.to,
            reason: self.reason,
            unavailable_ms: self.unavailable_ms,
        }
    }
}

fn describe(
    this_node: NodeId,
    term: u64,
    contact: &LeaderContact,
    fast_election: Option<GoneBecause>,
) -> Takeover {
    let previous = contact
        .last_contact()
        .filter(|contact| contact.leader_id != this_node);
    let hand_over =
        previous.and_then(|previous| contact.handed_over_by(previous.leader_id, previous.term));
    let silent_ms = previous
        .map(|contact| {
            Instant::now()
                .duration_since(contact.received_at)
                .as_millis() as u64
        })
        .unwrap_or(0);
    // An active that handed over unconfirmed could not commit since its last confirmation,
    // though its heartbeats went on.
    let unconfirmed_ms = match hand_over {
        Some(HandOver {
            cause: HandOverCause::Unconfirmed { for_ms },
            received_at,
        }) => for_ms + Instant::now().duration_since(received_at).as_millis() as u64,
        _ => 0,
    };
    // Entries it sent and never said were committed: writes waited from the first of them.
    let uncommitted_ms = contact
        .oldest_uncommitted_at()
        .filter(|_| previous.is_some())
        .map_or(0, |arrived| {
            Instant::now().duration_since(arrived).as_millis() as u64
        });
    let unavailable_ms = silent_ms.max(unconfirmed_ms).max(uncommitted_ms);
    let reason = match previous {
        None if term <= 1 => "replica set formed: first active elected".to_string(),
        None => "replica set (re)started: no active was known to this node".to_string(),
        Some(previous) if fast_election == Some(GoneBecause::ConnectionsClosed) => format!(
            "node {}'s replication connections all closed and it sent nothing for a \
             heartbeat interval (its process went away, or it dropped them); elected without \
             waiting for the election timeout",
            previous.leader_id
        ),
        Some(previous) if fast_election == Some(GoneBecause::PortRefused) => format!(
            "node {}'s process went away (its replication connections closed and its port \
             refused a connection); elected at once",
            previous.leader_id
        ),
        Some(previous) if fast_election == Some(GoneBecause::CandidateBehind) => format!(
            "node {}'s replication connections all closed (its process went away, or it \
             dropped them); elected at once after refusing a candidate whose log was behind \
             this node's",
            previous.leader_id
        ),
        Some(previous) => match hand_over.map(|hand_over| hand_over.cause) {
            Some(HandOverCause::Requested) => format!(
                "switchover: node {} handed over the active role",
                previous.leader_id
            ),
            Some(HandOverCause::Unconfirmed { for_ms }) => format!(
                "node {} handed over the active role by itself: no majority had confirmed it \
                 in time for {for_ms} ms (the others' answers were lost or late)",
                previous.leader_id
            ),
            None => format!(
                "node {} stopped answering for longer than the election timeout",
                previous.leader_id
            ),
        },
    };
    Takeover {
        term,
        from: previous.map(|contact| contact.leader_id),
        to: this_node,
        reason,
        unavailable_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::leader_contact::LogProgress;

    /// A contact whose last AppendEntries came from node 1 in term 3, `silent_for` ago.
    async fn heard_from_node_1_in_term_3(silent_for: Duration) -> Arc<LeaderContact> {
        let contact = LeaderContact::new();
        contact
            .connection_record()
            .append_entries_accepted(1, 3, LogProgress::default());
        tokio::time::sleep(silent_for).await;
        contact
    }

    #[tokio::test]
    async fn a_hand_over_is_a_switchover_however_long_the_old_active_was_silent() {
        // Longer than the default minimum election timeout (150 ms), by which the history
        // once told a switchover from a takeover.
        let contact = heard_from_node_1_in_term_3(Duration::from_millis(200)).await;
        contact
            .connection_record()
            .handed_over(1, 3, HandOverCause::Requested);
        let takeover = describe(2, 4, &contact, None);
        assert_eq!(
            takeover.reason,
            "switchover: node 1 handed over the active role"
        );
        assert_eq!((takeover.from, takeover.to), (Some(1), 2));
        assert!(
            takeover.unavailable_ms >= 200,
            "{}",
            takeover.unavailable_ms
        );
    }

    #[tokio::test]
    async fn a_takeover_without_a_hand_over_in_that_term_is_no_switchover() {
        let contact = heard_from_node_1_in_term_3(Duration::ZERO).await;
        contact
            .connection_record()
            .handed_over(1, 2, HandOverCause::Requested);
        let takeover = describe(2, 4, &contact, None);
        assert_eq!(
            takeover.reason,
            "node 1 stopped answering for longer than the election timeout"
        );
    }

    #[tokio::test]
    async fn a_hand_over_by_an_unconfirmed_active_counts_from_its_last_confirmation() {
        // Its heartbeats arrived to the end; its answers did not.
        let contact = heard_from_node_1_in_term_3(Duration::ZERO).await;
        contact
            .connection_record()
            .handed_over(1, 3, HandOverCause::Unconfirmed { for_ms: 1_950 });
        let takeover = describe(2, 4, &contact, None);
        assert_eq!(
            takeover.reason,
            "node 1 handed over the active role by itself: no majority had confirmed it in \
             time for 1950 ms (the others' answers were lost or late)"
        );
        assert!(
            (1_950..3_000).contains(&takeover.unavailable_ms),
            "{}",
            takeover.unavailable_ms
        );
    }

    #[tokio::test]
    async fn writes_count_as_unavailable_from_the_oldest_entry_the_old_active_left_uncommitted() {
        // Its entries arrived, the commit index never moved past them, and its heartbeats
        // went on: the stall began with the first of them, not at the last heartbeat.
        let contact = LeaderContact::new();
        let mut connection = contact.connection_record();
        let sent = |last_index, leader_commit| LogProgress {
            last_index,
            leader_commit: Some(leader_commit),
        };
        connection.append_entries_accepted(1, 3, sent(Some(10), 10));
        connection.append_entries_accepted(1, 3, sent(Some(12), 10));
        tokio::time::sleep(Duration::from_millis(300)).await;
        connection.append_entries_accepted(1, 3, sent(None, 10));
        let takeover = describe(2, 4, &contact, None);
        assert!(
            (300..1_000).contains(&takeover.unavailable_ms),
            "{}",
            takeover.unavailable_ms
        );
        // Once it says they are committed, the stall is the silence since.
        connection.append_entries_accepted(1, 3, sent(None, 12));
        assert!(describe(2, 4, &contact, None).unavailable_ms < 300);
    }

    #[tokio::test]
    async fn a_fast_election_says_what_showed_the_active_gone() {
        let contact = heard_from_node_1_in_term_3(Duration::ZERO).await;
        let takeover = describe(2, 4, &contact, Some(GoneBecause::PortRefused));
        assert!(
            takeover.reason.contains("its port refused a connection"),
            "{}",
            takeover.reason
        );
    }
}
