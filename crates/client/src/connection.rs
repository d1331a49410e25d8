//! [`Connection`]: the gRPC channel to the node the client currently talks to.
//!
//! Everything that knows *where* the nodes are lives here: the addresses the caller gave
//! (one, or a comma-separated list), the move to the active when a passive redirects a
//! call there, and the move to the next address in the list (round robin) when the node
//! talked to cannot be reached. Channels connect lazily, on their first call, so a client
//! can be made while no node runs; the call's retries wait for one. The call methods of
//! [`crate::TandemClient`] only ask for the current `NodeChannel`.
//!
//! When a passive names an active that this client could not reach a moment ago (its
//! route to that machine is down, while the passives answer), calls stay with the passive
//! and ask it to relay them to the active (the `tandem-forward` metadata), for
//! [`RELAY_FOR`]; then the direct way is tried again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tandem_protocol::keep_alive::with_keep_alive;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::cluster_client::ClusterClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tandem_protocol::{RELAY_AFTER_UNREACHABLE, RELAY_FOR};
use tokio::sync::broadcast;
use tonic::transport::{Channel, Endpoint};

use crate::connection_monitor::{ConnectionEvent, ConnectionMonitor, ConnectionState};
use crate::error::ClientError;

/// How long opening the TCP connection to a node may take. On a LAN it opens in well under
/// a millisecond, across a continent in a few hundred; the address of a machine that is off
/// answers nothing at all, and every new client (every CLI command) given it first waited
/// this long before trying the next address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest gRPC message sent or received: a lease or publish batch of large bodies
/// (each at most `limits::MAX_BODY_BYTES_CEILING`) must fit.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Most addresses accepted in one comma-separated list.
pub const MAX_ADDRESSES: usize = 16;

/// The channel to the node talked to now, cheap to clone. Clones share it, and when one
/// clone moves to another node (following a redirect, or failing over) they all do.
#[derive(Clone, Debug)]
pub struct Connection {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The addresses given, in order.
    addresses: Vec<String>,
    current: Mutex<Current>,
    monitor: ConnectionMonitor,
}

#[derive(Debug)]
struct Current {
    node: NodeChannel,
    /// Whether `node` has answered a call, or a passive named it as the active: then calls
    /// stay with it rather than going back to a node that answered before.
    trusted: bool,
    /// The index in `addresses` to fail over to next.
    next_index: usize,
    /// The last address a call could not reach, and when.
    unreachable: Option<(String, Instant)>,
}

/// One node's address and a channel to it. `generation` grows with every move, so that a
/// failure on a channel already left behind does not move the connection again.
#[derive(Clone, Debug)]
pub(crate) struct NodeChannel {
    pub address: String,
    pub generation: u64,
    /// Since when calls to this node ask it to relay them to the active.
    pub relaying_since: Option<Instant>,
    channel: Channel,
}

impl Connection {
    /// A connection to `addresses`: one `host:port` or `http://host:port`, or several
    /// separated by commas. Nothing is dialled yet: the first call talks to the first
    /// address. Fails only on addresses that are not addresses.
    pub fn open(addresses: &str) -> Result<Connection, ClientError> {
        let addresses = split_addresses(addresses)?;
        for address in &addresses {
            endpoint_for(address)?;
        }
        let node = NodeChannel::lazy(&addresses[0], 1)?;
        let current = Current {
            node,
            trusted: false,
            next_index: 1 % addresses.len(),
            unreachable: None,
        };
        Ok(Connection {
            shared: Arc::new(Shared {
                addresses,
                current: Mutex::new(current),
                monitor: ConnectionMonitor::new(),
            }),
        })
    }

    /// The address of the node talked to now.
    pub fn address(&self) -> String {
        self.lock().node.address.clone()
    }

    /// The addresses given when connecting, in order.
    pub fn addresses(&self) -> &[String] {
        &self.shared.addresses
    }

    /// Where the connection stands now.
    pub fn state(&self) -> ConnectionState {
        self.shared.monitor.state()
    }

