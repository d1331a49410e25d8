//! Identifiers: publisher-chosen message ids and the store's own integer ids.

use serde::{Deserialize, Serialize};

/// A message id chosen by the publisher (or generated for it); the idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub String);

impl MessageId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Store-internal sequence number of a stored message.
pub type MessageSeq = u64;
/// A message instance: one copy of a message in one host queue.
pub type InstanceId = u64;
pub type HostId = u64;
pub type SubscriptionId = u64;
/// The fencing token of a lease.
pub type LeaseToken = u64;
