//! Subscriptions, their retry policy and their optional backup transport.

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
    /// The primary transport's retries.
    pub retry: RetryPolicy,
    /// The backup transport's retries, used once the primary's are exhausted; `None` means
    /// no backup transport: the instance is suspended right after the primary's retries.
    #[serde(default)]
    pub backup: Option<RetryPolicy>,
    pub created_at_ms: i64,
}

/// What a subscription is declared with: by a create, or by a replacement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionDefinition {
    pub name: String,
    /// The host's name.
    pub host: String,
    pub filter: String,
    pub priority: u8,
    pub retry: RetryPolicy,
    pub backup: Option<RetryPolicy>,
}

impl Subscription {
    /// Which transport carries each delivery, and what follows a failed one.
    pub fn delivery_policy(&self) -> DeliveryPolicy {
        DeliveryPolicy {
            primary: self.retry,
            backup: self.backup,
        }
    }
}

/// How often, and how long apart, a failed message instance is retried through one
/// transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the transport's first delivery; `0` gives up on its first failure.
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
    /// Deliveries through this transport: the first and its retries.
    fn deliveries(&self) -> u32 {
        self.retry_count.saturating_add(1)
    }

    /// The wait before the next delivery after `attempts` failed deliveries (1-based)
    /// through this transport.
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

/// The transport of a send port that carries a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Primary,
    Backup,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Primary => "primary",
            Transport::Backup => "backup",
        }
    }
}

/// What follows a failed (or expired) delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextDelivery {
    /// Deliver again through `transport` after `delay_ms`: that transport's retry number
    /// `retry` of `retry_count`.
    Retry {
        transport: Transport,
        retry: u32,
        retry_count: u32,
        delay_ms: u64,
    },
    /// The primary transport's retries are used up: the next delivery is the backup
    /// transport's first, at once. It has `retry_count` retries of its own.
    SwitchToBackup { retry_count: u32 },
    /// Every delivery the transports allow has failed.
    Suspend,
}

/// A subscription's primary retry policy and its backup transport's, if any. Deliveries
/// are counted from 1 across both: first the primary's `1 + retry_count`, then the
/// backup's `1 + retry_count`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub primary: RetryPolicy,
    pub backup: Option<RetryPolicy>,
}

impl DeliveryPolicy {
    /// Whether delivery number `attempt` (1-based) goes through the backup transport.
    pub fn is_backup_delivery(&self, attempt: u32) -> bool {
        self.backup.is_some() && attempt > self.primary.deliveries()
    }

    /// What follows when delivery number `attempt` (1-based) failed.
    pub fn after_failed(&self, attempt: u32) -> NextDelivery {
        let primary_deliveries = self.primary.deliveries();
        if attempt < primary_deliveries {
            return NextDelivery::Retry {
                transport: Transport::Primary,
                retry: attempt,
                retry_count: self.primary.retry_count,
                delay_ms: self.primary.delay_after(attempt),
            };
        }
        let Some(backup) = self.backup else {
            return NextDelivery::Suspend;
        };
        if attempt == primary_deliveries {
            return NextDelivery::SwitchToBackup {
                retry_count: backup.retry_count,
            };
        }
        let backup_attempt = attempt - primary_deliveries;
        if backup_attempt < backup.deliveries() {
            return NextDelivery::Retry {
                transport: Transport::Backup,
                retry: backup_attempt,
                retry_count: backup.retry_count,
                delay_ms: backup.delay_after(backup_attempt),
            };
        }
        NextDelivery::Suspend
    }

    /// Of `attempts` deliveries, how many went through the backup transport.
    pub fn backup_deliveries(&self, attempts: u32) -> u32 {
        if self.backup.is_some() {
            attempts.saturating_sub(self.primary.deliveries())
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeliveryPolicy, NextDelivery, RetryPolicy, Transport};

    fn policy(retry_count: u32, retry_interval_ms: u64, exponential_backoff: bool) -> RetryPolicy {
        RetryPolicy {
            retry_count,
            retry_interval_ms,
            exponential_backoff,
        }
    }

    fn retry(transport: Transport, retry: u32, retry_count: u32, delay_ms: u64) -> NextDelivery {
        NextDelivery::Retry {
            transport,
            retry,
            retry_count,
            delay_ms,
        }
    }

    #[test]
    fn without_a_backup_the_primary_retries_then_suspends() {
        let plan = DeliveryPolicy {
            primary: policy(2, 100, false),
            backup: None,
        };
        assert_eq!(plan.after_failed(1), retry(Transport::Primary, 1, 2, 100));
        assert_eq!(plan.after_failed(2), retry(Transport::Primary, 2, 2, 100));
        assert_eq!(plan.after_failed(3), NextDelivery::Suspend);
        assert_eq!(plan.after_failed(4), NextDelivery::Suspend);
        assert!((0..5).all(|attempt| !plan.is_backup_delivery(attempt)));
        assert_eq!(plan.backup_deliveries(3), 0);
    }

    #[test]
    fn with_a_backup_the_primary_retries_then_the_backup_takes_over_at_once() {
        let plan = DeliveryPolicy {
            primary: policy(1, 100, false),
            backup: Some(policy(2, 10, true)),
        };
        assert_eq!(plan.after_failed(1), retry(Transport::Primary, 1, 1, 100));
        assert_eq!(
            plan.after_failed(2),
            NextDelivery::SwitchToBackup { retry_count: 2 }
        );
        assert_eq!(plan.after_failed(3), retry(Transport::Backup, 1, 2, 10));
        assert_eq!(
            plan.after_failed(4),
            retry(Transport::Backup, 2, 2, 20),
            "the backup's own exponential backoff, counting its attempts from 1"
        );
        assert_eq!(plan.after_failed(5), NextDelivery::Suspend);
        let backup: Vec<bool> = (1..=5)
            .map(|attempt| plan.is_backup_delivery(attempt))
            .collect();
        assert_eq!(backup, [false, false, true, true, true]);
        assert_eq!(plan.backup_deliveries(5), 3);
        assert_eq!(plan.backup_deliveries(1), 0);
    }

    #[test]
    fn no_retries_on_either_side_still_gives_each_transport_one_delivery() {
        let plan = DeliveryPolicy {
            primary: policy(0, 100, false),
            backup: Some(policy(0, 100, false)),
        };
        assert_eq!(
            plan.after_failed(1),
            NextDelivery::SwitchToBackup { retry_count: 0 }
        );
        assert!(plan.is_backup_delivery(2));
        assert_eq!(plan.after_failed(2), NextDelivery::Suspend);
    }

    #[test]
    fn backoff_is_capped() {
        let retry = policy(100, crate::limits::MAX_RETRY_INTERVAL_MS / 2, true);
        assert_eq!(
            retry.delay_after(1),
            crate::limits::MAX_RETRY_INTERVAL_MS / 2
        );
        assert_eq!(retry.delay_after(50), crate::limits::MAX_RETRY_INTERVAL_MS);
    }
}
