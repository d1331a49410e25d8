//! [`Connection`]: the gRPC channel to the node the client currently talks to.
//!
//! Everything that knows *where* the node is lives here: the addresses the caller gave
//! (a comma-separated list is tried in order until one node answers), and the switch to
//! the active node when a passive redirects a call there. The call methods of
//! [`crate::TandemClient`] only ask for a service client on the current channel.

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tandem_protocol::ERROR_CODE_METADATA;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::cluster_client::ClusterClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::ClientError;

/// How long establishing the TCP and HTTP/2 connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest gRPC message sent or received: a lease or publish batch of large bodies
/// (each at most `limits::MAX_BODY_BYTES_CEILING`) must fit.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Most addresses accepted in one comma-separated list.
pub const MAX_ADDRESSES: usize = 16;

/// An open channel to one node, cheap to clone. Clones share the channel, and when one
/// clone moves to another node (following a redirect to the active) they all do.
#[derive(Clone, Debug)]
pub struct Connection {
    current: Arc<Mutex<NodeChannel>>,
}

/// The node talked to now: its address as given (or as the redirect named it) and the
/// channel to it.
#[derive(Clone, Debug)]
struct NodeChannel {
    address: String,
    channel: Channel,
}

impl Connection {
    /// Connects to `addresses`: one `host:port` or `http://host:port`, or several separated
    /// by commas, tried in order until one answers.
    pub async fn open(addresses: &str) -> Result<Connection, ClientError> {
        let candidates = split_addresses(addresses)?;
        let mut failures = Vec::with_capacity(candidates.len());
        for address in &candidates {
            match connect(address, CONNECT_TIMEOUT).await {
                Ok(channel) => {
                    let current = NodeChannel {
                        address: address.clone(),
                        channel,
                    };
                    return Ok(Connection {
                        current: Arc::new(Mutex::new(current)),
                    });
                }
                Err(error) => failures.push(error),
            }
        }
        match failures.len() {
            1 => Err(failures.remove(0)),
            _ => Err(ClientError::new(
                "unavailable",
                format!(
                    "none of the nodes answered: {}",
                    failures
                        .iter()
                        .map(|failure| failure.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    /// The address of the node talked to now.
    pub fn address(&self) -> String {
        self.lock().address.clone()
    }

    /// Connects to `address` (the active, as a redirect named it) and talks to it from now
    /// on; on failure the connection stays where it was.
    pub async fn move_to(&self, address: &str) -> Result<(), ClientError> {
        let channel = connect(address, CONNECT_TIMEOUT).await?;
        *self.lock() = NodeChannel {
            address: address.to_string(),
            channel,
        };
        Ok(())
    }

    pub fn message_box(&self) -> MessageBoxClient<Channel> {
        MessageBoxClient::new(self.channel())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    /// Turns a failed call into a [`ClientError`]; a transport failure (no error code
    /// from the node) says which node could not be reached.
    pub fn error_from_status(&self, status: Status) -> ClientError {
        error_from_status_at(&self.address(), status)
    }

    fn channel(&self) -> Channel {
        self.lock().channel.clone()
    }

    fn lock(&self) -> MutexGuard<'_, NodeChannel> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`Connection::error_from_status`] for a call that went to `address`.
pub(crate) fn error_from_status_at(address: &str, status: Status) -> ClientError {
    let from_transport =
        status.code() == Code::Unavailable && status.metadata().get(ERROR_CODE_METADATA).is_none();
    if from_transport {
        let reason = match status.source() {
            Some(cause) => describe_cause(cause),
            None => status.message().to_lowercase(),
        };
        return ClientError::unreachable(address, &reason);
    }
    ClientError::from(status)
}

/// Opens a channel to one node within `timeout`.
async fn connect(address: &str, timeout: Duration) -> Result<Channel, ClientError> {
    let endpoint = endpoint_for(address)?;
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(ClientError::unreachable(address, &describe_cause(&error))),
        Err(_elapsed) => {
            let reason = format!("no answer within {} s", timeout.as_secs());
            Err(ClientError::unreachable(address, &reason))
        }
    }
}

/// The addresses of a comma-separated list, in order, without blanks.
fn split_addresses(addresses: &str) -> Result<Vec<String>, ClientError> {
    let candidates: Vec<String> = addresses
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_string)
        .collect();
    if candidates.is_empty() {
        return Err(ClientError::new(
            "invalid_argument",
            "no node address given (expected host:port, or several separated by commas)",
        ));
    }
    if candidates.len() > MAX_ADDRESSES {
        return Err(ClientError::new(
            "invalid_argument",
            format!(
                "{} node addresses given; at most {MAX_ADDRESSES} are accepted",
                candidates.len()
            ),
        ));
    }
    Ok(candidates)
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

    fn free_address() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        address
    }

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

    #[test]
    fn address_lists_split_on_commas() {
        let addresses = split_addresses(" 127.0.0.1:7400, ,127.0.0.1:7410,").expect("list");
        assert_eq!(addresses, ["127.0.0.1:7400", "127.0.0.1:7410"]);
        let error = split_addresses(" , ").expect_err("empty list");
        assert_eq!(error.code, "invalid_argument");
    }

    #[tokio::test]
    async fn refused_connections_say_what_to_do() {
        let address = free_address();
        let error = Connection::open(&address)
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code, "unavailable");
        assert!(error.message.contains("connection refused"), "{error}");
        assert!(error.message.contains("tandem node start"), "{error}");
    }

    #[tokio::test]
    async fn a_list_is_tried_in_order_until_one_node_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let listening = listener.local_addr().expect("address").to_string();
        let accepting = tokio::spawn(async move {
            // Accept (and hold) connections so that the HTTP/2 handshake can start.
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let dead = free_address();
        let list = format!("{dead},{listening}");
        let connection = Connection::open(&list).await.expect("the second answers");
        assert_eq!(connection.address(), listening);
        accepting.abort();
    }

    #[tokio::test]
    async fn a_list_of_dead_nodes_names_each() {
        let first = free_address();
        let second = free_address();
        let error = Connection::open(&format!("{first},{second}"))
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code, "unavailable");
        assert!(error.message.contains(&first), "{error}");
        assert!(error.message.contains(&second), "{error}");
    }
}
