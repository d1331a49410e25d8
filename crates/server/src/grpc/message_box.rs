//! [`MessageBoxService`]: the gRPC data plane (publish, lease, lease stream, renew,
//! complete, abandon, fail, batch settle) over the store.

use std::time::Duration;

use tandem_core::outcome::LeasedMessage;
use tandem_core::{Command, Outcome, limits};
use tandem_protocol::v1;
use tandem_protocol::v1::message_box_server::MessageBox;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::errors::to_status;
use crate::grpc::GrpcBackend;
use crate::grpc::convert;
use crate::operations::{
    LeaseOrder, check_batch_size, lease_duration_or_default, unexpected_outcome,
};
use crate::state::{AppState, SharedState};

/// The lease holder recorded when a gRPC caller names none.
pub const DEFAULT_GRPC_HOLDER: &str = "grpc";

pub struct MessageBoxService {
    backend: GrpcBackend,
}

impl MessageBoxService {
    pub fn new(state: SharedState) -> MessageBoxService {
        MessageBoxService {
            backend: GrpcBackend::new(state),
        }
    }
}

type LeaseStream = ReceiverStream<Result<v1::LeasedMessage, Status>>;

#[tonic::async_trait]
impl MessageBox for MessageBoxService {
    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        self.backend.count("publish");
        let peer = request.remote_addr();
        let request = request.into_inner();
        check_batch_size(request.messages.len()).map_err(|error| to_status(&error))?;
        let publisher = if request.publisher.is_empty() {
            match peer {
                Some(address) => format!("grpc:{address}"),
                None => "grpc".to_string(),
            }
        } else {
            request.publisher
        };
        let (message_ids, messages): (Vec<_>, Vec<_>) = request
            .messages
            .into_iter()
            .map(convert::new_message)
            .unzip();
        let published = self
            .backend
            .publish(publisher, messages)
            .await
            .map_err(|error| to_status(&error))?;
        let results = message_ids
            .into_iter()
            .zip(published.results)
            .map(|(message_id, result)| convert::publish_result(message_id, result))
            .collect();
        Ok(Response::new(v1::PublishResponse {
            results,
            acknowledgement: published.acknowledgement.map(convert::acknowledgement),
        }))
    }

    async fn lease(
        &self,
        request: Request<v1::LeaseRequest>,
    ) -> Result<Response<v1::LeaseResponse>, Status> {
        self.backend.count("lease");
        let request = request.into_inner();
        let wait = Duration::from_millis(request.wait_ms);
        let leased = self
            .backend
            .lease_waiting(&lease_order(request), wait, std::future::pending())
            .await
            .map_err(|error| to_status(&error))?;
        let messages = leased.into_iter().map(convert::leased_message).collect();
        Ok(Response::new(v1::LeaseResponse { messages }))
    }

    type LeaseStreamStream = LeaseStream;

    async fn lease_stream(
        &self,
        request: Request<v1::LeaseRequest>,
    ) -> Result<Response<LeaseStream>, Status> {
        self.backend.count("lease_stream");
        let order = lease_order(request.into_inner());
        // The first lease answers at once, so an unknown host fails the call itself.
        let first = self
            .backend
            .lease_now(&order)
            .await
            .map_err(|error| to_status(&error))?;
        let (sender, receiver) = mpsc::channel(limits::LEASE_STREAM_BUFFER);
        tokio::spawn(stream_leases(self.backend.clone(), order, first, sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn renew_lease(
        &self,
        request: Request<v1::RenewLeaseRequest>,
    ) -> Result<Response<v1::RenewLeaseResponse>, Status> {
        self.backend.count("renew_lease");
        let request = request.into_inner();
        let command = Command::RenewLease {
            instance: request.instance,
            token: request.token,
            lease_duration_ms: lease_duration_or_default(request.lease_duration_ms),
        };
        match self.backend.execute(command).await? {
            Outcome::LeaseRenewed { expires_at_ms } => {
                Ok(Response::new(v1::RenewLeaseResponse { expires_at_ms }))
            }
            _ => Err(to_status(&unexpected_outcome("renew lease"))),
        }
    }

    async fn complete(
        &self,
        request: Request<v1::SettleRequest>,
    ) -> Result<Response<v1::SettleResponse>, Status> {
        self.backend.count("complete");
        let request = request.into_inner();
        let command = Command::Complete {
            instance: request.instance,
            token: request.token,
        };
        self.backend.execute(command).await?;
        Ok(Response::new(v1::SettleResponse { suspended: false }))
    }

    async fn abandon(
        &self,
        request: Request<v1::SettleRequest>,
    ) -> Result<Response<v1::SettleResponse>, Status> {
        self.backend.count("abandon");
        let request = request.into_inner();
        let command = Command::Abandon {
            instance: request.instance,
            token: request.token,
        };
        self.backend.execute(command).await?;
        Ok(Response::new(v1::SettleResponse { suspended: false }))
    }

    async fn fail(
        &self,
        request: Request<v1::FailRequest>,
    ) -> Result<Response<v1::SettleResponse>, Status> {
        self.backend.count("fail");
        let request = request.into_inner();
        let command = Command::Fail {
            instance: request.instance,
            token: request.token,
            reason: request.reason,
        };
        match self.backend.execute(command).await? {
            Outcome::Failed { suspended } => Ok(Response::new(v1::SettleResponse { suspended })),
            _ => Err(to_status(&unexpected_outcome("fail"))),
        }
    }

    async fn settle(
        &self,
        request: Request<v1::SettleBatchRequest>,
    ) -> Result<Response<v1::SettleBatchResponse>, Status> {
        self.backend.count("settle");
        let settlements = request
            .into_inner()
            .settlements
            .into_iter()
            .map(|settlement| (settlement.instance, convert::settlement(settlement)))
            .collect();
        let results = self
            .backend
            .settle_batch(settlements)
            .await
            .map_err(|error| to_status(&error))?;
        let results = results
            .into_iter()
            .map(|(instance, result)| convert::settlement_result(instance, result))
            .collect();
        Ok(Response::new(v1::SettleBatchResponse { results }))
    }
}

fn lease_order(request: v1::LeaseRequest) -> LeaseOrder {
    let holder = if request.holder.is_empty() {
        DEFAULT_GRPC_HOLDER.to_string()
    } else {
        request.holder
    };
    LeaseOrder::new(
        request.host,
        holder,
        request.max_messages,
        request.lease_duration_ms,
    )
}

/// Feeds a lease stream until the caller hangs up, the node shuts down, or a lease fails.
async fn stream_leases(
    state: GrpcBackend,
    order: LeaseOrder,
    first: Vec<LeasedMessage>,
    sender: mpsc::Sender<Result<v1::LeasedMessage, Status>>,
) {
    let mut batch = first;
    loop {
        if !send_all(&state, batch, &sender).await || state.is_shutting_down() {
            return;
        }
        match state
            .lease_waiting(
                &order,
                Duration::from_millis(limits::MAX_LEASE_WAIT_MS),
                sender.closed(),
            )
            .await
        {
            Ok(next) => batch = next,
            Err(error) => {
                let _ = sender.send(Err(to_status(&error))).await;
                return;
            }
        }
        if sender.is_closed() {
            give_back(&state, batch).await;
            return;
        }
    }
}

/// Sends every message in order; if the caller is gone (or the node stops) the messages
/// not delivered are abandoned so that another host instance gets them at once.
async fn send_all(
    state: &AppState,
    batch: Vec<LeasedMessage>,
    sender: &mpsc::Sender<Result<v1::LeasedMessage, Status>>,
) -> bool {
    let mut messages = batch.into_iter();
    while let Some(message) = messages.next() {
        let lease = (message.instance, message.token);
        let sent = tokio::select! {
            sent = sender.send(Ok(convert::leased_message(message))) => sent.is_ok(),
            () = state.shutdown_begun() => false,
        };
        if !sent {
            abandon(state, lease).await;
            give_back(state, messages.collect()).await;
            return false;
        }
    }
    true
}

async fn give_back(state: &AppState, messages: Vec<LeasedMessage>) {
    for message in messages {
        abandon(state, (message.instance, message.token)).await;
    }
}

async fn abandon(state: &AppState, (instance, token): (u64, u64)) {
    // Best effort: if this fails the lease simply expires.
    let _ = state.execute(Command::Abandon { instance, token }).await;
}
