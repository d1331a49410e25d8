//! # Tandem chaos
//!
//! Fault injection against a real replica set, Jepsen style: [`cluster::ChaosCluster`] runs
//! `tandem node` processes with every network path behind a [`proxy::FaultProxy`];
//! [`workload::Workload`] publishes unique message ids and consumes them like host
//! instances, recording every operation in a [`history::History`]; [`nemesis`] breaks
//! things on a seeded schedule (kill -9, pause, partitions, one-way cuts, delays, dropped
//! connections, client cut-offs, switchovers); [`history::check`] finds what the contract
//! forbids. [`run::run`] puts it together for `tandem chaos`; the fault tests use the same
//! pieces.
//!
//! # Layout
//!
//! - [`proxy`]: the fault-injecting TCP proxy.
//! - [`cluster`]: the replica set behind proxies, and its process control.
//! - [`workload`]: publishers and consumers that follow the active, recording a history.
//! - [`history`]: the history, its JSON-lines file, and the checker.
//! - [`nemesis`]: the seeded fault schedule, and applying and healing faults.
//! - [`run`]: one whole run and its report.

pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod run;
pub mod workload;