    /// Every [`ConnectionEvent`] from now on (bounded: a receiver that falls
    /// [`crate::connection_monitor::CONNECTION_EVENT_CAPACITY`] events behind misses the
    /// oldest).
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.shared.monitor.subscribe()
    }

    /// Talks to `address` (the active, as a redirect named it) from now on; the channel
    /// connects on its first call.
    pub fn move_to(&self, address: &str) -> Result<(), ClientError> {
        let mut current = self.lock();
        if current.node.address == address {
            return Ok(());
        }
        current.node = NodeChannel::lazy(address, current.node.generation + 1)?;
        current.trusted = true;
        if let Some(index) = self.shared.addresses.iter().position(|a| a == address) {
            current.next_index = (index + 1) % self.shared.addresses.len();
        }
        Ok(())
    }

    pub fn message_box(&self) -> MessageBoxClient<Channel> {
        self.current_node().message_box()
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        self.current_node().admin()
    }

    pub fn cluster(&self) -> ClusterClient<Channel> {
        self.current_node().cluster()
    }

    /// The node talked to now. Relaying through it ends after [`RELAY_FOR`].
    pub(crate) fn current_node(&self) -> NodeChannel {
        let mut current = self.lock();
        if current
            .node
            .relaying_since
            .is_some_and(|since| since.elapsed() >= RELAY_FOR)
        {
            current.node.relaying_since = None;
            current.node.generation += 1;
        }
        current.node.clone()
    }

    /// `node` could not be reached: a passive that names it as the active soon after is
    /// asked to relay instead ([`Connection::relay_through`]).
    pub(crate) fn node_unreachable(&self, node: &NodeChannel) {
        self.lock().unreachable = Some((node.address.clone(), Instant::now()));
    }

    /// After `passive` named `active_address` as the active: when that address could not
    /// be reached within [`RELAY_AFTER_UNREACHABLE`], calls stay with the passive and ask
    /// it to relay them (true). False when the active should be called directly.
    pub(crate) fn relay_through(&self, passive: &NodeChannel, active_address: &str) -> bool {
        let mut current = self.lock();
        let active_unreachable = current.unreachable.as_ref().is_some_and(|(address, at)| {
            address == active_address && at.elapsed() < RELAY_AFTER_UNREACHABLE
        });
        if !active_unreachable || passive.relaying_since.is_some() {
            return false;
        }
        current.node = NodeChannel {
            generation: current.node.generation.max(passive.generation) + 1,
            relaying_since: Some(Instant::now()),
            ..passive.clone()
        };
        current.trusted = true;
        true
    }

    /// After `failed` could not serve a call: talks to the next address in the list,
    /// skipping `failed`'s own unless it is the only one (then on a fresh channel: the node
    /// may be restarting). Does nothing when another call moved the connection already.
    pub(crate) fn fail_over_from(&self, failed: &NodeChannel) {
        let mut current = self.lock();
        if current.node.generation != failed.generation {
            return;
        }
        let addresses = &self.shared.addresses;
        let mut index = current.next_index;
        if addresses[index] == failed.address && addresses.len() > 1 {
            index = (index + 1) % addresses.len();
        }
        // The addresses were checked when the connection was opened.
        if let Ok(node) = NodeChannel::lazy(&addresses[index], failed.generation + 1) {
            current.node = node;
            current.trusted = false;
            current.next_index = (index + 1) % addresses.len();
        }
    }

    /// `node` answered a call. If another call failed over meanwhile to a node that has not
    /// answered yet, the connection moves back: calls go where answers come from.
    pub(crate) fn node_answered(&self, node: &NodeChannel) {
        let mut current = self.lock();
        if current.node.generation != node.generation && !current.trusted {
            current.node = NodeChannel {
                generation: current.node.generation + 1,
                ..node.clone()
            };
        }
        current.trusted |= current.node.address == node.address;
        let generation = current.node.generation;
        drop(current);
        self.shared.monitor.node_answered(&node.address, generation);
    }

    /// `node` failed to serve a call as an active would, for `reason`.
    pub(crate) fn node_failed(&self, node: &NodeChannel, reason: &str) {
        self.shared
            .monitor
            .node_failed(&node.address, node.generation, reason);
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl NodeChannel {
    /// A channel to `address` that connects on its first call.
    fn lazy(address: &str, generation: u64) -> Result<NodeChannel, ClientError> {
        Ok(NodeChannel {
            address: address.to_string(),
            generation,
            relaying_since: None,
            channel: endpoint_for(address)?.connect_lazy(),
        })
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

    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
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
    Ok(with_keep_alive(
        endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true),
    ))
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

    #[test]
    fn address_lists_split_on_commas() {
        let addresses = split_addresses(" 127.0.0.1:7400, ,127.0.0.1:7410,").expect("list");
        assert_eq!(addresses, ["127.0.0.1:7400", "127.0.0.1:7410"]);
        let error = split_addresses(" , ").expect_err("empty list");
        assert_eq!(error.code, "invalid_argument");
    }

    #[tokio::test]
    async fn failing_over_goes_round_the_list_skipping_the_failed_node() {
        let connection = Connection::open("a:1,b:2,c:3").expect("valid list");
        let mut visited = vec![connection.address()];
        for _ in 0..4 {
            connection.fail_over_from(&connection.current_node());
            visited.push(connection.address());
        }
        assert_eq!(visited, ["a:1", "b:2", "c:3", "a:1", "b:2"]);
    }

    #[tokio::test]
    async fn a_failure_on_a_channel_left_behind_does_not_move_again() {
        let connection = Connection::open("a:1,b:2,c:3").expect("valid list");
        let failed = connection.current_node();
        connection.fail_over_from(&failed);
        connection.fail_over_from(&failed);
        assert_eq!(connection.address(), "b:2");
    }

    #[tokio::test]
    async fn a_single_node_is_retried_on_a_fresh_channel() {
        let connection = Connection::open("a:1").expect("valid address");
        let failed = connection.current_node();
        connection.fail_over_from(&failed);
        let retried = connection.current_node();
        assert_eq!(retried.address, "a:1");
        assert!(retried.generation > failed.generation);
    }

    #[tokio::test]
    async fn after_a_redirect_failing_over_continues_after_the_active() {
        let connection = Connection::open("a:1,b:2,c:3").expect("valid list");
        connection.move_to("b:2").expect("valid address");
        connection.fail_over_from(&connection.current_node());
        assert_eq!(connection.address(), "c:3");
        // An active outside the list: failing over returns to the list.
        connection.move_to("d:4").expect("valid address");
        connection.fail_over_from(&connection.current_node());
        assert_eq!(connection.address(), "a:1");
    }

    #[tokio::test]
    async fn an_answer_from_a_node_left_behind_brings_calls_back_to_it() {
        let connection = Connection::open("a:1,b:2").expect("valid list");
        let answering = connection.current_node();
        connection.fail_over_from(&answering);
        assert_eq!(connection.address(), "b:2");
        connection.node_answered(&answering);
        assert_eq!(connection.address(), "a:1");
        // A node that answered (or that a passive named) keeps the calls.
        let failed = connection.current_node();
        connection.fail_over_from(&failed);
        connection.node_answered(&connection.current_node());
        connection.node_answered(&failed);
        assert_eq!(connection.address(), "b:2");
        let left_for_the_active = connection.current_node();
        connection.move_to("a:1").expect("valid address");
        connection.node_answered(&left_for_the_active);
        assert_eq!(connection.address(), "a:1");
    }

    #[tokio::test]
    async fn opening_checks_every_address_but_dials_none() {
        let error = Connection::open("127.0.0.1:7400,not an address").expect_err("garbage");
        assert_eq!(error.code, "invalid_argument");
        let connection = Connection::open("127.0.0.1:1").expect("nothing dialled");
        assert_eq!(connection.state(), ConnectionState::Connecting);
    }
}
