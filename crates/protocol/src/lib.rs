//! # Tandem protocol
//!
//! The gRPC definitions generated from `proto/tandem.proto`, shared by the server and the
//! client so that both speak exactly the same wire format.
//!
//! # Layout
//!
//! - [`v1`]: messages and the `MessageBox`, `Admin` and `Cluster` services (clients and
//!   servers).
//! - [`convert`]: wire properties <-> core's typed properties.
//! - [`keep_alive`]: how a client's channel notices a silent node.
//! - [`message_id`]: new unique message ids.

pub mod convert;
pub mod keep_alive;
pub mod message_id;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tandem.v1");
}

/// The gRPC metadata key carrying a failed call's stable error code.
pub const ERROR_CODE_METADATA: &str = "tandem-error-code";
/// The gRPC metadata key carrying a throttled call's retry hint in milliseconds.
pub const RETRY_AFTER_METADATA: &str = "retry-after-ms";
/// On a `not_active` error: the active node's gRPC address, to retry there.
pub const ACTIVE_GRPC_METADATA: &str = "tandem-active-grpc";
/// On a `not_active` error: the active node's HTTP address.
pub const ACTIVE_HTTP_METADATA: &str = "tandem-active-http";
/// Sent with a call (any value) to ask a passive to relay it to the active instead of
/// answering `not_active`: for a client that reaches the passives but not the active.
pub const FORWARD_METADATA: &str = "tandem-forward";
/// A client asks a passive to relay when the passive names an active that the client could
/// not reach within this long...
pub const RELAY_AFTER_UNREACHABLE: std::time::Duration = std::time::Duration::from_secs(10);
/// ...and relays for this long before it tries the active directly again.
pub const RELAY_FOR: std::time::Duration = std::time::Duration::from_secs(10);
