//! [`LeaseStream`]: messages the node leases to this host instance as they arrive.

use tandem_protocol::v1;
use tonic::Streaming;

use crate::attempt_failure::error_from_status_at;
use crate::error::ClientError;

/// An open `LeaseStream` call; dropping it hangs up. The stream is not resumed after a
/// failover: when it ends or fails, open a new one with
/// [`crate::TandemClient::lease_stream`], which finds the active again.
pub struct LeaseStream {
    messages: Streaming<v1::LeasedMessage>,
    /// The node streaming.
    address: String,
}

impl LeaseStream {
    pub(crate) fn new(messages: Streaming<v1::LeasedMessage>, address: String) -> Self {
        LeaseStream { messages, address }
    }

    /// The next leased message; `None` when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<v1::LeasedMessage>, ClientError> {
        self.messages
            .message()
            .await
            .map_err(|status| error_from_status_at(&self.address, status))
    }
}
