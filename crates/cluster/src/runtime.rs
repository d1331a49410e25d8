//! [`ClusterRuntime`]: the async runtime openraft runs on. It is tokio's, except for the
//! random numbers that spread election timeouts: each thread draws them from its own seeded
//! sequence. In a node the seed comes from the OS, so timeouts differ between nodes as they
//! must; a deterministic simulation, which runs every node on one thread, fixes the seed
//! with [`seed_election_timers_on_this_thread`] so that a run repeats exactly.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::TokioRuntime;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

thread_local! {
    /// The state of this thread's seed sequence; `None` until first used or seeded.
    static ELECTION_SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes every election timeout drawn on this thread from now on follow from `seed`.
pub fn seed_election_timers_on_this_thread(seed: u64) {
    ELECTION_SEED.with(|state| state.set(Some(seed)));
}

/// The next seed of this thread's sequence (SplitMix64), started from the OS if unseeded.
fn next_seed() -> u64 {
    ELECTION_SEED.with(|state| {
        let current = state.get().unwrap_or_else(|| rand::rng().next_u64());
        let next = current.wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(Some(next));
        let mixed = (next ^ (next >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    })
}

/// Tokio, with election timeouts drawn from this thread's seed sequence.
#[derive(Debug)]
pub struct ClusterRuntime {
    tokio: TokioRuntime,
}

impl AsyncRuntime for ClusterRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SmallRng::seed_from_u64(next_seed())
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        ClusterRuntime {
            tokio: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.tokio.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    fn draw_timeouts(count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| ClusterRuntime::thread_rng().random_range(150..300))
            .collect()
    }

    #[test]
    fn a_seeded_thread_draws_the_same_timeouts_again() {
        seed_election_timers_on_this_thread(42);
        let first = draw_timeouts(20);
        seed_election_timers_on_this_thread(42);
        assert_eq!(draw_timeouts(20), first);
        seed_election_timers_on_this_thread(43);
        assert_ne!(draw_timeouts(20), first);
    }

    #[test]
    fn unseeded_threads_draw_different_timeouts() {
        let drawn: Vec<Vec<u64>> = (0..2)
            .map(|_| std::thread::spawn(|| draw_timeouts(20)).join().unwrap())
            .collect();
        assert_ne!(drawn[0], drawn[1]);
    }
}
