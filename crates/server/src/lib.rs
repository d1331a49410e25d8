//! # Tandem server
//!
//! The composition root of a Tandem node: configuration, node lifecycle with ordered
//! shutdown, the gRPC data plane and admin API (tonic), the HTTP/JSON API with health and
//! Prometheus metrics (axum), and the maintenance ticker. Every write ends up as a
//! [`tandem_core::Command`] replicated through the node's replica (`tandem-cluster`) and
//! applied by the store.
//!
//! # Layout
//!
//! - [`config`]: [`NodeConfig`], loaded from TOML.
//! - [`server_error`]: [`ServerError`], why a node could not start.
//! - [`node`]: [`Node`] (start, addresses, ordered shutdown) and [`run_until_signal`].
//! - [`shutdown_signal`]: SIGINT and SIGTERM, installed before the node reports ready.
//! - [`state`]: the state every request handler shares (store handle, wake-ups, counters).
//! - [`operations`]: the operations both APIs share (publish, long-poll lease, listings).
//! - [`cluster`]: the replica-set view and health verdicts both APIs share.
//! - [`wake_up`]: the signal that wakes long-polling leases when work becomes ready.
//! - [`errors`]: the one place that maps core errors to gRPC statuses and HTTP responses.
//! - [`grpc`]: the `MessageBox` and `Admin` gRPC services.
//! - [`http`]: the HTTP/JSON API, `/health` and `/metrics`.
//! - [`metrics`]: request counters and the Prometheus text rendering.
//! - [`ticker`]: the task that applies `Command::Tick` (lease expiry, due retries).
//! - [`disk_space`]: the room left under the data directory, and the refusal of publishes
//!   while it is low.
//! - [`member_probe`]: every node reads the other voters' clocks (the replica set's time)
//!   and, on the active, their room on disk.

pub mod cluster;
pub mod config;
pub mod disk_space;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod member_probe;
pub mod metrics;
pub mod node;
pub mod operations;
pub mod server_error;
pub mod shutdown_signal;
pub mod state;
pub mod ticker;
pub mod wake_up;

pub use config::NodeConfig;
pub use node::{Node, run_until_signal};
pub use server_error::ServerError;
pub use tandem_cluster::clock::set_clock_off_for_drills;
