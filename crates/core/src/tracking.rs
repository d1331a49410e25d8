//! Tracking events: the history of every message, kept until retention purges it.

use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, MessageId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingKind {
    /// Stored, with the subscriptions it was routed to.
    Received,
    /// Matched no subscription and was kept in the routing-failure queue.
    RoutingFailed,
    Leased,
    LeaseRenewed,
    Completed,
    Abandoned,
    Failed,
    LeaseExpired,
    RetryScheduled,
    Suspended,
    Resumed,
    Terminated,
}

impl TrackingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackingKind::Received => "received",
            TrackingKind::RoutingFailed => "routing_failed",
            TrackingKind::Leased => "leased",
            TrackingKind::LeaseRenewed => "lease_renewed",
            TrackingKind::Completed => "completed",
            TrackingKind::Abandoned => "abandoned",
            TrackingKind::Failed => "failed",
            TrackingKind::LeaseExpired => "lease_expired",
            TrackingKind::RetryScheduled => "retry_scheduled",
            TrackingKind::Suspended => "suspended",
            TrackingKind::Resumed => "resumed",
            TrackingKind::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<TrackingKind> {
        ALL_TRACKING_KINDS
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
    }
}

const ALL_TRACKING_KINDS: [TrackingKind; 12] = [
    TrackingKind::Received,
    TrackingKind::RoutingFailed,
    TrackingKind::Leased,
    TrackingKind::LeaseRenewed,
    TrackingKind::Completed,
    TrackingKind::Abandoned,
    TrackingKind::Failed,
    TrackingKind::LeaseExpired,
    TrackingKind::RetryScheduled,
    TrackingKind::Suspended,
    TrackingKind::Resumed,
    TrackingKind::Terminated,
];

/// One step in a message's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingEvent {
    pub message_id: MessageId,
    pub instance: Option<InstanceId>,
    pub at_ms: i64,
    pub kind: TrackingKind,
    /// Human-readable detail: routed-to subscriptions, lease holder, failure reason.
    pub detail: String,
}
