//! `ConnectionMonitor`: follows whether calls get answers, and reports the changes as
//! [`ConnectionEvent`]s (to subscribers) and log lines (through `tracing`).
//!
//! The state moves `Connecting → Connected → FailingOver → Connected → …`: the first answer
//! from any node connects; the first failure of the connected node to serve (it cannot be
//! reached, does not answer in time, is passive now, knows no active, has no quorum) starts
//! failing over; the next answer reconnects. Each change is reported once, however many
//! calls and attempts see it. Failures before the first answer are logged, not reported as
//! a failover: nothing was connected yet.
//!
//! Each node channel has a generation (a new one for every move to a node): an attempt
//! that fails on an older channel than the one that last answered is old news, not a new
//! failover.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

/// How many connection events wait for a slow subscriber before it misses the oldest
/// (it then gets `RecvError::Lagged`, and can read [`ConnectionState`] instead).
pub const CONNECTION_EVENT_CAPACITY: usize = 64;

/// Where the client's connection to the replica set stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// No node has answered a call yet.
    Connecting,
    /// The node at `address` answered the last call.
    Connected { address: String },
    /// Calls fail over: the node at `from_address` stopped serving, for `reason`, and no
    /// node has answered since.
    FailingOver {
        from_address: String,
        reason: String,
    },
}

/// A change of [`ConnectionState`], reported once per change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A node answered for the first time.
    Connected { address: String },
    /// The connected node stopped serving calls; they are being sent elsewhere.
    FailingOver {
        from_address: String,
        reason: String,
    },
    /// A node answered again after a failover, `outage` after the first failure.
    Reconnected { address: String, outage: Duration },
}

/// The shared tracker behind [`crate::Connection`]'s state and events.
#[derive(Debug)]
pub(crate) struct ConnectionMonitor {
    tracked: Mutex<Tracked>,
    events: broadcast::Sender<ConnectionEvent>,
}

#[derive(Debug)]
struct Tracked {
    state: ConnectionState,
    /// The channel generation that answered last.
    answered_generation: u64,
    /// When the current failover began.
    failing_over_since: Option<Instant>,
}

impl ConnectionMonitor {
    pub fn new() -> ConnectionMonitor {
        let (events, _) = broadcast::channel(CONNECTION_EVENT_CAPACITY);
        ConnectionMonitor {
            tracked: Mutex::new(Tracked {
                state: ConnectionState::Connecting,
                answered_generation: 0,
                failing_over_since: None,
            }),
            events,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    pub fn state(&self) -> ConnectionState {
        self.lock().state.clone()
    }

    /// The node at `address`, on channel `generation`, answered a call (with a result or a
    /// final error).
    pub fn node_answered(&self, address: &str, generation: u64) {
        let mut tracked = self.lock();
        let event = match &tracked.state {
            ConnectionState::Connected { .. } => None,
            ConnectionState::Connecting => Some(ConnectionEvent::Connected {
                address: address.to_string(),
            }),
            ConnectionState::FailingOver { .. } => Some(ConnectionEvent::Reconnected {
                address: address.to_string(),
                outage: tracked
                    .failing_over_since
                    .map_or(Duration::ZERO, |since| since.elapsed()),
            }),
        };
        tracked.state = ConnectionState::Connected {
            address: address.to_string(),
        };
        tracked.answered_generation = tracked.answered_generation.max(generation);
        tracked.failing_over_since = None;
        drop(tracked);
        if let Some(event) = event {
            self.report(event);
        }
    }

    /// The node at `address`, on channel `generation`, failed to serve a call, for
    /// `reason`. Only a failure on the channel that answered last (or a newer one) starts a
    /// failover: a late failure on a channel left behind does not.
    pub fn node_failed(&self, address: &str, generation: u64, reason: &str) {
        let mut tracked = self.lock();
        match &tracked.state {
            ConnectionState::Connected { .. } if generation >= tracked.answered_generation => {}
            ConnectionState::Connecting => {
                tracing::warn!(address, reason, "no node has answered yet");
                return;
            }
            _ => return,
        }
        tracked.state = ConnectionState::FailingOver {
            from_address: address.to_string(),
            reason: reason.to_string(),
        };
        tracked.failing_over_since = Some(Instant::now());
        drop(tracked);
        self.report(ConnectionEvent::FailingOver {
            from_address: address.to_string(),
            reason: reason.to_string(),
        });
    }

    fn report(&self, event: ConnectionEvent) {
        match &event {
            ConnectionEvent::Connected { address } => {
                tracing::info!(address, "connected to the replica set");
            }
            ConnectionEvent::FailingOver {
                from_address,
                reason,
            } => {
                tracing::warn!(from_address, reason, "failing over to another node");
            }
            ConnectionEvent::Reconnected { address, outage } => {
                let outage_ms = outage.as_millis();
                tracing::info!(address, outage_ms, "reconnected after a failover");
            }
        }
        // No subscriber is fine: the state can still be read.
        let _ = self.events.send(event);
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.tracked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(events: &mut broadcast::Receiver<ConnectionEvent>) -> Vec<ConnectionEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn each_change_is_reported_once() {
        let monitor = ConnectionMonitor::new();
        let mut events = monitor.subscribe();
        monitor.node_failed("a", 1, "connection refused");
        assert_eq!(monitor.state(), ConnectionState::Connecting);
        monitor.node_answered("a", 1);
        monitor.node_answered("a", 1);
        monitor.node_failed("a", 1, "connection reset");
        monitor.node_failed("b", 2, "connection refused");
        monitor.node_failed("a", 3, "connection refused");
        monitor.node_answered("b", 4);
        monitor.node_answered("b", 4);
        let events = drain(&mut events);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(
            events[0],
            ConnectionEvent::Connected {
                address: "a".into()
            }
        );
        assert_eq!(
            events[1],
            ConnectionEvent::FailingOver {
                from_address: "a".into(),
                reason: "connection reset".into()
            }
        );
        assert!(
            matches!(&events[2], ConnectionEvent::Reconnected { address, .. } if address == "b")
        );
        assert_eq!(
            monitor.state(),
            ConnectionState::Connected {
                address: "b".into()
            }
        );
    }

    #[tokio::test]
    async fn a_late_failure_on_a_channel_left_behind_is_no_failover() {
        let monitor = ConnectionMonitor::new();
        let mut events = monitor.subscribe();
        // The same address, reconnected on a new channel: an attempt on the old one fails.
        monitor.node_answered("a", 2);
        monitor.node_failed("a", 1, "connection reset");
        assert_eq!(drain(&mut events).len(), 1);
        assert_eq!(
            monitor.state(),
            ConnectionState::Connected {
                address: "a".into()
            }
        );
    }
}
