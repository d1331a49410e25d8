//! When this node last heard from the active, and whether the active's connections to it are
//! still open: a process that dies closes its sockets, so a follower learns of a crashed active
//! at once instead of after an election timeout.
//!
//! The server records every AppendEntries a leader sent over a connection that this node
//! accepted. When the last open connection that carried the current leader's AppendEntries
//! closes, the loss counter ([`LeaderContact::subscribe_to_losses`]) goes up. One connection
//! closing is not enough: openraft replaces its replication connection now and then, while the
//! heartbeat connection stays open.
//!
//! It also keeps when the oldest entry received from the active that the active has not yet
//! said is committed arrived ([`LeaderContact::oldest_uncommitted_at`]): an active whose
//! heartbeats go on while it commits nothing (its answers lost one way) stalled writes from
//! about then, not from its last heartbeat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::wall_clock_ms;
use crate::hand_over::HandOverCause;
use crate::types::{NodeId, TypeConfig};

/// Batches of uncommitted entries remembered, at most (the oldest are what matter).
const MAX_UNCOMMITTED_BATCHES: usize = 4_096;

/// What an AppendEntries says of the leader's log: the last index it carries (none for a
/// heartbeat) and the leader's commit index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogProgress {
    pub last_index: Option<u64>,
    pub leader_commit: Option<u64>,
}

impl LogProgress {
    pub fn of(request: &openraft::raft::AppendEntriesRequest<TypeConfig>) -> LogProgress {
        LogProgress {
            last_index: request.entries.last().map(|entry| entry.log_id.index),
            leader_commit: request.leader_commit.as_ref().map(|log_id| log_id.index),
        }
    }
}

/// The last AppendEntries this node accepted from a leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    pub leader_id: NodeId,
    pub term: u64,
    /// Wall clock, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    pub received_at: Instant,
}

/// Shared by the replication server (which records) and the node (which observes).
#[derive(Debug)]
pub struct LeaderContact {
    state: Mutex<ContactState>,
    losses: watch::Sender<u64>,
    /// Counts the candidates this node refused, after the active was gone, for a log behind
    /// its own.
    candidates_behind: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct ContactState {
    last_contact: Option<Contact>,
    /// Open connections that carried AppendEntries of `last_contact`'s leader and term.
    open_leader_connections: usize,
    /// The last of those connections closed and the leader has not been heard from since.
    leader_connections_lost: bool,
    /// The last leader that handed the active role over to this node, and the term it led
    /// in.
    handed_over_by: Option<(LeaderTerm, HandOver)>,
    /// Entries of `last_contact`'s leader beyond its commit index as last heard: the last
    /// index of each batch and when it arrived, oldest first.
    uncommitted: VecDeque<(u64, Instant)>,
}

/// A leader as a connection saw it: its node id and term.
type LeaderTerm = (NodeId, u64);

/// A hand-over of the active role to this node: why, and when it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandOver {
    pub cause: HandOverCause,
    pub received_at: Instant,
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            losses: watch::Sender::new(0),
            candidates_behind: watch::Sender::new(0),
        }
    }
}

impl LeaderContact {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn last_contact(&self) -> Option<Contact> {
        self.lock().last_contact
    }

    /// Every connection that carried the current active's AppendEntries has closed and
    /// nothing has been heard from it since: its process is gone (or the network reset
    /// every connection at once).
    pub fn active_is_gone(&self) -> bool {
        self.lock().leader_connections_lost
    }

    /// [`Self::active_is_gone`], waiting up to `wait` for it when the active was heard from
    /// within twice `wait`: a peer that saw the active's process die may ask for this node's
    /// vote before this node has read the end of its own connections from the same process.
    /// An active heard from longer ago is silent, not gone, and is answered for at once.
    pub async fn active_is_gone_within(&self, wait: Duration) -> bool {
        let mut losses = self.subscribe_to_losses();
        if self.active_is_gone() {
            return true;
        }
        let heard_lately = self
            .last_contact()
            .is_some_and(|contact| contact.received_at.elapsed() < wait * 2);
        if heard_lately {
            let _ = tokio::time::timeout(wait, losses.changed()).await;
        }
        self.active_is_gone()
    }

    /// When the oldest entry that the last active sent and had not said was committed
    /// arrived; `None` when it has said all it sent is.
    pub fn oldest_uncommitted_at(&self) -> Option<Instant> {
        self.lock().uncommitted.front().map(|(_, arrived)| *arrived)
    }

    /// The hand-over of the active role to this node by `leader_id`, leading in `term`,
    /// if it made one.
    pub fn handed_over_by(&self, leader_id: NodeId, term: u64) -> Option<HandOver> {
        self.lock()
            .handed_over_by
            .filter(|(leader, _)| *leader == (leader_id, term))
            .map(|(_, hand_over)| hand_over)
    }

