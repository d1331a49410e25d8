//! [`LeaseStream`]: messages the node leases to this host instance as they arrive.

use tandem_protocol::v1;
use tonic::Streaming;

use crate::connection::Connection;
use crate::error::ClientError;

/// An open `LeaseStream` call; dropping it hangs up.
pub struct LeaseStream {
    messages: Streaming<v1::LeasedMessage>,
    connection: Connection,
}

impl LeaseStream {
    pub(crate) fn new(messages: Streaming<v1::LeasedMessage>, connection: Connection) -> Self {
        LeaseStream {
            messages,
            connection,
        }
    }

    /// The next leased message; `None` when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<v1::LeasedMessage>, ClientError> {
        self.messages
            .message()
            .await
            .map_err(|status| self.connection.error_from_status(status))
    }
}
