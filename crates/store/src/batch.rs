//! [`Batch`]: the unit the committer applies: commands stamped with one timestamp, and,
//! when they come from a replicated log, where in that log they sit.

use tandem_core::Command;

#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The time every command in the batch is applied at (the active's clock).
    pub timestamp_ms: i64,
    pub commands: Vec<Command>,
    /// A replica-set event recorded with the batch (for instance a failover).
    pub event: Option<ClusterEvent>,
    /// Opaque to the store: the replicated log position this batch brings the store to.
    /// It is saved in the same transaction, so the store always knows how far it got.
    pub position: Option<Vec<u8>>,
}

impl Batch {
    /// One command applied at `timestamp_ms`, outside any replicated log.
    pub fn local(command: Command, timestamp_ms: i64) -> Batch {
        Batch {
            timestamp_ms,
            commands: vec![command],
            event: None,
            position: None,
        }
    }

    /// How much work the batch is, for bounding one commit.
    pub fn message_weight(&self) -> usize {
        self.commands
            .iter()
            .map(Command::message_weight)
            .sum::<usize>()
            .max(1)
    }
}

/// A replica-set event, kept for operators (`tandem cluster status`). The record is the
/// cluster layer's own JSON; the store only keeps it in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEvent {
    pub at_ms: i64,
    pub record: String,
}
