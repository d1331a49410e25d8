//! An active whose writes no majority acknowledges hands its role over by itself.
//!
//! Some faults leave every node up and the passives content while the active cannot commit:
//! its answers from the passives are lost (a one-way cut) or arrive later than its lease
//! (links slower than the lease: a saturated uplink, a bad cable). Its heartbeats still
//! reach the passives, so none of them starts an election, and writes would stall for as
//! long as the fault lasts. So the active watches its own confirmation, every heartbeat
//! interval: once its writes have been refused for `hand_over_after` (no majority had
//! acknowledged it within the grace they wait for, its lease plus the minimum election
//! timeout, see `proposer`; a timely acknowledgement now and then does not end that, only
//! timely ones for as long as the grace), it hands the role to the passive it heard from
//! last, as a switchover does (openraft's TransferLeader). That also stops its heartbeats,
//! so if the chosen passive cannot win, the passives' election timers elect another. Once
//! per term: an active that hands over and stays active (no other node could be elected)
//! does not try again.
//!
//! The passives cannot be told from dead ones by their silence alone: an active that lost
//! both (a majority) hands over too, to one that does not answer. Its writes are answered
//! `no_quorum` all the same (`proposer`), and when a passive comes back, the active, which
//! sends no heartbeats while it hands over, is replaced by an election (about half a
//! second) instead of carrying on.
//!
//! Why a node handed over travels with the hand-over ([`HandOverCause`]), so that the new
//! active records a hand-over by an unconfirmed active as one, not as an operator's
//! switchover, and counts the writes' unavailability from the old active's last
//! confirmation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::status::{MemberStatus, ReplicaStatus, Role};
use crate::types::{NodeId, Raft};

/// Why an active handed its role over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandOverCause {
    /// An operator asked for a switchover.
    #[default]
    Requested,
    /// No majority had confirmed the active in time for this long: since its last
    /// confirmation, or since its confirmations began to come later than its writes wait.
    Unconfirmed { for_ms: u64 },
}

/// The cause of this node's latest hand-over, which the network sends with it: set before
/// openraft is asked to hand over, read when openraft sends the hand-over to the others.
#[derive(Debug, Default)]
pub struct HandOverNote(Mutex<HandOverCause>);

impl HandOverNote {
    pub fn new() -> Arc<HandOverNote> {
        Arc::new(HandOverNote::default())
    }

    pub fn set(&self, cause: HandOverCause) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = cause;
    }

    pub fn cause(&self) -> HandOverCause {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One look at this node's role and confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    /// This node is the active of `term`, in a set of two voters or more.
    pub active_among_voters: bool,
    pub term: u64,
    /// How long ago a majority last acknowledged this active; `None` before any did.
    pub quorum_acknowledged_ago: Option<Duration>,
}

/// Decides, look after look, when the active hands over: a pure state machine, so that its
/// rule is tested without a replica set.
#[derive(Debug)]
pub struct HandOverWatch {
    /// Past this confirmation age the active's writes are refused (`no_quorum`).
    grace: Duration,
    /// How long writes are refused before the active hands over.
    hand_over_after: Duration,
    /// The term this node is (or was last seen) the active of, and since when.
    active: Option<(u64, Instant)>,
    /// Since when writes have been refused, with no confirmed stretch in between.
    refused_since: Option<Instant>,
    /// Since when every look found the active confirmed in time.
    confirmed_since: Option<Instant>,
    handed_over_in_term: Option<u64>,
}

impl HandOverWatch {
    pub fn new(grace: Duration, hand_over_after: Duration) -> HandOverWatch {
        HandOverWatch {
            grace,
            hand_over_after,
            active: None,
            refused_since: None,
            confirmed_since: None,
            handed_over_in_term: None,
        }
    }

