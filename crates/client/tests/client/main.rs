//! The client against fake nodes on 127.0.0.1: finding the active among the addresses
//! given, failing over when a node dies, retrying (or not) per error, reporting the
//! connection's state, and renewing leases while a handler runs.

mod connection_events;
mod failover;
mod lease_renewal;
mod retries;
mod support;
