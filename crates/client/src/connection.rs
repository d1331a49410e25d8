//! [`Connection`]: the gRPC channel to one node.
//!
//! Everything that knows *where* the node is lives here, so that connecting to a list of
//! nodes, finding the active one and failing over can later be added without changing
//! the call methods of [`crate::TandemClient`].

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::time::Duration;

use tandem_protocol::ERROR_CODE_METADATA;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::ClientError;

/// How long establishing the TCP and HTTP/2 connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest gRPC message sent or received: a lease or publish batch of large bodies
/// (each at most `limits::MAX_BODY_BYTES_CEILING`) must fit.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// An open channel to one node, cheap to clone (clones share the HTTP/2 connection).
#[derive(Clone, Debug)]
pub struct Connection {
    address: String,
    channel: Channel,
}

impl Connection {
    /// Connects to `address`: `host:port` or a `http://host:port` URI.
    pub async fn open(address: &str) -> Result<Connection, ClientError> {
        let endpoint = endpoint_for(address)?;
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect());
        let channel = match connecting.await {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => {
                return Err(ClientError::unreachable(address, &describe_cause(&error)));
            }
            Err(_elapsed) => {
                let reason = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                return Err(ClientError::unreachable(address, &reason));
            }
        };
        Ok(Connection {
            address: address.to_string(),
            channel,
        })
    }

    /// The address as the caller gave it.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn message_box(&self) -> MessageBoxClient<Channel> {
        MessageBoxClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    /// Turns a failed call into a [`ClientError`]; a transport failure (no error code
    /// from the node) says which node could not be reached.
    pub fn error_from_status(&self, status: Status) -> ClientError {
        let from_transport = status.code() == Code::Unavailable
            && status.metadata().get(ERROR_CODE_METADATA).is_none();
        if from_transport {
            let reason = match status.source() {
                Some(cause) => describe_cause(cause),
                None => status.message().to_lowercase(),
            };
            return ClientError::unreachable(&self.address, &reason);
        }
        ClientError::from(status)
    }
}

fn endpoint_for(address: &str) -> Result<Endpoint, ClientError> {
    let trimmed = address.trim();
    let uri = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|error| {
        ClientError::new(
            "invalid_argument",
            format!("'{address}' is not a node address (expected host:port): {error}"),
        )
    })?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// The most specific reason in an error's chain, e.g. "connection refused".
fn describe_cause(error: &(dyn StdError + 'static)) -> String {
    let mut innermost = error;
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            return describe_io_error(io_error);
        }
        innermost = cause;
        current = cause.source();
    }
    innermost.to_string()
}

fn describe_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_scheme_get_http() {
        let endpoint = endpoint_for("127.0.0.1:7400").expect("valid address");
        assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:7400/");
        let endpoint = endpoint_for("http://localhost:9").expect("valid address");
        assert_eq!(endpoint.uri().to_string(), "http://localhost:9/");
    }

    #[test]
    fn garbage_addresses_are_invalid_arguments() {
        let error = endpoint_for("not an address").expect_err("invalid address");
        assert_eq!(error.code, "invalid_argument");
        assert!(error.message.contains("not an address"), "{error}");
    }

    #[tokio::test]
    async fn refused_connections_say_what_to_do() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let error = Connection::open(&address)
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code, "unavailable");
        assert!(error.message.contains("connection refused"), "{error}");
        assert!(error.message.contains("tandem node start"), "{error}");
    }
}
