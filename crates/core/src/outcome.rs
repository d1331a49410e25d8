//! Outcomes: what `apply` answers for each command.

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::Result;
use crate::host::Host;
use crate::ids::{InstanceId, LeaseToken, MessageId, SubscriptionId};
use crate::limits;
use crate::subscription::Subscription;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Configured,
    HostCreated(Host),
    SubscriptionCreated(Subscription),
    SubscriptionDeleted,
    /// One result per published message, in order.
    Published(Vec<Result<PublishReceipt>>),
    Leased(Vec<LeasedMessage>),
    LeaseRenewed {
        expires_at_ms: i64,
    },
    Completed,
    Abandoned,
    /// After a failure: retried later, or suspended when the policy is exhausted.
    Failed {
        suspended: bool,
    },
    Resumed,
    Terminated,
    Ticked(TickReport),
    TrackingPurged {
        events: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReceipt {
    pub message_id: MessageId,
    /// True when the id was seen within the dedupe window: nothing new was stored.
    pub duplicate: bool,
    /// The message instances created, one per matching subscription (empty for duplicates).
    pub instances: Vec<InstanceId>,
    /// True when it matched nothing and was kept in the routing-failure queue.
    pub routing_failure: bool,
}

/// A message instance handed to a host instance under a lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeasedMessage {
    pub instance: InstanceId,
    pub message_id: MessageId,
    pub token: LeaseToken,
    pub expires_at_ms: i64,
    /// Deliveries including this one.
    pub attempt: u32,
    pub subscription: SubscriptionId,
    pub priority: u8,
    pub body: Vec<u8>,
    pub context: Context,
    pub received_at_ms: i64,
    pub publisher: String,
    /// Deliver this attempt through the send port's backup transport: the primary
    /// transport's retries are exhausted.
    pub backup_transport: bool,
}

/// What one maintenance tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickReport {
    pub leases_expired: u64,
    pub retries_released: u64,
    pub suspended: u64,
    pub dedupe_entries_forgotten: u64,
    pub tracking_events_purged: u64,
}

impl TickReport {
    /// Whether a sweep stopped at its per-tick bound ([`limits::MAX_SWEEP_PER_TICK`]), so
    /// that another tick at once would find more to do: a backlog after downtime, or more
    /// work arriving per interval than one tick may do.
    pub fn reached_a_bound(&self) -> bool {
        let bound = limits::MAX_SWEEP_PER_TICK as u64;
        [
            self.leases_expired,
            self.retries_released,
            self.dedupe_entries_forgotten,
            self.tracking_events_purged,
        ]
        .into_iter()
        .any(|done| done >= bound)
    }
}