    /// Takes one look at `now`: `Some(unconfirmed_for)` when the active should hand over
    /// now, having gone without a majority's timely confirmation for that long (the time
    /// its writes have been refused, plus the grace they waited before that).
    ///
    /// Writes count as refused from the first look that finds the last confirmation older
    /// than the grace, until the looks have found it younger for as long as the grace: on
    /// links about as slow as the lease, a confirmation now and then comes in time, but
    /// nearly every write is still refused.
    pub fn observe(&mut self, now: Instant, look: Look) -> Option<Duration> {
        if !look.active_among_voters {
            self.active = None;
            self.forget_refusals();
            return None;
        }
        let since = match self.active {
            Some((term, since)) if term == look.term => since,
            _ => {
                self.active = Some((look.term, now));
                self.forget_refusals();
                now
            }
        };
        // An active no majority has acknowledged yet counts from its election.
        let unconfirmed_for = look
            .quorum_acknowledged_ago
            .unwrap_or_else(|| now.duration_since(since));
        let Some(refused_for) = unconfirmed_for.checked_sub(self.grace) else {
            let confirmed_since = *self.confirmed_since.get_or_insert(now);
            if now.duration_since(confirmed_since) >= self.grace {
                self.refused_since = None;
            }
            return None;
        };
        self.confirmed_since = None;
        let refused_since = *self
            .refused_since
            .get_or_insert_with(|| now.checked_sub(refused_for).unwrap_or(now));
        let refused_for = now.duration_since(refused_since);
        if refused_for < self.hand_over_after || self.handed_over_in_term == Some(look.term) {
            return None;
        }
        self.handed_over_in_term = Some(look.term);
        Some(refused_for + self.grace)
    }

    fn forget_refusals(&mut self) {
        self.refused_since = None;
        self.confirmed_since = None;
    }
}

/// The passive to hand over to: among the other voters, the one that acknowledged this
/// active last (it is up and has the most of the log), then the one furthest along, then
/// the lowest id. `None` when there is no other voter.
pub fn successor(this_node: NodeId, members: &[MemberStatus]) -> Option<NodeId> {
    members
        .iter()
        .filter(|member| member.voter && member.node_id != this_node)
        .min_by_key(|member| {
            (
                member.acknowledged_ms_ago.unwrap_or(u64::MAX),
                u64::MAX - member.matched_index.unwrap_or(0),
                member.node_id,
            )
        })
        .map(|member| member.node_id)
}

