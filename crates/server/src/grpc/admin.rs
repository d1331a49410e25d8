//! [`AdminService`]: the gRPC admin API (hosts, subscriptions, instances, resume and
//! terminate, message history, tracking purge, status).

use tandem_core::{Command, Outcome};
use tandem_protocol::v1;
use tandem_protocol::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::errors::to_status;
use crate::grpc::GrpcBackend;
use crate::grpc::convert;
use crate::operations::{DEFAULT_TERMINATE_REASON, SubscriptionOrder, unexpected_outcome};
use crate::state::{AppState, SharedState};

pub struct AdminService {
    backend: GrpcBackend,
}

impl AdminService {
    pub fn new(state: SharedState) -> AdminService {
        AdminService {
            backend: GrpcBackend::new(state),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_host(
        &self,
        request: Request<v1::CreateHostRequest>,
    ) -> Result<Response<v1::Host>, Status> {
        self.backend.count("create_host");
        let name = request.into_inner().name;
        match self.backend.execute(Command::CreateHost { name }).await? {
            Outcome::HostCreated(host) => Ok(Response::new(convert::host(&host))),
            _ => Err(to_status(&unexpected_outcome("create host"))),
        }
    }

    async fn list_hosts(
        &self,
        _request: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::ListHostsResponse>, Status> {
        self.backend.count("list_hosts");
        let catalog = self.backend.store.catalog();
        let hosts = catalog.hosts.iter().map(convert::host).collect();
        Ok(Response::new(v1::ListHostsResponse { hosts }))
    }

    async fn create_subscription(
        &self,
        request: Request<v1::CreateSubscriptionRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        self.backend.count("create_subscription");
        let request = request.into_inner();
        let order = SubscriptionOrder {
            name: request.name,
            host: request.host,
            filter: request.filter,
            priority: request.priority,
            retry_count: request.retry_count,
            retry_interval_ms: request.retry_interval_ms,
            exponential_backoff: request.exponential_backoff,
            backup: request.backup.map(convert::retry_policy),
            replaces: request.replaces,
        };
        let subscription = self
            .backend
            .create_subscription(order)
            .await
            .map_err(|error| to_status(&error))?;
        let catalog = self.backend.store.catalog();
        Ok(Response::new(convert::subscription(
            &subscription,
            &catalog,
        )))
    }

    async fn list_subscriptions(
        &self,
        _request: Request<v1::ListSubscriptionsRequest>,
    ) -> Result<Response<v1::ListSubscriptionsResponse>, Status> {
        self.backend.count("list_subscriptions");
        let catalog = self.backend.store.catalog();
        let subscriptions = catalog
            .subscriptions
            .iter()
            .map(|subscription| convert::subscription(subscription, &catalog))
            .collect();
        Ok(Response::new(v1::ListSubscriptionsResponse {
            subscriptions,
        }))
    }

    async fn delete_subscription(
        &self,
        request: Request<v1::DeleteSubscriptionRequest>,
    ) -> Result<Response<v1::DeleteSubscriptionResponse>, Status> {
        self.backend.count("delete_subscription");
        let id = request.into_inner().id;
        self.backend
            .execute(Command::DeleteSubscription { id })
            .await?;
        Ok(Response::new(v1::DeleteSubscriptionResponse {}))
    }

    async fn list_instances(
        &self,
        request: Request<v1::ListInstancesRequest>,
    ) -> Result<Response<v1::ListInstancesResponse>, Status> {
        self.backend.count("list_instances");
        let request = request.into_inner();
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let instances = self
            .backend
            .list_instances(&request.host, &request.state, request.after, limit)
            .await
            .map_err(|error| to_status(&error))?;
        let catalog = self.backend.store.catalog();
        let instances = instances
            .iter()
            .map(|instance| convert::instance(instance, &catalog))
            .collect();
        Ok(Response::new(v1::ListInstancesResponse { instances }))
    }

    async fn resume(
        &self,
        request: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ResumeResponse>, Status> {
        self.backend.count("resume");
        let instance = request.into_inner().instance;
        self.backend.execute(Command::Resume { instance }).await?;
        Ok(Response::new(v1::ResumeResponse {}))
    }

    async fn terminate(
        &self,
        request: Request<v1::TerminateRequest>,
    ) -> Result<Response<v1::TerminateResponse>, Status> {
        self.backend.count("terminate");
        let request = request.into_inner();
        let reason = if request.reason.is_empty() {
            DEFAULT_TERMINATE_REASON.to_string()
        } else {
            request.reason
        };
        let command = Command::Terminate {
            instance: request.instance,
            reason,
        };
        self.backend.execute(command).await?;
        Ok(Response::new(v1::TerminateResponse {}))
    }

    async fn message_history(
        &self,
        request: Request<v1::MessageHistoryRequest>,
    ) -> Result<Response<v1::MessageHistoryResponse>, Status> {
        self.backend.count("message_history");
        let message_id = request.into_inner().message_id;
        let history = self
            .backend
            .store
            .message_history(message_id)
            .await
            .map_err(|error| to_status(&error))?;
        let catalog = self.backend.store.catalog();
        Ok(Response::new(v1::MessageHistoryResponse {
            messages: history
                .messages
                .iter()
                .map(convert::stored_message)
                .collect(),
            instances: history
                .instances
                .iter()
                .map(|instance| convert::instance(instance, &catalog))
                .collect(),
            events: history.events.iter().map(convert::tracking_event).collect(),
        }))
    }

    async fn purge_tracking(
        &self,
        request: Request<v1::PurgeTrackingRequest>,
    ) -> Result<Response<v1::PurgeTrackingResponse>, Status> {
        self.backend.count("purge_tracking");
        let older_than_ms = request.into_inner().older_than_ms;
        let events = self
            .backend
            .purge_tracking(older_than_ms)
            .await
            .map_err(|error| to_status(&error))?;
        Ok(Response::new(v1::PurgeTrackingResponse { events }))
    }

    async fn status(
        &self,
        _request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        self.backend.count("status");
        Ok(Response::new(status(&self.backend)))
    }
}

fn status(state: &AppState) -> v1::StatusResponse {
    let catalog = state.store.catalog();
    v1::StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        data_dir: state.store.data_dir().display().to_string(),
        format_version: tandem_store::schema::FORMAT_VERSION as u64,
        message_count: catalog.state.message_count,
        throttled: state.publish_throttled(),
        routing_failures: catalog.state.routing_failures,
        subscription_count: catalog.subscriptions.len() as u64,
        hosts: catalog.hosts.iter().map(convert::host).collect(),
        settings: Some(convert::settings(&catalog.state.settings)),
        started_at_ms: state.started_at_ms,
        disk_room_bytes: state.disk.room_bytes(),
        min_free_disk_bytes: state.disk.min_free_bytes(),
        disk_low: state.disk.is_low(),
    }
}
