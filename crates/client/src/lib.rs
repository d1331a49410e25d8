//! # Tandem client
//!
//! Talks to a Tandem replica set over gRPC: async methods for every call of the
//! `MessageBox`, `Admin` and `Cluster` services, taking and returning the
//! [`tandem_protocol::v1`] types, plus a few conveniences (publish one message, idempotent
//! message ids). Calls refused by a passive node follow the redirect to the active, and
//! calls refused during an election are tried again for a few seconds.
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
//! - [`client`]: [`TandemClient`], one method per RPC, each following redirects and
//!   waiting out elections.
//! - [`connection`]: [`Connection`], owns the gRPC channel to the node talked to now: the
//!   place that knows where the nodes are (an address list, the move to the active).
//! - [`retry`]: [`retry::Backoff`], the jittered pauses between attempts during an election.
//! - [`lease_stream`]: [`LeaseStream`], leased messages pushed by the node.
//! - [`error`]: [`ClientError`], a stable code and a message a person can read.
//! - [`new_message_id`] (from the protocol crate): unique idempotency keys for publishes.

pub mod client;
pub mod connection;
pub mod error;
pub mod lease_stream;
pub mod retry;

pub use client::TandemClient;
pub use connection::Connection;
pub use error::ClientError;
pub use lease_stream::LeaseStream;
pub use tandem_protocol::message_id::new_message_id;
pub use tandem_protocol::v1;
