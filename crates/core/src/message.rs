//! Messages as publishers send them and as the store keeps them.

use serde::{Deserialize, Serialize};

use crate::context::{Context, Property};
use crate::ids::{MessageId, MessageSeq};

/// A message offered for publication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub message_id: MessageId,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub properties: Vec<Property>,
}

/// A message as stored: immutable body and context plus system properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: MessageSeq,
    pub message_id: MessageId,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub context: Context,
    pub received_at_ms: i64,
    pub publisher: String,
}
