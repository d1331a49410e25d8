//! The gRPC services: [`message_box::MessageBoxService`] (publish, lease, settle one or a
//! batch), [`admin::AdminService`] (hosts, subscriptions, instances, history, status) and
//! [`cluster::ClusterService`] (replica set status, membership, switchover), plus the conversions between core types and wire messages in [`convert`] and the
//! [`GrpcBackend`] both services call through; [`forward::ForwardToActive`] relays a
//! call that asks for it from a passive to the active.

pub mod admin;
pub mod cluster;
pub mod convert;
pub mod forward;
pub mod message_box;

use std::ops::Deref;

use tandem_core::{Command, Outcome, limits};
use tonic::Status;

use crate::errors::to_status;
use crate::metrics::Api;
use crate::state::{AppState, SharedState};

/// The smallest decoding limit: batches of ordinary messages always fit.
pub const MIN_DECODING_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;
/// Room for the request envelope (ids, properties) beyond one maximal body.
pub const ENVELOPE_BYTES: u64 = 1024 * 1024;

/// Largest gRPC request decoded: large enough that an oversized body reaches validation
/// and gets a clear `too_large` answer instead of a transport error.
pub fn max_decoding_message_size(max_body_bytes: u64) -> usize {
    let wanted = MIN_DECODING_MESSAGE_BYTES.max(max_body_bytes.saturating_add(ENVELOPE_BYTES));
    let ceiling = limits::MAX_BODY_BYTES_CEILING + ENVELOPE_BYTES;
    usize::try_from(wanted.min(ceiling)).unwrap_or(usize::MAX)
}

/// The node state as both gRPC services see it: requests counted under the gRPC API and
/// errors turned into gRPC statuses. Everything else of the state is reached through it.
#[derive(Clone)]
pub struct GrpcBackend {
    state: SharedState,
}

impl GrpcBackend {
    pub fn new(state: SharedState) -> GrpcBackend {
        GrpcBackend { state }
    }

    pub fn count(&self, operation: &'static str) {
        self.state.count_request(Api::Grpc, operation);
    }

    pub async fn execute(&self, command: Command) -> Result<Outcome, Status> {
        self.state
            .execute(command)
            .await
            .map_err(|error| to_status(&error))
    }
}

impl Deref for GrpcBackend {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.state
    }
}
