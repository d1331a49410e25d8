//! # Tandem protocol
//!
//! The gRPC definitions generated from `proto/tandem.proto`, shared by the server and the
//! client so that both speak exactly the same wire format.
//!
//! # Layout
//!
//! - [`v1`]: messages and the `MessageBox` and `Admin` services (clients and servers).
//! - [`convert`]: wire properties <-> core's typed properties.
//! - [`message_id`]: new unique message ids.

pub mod convert;
pub mod message_id;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tandem.v1");
}

/// The gRPC metadata key carrying a failed call's stable error code.
pub const ERROR_CODE_METADATA: &str = "tandem-error-code";
/// The gRPC metadata key carrying a throttled call's retry hint in milliseconds.
pub const RETRY_AFTER_METADATA: &str = "retry-after-ms";
