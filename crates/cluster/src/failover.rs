//! The failover history. When a node becomes the active and its first entry of the new term
//! commits, it writes a [`FailoverRecord`] into the log: when, from which node, why, and how
//! long writes were unavailable (from the last contact with the previous active to that
//! first commit). Every node applies the record, so every node shows the same history.

use std::sync::Arc;
use std::time::Instant;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use crate::network::LeaderContact;
use crate::types::{FailoverRecord, NodeId, Proposal, Raft};

pub fn to_json(record: &FailoverRecord) -> std::io::Result<String> {
    serde_json::to_string(record).map_err(std::io::Error::other)
}

pub fn from_json(text: &str) -> Option<FailoverRecord> {
    serde_json::from_str(text).ok()
}

/// Watches this node's Raft metrics and records each term in which it became the active.
pub async fn record_failovers(
    raft: Raft,
    contact: Arc<LeaderContact>,
    election_timeout_min_ms: u64,
    mut stopped: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    let mut recorded_term = 0;
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stopped.changed() => return,
        }
        let snapshot = metrics.borrow_watched().clone();
        let term = snapshot.current_term;
        let committed_in_term = snapshot
            .local_committed
            .is_some_and(|committed| committed.leader_id.term == term);
        if snapshot.state != ServerState::Leader || term == recorded_term || !committed_in_term {
            continue;
        }
        recorded_term = term;
        let record = describe(snapshot.id, term, &contact, election_timeout_min_ms);
        eprintln!(
            "tandem: node {} is the active in term {term} ({}; writes were unavailable for {} ms)",
            record.to, record.reason, record.unavailable_ms
        );
        let raft = raft.clone();
        tokio::spawn(async move {
            // A leader change before this commits loses the record, not any data.
            let _ = raft.client_write(Proposal::Failover(record)).await;
        });
    }
}

fn describe(
    this_node: NodeId,
    term: u64,
    contact: &LeaderContact,
    election_timeout_min_ms: u64,
) -> FailoverRecord {
    let previous = contact
        .last_contact()
        .filter(|contact| contact.leader_id != this_node);
    let unavailable_ms = previous
        .map(|contact| {
            Instant::now()
                .duration_since(contact.received_at)
                .as_millis() as u64
        })
        .unwrap_or(0);
    let reason = match previous {
        None => "replica set started: first active elected".to_string(),
        Some(previous) if unavailable_ms < election_timeout_min_ms => {
            format!(
                "switchover: node {} handed over the active role",
                previous.leader_id
            )
        }
        Some(previous) => format!(
            "node {} stopped answering for longer than the election timeout",
            previous.leader_id
        ),
    };
    FailoverRecord {
        term,
        at_ms: crate::wall_clock_ms(),
        from: previous.map(|contact| contact.leader_id),
        to: this_node,
        reason,
        unavailable_ms,
    }
}
