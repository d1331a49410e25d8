//! [`TandemClient`]: one async method per RPC of the `MessageBox`, `Admin` and `Cluster`
//! services, each riding through failovers: following redirects to the active node, moving
//! round the given addresses when a node cannot be reached, and retrying with backoff.
//!
//! # Retrying, and what a retried call may answer
//!
//! A call is sent again, unchanged, after a failure worth another attempt: the node could
//! not be reached or did not answer within the call timeout (the next attempt goes to the
//! next address), a passive's `not_active` (the next goes to the active it names), an
//! election (`unavailable`), `no_quorum`, and `throttled` (after at least its
//! `retry_after_ms`). Everything else is the node's answer and is returned at once. The
//! [`RetryPolicy`] bounds the retrying (5 s by default, or forever).
//!
//! Sending a call again is safe when the first attempt did nothing. When its outcome is
//! unknown (the answer was lost with the connection or did not come in time, or the node
//! answered `no_quorum`), the first attempt may have landed, and the retry meets its
//! effect; an error answered after such a retry has [`ClientError::after_retry`] set. Call
//! by call:
//!
//! | call | retry | what a retry after a landed attempt answers |
//! | --- | --- | --- |
//! | `publish`, `publish_one` | safe: each message has its id before the first attempt, and the node stores an id once within its dedupe window | the message's result says `duplicate` |
//! | `lease`, `lease_stream` (opening) | safe | the messages the lost attempt leased are delivered again once their lease expires |
//! | `renew_lease` | safe | the renewal, again |
//! | `complete` | safe | `not_found` (the instance is gone): done, see [`ClientError::completed_by_earlier_attempt`] |
//! | `abandon`, `fail` | safe | `lease_expired` (the instance is ready, delayed or suspended), or `lease_mismatch` / `not_found` if another host instance leased or completed it since: either way, no longer this holder's |
//! | `settle` | safe | per settlement, as for `complete`, `abandon`, `fail` |
//! | `create_host`, `create_subscription` | safe | `already_exists` |
//! | `delete_subscription`, `resume`, `terminate` | safe | `not_found` (or `invalid_state`) |
//! | `purge_tracking` and every read | safe | the answer |
//! | `initialize`, `add_member`, `remove_member` | safe | a refusal: already initialized, already a member, not a member |
//! | `switchover` | not sent again after an attempt whose outcome is unknown (a second handover could follow the first): that failure is returned | — |

use std::future::Future;
use std::time::Duration;

use tandem_core::Property;
use tandem_protocol::{FORWARD_METADATA, v1};
use tokio::sync::broadcast;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::attempt_failure::{AttemptFailure, timed_out_here};
use crate::connection::{Connection, NodeChannel};
use crate::connection_monitor::{ConnectionEvent, ConnectionState};
use crate::error::ClientError;
use crate::lease_stream::LeaseStream;
use crate::retry_policy::RetryPolicy;
use crate::retrying_call::RetryingCall;

/// How long a call may take by default; calls that wait for work (`lease`) get their
/// wait on top.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How many redirects one call follows in a row, without a pause, before it pauses (a
/// chain of passives with stale views of who is active).
pub const MAX_REDIRECTS: usize = 3;
/// The header in which a request tells the node how long the caller waits.
const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// A client of a Tandem replica set, talking to one node at a time (the active, once
/// found). Cheap to clone; clones share the connection.
///
/// Every call rides through failovers as the [module docs](crate::client) describe: it
/// follows a passive's redirect to the active, moves round the given addresses when a node
/// cannot be reached, and retries with jittered, growing pauses under the client's
/// [`RetryPolicy`] (by default for 5 s; [`RetryPolicy::indefinitely`] for a host instance
/// that must never give up). [`TandemClient::connection_events`] reports the failovers.
#[derive(Clone, Debug)]
pub struct TandemClient {
    connection: Connection,
    call_timeout: Duration,
    retry_policy: RetryPolicy,
    publisher: String,
}

impl TandemClient {
    /// A client of the nodes at `addresses`: `127.0.0.1:7400` or `http://127.0.0.1:7400`,
    /// or several separated by commas (best: every node of the replica set). Nothing is
    /// dialled yet: the first call finds a node, under the retry policy, so a client can be
    /// made while the replica set is down. Fails only on addresses that are not addresses.
    pub fn open(addresses: &str) -> Result<TandemClient, ClientError> {
        Ok(TandemClient {
            connection: Connection::open(addresses)?,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            retry_policy: RetryPolicy::default(),
            publisher: String::new(),
        })
    }

