//! # Tandem client
//!
//! Talks to a Tandem replica set over gRPC: async methods for every call of the
//! `MessageBox`, `Admin` and `Cluster` services, taking and returning the
//! [`tandem_protocol::v1`] types, plus a few conveniences (publish one message, idempotent
//! message ids, lease renewal while a handler runs).
//!
//! It rides through failovers: give it every node's address, and each call finds the
//! active (following a passive's redirect), moves round the addresses when a node cannot be
//! reached, and retries with jittered backoff under a [`RetryPolicy`]: for 5 s by default,
//! or indefinitely for a host instance that must keep running.
//! [`TandemClient::connection_events`] reports connected / failing over / reconnected.
//!
//! ```no_run
//! # async fn example() -> Result<(), tandem_client::ClientError> {
//! use tandem_client::{RetryPolicy, TandemClient};
//!
//! let client = TandemClient::connect("127.0.0.1:7400,127.0.0.1:7410,127.0.0.1:7420")
//!     .await?
//!     .with_retry_policy(RetryPolicy::indefinitely());
//! let result = client
//!     .publish_one(tandem_client::new_message_id(), b"hello".to_vec(), Vec::new())
//!     .await?;
//! println!("stored {}", result.message_id);
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery guarantee
//!
//! - **At-least-once to a handler.** A leased message is delivered again when its lease
//!   expires before it is completed, when a failover lost the answer to its completion
//!   (the client cannot tell whether it landed), or when the host instance holding it
//!   crashes. A handler may therefore see the same message more than once.
//! - **Exactly-once effect** for handlers and sinks that key their effect by the message
//!   id: the id is stable across redeliveries and across retries of a call, and `publish`
//!   is idempotent by message id within the node's dedupe window (a retried publish is
//!   stored once and answers `duplicate`). Give each message its id before the first
//!   attempt ([`new_message_id`], or your own business key), and record it with the effect.
//! - **Fencing.** Only the current lease holder can settle: after a lost lease
//!   ([`LeaseStatus::Lost`]) a completion is refused, and the message goes to the next
//!   holder. [`ClientError::after_retry`] and [`ClientError::completed_by_earlier_attempt`]
//!   tell a refusal caused by the call's own earlier, landed attempt from a real one; the
//!   [`client`] module docs list what each retried call may answer.
//!
//! # Layout
//!
//! - [`client`]: [`TandemClient`], one method per RPC, each riding through failovers; the
//!   table of which calls are safe to retry and what a retried call may answer.
//! - [`connection`]: [`Connection`], owns the gRPC channel to the node talked to now: the
//!   place that knows where the nodes are (the address list, round robin, the move to the
//!   active).
//! - [`connection_monitor`]: [`ConnectionState`] and [`ConnectionEvent`]: connected,
//!   failing over, reconnected, reported once per change and logged through `tracing`.
//! - [`retry_policy`]: [`RetryPolicy`], how long and at what pace calls are retried.
//! - [`retry`]: [`retry::Backoff`], the jittered pauses between attempts.
//! - `retrying_call` (internal): one call's way through its attempts; `attempt_failure`
//!   (internal) sorts failed attempts into redirect, fail over, wait, or answer.
//! - [`lease_renewal`]: [`TandemClient::renew_while`] and [`LeaseStatus`]: renew a lease
//!   while a handler runs.
//! - [`lease_stream`]: [`LeaseStream`], leased messages pushed by the active, reopened on
//!   the new active after a failover.
//! - [`error`]: [`ClientError`], a stable code and a message a person can read.
//! - [`new_message_id`] (from the protocol crate): unique idempotency keys for publishes.

mod attempt_failure;
pub mod client;
pub mod connection;
pub mod connection_monitor;
pub mod error;
pub mod lease_renewal;
pub mod lease_stream;
pub mod retry;
pub mod retry_policy;
mod retrying_call;

pub use client::TandemClient;
pub use connection::Connection;
pub use connection_monitor::{ConnectionEvent, ConnectionState};
pub use error::ClientError;
pub use lease_renewal::LeaseStatus;
pub use lease_stream::LeaseStream;
pub use retry_policy::RetryPolicy;
pub use tandem_protocol::message_id::new_message_id;
pub use tandem_protocol::v1;
