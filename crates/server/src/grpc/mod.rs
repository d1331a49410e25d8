//! The gRPC services: [`message_box::MessageBoxService`] (publish, lease, settle one or a
//! batch) and [`admin::AdminService`] (hosts, subscriptions, instances, history, status),
//! plus the conversions between core types and wire messages in [`convert`].

pub mod admin;
pub mod convert;
pub mod message_box;

use tandem_core::limits;

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
