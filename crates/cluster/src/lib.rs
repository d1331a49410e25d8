//! # Tandem cluster
//!
//! The replica set: every MessageBox command goes through an openraft log, replicated and
//! fsynced on a majority of voters before it is applied and acknowledged. Only this crate
//! knows openraft.
//!
//! # Layout
//!
//! - [`types`]: the openraft type configuration: entries, results, members.
//! - [`codec`]: binary encoding and length-prefixed frames.
//! - [`log_store`]: the durable Raft log and vote (SQLite, fsync per append).
//! - [`network`]: replication RPCs over TCP with hard timeouts.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod types;
