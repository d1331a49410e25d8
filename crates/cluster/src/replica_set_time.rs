//! [`ReplicaSetTime`]: the time the active stamps into log entries, which becomes the state
//! machine's time (lease expiry, due retries, the dedupe window, tracking retention).
//!
//! Stamping the active's own wall clock would let one node's clock move the replica set's
//! time: a passive whose clock runs an hour ahead, once made active, would expire every
//! lease on its first tick (their holders' work then done twice) and forget an hour of
//! dedupe entries (retried publishes stored twice); one whose clock runs behind would stop
//! the state machine's time (it never runs backwards) until its clock caught up: no lease
//! expires, no retry comes due. So every node reads every other voting member's wall clock a
//! few times a second (the server's member probe) and the time stamped is the median of the
//! voters' clocks: this node's own, and each other voter's last reading aged by this node's
//! monotonic clock since. A single wrong clock, the active's included, cannot move the
//! median of three. With an even number of clocks the earlier of the two middle ones is
//! taken: a time that runs slow only delays expiries, one that jumps ahead makes them early.
//!
//! A voter's last reading is kept while it is a voter, however old: a monotonic clock keeps
//! it accurate, and a node that just died still counts in the failover that follows.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::wall_clock_ms;
use crate::types::NodeId;

/// One other voter's wall clock, as read by this node.
#[derive(Clone, Copy, Debug)]
struct Reading {
    /// The voter's clock at `taken` (its answer plus half the round trip).
    wall_clock_ms: i64,
    taken: Instant,
}

impl Reading {
    fn now_ms(&self, now: Instant) -> i64 {
        let elapsed = now.saturating_duration_since(self.taken);
        self.wall_clock_ms
            .saturating_add(elapsed.as_millis().min(i64::MAX as u128) as i64)
    }
}

/// The replica set's time on this node: its own clock and its readings of the other voters'.
#[derive(Debug, Default)]
pub struct ReplicaSetTime {
    readings: Mutex<BTreeMap<NodeId, Reading>>,
}

impl ReplicaSetTime {
    pub fn new() -> ReplicaSetTime {
        ReplicaSetTime::default()
    }

    /// Records that voter `node` answered `wall_clock_ms` to a question asked `round_trip`
    /// ago.
    pub fn record_reading(&self, node: NodeId, wall_clock_ms: i64, round_trip: Duration) {
        let half_trip_ms = (round_trip.as_millis() / 2).min(i64::MAX as u128) as i64;
        let reading = Reading {
            wall_clock_ms: wall_clock_ms.saturating_add(half_trip_ms),
            taken: Instant::now(),
        };
        self.lock().insert(node, reading);
    }

    /// Forgets the readings of nodes that are not among `voters` (removed members, learners).
    pub fn keep_voters(&self, voters: &[NodeId]) {
        self.lock().retain(|node, _| voters.contains(node));
    }

    /// The time to stamp: the median of this node's clock and the other voters' readings.
    pub fn now_ms(&self) -> i64 {
        median_clock(wall_clock_ms(), &self.other_clocks_ms())
    }

    /// How far this node's clock is from the replica set's time (positive: ahead), once it
    /// has read another voter's clock; `None` before.
    pub fn own_offset_ms(&self) -> Option<i64> {
        let own = wall_clock_ms();
        let others = self.other_clocks_ms();
        (!others.is_empty()).then(|| own.saturating_sub(median_clock(own, &others)))
    }

    fn other_clocks_ms(&self) -> Vec<i64> {
        let now = Instant::now();
        self.lock()
            .values()
            .map(|reading| reading.now_ms(now))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Reading>> {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The median of `own` and `others`; of an even number of clocks, the earlier middle one.
pub fn median_clock(own: i64, others: &[i64]) -> i64 {
    let mut clocks = Vec::with_capacity(others.len() + 1);
    clocks.push(own);
    clocks.extend_from_slice(others);
    clocks.sort_unstable();
    clocks[(clocks.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 60 * 60 * 1000;
    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn alone_a_node_stamps_its_own_clock() {
        assert_eq!(median_clock(NOW, &[]), NOW);
    }

    #[test]
    fn one_clock_an_hour_off_among_three_does_not_move_the_time() {
        // The active's own clock wrong, either way.
        assert_eq!(median_clock(NOW + HOUR_MS, &[NOW, NOW + 3]), NOW + 3);
        assert_eq!(median_clock(NOW - HOUR_MS, &[NOW + 3, NOW]), NOW);
        // A passive's clock wrong.
        assert_eq!(median_clock(NOW, &[NOW + HOUR_MS, NOW + 3]), NOW + 3);
        assert_eq!(median_clock(NOW, &[NOW - HOUR_MS, NOW - 3]), NOW - 3);
    }

    #[test]
    fn of_two_clocks_the_earlier_is_taken() {
        assert_eq!(median_clock(NOW + HOUR_MS, &[NOW]), NOW);
        assert_eq!(median_clock(NOW, &[NOW + HOUR_MS]), NOW);
        assert_eq!(median_clock(NOW, &[NOW - HOUR_MS]), NOW - HOUR_MS);
    }

    #[test]
    fn a_reading_ages_with_the_monotonic_clock_and_counts_half_the_round_trip() {
        let time = ReplicaSetTime::new();
        time.record_reading(2, NOW, Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(100));
        let [aged] = time.other_clocks_ms()[..] else {
            panic!("one reading expected");
        };
        let elapsed = aged - NOW - 5;
        assert!((100..10_000).contains(&elapsed), "aged by {elapsed} ms");
    }

    #[test]
    fn a_node_whose_clock_is_an_hour_ahead_stamps_the_others_time_and_knows_its_offset() {
        let time = ReplicaSetTime::new();
        let own = wall_clock_ms();
        time.record_reading(2, own - HOUR_MS, Duration::ZERO);
        time.record_reading(3, own - HOUR_MS + 2, Duration::ZERO);
        let stamped = time.now_ms();
        assert!(
            (own - HOUR_MS..own - HOUR_MS + 1_000).contains(&stamped),
            "{stamped} against {own}"
        );
        let offset = time
            .own_offset_ms()
            .expect("an offset once others are read");
        assert!((HOUR_MS - 1_000..=HOUR_MS).contains(&offset), "{offset}");
    }

    #[test]
    fn readings_of_nodes_no_longer_voters_are_forgotten() {
        let time = ReplicaSetTime::new();
        assert_eq!(time.own_offset_ms(), None);
        time.record_reading(2, NOW, Duration::ZERO);
        time.record_reading(3, NOW, Duration::ZERO);
        time.keep_voters(&[1, 3]);
        assert_eq!(time.other_clocks_ms().len(), 1);
    }
}
