//! [`TandemClient`]: one async method per RPC of the `MessageBox` and `Admin` services.

use std::future::Future;
use std::time::Duration;

use tandem_core::Property;
use tandem_protocol::v1;
use tonic::{Request, Response, Status};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::lease_stream::LeaseStream;

/// How long a call may take by default; calls that wait for work (`lease`) get their
/// wait on top.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one Tandem node. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct TandemClient {
    connection: Connection,
    call_timeout: Duration,
    publisher: String,
}

impl TandemClient {
    /// Connects to a node: `127.0.0.1:7400` or `http://127.0.0.1:7400`.
    pub async fn connect(address: &str) -> Result<TandemClient, ClientError> {
        let connection = Connection::open(address).await?;
        Ok(TandemClient {
            connection,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            publisher: String::new(),
        })
    }

    /// Sets how long each call may take (plus its wait, for `lease`).
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> TandemClient {
        self.call_timeout = call_timeout;
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

    // ----- MessageBox -----

    /// Publishes a batch; each message gets its own result (stored, duplicate or refused).
    pub async fn publish(
        &self,
        request: v1::PublishRequest,
    ) -> Result<v1::PublishResponse, ClientError> {
        let mut client = self.connection.message_box();
        let call = client.publish(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
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
        let mut client = self.connection.message_box();
        let call = client.lease(self.request(request, wait));
        self.finish(call, wait).await
    }

    /// Opens a stream of leased messages; the node pushes them as they become available.
    pub async fn lease_stream(
        &self,
        request: v1::LeaseRequest,
    ) -> Result<LeaseStream, ClientError> {
        let mut client = self.connection.message_box();
        let call = client.lease_stream(Request::new(request));
        let messages = self.finish(call, Duration::ZERO).await?;
        Ok(LeaseStream::new(messages, self.connection.clone()))
    }

    pub async fn renew_lease(
        &self,
        request: v1::RenewLeaseRequest,
    ) -> Result<v1::RenewLeaseResponse, ClientError> {
        let mut client = self.connection.message_box();
        let call = client.renew_lease(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn complete(
        &self,
        request: v1::SettleRequest,
    ) -> Result<v1::SettleResponse, ClientError> {
        let mut client = self.connection.message_box();
        let call = client.complete(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    /// Gives a leased message back without counting an attempt.
    pub async fn abandon(
        &self,
        request: v1::SettleRequest,
    ) -> Result<v1::SettleResponse, ClientError> {
        let mut client = self.connection.message_box();
        let call = client.abandon(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    /// Reports a failed delivery: retried per the subscription's policy, then suspended.
    pub async fn fail(&self, request: v1::FailRequest) -> Result<v1::SettleResponse, ClientError> {
        let mut client = self.connection.message_box();
        let call = client.fail(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    /// Settles many leased messages in one call (complete, abandon or fail each, up to
    /// `tandem_core::limits::MAX_LEASE_BATCH`). The call succeeds when the batch is well
    /// formed; each settlement's own refusal is in its result's `error`, in request order.
    pub async fn settle(
        &self,
        settlements: Vec<v1::Settlement>,
    ) -> Result<v1::SettleBatchResponse, ClientError> {
        let request = v1::SettleBatchRequest { settlements };
        let mut client = self.connection.message_box();
        let call = client.settle(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    // ----- Admin -----

    pub async fn create_host(
        &self,
        request: v1::CreateHostRequest,
    ) -> Result<v1::Host, ClientError> {
        let mut client = self.connection.admin();
        let call = client.create_host(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn list_hosts(&self) -> Result<v1::ListHostsResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.list_hosts(self.request(v1::ListHostsRequest {}, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn create_subscription(
        &self,
        request: v1::CreateSubscriptionRequest,
    ) -> Result<v1::Subscription, ClientError> {
        let mut client = self.connection.admin();
        let call = client.create_subscription(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn list_subscriptions(&self) -> Result<v1::ListSubscriptionsResponse, ClientError> {
        let mut client = self.connection.admin();
        let request = self.request(v1::ListSubscriptionsRequest {}, Duration::ZERO);
        let call = client.list_subscriptions(request);
        self.finish(call, Duration::ZERO).await
    }

    pub async fn delete_subscription(
        &self,
        request: v1::DeleteSubscriptionRequest,
    ) -> Result<v1::DeleteSubscriptionResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.delete_subscription(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    /// Message instances by host and state, e.g. a host's suspended queue.
    pub async fn list_instances(
        &self,
        request: v1::ListInstancesRequest,
    ) -> Result<v1::ListInstancesResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.list_instances(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn resume(
        &self,
        request: v1::ResumeRequest,
    ) -> Result<v1::ResumeResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.resume(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn terminate(
        &self,
        request: v1::TerminateRequest,
    ) -> Result<v1::TerminateResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.terminate(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    /// Everything known about one message id: stored copies, instances, tracking events.
    pub async fn message_history(
        &self,
        request: v1::MessageHistoryRequest,
    ) -> Result<v1::MessageHistoryResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.message_history(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn purge_tracking(
        &self,
        request: v1::PurgeTrackingRequest,
    ) -> Result<v1::PurgeTrackingResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.purge_tracking(self.request(request, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    pub async fn status(&self) -> Result<v1::StatusResponse, ClientError> {
        let mut client = self.connection.admin();
        let call = client.status(self.request(v1::StatusRequest {}, Duration::ZERO));
        self.finish(call, Duration::ZERO).await
    }

    // ----- plumbing -----

    /// Wraps a message in a request that tells the node how long the caller waits.
    fn request<T>(&self, message: T, wait: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.call_timeout + wait);
        request
    }

    /// Awaits a call for at most the call timeout plus `wait`, mapping failures.
    async fn finish<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
        wait: Duration,
    ) -> Result<T, ClientError> {
        let limit = self.call_timeout + wait;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.connection.error_from_status(status)),
            Err(_elapsed) => Err(ClientError::new(
                "deadline_exceeded",
                format!(
                    "the node at {} did not answer within {} ms",
                    self.connection.address(),
                    limit.as_millis()
                ),
            )),
        }
    }
}