    /// [`TandemClient::open`] for async callers: it does not wait for a node either.
    pub async fn connect(addresses: &str) -> Result<TandemClient, ClientError> {
        TandemClient::open(addresses)
    }

    /// Sets how long each attempt of a call may take (plus its wait, for `lease`) before
    /// the node counts as not answering and the call moves on to the next address.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> TandemClient {
        self.call_timeout = call_timeout;
        self
    }

    /// Sets how calls are retried: [`RetryPolicy::until`] a deadline,
    /// [`RetryPolicy::indefinitely`], or [`RetryPolicy::no_retries`].
    pub fn with_retry_policy(mut self, retry_policy: RetryPolicy) -> TandemClient {
        self.retry_policy = retry_policy;
        self
    }

    /// Sets the publisher name [`TandemClient::publish_one`] records in tracking.
    pub fn with_publisher(mut self, publisher: impl Into<String>) -> TandemClient {
        self.publisher = publisher.into();
        self
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry_policy
    }

    /// Where the connection to the replica set stands now.
    pub fn connection_state(&self) -> ConnectionState {
        self.connection.state()
    }

    /// The [`ConnectionEvent`]s from now on: connected, failing over, reconnected (each
    /// once per change, not per attempt; also logged through `tracing`). Bounded: a
    /// receiver that falls behind misses the oldest and gets `RecvError::Lagged`.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.connection.events()
    }

    // ----- MessageBox -----

    /// Publishes a batch; each message gets its own result (stored, duplicate or refused).
    /// Messages without an id get a new one before the first attempt, so that a publish
    /// sent again (after a redirect or an election) is stored once.
    pub async fn publish(
        &self,
        mut request: v1::PublishRequest,
    ) -> Result<v1::PublishResponse, ClientError> {
        for message in &mut request.messages {
            if message.message_id.is_empty() {
                message.message_id = crate::new_message_id();
            }
        }
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.message_box();
            async move { client.publish(request).await }
        })
        .await
    }

    /// Publishes one message and turns a per-message refusal into an error.
    pub async fn publish_one(
        &self,
        message_id: impl Into<String>,
        body: impl Into<Vec<u8>>,
        properties: Vec<Property>,
    ) -> Result<v1::PublishResult, ClientError> {
        let message = v1::PublishMessage {
            message_id: message_id.into(),
            body: body.into(),
            properties: properties.into_iter().map(v1::Property::from).collect(),
        };
        let request = v1::PublishRequest {
            publisher: self.publisher.clone(),
            messages: vec![message],
        };
        let response = self.publish(request).await?;
        let Some(result) = response.results.into_iter().next() else {
            return Err(ClientError::new(
                "internal",
                "the node answered a publish of one message with no result",
            ));
        };
        match result.error {
            Some(error) => Err(ClientError::from(error)),
            None => Ok(result),
        }
    }

    /// Leases up to `max_messages`, waiting up to `wait_ms` for work.
    pub async fn lease(&self, request: v1::LeaseRequest) -> Result<v1::LeaseResponse, ClientError> {
        let wait = Duration::from_millis(request.wait_ms);
        self.call(request, wait, |node, request| {
            let mut client = node.message_box();
            async move { client.lease(request).await }
        })
        .await
    }

    /// Opens a stream of leased messages; the active pushes them as they become available,
    /// and the stream follows the active role through failovers ([`LeaseStream`]).
    pub async fn lease_stream(
        &self,
        request: v1::LeaseRequest,
    ) -> Result<LeaseStream, ClientError> {
        let (messages, address) = self.open_lease_stream(request.clone()).await?;
        Ok(LeaseStream::new(self.clone(), request, messages, address))
    }

    /// One `LeaseStream` call on the active, and the node that answered it.
    pub(crate) async fn open_lease_stream(
        &self,
        request: v1::LeaseRequest,
    ) -> Result<(Streaming<v1::LeasedMessage>, String), ClientError> {
        // The stream stays open: only opening it is bounded by the call timeout.
        let messages = self
            .call(request, Duration::ZERO, |node, mut request| {
                let mut client = node.message_box();
                request.metadata_mut().remove(GRPC_TIMEOUT_HEADER);
                async move { client.lease_stream(request).await }
            })
            .await?;
        Ok((messages, self.connection.address()))
    }

    pub async fn renew_lease(
        &self,
        request: v1::RenewLeaseRequest,
    ) -> Result<v1::RenewLeaseResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.message_box();
            async move { client.renew_lease(request).await }
        })
        .await
    }

    pub async fn complete(
        &self,
        request: v1::SettleRequest,
    ) -> Result<v1::SettleResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.message_box();
            async move { client.complete(request).await }
        })
        .await
    }

    /// Gives a leased message back without counting an attempt.
    pub async fn abandon(
        &self,
        request: v1::SettleRequest,
    ) -> Result<v1::SettleResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.message_box();
            async move { client.abandon(request).await }
        })
        .await
    }

    /// Reports a failed delivery: retried per the subscription's policy, then suspended.
    pub async fn fail(&self, request: v1::FailRequest) -> Result<v1::SettleResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.message_box();
            async move { client.fail(request).await }
        })
        .await
    }

    /// Settles many leased messages in one call (complete, abandon or fail each, up to
    /// `tandem_core::limits::MAX_LEASE_BATCH`). The call succeeds when the batch is well
    /// formed; each settlement's own refusal is in its result's `error`, in request order.
    pub async fn settle(
        &self,
        settlements: Vec<v1::Settlement>,
    ) -> Result<v1::SettleBatchResponse, ClientError> {
        let request = v1::SettleBatchRequest { settlements };
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.message_box();
            async move { client.settle(request).await }
        })
        .await
    }

    // ----- Admin -----

    pub async fn create_host(
        &self,
        request: v1::CreateHostRequest,
    ) -> Result<v1::Host, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.create_host(request).await }
        })
        .await
    }

    pub async fn list_hosts(&self) -> Result<v1::ListHostsResponse, ClientError> {
        let request = v1::ListHostsRequest {};
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.list_hosts(request).await }
        })
        .await
    }

    pub async fn create_subscription(
        &self,
        request: v1::CreateSubscriptionRequest,
    ) -> Result<v1::Subscription, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.create_subscription(request).await }
        })
        .await
    }

    pub async fn list_subscriptions(&self) -> Result<v1::ListSubscriptionsResponse, ClientError> {
        let request = v1::ListSubscriptionsRequest {};
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.list_subscriptions(request).await }
        })
        .await
    }

    pub async fn delete_subscription(
        &self,
        request: v1::DeleteSubscriptionRequest,
    ) -> Result<v1::DeleteSubscriptionResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.delete_subscription(request).await }
        })
        .await
    }

    /// Message instances by host and state, e.g. a host's suspended queue.
    pub async fn list_instances(
        &self,
        request: v1::ListInstancesRequest,
    ) -> Result<v1::ListInstancesResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.list_instances(request).await }
        })
        .await
    }

    pub async fn resume(
        &self,
        request: v1::ResumeRequest,
    ) -> Result<v1::ResumeResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.resume(request).await }
        })
        .await
    }

    pub async fn terminate(
        &self,
        request: v1::TerminateRequest,
    ) -> Result<v1::TerminateResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.terminate(request).await }
        })
        .await
    }

    /// Everything known about one message id: stored copies, instances, tracking events.
    pub async fn message_history(
        &self,
        request: v1::MessageHistoryRequest,
    ) -> Result<v1::MessageHistoryResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.message_history(request).await }
        })
        .await
    }

    pub async fn purge_tracking(
        &self,
        request: v1::PurgeTrackingRequest,
    ) -> Result<v1::PurgeTrackingResponse, ClientError> {
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.purge_tracking(request).await }
        })
        .await
    }

    pub async fn status(&self) -> Result<v1::StatusResponse, ClientError> {
        let request = v1::StatusRequest {};
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.admin();
            async move { client.status(request).await }
        })
        .await
    }

    // ----- Cluster -----

    /// The connected node's identity, role, log indexes and view of the replica set, with
    /// the failover history. Answered by every node, passive or not.
    pub async fn node_status(&self) -> Result<v1::NodeStatusResponse, ClientError> {
        let request = v1::NodeStatusRequest {};
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.cluster();
            async move { client.node_status(request).await }
        })
        .await
    }

    /// Forms a new replica set whose voters are `members`; the connected node must be one
    /// of them and belong to no replica set yet.
    pub async fn initialize(&self, members: Vec<v1::Member>) -> Result<(), ClientError> {
        let request = v1::InitializeRequest { members };
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.cluster();
            async move { client.initialize(request).await }
        })
        .await
        .map(|_: v1::InitializeResponse| ())
    }

    /// Adds a node to the replica set: it catches up as a learner, then becomes a voter.
    /// Catching up a big store takes a while: give the client a call timeout to match.
    pub async fn add_member(&self, member: v1::Member) -> Result<(), ClientError> {
        let request = v1::AddMemberRequest {
            member: Some(member),
        };
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.cluster();
            async move { client.add_member(request).await }
        })
        .await
        .map(|_: v1::AddMemberResponse| ())
    }

    /// Removes a node from the replica set.
    pub async fn remove_member(&self, node_id: u64) -> Result<(), ClientError> {
        let request = v1::RemoveMemberRequest { node_id };
        self.call(request, Duration::ZERO, |node, request| {
            let mut client = node.cluster();
            async move { client.remove_member(request).await }
        })
        .await
        .map(|_: v1::RemoveMemberResponse| ())
    }

    /// Hands the active role to `to_node` (or, without one, to the most up-to-date
    /// passive); returns the node chosen. The handover completes shortly after: watch the
    /// chosen node's [`TandemClient::node_status`] to see it active.
    ///
    /// Not sent again after an attempt whose outcome is unknown: a second handover could
    /// follow the first. That attempt's failure is returned instead.
    pub async fn switchover(&self, to_node: Option<u64>) -> Result<u64, ClientError> {
        let request = v1::SwitchoverRequest { to_node };
        let retrying = RetryingCall::new(&self.connection, &self.retry_policy)
            .without_resending_unknown_outcomes();
        self.call_with(retrying, request, Duration::ZERO, |node, request| {
            let mut client = node.cluster();
            async move { client.switchover(request).await }
        })
        .await
        .map(|response| response.active_node)
    }

    // ----- plumbing -----

    /// Sends `message` through `send` until a node answers or the retry policy gives up
    /// (see the [module docs](crate::client)).
    async fn call<M, T, SendAttempt, Answer>(
        &self,
        message: M,
        wait: Duration,
        send: SendAttempt,
    ) -> Result<T, ClientError>
    where
        M: Clone,
        SendAttempt: Fn(&NodeChannel, Request<M>) -> Answer,
        Answer: Future<Output = Result<Response<T>, Status>>,
    {
        let retrying = RetryingCall::new(&self.connection, &self.retry_policy);
        self.call_with(retrying, message, wait, send).await
    }

    /// [`TandemClient::call`], retrying as `retrying` says.
    async fn call_with<M, T, SendAttempt, Answer>(
        &self,
        mut retrying: RetryingCall<'_>,
        message: M,
        wait: Duration,
        send: SendAttempt,
    ) -> Result<T, ClientError>
    where
        M: Clone,
        SendAttempt: Fn(&NodeChannel, Request<M>) -> Answer,
        Answer: Future<Output = Result<Response<T>, Status>>,
    {
        loop {
            let node = self.connection.current_node();
            let attempt = send(&node, self.request(&node, message.clone(), wait));
            let failure = match self.finish(attempt, wait, &node.address).await {
                Ok(answer) => {
                    self.connection.node_answered(&node);
                    return Ok(answer);
                }
                Err(failure) => failure,
            };
            self.report(&node, &failure);
            if !retrying.prepare_next_attempt(&node, &failure).await {
                return Err(retrying.final_error(failure));
            }
        }
    }

    /// Wraps a message in a request to `node` that tells it how long the caller waits, and
    /// asks it to relay the call to the active when calls go through it.
    fn request<T>(&self, node: &NodeChannel, message: T, wait: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.call_timeout + wait);
        if node.relaying_since.is_some() {
            request
                .metadata_mut()
                .insert(FORWARD_METADATA, MetadataValue::from_static("1"));
        }
        request
    }

    /// Awaits one attempt on the node at `address` for at most the call timeout plus
    /// `wait`.
    async fn finish<T>(
        &self,
        attempt: impl Future<Output = Result<Response<T>, Status>>,
        wait: Duration,
        address: &str,
    ) -> Result<T, AttemptFailure> {
        let limit = self.call_timeout + wait;
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) if timed_out_here(&status) => {
                Err(AttemptFailure::no_answer_within(address, limit))
            }
            Ok(Err(status)) => Err(AttemptFailure::from_status(address, status)),
            Err(_elapsed) => Err(AttemptFailure::no_answer_within(address, limit)),
        }
    }

    /// Tells the connection whether `node` served the failed attempt as an active would (a
    /// final answer, or throttled) or not (a failover under way).
    fn report(&self, node: &NodeChannel, failure: &AttemptFailure) {
        if failure.kind.is_outage() {
            let reason = failure.error.to_string();
            tracing::debug!(address = node.address, reason, "attempt failed");
            self.connection.node_failed(node, &reason);
        } else {
            self.connection.node_answered(node);
        }
    }
}
