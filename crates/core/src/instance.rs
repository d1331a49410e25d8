//! Message instances: one copy of a message in one host queue, and its lease.

use serde::{Deserialize, Serialize};

use crate::ids::{HostId, InstanceId, LeaseToken, MessageId, MessageSeq, SubscriptionId};

/// Where a message instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// In its host queue, available to lease.
    Ready,
    /// Failed; offered again once `visible_at_ms` has passed.
    Delayed,
    /// Claimed by a host instance until `lease_expires_at_ms`.
    Leased,
    /// In its host's suspended queue until resumed or terminated.
    Suspended,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Ready => "ready",
            InstanceState::Delayed => "delayed",
            InstanceState::Leased => "leased",
            InstanceState::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<InstanceState> {
        match text {
            "ready" => Some(InstanceState::Ready),
            "delayed" => Some(InstanceState::Delayed),
            "leased" => Some(InstanceState::Leased),
            "suspended" => Some(InstanceState::Suspended),
            _ => None,
        }
    }
}

/// One message instance. Its id grows monotonically, so ordering by id is FIFO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub message_seq: MessageSeq,
    pub message_id: MessageId,
    /// `None` for a message kept in the routing-failure queue.
    pub subscription: Option<SubscriptionId>,
    /// `None` for a message kept in the routing-failure queue.
    pub host: Option<HostId>,
    pub priority: u8,
    pub state: InstanceState,
    /// Deliveries so far (leases granted).
    pub attempts: u32,
    /// For `Delayed`: when it becomes ready again.
    pub visible_at_ms: i64,
    /// For `Leased`: the current fencing token, its holder and its expiry.
    pub lease_token: LeaseToken,
    pub lease_holder: String,
    pub lease_expires_at_ms: i64,
    /// Why it last failed or was suspended.
    pub last_error: Option<String>,
    pub enqueued_at_ms: i64,
}
