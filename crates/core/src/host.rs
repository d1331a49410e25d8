//! Hosts and their queue depths.

use serde::{Deserialize, Serialize};

use crate::ids::HostId;

/// A named class of work with its own work queue and suspended queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: HostId,
    pub name: String,
    pub created_at_ms: i64,
    pub depth: QueueDepth,
}

/// Message instances of one host, by state. Maintained by `apply`, so reading it costs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Waiting to be leased.
    pub ready: u64,
    /// Waiting for their retry interval to pass.
    pub delayed: u64,
    /// Leased by a host instance.
    pub leased: u64,
    /// Failed; waiting for an operator to resume or terminate them.
    pub suspended: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.ready + self.delayed + self.leased + self.suspended
    }
}
