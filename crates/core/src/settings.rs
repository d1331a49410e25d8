//! Replicated settings: the configuration that `apply` depends on, so that every replica
//! decides the same way.

use serde::{Deserialize, Serialize};

use crate::limits;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub max_body_bytes: u64,
    pub dedupe_window_ms: u64,
    /// Past this many stored messages, publish is refused as throttled.
    pub throttle_message_count: u64,
    /// Keep messages that match no subscription as suspended routing failures instead of
    /// rejecting them.
    pub routing_failure_queue: bool,
    /// Record tracking events (message history).
    pub tracking: bool,
    /// Tracking events older than this are purged by the maintenance tick; 0 keeps them
    /// until `PurgeTracking` removes them.
    pub tracking_retention_ms: u64,
}

impl Settings {
    /// Whether a publish at `now_ms` of an id last published at `published_at_ms` is a
    /// duplicate: within the dedupe window.
    pub fn is_duplicate_publish(&self, published_at_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(published_at_ms) < self.dedupe_window_ms as i64
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_body_bytes: limits::DEFAULT_MAX_BODY_BYTES,
            dedupe_window_ms: limits::DEFAULT_DEDUPE_WINDOW_MS,
            throttle_message_count: limits::DEFAULT_THROTTLE_MESSAGE_COUNT,
            routing_failure_queue: false,
            tracking: true,
            tracking_retention_ms: limits::DEFAULT_TRACKING_RETENTION_MS,
        }
    }
}
