//! How a client notices a silent node: HTTP/2 pings while a call is in flight. Shared by
//! the client library and the test workloads, so that both ride through a failover alike.
//!
//! A paused or hung node process keeps its connections open (its kernel still acknowledges
//! TCP), and a machine cut off the network sends nothing back at all: either way a call in
//! flight on it was answered by nothing but the client's call timeout (30 s by default),
//! long after the other nodes had elected a new active (about half a second). With the
//! pings, a node that has sent nothing for [`KEEP_ALIVE_INTERVAL`] is pinged, and one that
//! has not answered within [`KEEP_ALIVE_TIMEOUT`] has its connection closed: the calls on it
//! fail, and the client tries them on the next node.

use std::time::Duration;

use tonic::transport::Endpoint;

/// A call's connection that has carried nothing from the node for this long is pinged.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(200);
/// A node that has not answered a ping within this long is taken for silent. Far longer
/// than a live node takes, even on a saturated machine: its connection's task answers
/// pings without waiting for any call.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_millis(800);

/// `endpoint`, pinging the node while calls are in flight (not while the connection is
/// idle: a dead idle connection fails the next call the same way).
pub fn with_keep_alive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(false)
}
