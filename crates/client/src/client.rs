//! [`TandemClient`]: one async method per RPC of the `MessageBox`, `Admin` and `Cluster`
//! services, each following redirects to the active node and waiting out elections.

use std::future::Future;
use std::time::Duration;

use tandem_core::Property;
use tandem_protocol::v1;
use tandem_protocol::{ACTIVE_GRPC_METADATA, ERROR_CODE_METADATA};
use tonic::{Request, Response, Status};

use crate::connection::{Connection, error_from_status_at};
use crate::error::ClientError;
use crate::lease_stream::LeaseStream;
use crate::retry::Backoff;

/// How long a call may take by default; calls that wait for work (`lease`) get their
/// wait on top.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call keeps trying by default while the node knows no active (an election is
/// under way) before it gives up with the node's `unavailable` error.
pub const DEFAULT_ACTIVE_WAIT: Duration = Duration::from_secs(5);
/// How many times one call moves to the active a `not_active` answer names before it
/// gives up (a chain of passives with stale views).
pub const MAX_REDIRECTS: usize = 3;
/// The header in which a request tells the node how long the caller waits.
const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// A client of a Tandem replica set, talking to one node at a time. Cheap to clone;
/// clones share the connection.
///
/// Every call is sent again, unchanged, when the node refused it without doing anything:
/// a passive's `not_active` moves the connection to the active it names (at most
/// [`MAX_REDIRECTS`] moves per call; later calls stay there), and a node that knows no
/// active yet (`unavailable` during an election), or names an active that cannot be
/// reached (it may just have died), is asked again after a short, growing pause for up to
/// the active wait ([`DEFAULT_ACTIVE_WAIT`]). Publishes are safe to send again because
/// every message carries its id from the first attempt on. A node that cannot be reached
/// at all is reported at once: finding another node is the caller's choice.
#[derive(Clone, Debug)]
pub struct TandemClient {
    connection: Connection,
    call_timeout: Duration,
    active_wait: Duration,
    publisher: String,
}

/// What to do after a failed attempt.
enum NextStep {
    /// The node is passive and named the active's gRPC address.
    Redirect(String),
    /// The node refused for now (no active known): try again after a pause.
    Pause,
    /// Report the error.
    GiveUp,
}

impl TandemClient {
    /// Connects to a node: `127.0.0.1:7400` or `http://127.0.0.1:7400`, or several
    /// separated by commas, tried in order until one answers.
    pub async fn connect(addresses: &str) -> Result<TandemClient, ClientError> {
        let connection = Connection::open(addresses).await?;
        Ok(TandemClient {
            connection,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            active_wait: DEFAULT_ACTIVE_WAIT,
            publisher: String::new(),
        })
    }

    /// Sets how long each call may take (plus its wait, for `lease`).
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> TandemClient {
        self.call_timeout = call_timeout;
        self
    }

