//! [`Backoff`]: the pauses between the attempts of a call: growing, jittered, and never
//! past the [`RetryPolicy`]'s deadline (when it has one).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use crate::retry_policy::RetryPolicy;

/// The shortest pause, whatever the policy says: a policy of zero pauses must not spin.
pub const MIN_RETRY_PAUSE: Duration = Duration::from_millis(1);

/// Pauses between attempts, until the policy's deadline or forever.
#[derive(Debug)]
pub struct Backoff {
    /// `None`: pause as often as asked.
    deadline: Option<Instant>,
    next_pause: Duration,
    max_pause: Duration,
}

impl Backoff {
    /// Pauses as `policy` says, its deadline counted from now.
    pub fn new(policy: &RetryPolicy) -> Backoff {
        let first_pause = policy.first_pause.max(MIN_RETRY_PAUSE);
        Backoff {
            deadline: policy.deadline.map(|deadline| Instant::now() + deadline),
            next_pause: first_pause,
            max_pause: policy.max_pause.max(first_pause),
        }
    }

    /// Sleeps before the next attempt: between half and all of the current pause, cut
    /// short at the deadline. False (without sleeping) once the deadline has passed.
    pub async fn pause(&mut self) -> bool {
        self.pause_at_least(Duration::ZERO).await
    }

    /// [`Backoff::pause`], but for at least `minimum` (a node's `retry_after_ms`). False
    /// (without sleeping) when the deadline has passed or comes before `minimum` is over.
    pub async fn pause_at_least(&mut self, minimum: Duration) -> bool {
        let mut pause = jittered(self.next_pause).max(minimum);
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || minimum > left {
                return false;
            }
            pause = pause.min(left);
        }
        tokio::time::sleep(pause).await;
        self.next_pause = (self.next_pause * 2).min(self.max_pause);
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
        let mut backoff = Backoff::new(&RetryPolicy::until(Duration::from_millis(400)));
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

    #[tokio::test]
    async fn without_a_deadline_pauses_never_end_and_stay_under_the_max() {
        let policy = RetryPolicy::indefinitely()
            .with_pauses(Duration::from_millis(1), Duration::from_millis(4));
        let mut backoff = Backoff::new(&policy);
        for _ in 0..50 {
            let started = Instant::now();
            assert!(backoff.pause().await, "an unbounded backoff gave up");
            // The max pause, plus the timer's granularity.
            assert!(started.elapsed() < Duration::from_millis(50));
        }
    }

    #[tokio::test]
    async fn a_minimum_pause_is_honoured_or_refused_when_past_the_deadline() {
        let mut backoff = Backoff::new(&RetryPolicy::until(Duration::from_secs(2)));
        let started = Instant::now();
        assert!(backoff.pause_at_least(Duration::from_millis(300)).await);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let refused_at = Instant::now();
        assert!(!backoff.pause_at_least(Duration::from_secs(5)).await);
        assert!(
            refused_at.elapsed() < Duration::from_millis(50),
            "refused without sleeping"
        );
    }
}
