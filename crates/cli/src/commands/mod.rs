//! One module per command group; each exposes its clap arguments and a `run` function.

pub mod bench;
pub mod bench_failover;
pub mod bench_usage;
pub mod bindings;
pub mod chaos;
pub mod cluster;
pub mod consume;
pub mod demo;
pub mod host;
pub mod host_run;
pub mod local_replica_set;
pub mod message;
pub mod node;
pub mod publish;
pub mod status;
pub mod subscription;
pub mod suspended;
pub mod tracking;
pub mod up;
