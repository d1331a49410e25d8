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
//!
//! Until the clocks of a majority of the voters are known (this node's and those it has
//! read), the median says nothing: a node started (or restarted with the whole set) a moment
//! ago and elected before its first readings would stamp its own clock, however wrong.
//! [`ReplicaSetTime::majority_now_ms`] is `None` then, and the proposer waits for the
//! readings, for at most [`limits::CLOCK_READINGS_WAIT_MS`]: a set whose other voters do not
//! answer the probe (an older version during a rolling upgrade) is stamped with what this
//! node knows, as before the readings existed, and waits no more until a majority has been
//! read again. The stamper says how many voters there are, from the membership the active
//! holds when it stamps (a probe that counted them had run too late, or counted none while a
//! restarted node's Raft had not yet reported its membership, and the active then stamped
//! its own clock). Where nobody probes (the simulation), the time is
//! [`ReplicaSetTime::without_clock_readings`]: nothing waits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tandem_core::limits;
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
#[derive(Debug)]
pub struct ReplicaSetTime {
    readings: Mutex<Readings>,
    /// Something reads the other voters' clocks (the server's member probe), so a stamp
    /// waits for a majority of them; without, this node's own clock is stamped.
    clocks_are_read: bool,
    /// The proposer waited [`limits::CLOCK_READINGS_WAIT_MS`] for a majority of clocks in
    /// vain: it stamps without waiting until a majority is known again.
    gave_up_waiting: AtomicBool,
}

#[derive(Debug, Default)]
struct Readings {
    /// The other voters' clocks.
    by_node: BTreeMap<NodeId, Reading>,
}

impl Readings {
    /// Each other voter's clock at `now`.
    fn clocks_ms(&self, now: Instant) -> Vec<i64> {
        self.by_node
            .values()
            .map(|reading| reading.now_ms(now))
            .collect()
    }
}

impl ReplicaSetTime {
    /// The time of a node whose server reads the other voters' clocks: stamps wait until a
    /// majority of the voters' clocks is known (or waiting failed once).
    pub fn with_clock_readings() -> ReplicaSetTime {
        ReplicaSetTime {
            readings: Mutex::default(),
            clocks_are_read: true,
            gave_up_waiting: AtomicBool::new(false),
        }
    }

    /// The time of a node nobody reads clocks for (the simulation): its own clock.
    pub fn without_clock_readings() -> ReplicaSetTime {
        ReplicaSetTime {
            clocks_are_read: false,
            ..ReplicaSetTime::with_clock_readings()
        }
    }

    /// Records that voter `node` answered `wall_clock_ms` to a question asked `round_trip`
    /// ago.
    pub fn record_reading(&self, node: NodeId, wall_clock_ms: i64, round_trip: Duration) {
        let half_trip_ms = (round_trip.as_millis() / 2).min(i64::MAX as u128) as i64;
        let reading = Reading {
            wall_clock_ms: wall_clock_ms.saturating_add(half_trip_ms),
            taken: Instant::now(),
        };
        self.lock().by_node.insert(node, reading);
    }

    /// Forgets the readings of nodes that are not among `voters` (removed members,
    /// learners). No voters at all is a membership not known yet (a node's Raft reports it
    /// a moment after it starts), not a set of none: ignored.
    pub fn keep_voters(&self, voters: &[NodeId]) {
        if voters.is_empty() {
            return;
        }
        self.lock().by_node.retain(|node, _| voters.contains(node));
    }

    /// The median of this node's clock and the other voters' readings, whether or not a
    /// majority of the voters' clocks is known.
    pub fn now_ms(&self) -> i64 {
        median_clock(wall_clock_ms(), &self.other_clocks_ms())
    }

    /// The time to stamp into an entry of a set of `voters` voters (this node among them):
    /// [`ReplicaSetTime::now_ms`] once the clocks of a majority of them are known (or nobody
    /// reads them, or waiting for them already failed once); `None` while they are not.
    pub fn majority_now_ms(&self, voters: usize) -> Option<i64> {
        let (others, majority_known) = {
            let readings = self.lock();
            let majority_known =
                !self.clocks_are_read || (voters > 0 && readings.by_node.len() >= voters / 2);
            (readings.clocks_ms(Instant::now()), majority_known)
        };
        if majority_known && self.gave_up_waiting.load(Ordering::Relaxed) {
            self.gave_up_waiting.store(false, Ordering::Relaxed);
        }
        (majority_known || self.gave_up_waiting.load(Ordering::Relaxed))
            .then(|| median_clock(wall_clock_ms(), &others))
    }

