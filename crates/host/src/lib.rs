//! # Tandem host
//!
//! The host-instance runtime: a process serving one host runs that host's receive
//! locations (adapters that publish into the message box) and send ports (subscriptions
//! of the host's queue whose messages it delivers), as a bindings file declares them. It
//! talks to the replica set only through the client library, and keeps running through a
//! failover or an outage of the whole message box: receive locations pause, deliveries
//! wait, and everything resumes by itself.
//!
//! Delivery is at least once: a message can reach a send port's endpoint again after a
//! lease expired, a host instance crashed, or a failover lost the answer to a completion.
//! Its message id never changes, so endpoints keyed by it see each message's effect
//! exactly once: FILE send names files by message id by default, HTTP send puts it in
//! `x-tandem-message-id`.
//!
//! # Layout
//!
//! - [`bindings`]: the bindings file, checked as a whole with line-numbered problems.
//! - [`apply`]: makes the message box match the bindings (hosts, send port subscriptions).
//! - [`runtime`]: [`HostInstance`], one running instance of a host.
//! - [`receive`]: receive locations: [`receive::file`] (drop folder), [`receive::http`]
//!   (POST endpoint).
//! - [`send`]: the delivery loop and the transports: [`send::file`], [`send::http`].
//! - [`promotion`]: typed context properties from JSON fields, headers and file names.
//! - [`file_name`]: file-name patterns and the templates that name delivered files.
//! - [`recording_sink`]: an HTTP endpoint that records deliveries, standing in for a
//!   partner system in `tandem demo` and tests.

pub mod apply;
pub mod bindings;
pub mod file_name;
pub mod promotion;
pub mod receive;
pub mod recording_sink;
pub mod runtime;
pub mod send;

pub use bindings::{Bindings, BindingsError};
pub use runtime::{HostInstance, InstanceOptions};
