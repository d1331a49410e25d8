//! [`Backoff`]: the pauses between the attempts of a call while no active is known (an
//! election is under way): growing, jittered, and never past a deadline.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// The first pause before a call is tried again.
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The pause doubles after each attempt up to this.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Pauses between attempts until a deadline.
#[derive(Debug)]
pub struct Backoff {
    deadline: Instant,
    next_pause: Duration,
}

impl Backoff {
    /// Attempts may go on for `limit` from now.
    pub fn for_up_to(limit: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + limit,
            next_pause: FIRST_RETRY_PAUSE,
        }
    }

    /// Sleeps before the next attempt: between half and all of the current pause, cut
    /// short at the deadline. False (without sleeping) once the deadline has passed.
    pub async fn pause(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let pause = jittered(self.next_pause).min(self.deadline - now);
        tokio::time::sleep(pause).await;
        self.next_pause = (self.next_pause * 2).min(MAX_RETRY_PAUSE);
        true
    }
}

/// A duration between half of `pause` and all of it, so that clients retrying together
/// spread out.
fn jittered(pause: Duration) -> Duration {
    let half = pause / 2;
    let spread_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    // A fresh RandomState is seeded differently each time: enough randomness for jitter.
    let random = RandomState::new().build_hasher().finish();
    half + Duration::from_nanos(random % spread_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_millis(100));
            assert!(pause >= Duration::from_millis(50), "{pause:?}");
            assert!(pause <= Duration::from_millis(100), "{pause:?}");
        }
    }

    #[tokio::test]
    async fn pauses_grow_and_stop_at_the_deadline() {
        let started = Instant::now();
        let mut backoff = Backoff::for_up_to(Duration::from_millis(400));
        let mut attempts = 0;
        while backoff.pause().await {
            attempts += 1;
            assert!(attempts < 100, "the backoff never ended");
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        // 25-50, 50-100, 100-200 ms, then cut short: at least 3, at most a handful.
        assert!((3..=10).contains(&attempts), "{attempts} attempts");
    }
}
