//! Replication RPCs between members over plain TCP, with hard timeouts.
//!
//! # Layout
//!
//! - [`messages`]: the requests and responses, as they travel in frames.
//! - [`client`]: the sending side: [`NetworkFactory`] hands openraft one [`PeerClient`] per
//!   target, each with at most one connection.
//! - [`server`]: the receiving side: [`serve`] answers peers' requests with the local Raft.
//! - [`append_stream`]: both sides of a pipelined replication session.
//! - [`blocking_file`]: snapshot files, read and written where the replica's execution
//!   puts blocking work.
//! - [`transport`]: how connections are made: TCP in a node, a simulated network in the
//!   deterministic simulation.
//! - [`leader_contact`]: [`LeaderContact`], when the active last reached this node and whether
//!   its connections are still open.
//!
//! # Wire protocol
//!
//! A connection carries one request at a time, each a [`crate::codec`] frame answered by one
//! response frame, unless its first request opens a pipelined replication session
//! ([`messages::Request::AppendStream`]): then it carries only AppendEntries, each sent
//! without waiting for the answer to the one before, and answered in order. A snapshot is a header frame ([`messages::Request::InstallSnapshot`])
//! followed by exactly `total_bytes` raw bytes of the snapshot file, then the response frame.
//! A peer that sends anything else, or stalls, is disconnected without an answer.

pub mod append_stream;
pub mod blocking_file;
pub mod client;
pub mod leader_contact;
pub mod messages;
pub mod server;
pub mod transport;

pub use client::{NetworkFactory, PeerClient};
pub use leader_contact::{Contact, LeaderContact};
pub use server::serve;
pub use transport::{
    BoxedConnection, Connection, Listener, TcpPeerListener, TcpTransport, Transport,
};

/// An AppendEntries that carries entries may take at least this long (the peer writes and
/// fsyncs them before it answers); heartbeats keep openraft's shorter limit. It also keeps
/// a slow link from looking like a dead active: a replication session dropped at the
/// heartbeat's limit (one heartbeat interval) closed every connection of a live active on
/// links slower than that, and a passive took over (`failover`; tested by
/// `an_active_on_links_slower_than_a_heartbeat_keeps_its_role_and_acknowledges`).
pub const MIN_REPLICATION_TIMEOUT_MS: u64 = 1_000;

/// An inbound connection with no request for this long is closed; the peer reconnects when it
/// needs to. The active's heartbeats keep its connections busy far more often than this.
pub const IDLE_CONNECTION_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Once a peer has started a frame or a snapshot chunk, or is being answered, it must make
/// progress within this time or it is disconnected.
pub const STALLED_PEER_TIMEOUT_MS: u64 = 30_000;

/// The pause after a failed `accept` (for example, out of file descriptors) before the next.
pub const ACCEPT_RETRY_DELAY_MS: u64 = 100;