    /// [`ReplicaSetTime::majority_now_ms`], waiting for the readings it lacks for at most
    /// [`limits::CLOCK_READINGS_WAIT_MS`]; past that, the median of what is known.
    pub async fn stamp_ms(&self, voters: usize) -> i64 {
        let give_up = Instant::now() + Duration::from_millis(limits::CLOCK_READINGS_WAIT_MS);
        loop {
            if let Some(now_ms) = self.majority_now_ms(voters) {
                return now_ms;
            }
            if Instant::now() >= give_up {
                if !self.gave_up_waiting.swap(true, Ordering::Relaxed) {
                    self.say_given_up(voters);
                }
                return self.now_ms();
            }
            tokio::time::sleep(READINGS_POLL_INTERVAL).await;
        }
    }

    /// How far this node's clock is from the replica set's time (positive: ahead), once it
    /// has read another voter's clock; `None` before.
    pub fn own_offset_ms(&self) -> Option<i64> {
        let own = wall_clock_ms();
        let others = self.other_clocks_ms();
        (!others.is_empty()).then(|| own.saturating_sub(median_clock(own, &others)))
    }

    fn say_given_up(&self, voters: usize) {
        let readings = self.lock();
        eprintln!(
            "tandem: after {} ms this node has read the clocks of {} of the {} other voters, \
             short of a majority: entries are stamped with the median of the clocks it knows \
             (its own among them) until a majority answers the member probe",
            limits::CLOCK_READINGS_WAIT_MS,
            readings.by_node.len(),
            voters.saturating_sub(1),
        );
    }

    fn other_clocks_ms(&self) -> Vec<i64> {
        self.lock().clocks_ms(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readings> {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How often a proposer waiting for a majority of clocks looks again.
const READINGS_POLL_INTERVAL: Duration = Duration::from_millis(10);

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
    use std::sync::Arc;

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
        let time = ReplicaSetTime::with_clock_readings();
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
        let time = ReplicaSetTime::with_clock_readings();
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
    fn without_clock_readings_a_node_stamps_at_once() {
        let time = ReplicaSetTime::without_clock_readings();
        assert!(
            time.majority_now_ms(3).is_some(),
            "nobody reads clocks: no wait"
        );
    }

    #[test]
    fn a_time_is_stamped_once_the_clocks_of_a_majority_of_the_voters_are_known() {
        let time = ReplicaSetTime::with_clock_readings();
        assert_eq!(
            time.majority_now_ms(0),
            None,
            "a membership not known yet: no majority"
        );
        assert!(time.majority_now_ms(1).is_some(), "a set of one");
        assert_eq!(time.majority_now_ms(3), None, "only its own clock of three");
        time.keep_voters(&[]);
        time.record_reading(3, NOW, Duration::ZERO);
        assert!(time.majority_now_ms(3).is_some(), "two clocks of three");
        assert_eq!(time.majority_now_ms(5), None, "two clocks of five");
        time.record_reading(2, NOW, Duration::ZERO);
        assert!(time.majority_now_ms(5).is_some(), "three clocks of five");
    }

    #[tokio::test]
    async fn a_stamp_waits_for_a_majority_of_clocks_then_gives_up_until_one_is_known() {
        let time = Arc::new(ReplicaSetTime::with_clock_readings());
        let own = wall_clock_ms();
        let reader = time.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reader.record_reading(2, own - HOUR_MS, Duration::ZERO);
        });
        let stamped = time.stamp_ms(3).await;
        assert!(
            (own - HOUR_MS..own - HOUR_MS + 1_000).contains(&stamped),
            "waited for node 2's clock (the earlier of two): {stamped} against {own}"
        );

        // No other voter answers (say, older versions during a rolling upgrade).
        time.keep_voters(&[1, 4, 5]);
        let asked = std::time::Instant::now();
        let stamped = time.stamp_ms(3).await;
        let waited = asked.elapsed();
        assert!(
            waited >= Duration::from_millis(limits::CLOCK_READINGS_WAIT_MS),
            "{waited:?}"
        );
        assert!((own..own + 10_000).contains(&stamped), "its own clock");
        assert!(time.majority_now_ms(3).is_some(), "no wait after giving up");
        time.record_reading(4, NOW, Duration::ZERO);
        assert!(time.majority_now_ms(3).is_some());
        time.keep_voters(&[1, 5, 6]);
        assert_eq!(
            time.majority_now_ms(3),
            None,
            "waits again once a majority was known"
        );
    }

    #[test]
    fn readings_of_nodes_no_longer_voters_are_forgotten() {
        let time = ReplicaSetTime::with_clock_readings();
        assert_eq!(time.own_offset_ms(), None);
        time.record_reading(2, NOW, Duration::ZERO);
        time.record_reading(3, NOW, Duration::ZERO);
        time.keep_voters(&[1, 3]);
        assert_eq!(time.other_clocks_ms().len(), 1);
    }
}
