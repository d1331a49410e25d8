//! # Tandem client
//!
//! Talks to a Tandem node over gRPC: thin async methods for every call of the
//! `MessageBox` and `Admin` services, taking and returning the [`tandem_protocol::v1`]
//! types, plus a few conveniences (publish one message, idempotent message ids).
//!
//! ```no_run
//! # async fn example() -> Result<(), tandem_client::ClientError> {
//! let client = tandem_client::TandemClient::connect("127.0.0.1:7400").await?;
//! let result = client
//!     .publish_one(tandem_client::new_message_id(), b"hello".to_vec(), Vec::new())
//!     .await?;
//! println!("stored {}", result.message_id);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`client`]: [`TandemClient`], one method per RPC.
//! - [`connection`]: [`Connection`], owns the gRPC channel to one node (the place where
//!   node lists, finding the active and failover will live).
//! - [`lease_stream`]: [`LeaseStream`], leased messages pushed by the node.
//! - [`error`]: [`ClientError`], a stable code and a message a person can read.
//! - [`new_message_id`] (from the protocol crate): unique idempotency keys for publishes.

pub mod client;
pub mod connection;
pub mod error;
pub mod lease_stream;

pub use client::TandemClient;
pub use connection::Connection;
pub use error::ClientError;
pub use lease_stream::LeaseStream;
pub use tandem_protocol::message_id::new_message_id;
pub use tandem_protocol::v1;