    /// Sets how long a call keeps trying while no active is known; zero gives up at once.
    pub fn with_active_wait(mut self, active_wait: Duration) -> TandemClient {
        self.active_wait = active_wait;
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

    pub fn active_wait(&self) -> Duration {
        self.active_wait
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
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.message_box();
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
        self.call(request, wait, |connection, request| {
            let mut client = connection.message_box();
            async move { client.lease(request).await }
        })
        .await
    }

    /// Opens a stream of leased messages; the node pushes them as they become available.
    pub async fn lease_stream(
        &self,
        request: v1::LeaseRequest,
    ) -> Result<LeaseStream, ClientError> {
        // The stream stays open: only opening it is bounded by the call timeout.
        let messages = self
            .call(request, Duration::ZERO, |connection, mut request| {
                let mut client = connection.message_box();
                request.metadata_mut().remove(GRPC_TIMEOUT_HEADER);
                async move { client.lease_stream(request).await }
            })
            .await?;
        Ok(LeaseStream::new(messages, self.connection.clone()))
    }

    pub async fn renew_lease(
        &self,
        request: v1::RenewLeaseRequest,
    ) -> Result<v1::RenewLeaseResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.message_box();
            async move { client.renew_lease(request).await }
        })
        .await
    }

    pub async fn complete(
        &self,
        request: v1::SettleRequest,
    ) -> Result<v1::SettleResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.message_box();
            async move { client.complete(request).await }
        })
        .await
    }

    /// Gives a leased message back without counting an attempt.
    pub async fn abandon(
        &self,
        request: v1::SettleRequest,
    ) -> Result<v1::SettleResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.message_box();
            async move { client.abandon(request).await }
        })
        .await
    }

    /// Reports a failed delivery: retried per the subscription's policy, then suspended.
    pub async fn fail(&self, request: v1::FailRequest) -> Result<v1::SettleResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.message_box();
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
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.message_box();
            async move { client.settle(request).await }
        })
        .await
    }

    // ----- Admin -----

    pub async fn create_host(
        &self,
        request: v1::CreateHostRequest,
    ) -> Result<v1::Host, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.create_host(request).await }
        })
        .await
    }

    pub async fn list_hosts(&self) -> Result<v1::ListHostsResponse, ClientError> {
        let request = v1::ListHostsRequest {};
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.list_hosts(request).await }
        })
        .await
    }

    pub async fn create_subscription(
        &self,
        request: v1::CreateSubscriptionRequest,
    ) -> Result<v1::Subscription, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.create_subscription(request).await }
        })
        .await
    }

    pub async fn list_subscriptions(&self) -> Result<v1::ListSubscriptionsResponse, ClientError> {
        let request = v1::ListSubscriptionsRequest {};
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.list_subscriptions(request).await }
        })
        .await
    }

    pub async fn delete_subscription(
        &self,
        request: v1::DeleteSubscriptionRequest,
    ) -> Result<v1::DeleteSubscriptionResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.delete_subscription(request).await }
        })
        .await
    }

    /// Message instances by host and state, e.g. a host's suspended queue.
    pub async fn list_instances(
        &self,
        request: v1::ListInstancesRequest,
    ) -> Result<v1::ListInstancesResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.list_instances(request).await }
        })
        .await
    }

    pub async fn resume(
        &self,
        request: v1::ResumeRequest,
    ) -> Result<v1::ResumeResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.resume(request).await }
        })
        .await
    }

    pub async fn terminate(
        &self,
        request: v1::TerminateRequest,
    ) -> Result<v1::TerminateResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.terminate(request).await }
        })
        .await
    }

    /// Everything known about one message id: stored copies, instances, tracking events.
    pub async fn message_history(
        &self,
        request: v1::MessageHistoryRequest,
    ) -> Result<v1::MessageHistoryResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.message_history(request).await }
        })
        .await
    }

    pub async fn purge_tracking(
        &self,
        request: v1::PurgeTrackingRequest,
    ) -> Result<v1::PurgeTrackingResponse, ClientError> {
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.purge_tracking(request).await }
        })
        .await
    }

    pub async fn status(&self) -> Result<v1::StatusResponse, ClientError> {
        let request = v1::StatusRequest {};
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.admin();
            async move { client.status(request).await }
        })
        .await
    }

    // ----- Cluster -----

    /// The connected node's identity, role, log indexes and view of the replica set, with
    /// the failover history. Answered by every node, passive or not.
    pub async fn node_status(&self) -> Result<v1::NodeStatusResponse, ClientError> {
        let request = v1::NodeStatusRequest {};
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.cluster();
            async move { client.node_status(request).await }
        })
        .await
    }

    /// Forms a new replica set whose voters are `members`; the connected node must be one
    /// of them and belong to no replica set yet.
    pub async fn initialize(&self, members: Vec<v1::Member>) -> Result<(), ClientError> {
        let request = v1::InitializeRequest { members };
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.cluster();
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
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.cluster();
            async move { client.add_member(request).await }
        })
        .await
        .map(|_: v1::AddMemberResponse| ())
    }

    /// Removes a node from the replica set.
    pub async fn remove_member(&self, node_id: u64) -> Result<(), ClientError> {
        let request = v1::RemoveMemberRequest { node_id };
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.cluster();
            async move { client.remove_member(request).await }
        })
        .await
        .map(|_: v1::RemoveMemberResponse| ())
    }

    /// Hands the active role to `to_node` (or, without one, to the most up-to-date
    /// passive); returns the node chosen. The handover completes shortly after: watch the
    /// chosen node's [`TandemClient::node_status`] to see it active.
    pub async fn switchover(&self, to_node: Option<u64>) -> Result<u64, ClientError> {
        let request = v1::SwitchoverRequest { to_node };
        self.call(request, Duration::ZERO, |connection, request| {
            let mut client = connection.cluster();
            async move { client.switchover(request).await }
        })
        .await
        .map(|response| response.active_node)
    }

    // ----- plumbing -----

    /// Sends `message` through `send` until the node answers, following redirects to the
    /// active and pausing while no active is known (see [`TandemClient`]).
    async fn call<M, T, SendAttempt, Answer>(
        &self,
        message: M,
        wait: Duration,
        send: SendAttempt,
    ) -> Result<T, ClientError>
    where
        M: Clone,
        SendAttempt: Fn(&Connection, Request<M>) -> Answer,
        Answer: Future<Output = Result<Response<T>, Status>>,
    {
        let mut backoff = Backoff::for_up_to(self.active_wait);
        let mut redirects = 0;
        loop {
            let address = self.connection.address();
            let attempt = send(&self.connection, self.request(message.clone(), wait));
            let (error, next_step) = match self.finish(attempt, wait, &address).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            match next_step {
                NextStep::GiveUp => return Err(error),
                NextStep::Redirect(_) if redirects >= MAX_REDIRECTS => return Err(error),
                NextStep::Redirect(active) => {
                    if self.connection.move_to(&active).await.is_ok() {
                        redirects += 1;
                        continue;
                    }
                    // The active the passive names may just have died, and the passive not
                    // noticed yet: ask again after a pause, until a new active is elected.
                }
                NextStep::Pause => {}
            }
            if !backoff.pause().await {
                return Err(error);
            }
        }
    }

    /// Wraps a message in a request that tells the node how long the caller waits.
    fn request<T>(&self, message: T, wait: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.call_timeout + wait);
        request
    }

    /// Awaits one attempt for at most the call timeout plus `wait`; a failure comes with
    /// what to do next.
    async fn finish<T>(
        &self,
        attempt: impl Future<Output = Result<Response<T>, Status>>,
        wait: Duration,
        address: &str,
    ) -> Result<T, (ClientError, NextStep)> {
        let limit = self.call_timeout + wait;
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                let next_step = next_step_after(&status);
                Err((error_from_status_at(address, status), next_step))
            }
            Err(_elapsed) => Err((
                ClientError::new(
                    "deadline_exceeded",
                    format!(
                        "the node at {address} did not answer within {} ms",
                        limit.as_millis()
                    ),
                ),
                NextStep::GiveUp,
            )),
        }
    }
}

