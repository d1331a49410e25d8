//! Subscriptions and their retry policy.

use serde::{Deserialize, Serialize};

use crate::ids::{HostId, SubscriptionId};
use crate::limits;

/// A filter that routes copies of matching messages into one host queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub name: String,
    pub host: HostId,
    /// The filter as text; parsed once when the subscription is loaded.
    pub filter: String,
    /// 1 (highest) to 10 (lowest).
    pub priority: u8,
    pub retry: RetryPolicy,
    pub created_at_ms: i64,
}

/// How often, and how long apart, a failed message instance is retried before suspension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first delivery; `0` suspends on the first failure.
    pub retry_count: u32,
    pub retry_interval_ms: u64,
    /// Double the interval after each failed attempt (capped).
    pub exponential_backoff: bool,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            retry_count: limits::DEFAULT_RETRY_COUNT,
            retry_interval_ms: limits::DEFAULT_RETRY_INTERVAL_MS,
            exponential_backoff: false,
        }
    }
}

impl RetryPolicy {
    /// Whether a message instance that has been delivered `attempts` times may be retried.
    pub fn allows_retry_after(&self, attempts: u32) -> bool {
        attempts <= self.retry_count
    }

    /// The wait before the next delivery after `attempts` failed deliveries (1-based).
    pub fn delay_after(&self, attempts: u32) -> u64 {
        if !self.exponential_backoff {
            return self.retry_interval_ms;
        }
        let doublings = attempts.saturating_sub(1).min(40);
        self.retry_interval_ms
            .saturating_mul(1_u64 << doublings)
            .min(limits::MAX_RETRY_INTERVAL_MS)
    }
}
