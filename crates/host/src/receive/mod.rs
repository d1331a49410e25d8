//! Receive locations: adapters that publish what arrives into the message box, each
//! message with an id fixed before the first attempt so that every retry is stored once.

pub mod file;
pub mod http;

use tandem_client::{ClientError, TandemClient, v1};
use tandem_core::Property;

/// How a publish ended.
#[derive(Debug)]
pub enum PublishOutcome {
    /// Durably stored (or already stored under this id: `duplicate`).
    Stored { duplicate: bool },
    /// The message box refused the message itself (no subscription matches, too large, …):
    /// sending it again would change nothing.
    Refused(ClientError),
    /// No active node could store it within the client's retry deadline.
    Unavailable(ClientError),
}

/// Publishes one message under `message_id`, as `publisher` (the receive location).
pub async fn publish(
    client: &TandemClient,
    publisher: &str,
    message_id: &str,
    body: Vec<u8>,
    properties: Vec<Property>,
) -> PublishOutcome {
    let request = v1::PublishRequest {
        publisher: publisher.to_string(),
        messages: vec![v1::PublishMessage {
            message_id: message_id.to_string(),
            body,
            properties: properties.into_iter().map(v1::Property::from).collect(),
        }],
    };
    let result = match client.publish(request).await {
        Ok(response) => response.results.into_iter().next(),
        Err(error) if error.is_transient() => return PublishOutcome::Unavailable(error),
        Err(error) => return PublishOutcome::Refused(error),
    };
    match result {
        Some(v1::PublishResult {
            error: None,
            duplicate,
            ..
        }) => PublishOutcome::Stored { duplicate },
        Some(v1::PublishResult {
            error: Some(error), ..
        }) => {
            let error = ClientError::from(error);
            if error.is_transient() {
                PublishOutcome::Unavailable(error)
            } else {
                PublishOutcome::Refused(error)
            }
        }
        None => PublishOutcome::Unavailable(ClientError::new(
            "internal",
            "the node answered a publish of one message with no result",
        )),
    }
}