    /// A counter that goes up each time the last open connection carrying the current leader's
    /// AppendEntries closes. Await `changed()` on it to start an election at once.
    ///
    /// A live leader also drops its connections when its RPCs time out (for example while this
    /// node stalls on a slow disk) and reconnects with its next heartbeat. To tell the two
    /// apart, wait a couple of heartbeat intervals after a loss and elect only if
    /// [`Self::last_contact`] has not moved past the moment of the loss.
    pub fn subscribe_to_losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }

    /// A counter that goes up each time this node refuses its vote, once the active is gone,
    /// to a candidate whose log is behind its own: that candidate cannot win, and this node
    /// may, at once.
    pub fn subscribe_to_candidates_behind(&self) -> watch::Receiver<u64> {
        self.candidates_behind.subscribe()
    }

    /// Tracks one accepted connection; dropping the record counts the connection as closed.
    pub(crate) fn connection_record(self: &Arc<Self>) -> ConnectionRecord {
        ConnectionRecord {
            contact: Arc::clone(self),
            carried_leader: None,
        }
    }

    fn record_append_entries(
        &self,
        leader: LeaderTerm,
        progress: LogProgress,
        carried_leader: &mut Option<LeaderTerm>,
    ) {
        let mut state = self.lock();
        let current_leader = state
            .last_contact
            .map(|contact| (contact.leader_id, contact.term));
        if current_leader != Some(leader) {
            state.open_leader_connections = 0;
            state.uncommitted.clear();
        }
        state.record_progress(progress);
        state.leader_connections_lost = false;
        state.last_contact = Some(Contact {
            leader_id: leader.0,
            term: leader.1,
            received_at_ms: wall_clock_ms(),
            received_at: Instant::now(),
        });
        if current_leader != Some(leader) || *carried_leader != Some(leader) {
            state.open_leader_connections += 1;
        }
        *carried_leader = Some(leader);
    }

    fn connection_closed(&self, carried_leader: Option<LeaderTerm>) {
        let mut state = self.lock();
        let current_leader = state
            .last_contact
            .map(|contact| (contact.leader_id, contact.term));
        if carried_leader.is_none() || carried_leader != current_leader {
            return;
        }
        state.open_leader_connections = state.open_leader_connections.saturating_sub(1);
        if state.open_leader_connections == 0 {
            state.leader_connections_lost = true;
            self.losses.send_modify(|losses| *losses += 1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContactState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ContactState {
    /// Remembers the entries `progress` carried beyond the leader's commit index, and
    /// forgets those it says are committed.
    fn record_progress(&mut self, progress: LogProgress) {
        let committed = progress.leader_commit.unwrap_or(0);
        if let Some(last_index) = progress.last_index
            && last_index > committed
            && self.uncommitted.len() < MAX_UNCOMMITTED_BATCHES
        {
            self.uncommitted.push_back((last_index, Instant::now()));
        }
        while self
            .uncommitted
            .front()
            .is_some_and(|(index, _)| *index <= committed)
        {
            self.uncommitted.pop_front();
        }
    }
}

/// One accepted connection's part in [`LeaderContact`].
pub(crate) struct ConnectionRecord {
    contact: Arc<LeaderContact>,
    carried_leader: Option<LeaderTerm>,
}

impl ConnectionRecord {
    /// See [`LeaderContact::active_is_gone_within`].
    pub(crate) async fn active_is_gone_within(&self, wait: Duration) -> bool {
        self.contact.active_is_gone_within(wait).await
    }

    /// Records a vote refused, after the active was gone, to a candidate whose log is
    /// behind this node's.
    pub(crate) fn refused_a_candidate_behind(&self) {
        if self.contact.active_is_gone() {
            self.contact
                .candidates_behind
                .send_modify(|refused| *refused += 1);
        }
    }

    /// Records that `leader_id`, leading in `term`, handed the active role over to this
    /// node, for `cause`.
    pub(crate) fn handed_over(&self, leader_id: NodeId, term: u64, cause: HandOverCause) {
        let hand_over = HandOver {
            cause,
            received_at: Instant::now(),
        };
        self.contact.lock().handed_over_by = Some(((leader_id, term), hand_over));
    }

    /// Records an AppendEntries the local Raft accepted from `leader_id` in `term`, which
    /// told `progress` of its log.
    pub(crate) fn append_entries_accepted(
        &mut self,
        leader_id: NodeId,
        term: u64,
        progress: LogProgress,
    ) {
        self.contact
            .record_append_entries((leader_id, term), progress, &mut self.carried_leader);
    }
}

impl Drop for ConnectionRecord {
    fn drop(&mut self) {
        self.contact.connection_closed(self.carried_leader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_count_only_when_the_leaders_last_connection_closes() {
        let contact = LeaderContact::new();
        let losses = contact.subscribe_to_losses();
        let mut heartbeats = contact.connection_record();
        let mut replication = contact.connection_record();
        let idle = contact.connection_record();
        heartbeats.append_entries_accepted(1, 3, LogProgress::default());
        heartbeats.append_entries_accepted(1, 3, LogProgress::default());
        replication.append_entries_accepted(1, 3, LogProgress::default());
        let last = contact.last_contact().unwrap();
        assert_eq!((last.leader_id, last.term), (1, 3));

        drop(idle);
        drop(replication);
        assert_eq!(*losses.borrow(), 0);
        assert!(!contact.active_is_gone());
        drop(heartbeats);
        assert_eq!(*losses.borrow(), 1);
        assert!(contact.active_is_gone());

        let mut reconnected = contact.connection_record();
        reconnected.append_entries_accepted(1, 3, LogProgress::default());
        assert!(!contact.active_is_gone(), "heard from the active again");
    }

    /// How long the tests below let a vote wait for a loss to show.
    const LOSS_WAIT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_vote_waits_for_the_loss_of_an_active_heard_from_a_moment_ago() {
        let contact = LeaderContact::new();
        let mut heartbeats = contact.connection_record();
        heartbeats.append_entries_accepted(1, 3, LogProgress::default());
        let closing = tokio::spawn(async move {
            tokio::time::sleep(LOSS_WAIT / 4).await;
            drop(heartbeats);
        });
        assert!(contact.active_is_gone_within(LOSS_WAIT).await);
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn a_vote_waits_a_while_for_a_loss_that_does_not_come() {
        let contact = LeaderContact::new();
        let mut heartbeats = contact.connection_record();
        heartbeats.append_entries_accepted(1, 3, LogProgress::default());
        let asked = Instant::now();
        assert!(!contact.active_is_gone_within(LOSS_WAIT).await);
        assert!(
            asked.elapsed() >= LOSS_WAIT,
            "it waited for the loss to show"
        );
        drop(heartbeats);
        assert!(contact.active_is_gone_within(LOSS_WAIT).await);
    }

    #[test]
    fn a_candidate_refused_for_its_log_counts_only_once_the_active_is_gone() {
        let contact = LeaderContact::new();
        let refused = contact.subscribe_to_candidates_behind();
        let mut heartbeats = contact.connection_record();
        heartbeats.append_entries_accepted(1, 3, LogProgress::default());
        let votes = contact.connection_record();
        votes.refused_a_candidate_behind();
        assert_eq!(*refused.borrow(), 0, "the active is alive");
        drop(heartbeats);
        votes.refused_a_candidate_behind();
        assert_eq!(*refused.borrow(), 1);
    }

    #[test]
    fn a_new_leader_forgets_the_old_leaders_connections() {
        let contact = LeaderContact::new();
        let losses = contact.subscribe_to_losses();
        let mut old_leader = contact.connection_record();
        let mut new_leader = contact.connection_record();
        old_leader.append_entries_accepted(1, 3, LogProgress::default());
        new_leader.append_entries_accepted(2, 4, LogProgress::default());

        drop(old_leader);
        assert_eq!(*losses.borrow(), 0);
        drop(new_leader);
        assert_eq!(*losses.borrow(), 1);
        assert_eq!(contact.last_contact().unwrap().leader_id, 2);
    }

    #[test]
    fn a_hand_over_is_known_by_the_leader_and_term_that_made_it() {
        let contact = LeaderContact::new();
        assert_eq!(contact.handed_over_by(1, 3), None);
        let cause = HandOverCause::Unconfirmed { for_ms: 1_900 };
        contact.connection_record().handed_over(1, 3, cause);
        assert_eq!(
            contact
                .handed_over_by(1, 3)
                .map(|hand_over| hand_over.cause),
            Some(cause)
        );
        assert_eq!(
            contact.handed_over_by(1, 4),
            None,
            "another term of the same leader"
        );
        assert_eq!(contact.handed_over_by(2, 3), None, "another leader");
    }

    #[test]
    fn uncommitted_entries_are_forgotten_once_committed_or_when_the_leader_changes() {
        let contact = LeaderContact::new();
        let mut connection = contact.connection_record();
        let sent = |last_index, leader_commit| LogProgress {
            last_index: Some(last_index),
            leader_commit: Some(leader_commit),
        };
        connection.append_entries_accepted(1, 3, sent(5, 5));
        assert_eq!(contact.oldest_uncommitted_at(), None);
        connection.append_entries_accepted(1, 3, sent(7, 5));
        let oldest = contact.oldest_uncommitted_at().expect("entries 6 and 7");
        std::thread::sleep(Duration::from_millis(2));
        connection.append_entries_accepted(1, 3, sent(9, 6));
        assert_eq!(contact.oldest_uncommitted_at(), Some(oldest));
        connection.append_entries_accepted(1, 3, sent(9, 7));
        assert!(
            contact
                .oldest_uncommitted_at()
                .is_some_and(|at| at > oldest)
        );
        connection.append_entries_accepted(2, 4, LogProgress::default());
        assert_eq!(contact.oldest_uncommitted_at(), None, "another leader");
    }

    #[test]
    fn a_connection_that_switches_to_the_new_leader_counts_once() {
        let contact = LeaderContact::new();
        let losses = contact.subscribe_to_losses();
        let mut connection = contact.connection_record();
        connection.append_entries_accepted(1, 3, LogProgress::default());
        connection.append_entries_accepted(1, 4, LogProgress::default());
        connection.append_entries_accepted(1, 4, LogProgress::default());
        drop(connection);
        assert_eq!(*losses.borrow(), 1);
    }
}
