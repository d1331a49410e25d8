//! Commands: every state change of a MessageBox, as data that can be logged and replicated.

use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, LeaseToken, SubscriptionId};
use crate::message::NewMessage;
use crate::settings::Settings;
use crate::subscription::{RetryPolicy, SubscriptionDefinition};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the replicated settings.
    Configure(Settings),
    CreateHost {
        name: String,
    },
    CreateSubscription {
        name: String,
        host: String,
        filter: String,
        priority: u8,
        retry: RetryPolicy,
        /// The backup transport's retries, used once the primary's are exhausted. Absent in
        /// entries logged before backup transports existed.
        #[serde(default)]
        backup: Option<RetryPolicy>,
    },
    DeleteSubscription {
        id: SubscriptionId,
    },
    /// Publish a batch; every message is routed and stored (or refused) on its own.
    Publish {
        publisher: String,
        messages: Vec<NewMessage>,
    },
    /// Lease up to `max_messages` ready instances of `host`, priority first, then FIFO.
    Lease {
        host: String,
        holder: String,
        max_messages: u32,
        lease_duration_ms: u64,
    },
    RenewLease {
        instance: InstanceId,
        token: LeaseToken,
        lease_duration_ms: u64,
    },
    Complete {
        instance: InstanceId,
        token: LeaseToken,
    },
    /// Give a leased instance back without counting an attempt.
    Abandon {
        instance: InstanceId,
        token: LeaseToken,
    },
    /// Report a failed delivery: retried per the subscription's policy, then suspended.
    Fail {
        instance: InstanceId,
        token: LeaseToken,
        reason: String,
    },
    Resume {
        instance: InstanceId,
    },
    Terminate {
        instance: InstanceId,
        reason: String,
    },
    /// Maintenance stamped by the active: expire leases, release due retries, forget old
    /// dedupe entries. Bounded per tick.
    Tick,
    /// Remove tracking events recorded before the given time (bounded per command).
    PurgeTracking {
        before_ms: i64,
    },
    /// Give subscription `id` a new definition (it may keep its name) in one step, keeping
    /// its id, as a changed send port needs: every message published routes by the old
    /// definition or by the new one, never by neither. Instances already queued stay in
    /// their host queues and are retried by the new policy.
    ReplaceSubscription {
        id: SubscriptionId,
        definition: SubscriptionDefinition,
    },
}

impl Command {
    /// The command that creates a subscription so defined.
    pub fn create_subscription(definition: SubscriptionDefinition) -> Command {
        let SubscriptionDefinition {
            name,
            host,
            filter,
            priority,
            retry,
            backup,
        } = definition;
        Command::CreateSubscription {
            name,
            host,
            filter,
            priority,
            retry,
            backup,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Configure(_) => "configure",
            Command::CreateHost { .. } => "create_host",
            Command::CreateSubscription { .. } => "create_subscription",
            Command::DeleteSubscription { .. } => "delete_subscription",
            Command::Publish { .. } => "publish",
            Command::Lease { .. } => "lease",
            Command::RenewLease { .. } => "renew_lease",
            Command::Complete { .. } => "complete",
            Command::Abandon { .. } => "abandon",
            Command::Fail { .. } => "fail",
            Command::Resume { .. } => "resume",
            Command::Terminate { .. } => "terminate",
            Command::Tick => "tick",
            Command::PurgeTracking { .. } => "purge_tracking",
            Command::ReplaceSubscription { .. } => "replace_subscription",
        }
    }

    /// How many messages the command may touch, for bounding how many commands share one
    /// commit (a publish batch counts each message, a lease its maximum).
    pub fn message_weight(&self) -> usize {
        match self {
            Command::Publish { messages, .. } => messages.len().max(1),
            Command::Lease { max_messages, .. } => *max_messages as usize,
            _ => 1,
        }
    }
}