/// A passive's `not_active` redirects; the node's own `unavailable` (no active known, an
/// election under way) is worth another attempt; anything else, including a node that
/// cannot be reached, is the answer.
fn next_step_after(status: &Status) -> NextStep {
    let metadata = status.metadata();
    let text = |key: &str| metadata.get(key).and_then(|value| value.to_str().ok());
    match (text(ERROR_CODE_METADATA), text(ACTIVE_GRPC_METADATA)) {
        (Some("not_active"), Some(active)) => NextStep::Redirect(active.to_string()),
        (Some("not_active") | Some("unavailable"), _) => NextStep::Pause,
        _ => NextStep::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tandem_protocol::v1::cluster_server::{Cluster, ClusterServer};
    use tonic::metadata::MetadataValue;
    use tonic::transport::Server;
    use tonic::transport::server::TcpIncoming;

    use super::*;

    /// A node that answers `Switchover` only: passive (redirecting), or active after a
    /// number of `unavailable` answers (an election).
    struct FakeNode {
        active_grpc_address: Option<String>,
        elections_left: AtomicU32,
        active_node: u64,
    }

    #[tonic::async_trait]
    impl Cluster for FakeNode {
        async fn node_status(
            &self,
            _request: Request<v1::NodeStatusRequest>,
        ) -> Result<Response<v1::NodeStatusResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn initialize(
            &self,
            _request: Request<v1::InitializeRequest>,
        ) -> Result<Response<v1::InitializeResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn add_member(
            &self,
            _request: Request<v1::AddMemberRequest>,
        ) -> Result<Response<v1::AddMemberResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn remove_member(
            &self,
            _request: Request<v1::RemoveMemberRequest>,
        ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn switchover(
            &self,
            _request: Request<v1::SwitchoverRequest>,
        ) -> Result<Response<v1::SwitchoverResponse>, Status> {
            if let Some(active) = &self.active_grpc_address {
                let mut status = status_with("not_active", None);
                let value = MetadataValue::try_from(active.as_str()).expect("address");
                status.metadata_mut().insert(ACTIVE_GRPC_METADATA, value);
                return Err(status);
            }
            let election_over = self
                .elections_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_err();
            if election_over {
                Ok(Response::new(v1::SwitchoverResponse {
                    active_node: self.active_node,
                }))
            } else {
                Err(status_with("unavailable", None))
            }
        }
    }

    /// Serves `node` on a free loopback port until the test ends; returns its address.
    async fn serve(node: FakeNode) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let incoming = TcpIncoming::from(listener);
        tokio::spawn(
            Server::builder()
                .add_service(ClusterServer::new(node))
                .serve_with_incoming(incoming),
        );
        address
    }

    fn active_after(elections: u32) -> FakeNode {
        FakeNode {
            active_grpc_address: None,
            elections_left: AtomicU32::new(elections),
            active_node: 1,
        }
    }

    fn passive_pointing_at(active: &str) -> FakeNode {
        FakeNode {
            active_grpc_address: Some(active.to_string()),
            elections_left: AtomicU32::new(0),
            active_node: 2,
        }
    }

    #[tokio::test]
    async fn calls_follow_the_redirect_and_stay_with_the_active() {
        let active = serve(active_after(0)).await;
        let passive = serve(passive_pointing_at(&active)).await;
        let client = TandemClient::connect(&passive).await.expect("connect");
        assert_eq!(client.switchover(None).await.expect("redirected"), 1);
        assert_eq!(client.connection().address(), active);
        let clone = client.clone();
        assert_eq!(clone.switchover(None).await.expect("still there"), 1);
    }

    #[tokio::test]
    async fn redirect_chains_are_cut_short() {
        // Each passive names the next; the active is one hop too many away.
        let mut next = serve(active_after(0)).await;
        for _ in 0..=MAX_REDIRECTS {
            next = serve(passive_pointing_at(&next)).await;
        }
        let client = TandemClient::connect(&next).await.expect("connect");
        let error = client.switchover(None).await.expect_err("too many hops");
        assert!(error.is_code("not_active"), "{error}");
    }

    #[tokio::test]
    async fn a_dead_active_named_by_a_passive_is_waited_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = listener.local_addr().expect("address").to_string();
        drop(listener);
        let passive = serve(passive_pointing_at(&gone)).await;
        let client = TandemClient::connect(&passive)
            .await
            .expect("connect")
            .with_active_wait(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = client.switchover(None).await.expect_err("no active");
        assert!(error.is_code("not_active"), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(client.connection().address(), passive);
    }

    #[tokio::test]
    async fn elections_are_waited_out_within_the_active_wait() {
        let node = serve(active_after(3)).await;
        let client = TandemClient::connect(&node).await.expect("connect");
        assert_eq!(client.switchover(None).await.expect("elected"), 1);

        let endless = serve(active_after(u32::MAX)).await;
        let client = TandemClient::connect(&endless)
            .await
            .expect("connect")
            .with_active_wait(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = client.switchover(None).await.expect_err("never elected");
        assert!(error.is_code("unavailable"), "{error}");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    fn status_with(code: &'static str, active: Option<&'static str>) -> Status {
        let mut status = Status::unavailable("refused");
        let metadata = status.metadata_mut();
        metadata.insert(ERROR_CODE_METADATA, MetadataValue::from_static(code));
        if let Some(active) = active {
            metadata.insert(ACTIVE_GRPC_METADATA, MetadataValue::from_static(active));
        }
        status
    }

    #[test]
    fn passives_redirect_and_elections_pause() {
        let redirect = next_step_after(&status_with("not_active", Some("127.0.0.1:7410")));
        assert!(matches!(redirect, NextStep::Redirect(address) if address == "127.0.0.1:7410"));
        let election = next_step_after(&status_with("unavailable", None));
        assert!(matches!(election, NextStep::Pause));
    }

    #[test]
    fn other_failures_are_the_answer() {
        let no_quorum = next_step_after(&status_with("no_quorum", None));
        assert!(matches!(no_quorum, NextStep::GiveUp));
        // A transport failure carries no error code: the node could not be reached.
        let unreachable = next_step_after(&Status::unavailable("connection refused"));
        assert!(matches!(unreachable, NextStep::GiveUp));
    }
}
