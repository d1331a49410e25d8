//! [`Workload`]: concurrent publishers and consumers against a replica set, each following
//! the active the way a real client does, recording everything in a [`History`].
//!
//! A publisher sends batches of messages with its own unique ids. On `not_active` it
//! follows the active's address from the error's metadata; on any other error (no answer,
//! `no_quorum`, `unavailable`, a refused connection) it tries the next node after a short
//! pause, with the same message ids, until they are acknowledged or the workload stops.
//! When a passive names an active that the client could not reach a moment ago, the client
//! asks that passive to relay its calls to the active (`tandem-forward`) for a while, as
//! `tandem-client` does: the active may be out of the client's reach only.
//! A consumer leases a few messages at a time from the active and completes them in one
//! settle call.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_protocol::keep_alive::with_keep_alive;
use tandem_protocol::v1;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tandem_protocol::{
    ACTIVE_GRPC_METADATA, ERROR_CODE_METADATA, FORWARD_METADATA, RELAY_AFTER_UNREACHABLE, RELAY_FOR,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::history::{History, PublishOutcome};

/// The host every test message is routed to.
pub const HOST: &str = "faults";
/// The promoted property and value every test message carries, and its subscription.
const KIND_PROPERTY: &str = "Kind";
const KIND_VALUE: &str = "fault-test";
const SUBSCRIPTION: &str = "faults-all";
const BODY_BYTES: usize = 256;
/// No call may hang a client: a node that does not answer within this is as good as dead.
/// Longer than the nodes' write timeout, so that `no_quorum` answers are seen. (A silent
/// node, paused or cut off, is noticed sooner: its connection stops answering pings, see
/// `tandem_protocol::keep_alive`.)
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause before retrying after an error.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Attempts to publish one batch, at most, before the publisher gives the batch up.
const MAX_ATTEMPTS_PER_BATCH: usize = 2_000;
/// Attempts to declare the route, at most.
const MAX_ROUTE_ATTEMPTS: usize = 200;
/// How a consumer leases.
const LEASE_BATCH: u32 = 16;
const LEASE_DURATION_MS: u64 = 5_000;
const LEASE_WAIT_MS: u64 = 100;
/// How long stopping may take: every call in flight is cut short at once.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Instances listed per page at the end, and pages at most.
const LIST_PAGE: u32 = 1_000;
const MAX_LIST_PAGES: usize = 10_000;

/// A node as clients know it: where they reach it, and the gRPC address it advertises
/// (what a passive's `not_active` names; the same unless clients go through a proxy).
#[derive(Clone, Copy, Debug)]
pub struct NodeAddress {
    pub node_id: u64,
    pub grpc: SocketAddr,
    pub advertised: SocketAddr,
}

impl NodeAddress {
    /// A node clients reach at the address it advertises.
    pub fn direct(node_id: u64, grpc: SocketAddr) -> NodeAddress {
        NodeAddress {
            node_id,
            grpc,
            advertised: grpc,
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadShape {
    pub publishers: usize,
    pub consumers: usize,
    pub messages_per_publish: usize,
    /// Prefix of every message id, unique per workload.
    pub id_prefix: String,
}

impl Default for WorkloadShape {
    fn default() -> WorkloadShape {
        WorkloadShape {
            publishers: 4,
            consumers: 2,
            messages_per_publish: 4,
            id_prefix: "w".to_string(),
        }
    }
}

pub struct Workload {
    stop: watch::Sender<bool>,
    clients: JoinSet<()>,
    pub history: Arc<History>,
}

impl Workload {
    /// Starts the publishers and consumers; each begins with a different node.
    pub fn start(nodes: &[NodeAddress], shape: &WorkloadShape, history: Arc<History>) -> Workload {
        let (stop, stopped) = watch::channel(false);
        let mut clients = JoinSet::new();
        for publisher in 0..shape.publishers {
            let router = ActiveRouter::new(nodes, publisher);
            let prefix = format!("{}-p{publisher}", shape.id_prefix);
            let (history, stopped) = (history.clone(), stopped.clone());
            let batch = shape.messages_per_publish;
            clients.spawn(publish_loop(router, prefix, batch, history, stopped));
        }
        for consumer in 0..shape.consumers {
            let router = ActiveRouter::new(nodes, consumer + 1);
            let holder = format!("{}-c{consumer}", shape.id_prefix);
            let (history, stopped) = (history.clone(), stopped.clone());
            clients.spawn(consume_loop(router, holder, history, stopped));
        }
        Workload {
            stop,
            clients,
            history,
        }
    }

    /// Stops every client (calls in flight are abandoned, their outcome unknown) and waits
    /// for them.
    pub async fn stop(mut self) -> Arc<History> {
        self.stop.send_replace(true);
        let all_stopped = tokio::time::timeout(STOP_TIMEOUT, async {
            while let Some(result) = self.clients.join_next().await {
                result.expect("a workload client panicked");
            }
        });
        all_stopped
            .await
            .expect("workload clients stop within the stop timeout");
        self.history
    }
}

/// A channel to a node whose calls may ask it to relay them to the active.
type NodeChannel = InterceptedService<Channel, RelayAsk>;

/// Adds `tandem-forward` to every call when set.
#[derive(Clone, Copy, Debug)]
struct RelayAsk(bool);

impl Interceptor for RelayAsk {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if self.0 {
            request
                .metadata_mut()
                .insert(FORWARD_METADATA, MetadataValue::from_static("1"));
        }
        Ok(request)
    }
}

/// Which node a client sends to: the active it last heard of, else the next node in turn;
/// through a passive that relays, for a while after a node could not be reached.
struct ActiveRouter {
    nodes: Vec<(NodeAddress, Channel)>,
    current: usize,
    /// The node a call last found unreachable, and when.
    unreachable: Option<(usize, Instant)>,
    /// Since when calls ask the current node to relay them to the active.
    relaying_since: Option<Instant>,
}

impl ActiveRouter {
    fn new(nodes: &[NodeAddress], first: usize) -> ActiveRouter {
        let nodes = nodes
            .iter()
            .map(|node| (*node, channel_to(*node)))
            .collect::<Vec<_>>();
        let current = first % nodes.len();
        ActiveRouter {
            nodes,
            current,
            unreachable: None,
            relaying_since: None,
        }
    }

    fn current(&mut self) -> (u64, NodeChannel) {
        if self
            .relaying_since
            .is_some_and(|since| since.elapsed() >= RELAY_FOR)
        {
            self.relaying_since = None;
        }
        let (node, channel) = &self.nodes[self.current];
        let relay = RelayAsk(self.relaying_since.is_some());
        (
            node.node_id,
            InterceptedService::new(channel.clone(), relay),
        )
    }

    /// Reacts to a failed call: follows a redirect (or, when the active it names could not
    /// be reached a moment ago, asks the passive to relay), else moves on to the next node.
    fn after_failure(&mut self, failure: &CallFailure) {
        if failure.node_unreachable() {
            self.unreachable = Some((self.current, Instant::now()));
        }
        let redirect = match failure {
            CallFailure::NotActive {
                active_grpc: Some(address),
            } => self
                .nodes
                .iter()
                .position(|(node, _)| node.advertised.to_string() == *address),
            _ => None,
        };
        let active_unreachable = redirect.is_some_and(|active| {
            self.unreachable
                .is_some_and(|(node, at)| node == active && at.elapsed() < RELAY_AFTER_UNREACHABLE)
        });
        if active_unreachable && self.relaying_since.is_none() {
            self.relaying_since = Some(Instant::now());
            return;
        }
        self.relaying_since = None;
        self.current = redirect.unwrap_or((self.current + 1) % self.nodes.len());
    }
}

/// How a failure's description begins when no node answered: a transport failure (no
/// error code), or no answer within [`CALL_TIMEOUT`].
const TRANSPORT_FAILURE: &str = "transport";
const NO_ANSWER: &str = "timeout";

/// Why a call failed, as far as a client can tell.
#[derive(Clone, Debug)]
pub enum CallFailure {
    /// The node is passive: nothing was proposed.
    NotActive { active_grpc: Option<String> },
    /// Refused before anything was proposed (a bad request, throttled, ...).
    Refused(String),
    /// No answer, `no_quorum`, `unavailable`, a broken connection: may have happened.
    Unknown(String),
}

impl CallFailure {
    /// Whether the node could not be reached or did not answer (not an answer of a node).
    fn node_unreachable(&self) -> bool {
        matches!(self, CallFailure::Unknown(description)
            if description.starts_with(TRANSPORT_FAILURE) || description.starts_with(NO_ANSWER))
    }

    pub fn of(status: &tonic::Status) -> CallFailure {
        let metadata = |key: &str| {
            status
                .metadata()
                .get(key)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let code = metadata(ERROR_CODE_METADATA);
        let description = format!(
            "{}: {}",
            code.as_deref().unwrap_or(TRANSPORT_FAILURE),
            status.message()
        );
        match code.as_deref() {
            Some("not_active") => CallFailure::NotActive {
                active_grpc: metadata(ACTIVE_GRPC_METADATA),
            },
            Some("no_quorum" | "unavailable") | None => CallFailure::Unknown(description),
            Some(_) => CallFailure::Refused(description),
        }
    }

    fn outcome(&self) -> PublishOutcome {
        match self {
            CallFailure::NotActive { .. } => PublishOutcome::Failed("not_active".into()),
            CallFailure::Refused(description) => PublishOutcome::Failed(description.clone()),
            CallFailure::Unknown(description) => PublishOutcome::Unknown(description.clone()),
        }
    }
}

/// Runs `call` within [`CALL_TIMEOUT`], abandoning it when the workload stops.
async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    stopped: &mut watch::Receiver<bool>,
) -> Result<T, CallFailure> {
    tokio::select! {
        answered = tokio::time::timeout(CALL_TIMEOUT, call) => match answered {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(CallFailure::of(&status)),
            Err(_elapsed) => Err(CallFailure::Unknown(format!("{NO_ANSWER}: no answer within {CALL_TIMEOUT:?}"))),
        },
        _ = stopped.wait_for(|stop| *stop) => Err(CallFailure::Unknown("abandoned: the workload stopped".into())),
    }
}

async fn publish_loop(
    mut router: ActiveRouter,
    prefix: String,
    messages_per_publish: usize,
    history: Arc<History>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut sequence = 0;
    while !*stopped.borrow() {
        let mut unacknowledged: Vec<String> = (sequence..sequence + messages_per_publish)
            .map(|number| format!("{prefix}-{number}"))
            .collect();
        sequence += messages_per_publish;
        for _attempt in 0..MAX_ATTEMPTS_PER_BATCH {
            if unacknowledged.is_empty() || *stopped.borrow() {
                break;
            }
            let (node_id, channel) = router.current();
            let call = PublishCall {
                node_id,
                publisher: &prefix,
                message_ids: &unacknowledged,
            };
            match call.send(channel, &history, &mut stopped).await {
                Ok(outcomes) => {
                    unacknowledged = unacknowledged
                        .into_iter()
                        .zip(outcomes)
                        .filter(|(_, outcome)| {
                            !matches!(outcome, PublishOutcome::Acknowledged { .. })
                        })
                        .map(|(id, _)| id)
                        .collect();
                    if !unacknowledged.is_empty() {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
                Err(failure) => {
                    router.after_failure(&failure);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}

/// One publish call, recorded in the history.
struct PublishCall<'a> {
    node_id: u64,
    publisher: &'a str,
    message_ids: &'a [String],
}

impl PublishCall<'_> {
    /// Sends the call; answers each message's outcome, or why the whole call failed.
    async fn send(
        &self,
        channel: NodeChannel,
        history: &History,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<Vec<PublishOutcome>, CallFailure> {
        let invocation = history.invoke_publish(self.node_id, self.message_ids);
        let request = v1::PublishRequest {
            publisher: self.publisher.to_string(),
            messages: self.message_ids.iter().map(|id| test_message(id)).collect(),
        };
        let mut client = MessageBoxClient::new(channel);
        match bounded(client.publish(request), stopped).await {
            Ok(response) => {
                let outcomes = publish_outcomes(&response, self.message_ids.len());
                history.resolve_publish(invocation, outcomes.clone());
                Ok(outcomes)
            }
            Err(failure) => {
                history.resolve_publish_all(invocation, failure.outcome());
                Err(failure)
            }
        }
    }
}

/// Publishes `message_ids` once to one node (no redirect, no retry), recorded in the
/// history.
pub async fn publish_once(
    node: NodeAddress,
    message_ids: &[String],
    history: &History,
) -> Result<Vec<PublishOutcome>, CallFailure> {
    let (_never_stopped, mut stopped) = watch::channel(false);
    let call = PublishCall {
        node_id: node.node_id,
        publisher: "probe",
        message_ids,
    };
    let channel = InterceptedService::new(channel_to(node), RelayAsk(false));
    call.send(channel, history, &mut stopped).await
}

fn channel_to(node: NodeAddress) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{}", node.grpc)).expect("node url");
    with_keep_alive(endpoint.connect_timeout(CONNECT_TIMEOUT)).connect_lazy()
}

/// Each message's outcome: acknowledged with the call's acknowledgement unless the node
/// refused that message.
fn publish_outcomes(response: &v1::PublishResponse, count: usize) -> Vec<PublishOutcome> {
    let mut outcomes: Vec<PublishOutcome> = response
        .results
        .iter()
        .map(|result| match (&result.error, &response.acknowledgement) {
            (Some(error), _) => {
                PublishOutcome::Failed(format!("{}: {}", error.code, error.message))
            }
            (None, Some(acknowledgement)) => PublishOutcome::Acknowledged {
                term: acknowledgement.term,
                log_index: acknowledgement.log_index,
                node_id: acknowledgement.node_id,
            },
            (None, None) => PublishOutcome::Unknown("answered without an acknowledgement".into()),
        })
        .collect();
    outcomes.resize(
        count,
        PublishOutcome::Unknown("the answer had no result for this message".into()),
    );
    outcomes
}

async fn consume_loop(
    mut router: ActiveRouter,
    holder: String,
    history: Arc<History>,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let (node_id, channel) = router.current();
        let mut client = MessageBoxClient::new(channel);
        let lease = v1::LeaseRequest {
            host: HOST.into(),
            holder: holder.clone(),
            max_messages: LEASE_BATCH,
            lease_duration_ms: LEASE_DURATION_MS,
            wait_ms: LEASE_WAIT_MS,
        };
        let leased = match bounded(client.lease(lease), &mut stopped).await {
            Ok(leased) => leased.messages,
            Err(failure) => {
                router.after_failure(&failure);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        if leased.is_empty() {
            continue;
        }
        history.record_deliveries(
            node_id,
            leased.iter().map(|message| message.message_id.clone()),
        );
        let settlements = completions(&leased);
        let settle = client.settle(v1::SettleBatchRequest { settlements });
        match bounded(settle, &mut stopped).await {
            Ok(settled) => {
                let completed = leased
                    .iter()
                    .zip(settled.results)
                    .filter(|(_, result)| result.error.is_none())
                    .map(|(message, _)| message.message_id.clone());
                history.record_completions(node_id, completed);
            }
            Err(failure) => {
                router.after_failure(&failure);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

pub fn test_message(id: &str) -> v1::PublishMessage {
    v1::PublishMessage {
        message_id: id.to_string(),
        body: vec![b'x'; BODY_BYTES],
        properties: vec![v1::Property {
            name: KIND_PROPERTY.as_bytes().to_vec(),
            value: Some(v1::property::Value::StringValue(KIND_VALUE.into())),
            written: false,
        }],
    }
}

/// Creates the test host and its subscription on the active (following redirects).
pub async fn declare_route(nodes: &[NodeAddress]) {
    let mut router = ActiveRouter::new(nodes, 0);
    let (_never_stopped, mut stopped) = watch::channel(false);
    let mut host_created = false;
    for _attempt in 0..MAX_ROUTE_ATTEMPTS {
        let (_, channel) = router.current();
        let mut admin = AdminClient::new(channel);
        let result = if host_created {
            let subscription = v1::CreateSubscriptionRequest {
                name: SUBSCRIPTION.into(),
                host: HOST.into(),
                filter: format!("{KIND_PROPERTY} == \"{KIND_VALUE}\""),
                ..Default::default()
            };
            bounded(admin.create_subscription(subscription), &mut stopped)
                .await
                .map(|_| ())
        } else {
            let host = v1::CreateHostRequest { name: HOST.into() };
            bounded(admin.create_host(host), &mut stopped)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) if host_created => return,
            Ok(()) => host_created = true,
            Err(CallFailure::Refused(description)) if description.starts_with("already_exists") => {
                if host_created {
                    return;
                }
                host_created = true;
            }
            Err(failure) => {
                router.after_failure(&failure);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    panic!("could not declare the test route within {MAX_ROUTE_ATTEMPTS} attempts");
}

/// The message ids of every instance the node stores for the test host (any state).
pub async fn stored_message_ids(node: NodeAddress) -> BTreeSet<String> {
    stored_instances(node)
        .await
        .into_values()
        .map(|instance| instance.message_id)
        .collect()
}

/// Every instance the node stores for the test host (any state), by instance id.
pub async fn stored_instances(node: NodeAddress) -> BTreeMap<u64, v1::Instance> {
    let mut admin = AdminClient::new(channel_to(node));
    let mut stored = BTreeMap::new();
    let mut after = 0;
    for _page in 0..MAX_LIST_PAGES {
        let request = v1::ListInstancesRequest {
            host: HOST.into(),
            state: String::new(),
            after,
            limit: LIST_PAGE,
        };
        let instances = tokio::time::timeout(CALL_TIMEOUT, admin.list_instances(request))
            .await
            .expect("list instances answers in time")
            .expect("list instances")
            .into_inner()
            .instances;
        let Some(last) = instances.last() else { break };
        after = last.id;
        stored.extend(
            instances
                .into_iter()
                .map(|instance| (instance.id, instance)),
        );
    }
    stored
}

/// The number of messages the node stores (its Admin Status).
pub async fn stored_message_count(node: NodeAddress) -> u64 {
    let mut admin = AdminClient::new(channel_to(node));
    tokio::time::timeout(CALL_TIMEOUT, admin.status(v1::StatusRequest {}))
        .await
        .expect("status answers in time")
        .expect("status")
        .into_inner()
        .message_count
}

/// A `complete` settlement (the default verdict) for every leased message.
fn completions(leased: &[v1::LeasedMessage]) -> Vec<v1::Settlement> {
    leased
        .iter()
        .map(|message| v1::Settlement {
            instance: message.instance,
            token: message.token,
            ..Default::default()
        })
        .collect()
}