/// Looks at this node every `every` and hands the active role over when `watch` says so,
/// until `stopped`.
pub async fn hand_over_while_unconfirmed(
    raft: Raft,
    note: Arc<HandOverNote>,
    mut watch: HandOverWatch,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        let status = ReplicaStatus::of(&raft);
        let look = Look {
            active_among_voters: status.role == Role::Active
                && status.members.iter().filter(|member| member.voter).count() > 1,
            term: status.term,
            quorum_acknowledged_ago: status.quorum_acknowledged_ms_ago.map(Duration::from_millis),
        };
        let Some(unconfirmed_for) = watch.observe(Instant::now(), look) else {
            continue;
        };
        let Some(target) = successor(status.node_id, &status.members) else {
            continue;
        };
        let for_ms = unconfirmed_for.as_millis() as u64;
        eprintln!(
            "tandem: node {} hands the active role of term {} over to node {target}: no \
             majority has confirmed it in time for {for_ms} ms",
            status.node_id, status.term
        );
        note.set(HandOverCause::Unconfirmed { for_ms });
        let _ = raft.trigger().transfer_leader(target).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Member;

    const GRACE: Duration = Duration::from_millis(450);
    const AFTER: Duration = Duration::from_millis(1_500);

    fn active(term: u64, acknowledged_ago_ms: Option<u64>) -> Look {
        Look {
            active_among_voters: true,
            term,
            quorum_acknowledged_ago: acknowledged_ago_ms.map(Duration::from_millis),
        }
    }

    /// Feeds `looks` one every 50 ms from `start`; the offsets (ms) of the looks that
    /// said to hand over, with how long the active was unconfirmed.
    fn hand_overs(looks: impl IntoIterator<Item = Look>) -> Vec<(u64, u64)> {
        let start = Instant::now();
        let mut watch = HandOverWatch::new(GRACE, AFTER);
        looks
            .into_iter()
            .enumerate()
            .filter_map(|(index, look)| {
                let at_ms = index as u64 * 50;
                let now = start + Duration::from_millis(at_ms);
                watch
                    .observe(now, look)
                    .map(|unconfirmed| (at_ms, unconfirmed.as_millis() as u64))
            })
            .collect()
    }

    #[test]
    fn an_active_whose_acknowledgements_stop_hands_over_once_writes_were_refused_long_enough() {
        // Acknowledged at every look for a second, then never again.
        let looks = (0..100).map(|index| {
            let ago = if index < 20 {
                10
            } else {
                (index - 20) * 50 + 10
            };
            active(7, Some(ago))
        });
        // The last acknowledgement at 990 ms; writes refused from 450 ms later (1,440 ms);
        // due 1,500 ms after that, at the look of 2,950 ms.
        assert_eq!(hand_overs(looks), vec![(2_950, 1_960)]);
    }

    #[test]
    fn acknowledgements_later_than_the_grace_at_every_look_hand_over_too() {
        // Links slower than the lease: each answer arrives, but always too late.
        let looks = (0..60).map(|index| active(3, Some(500 + (index % 2) * 60)));
        // Refused since 50 ms before the first look: due at 1,450 ms, counted with the
        // grace the writes waited first.
        assert_eq!(hand_overs(looks), vec![(1_450, 1_950)]);
    }

    #[test]
    fn a_timely_confirmation_now_and_then_does_not_end_a_stall() {
        let looks = (0..60).map(|index| {
            let ago = if index % 5 == 4 { 100 } else { 600 };
            active(3, Some(ago))
        });
        // Refused from 150 ms before the first look: due at the look of 1,350 ms.
        assert_eq!(hand_overs(looks), vec![(1_350, 1_950)]);
    }

    #[test]
    fn confirmations_in_time_for_as_long_as_the_grace_start_the_count_again() {
        let looks = (0..50).map(|index| {
            let ago = if (20..30).contains(&index) { 100 } else { 600 };
            active(3, Some(ago))
        });
        // Refused from -150 ms, due at 1,350 ms; but confirmed from 1,000 ms to 1,450 ms,
        // so counted again from 1,350 ms and due at 2,850 ms: after the last look.
        assert_eq!(hand_overs(looks), vec![]);
    }

    #[test]
    fn a_passing_slowdown_within_the_grace_never_hands_over() {
        let looks = (0..200).map(|index| active(3, Some(100 + (index % 8) * 40)));
        assert_eq!(hand_overs(looks), vec![]);
    }

    #[test]
    fn an_active_hands_over_once_per_term_and_again_in_a_later_term() {
        let looks = (0..200).map(|index| active(if index < 100 { 4 } else { 6 }, Some(5_000)));
        assert_eq!(hand_overs(looks), vec![(0, 5_000), (5_000, 5_000)]);
    }

    #[test]
    fn a_just_elected_active_never_acknowledged_counts_from_its_election() {
        let looks = (0..60).map(|_| active(9, None));
        assert_eq!(hand_overs(looks), vec![(1_950, 1_950)]);
    }

    #[test]
    fn a_passive_or_a_lone_voter_never_hands_over() {
        let passive = Look {
            active_among_voters: false,
            term: 2,
            quorum_acknowledged_ago: Some(Duration::from_secs(60)),
        };
        assert_eq!(hand_overs((0..100).map(|_| passive)), vec![]);
    }

    fn member(
        node_id: NodeId,
        voter: bool,
        matched: u64,
        acknowledged_ms_ago: Option<u64>,
    ) -> MemberStatus {
        MemberStatus {
            node_id,
            member: Member::default(),
            voter,
            matched_index: Some(matched),
            lag: None,
            acknowledged_ms_ago,
        }
    }

    #[test]
    fn the_successor_is_the_voter_heard_from_last_then_the_one_furthest_along() {
        let members = [
            member(1, true, 100, None),
            member(2, true, 90, Some(900)),
            member(3, true, 80, Some(400)),
            member(4, false, 100, Some(1)),
        ];
        assert_eq!(successor(1, &members), Some(3));
        let unheard = [
            member(1, true, 100, None),
            member(2, true, 90, None),
            member(3, true, 95, None),
        ];
        assert_eq!(successor(1, &unheard), Some(3));
        assert_eq!(successor(1, &unheard[..1]), None);
    }
}
