//! # Tandem deterministic simulation
//!
//! A whole replica set and its clients on one thread, under turmoil: the real store
//! (SQLite, run inline), the real replica (openraft, its log and network code) on a
//! simulated network whose links the nemesis cuts, holds, slows and whose nodes it crashes
//! and restarts. The clients record a history that `tandem-chaos`'s checker judges: nothing
//! acknowledged lost, nothing unpublished seen, no acknowledgement from a stale term.
//!
//! A seed fixes everything, so a failing seed replays exactly:
//! `cargo run -p tandem-sim --release -- --seed N`.
//!
//! # Layout
//!
//! - [`run`]: one run: the world, the driving loop, the check.
//! - [`node`]: a node's software: store, replica, ticker, front door.
//! - [`workload`]: publishers, consumers, and the final inventory.
//! - [`faults`]: the seeded fault schedule and how each fault is applied and healed.
//! - [`network`]: the replication network on turmoil's TCP.
//! - [`wire`]: the front door's requests and responses.
//!
//! Snapshots are taken every 200 entries with little log kept behind them, so nodes that
//! fall behind catch up by snapshot transfer. What is not simulated yet: the gRPC and HTTP
//! layers (clients reach the replica through the front door), and disk faults.

pub mod faults;
pub mod network;
pub mod node;
pub mod run;
pub mod wire;
pub mod workload;

pub use run::{SimOptions, SimReport, run};
