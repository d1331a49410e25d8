//! [`ForwardToActive`]: a passive relays a gRPC call to the active when the caller asks
//! (the `tandem-forward` metadata), instead of answering `not_active`.
//!
//! A client that reaches the passives but not the active (its route to the active's
//! machine is down, a firewall rule, a cut on the clients' network only) would otherwise be
//! redirected, fail to connect, and try again until the active is reachable: writes stalled
//! for as long as the cut lasted while the replica set was healthy. `tandem-client` asks
//! for the relay when a passive names an active it could not reach a moment ago.
//!
//! The relay works on HTTP/2 requests, below the services: the call's bytes (unary or
//! streaming) go to the active's gRPC address over a channel kept per active, and its answer
//! comes back as it is. The active, the only one that handles the call, answers it as it
//! answers any other; the metadata is removed, so a node that has stopped being the active
//! meanwhile answers `not_active` and is not asked to relay again. The cluster service
//! (status, membership) is always answered by the node asked, and an active, or a passive
//! that knows no active, ignores the request to relay.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tandem_cluster::Role;
use tandem_protocol::FORWARD_METADATA;
use tandem_protocol::keep_alive::with_keep_alive;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::{Channel, Endpoint};

use crate::errors::{relay_cut_off, to_status};
use crate::metrics::Api;
use crate::state::SharedState;

/// The path prefix of the cluster service's calls, which are never relayed.
const CLUSTER_SERVICE_PATH: &str = "/tandem.v1.Cluster/";
/// The operation relayed calls are counted under (`tandem_requests_total`).
const RELAYED_OPERATION: &str = "relayed_to_active";
/// How long opening the relay's connection to the active may take.
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Wraps the node's gRPC services (`inner`) with the relay.
#[derive(Clone)]
pub struct ForwardToActive<S> {
    inner: S,
    state: SharedState,
    relay: Arc<Mutex<Option<Relay>>>,
}

/// The channel to the active last relayed to.
#[derive(Clone)]
struct Relay {
    active_node: u64,
    address: String,
    channel: Channel,
}

impl<S> ForwardToActive<S> {
    pub fn new(inner: S, state: SharedState) -> ForwardToActive<S> {
        ForwardToActive {
            inner,
            state,
            relay: Arc::default(),
        }
    }

    /// Where to relay a call that asks for it: the active, when this node is a passive that
    /// knows it. `None` answers the call here.
    fn relay_for(&self, request: &http::Request<Body>) -> Option<Relay> {
        if request.uri().path().starts_with(CLUSTER_SERVICE_PATH) {
            return None;
        }
        let status = self.state.replica.status();
        if status.role == Role::Active {
            return None;
        }
        let active_node = status.active?;
        let address = status.active_member()?.grpc_address.clone();
        let mut relay = self.relay.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = relay.as_ref().filter(|current| current.address == address) {
            return Some(current.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
        let channel = with_keep_alive(endpoint.connect_timeout(RELAY_CONNECT_TIMEOUT))
            .tcp_nodelay(true)
            .connect_lazy();
        let fresh = Relay {
            active_node,
            address,
            channel,
        };
        *relay = Some(fresh.clone());
        Some(fresh)
    }
}

type RelayFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S> Service<http::Request<Body>> for ForwardToActive<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = RelayFuture;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> RelayFuture {
        let asked = request.headers_mut().remove(FORWARD_METADATA).is_some();
        match asked.then(|| self.relay_for(&request)).flatten() {
            Some(relay) => {
                self.state.count_request(Api::Grpc, RELAYED_OPERATION);
                let this_node = self.state.replica.node_id();
                Box::pin(relay_call(this_node, relay, request))
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

/// Sends `request` to the active and answers with its response; a relay that fails is
/// answered as the failure it is (see [`relay_cut_off`]).
async fn relay_call(
    this_node: u64,
    relay: Relay,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible> {
    let Relay {
        active_node,
        address,
        mut channel,
    } = relay;
    let relayed = async {
        std::future::poll_fn(|context| channel.poll_ready(context)).await?;
        channel.call(request).await
    };
    match relayed.await {
        Ok(response) => Ok(response),
        Err(error) => {
            let never_sent = is_connect_error(&error);
            let status = if never_sent {
                to_status(&tandem_core::Error::unavailable(format!(
                    "node {this_node} could not reach the active, node {active_node} at \
                     {address}, to relay the call: {error}; retry in a moment"
                )))
            } else {
                relay_cut_off(this_node, active_node, &address, &error)
            };
            Ok(status.into_http())
        }
    }
}

/// Whether the relay failed before the call left: no connection to the active opened.
fn is_connect_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        current = cause.source();
    }
    false
}
