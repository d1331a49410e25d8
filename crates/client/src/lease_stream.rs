//! [`LeaseStream`]: messages the node leases to this host instance as they arrive, across
//! failovers.

use std::time::Duration;

use tandem_protocol::v1;
use tonic::Streaming;

use crate::attempt_failure::error_from_status_at;
use crate::client::TandemClient;
use crate::error::ClientError;

/// The pause before a stream that ended is opened again, so that a node that keeps ending
/// streams (shutting down) is not called in a tight loop.
const REOPEN_PAUSE: Duration = Duration::from_millis(50);

/// An open `LeaseStream` call; dropping it hangs up. When the node ends the stream or it
/// fails with a transient error (the node stopped, lost the active role, or cannot be
/// reached), the stream is opened again on the active, found as every call finds it, under
/// the client's retry policy. Messages the old active leased but could not hand over come
/// back when their leases expire.
pub struct LeaseStream {
    client: TandemClient,
    request: v1::LeaseRequest,
    messages: Streaming<v1::LeasedMessage>,
    /// The node streaming.
    address: String,
}

impl LeaseStream {
    pub(crate) fn new(
        client: TandemClient,
        request: v1::LeaseRequest,
        messages: Streaming<v1::LeasedMessage>,
        address: String,
    ) -> Self {
        LeaseStream {
            client,
            request,
            messages,
            address,
        }
    }

    /// The node the stream currently comes from.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The next leased message. Waits across failovers; an error is the node's answer to
    /// the request (an unknown host, say) or the retry policy giving up on finding an
    /// active.
    pub async fn next(&mut self) -> Result<v1::LeasedMessage, ClientError> {
        loop {
            match self.messages.message().await {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(status) => {
                    let error = error_from_status_at(&self.address, status);
                    if !error.is_transient() {
                        return Err(error);
                    }
                }
            }
            tokio::time::sleep(REOPEN_PAUSE).await;
            let (messages, address) = self.client.open_lease_stream(self.request.clone()).await?;
            self.messages = messages;
            self.address = address;
        }
    }
}
