//! [`History`]: what the clients of a fault run saw, and [`check`], which compares it with
//! what the replica set holds at the end and with its failover history.
//! [`History::write_jsonl`] keeps it in a file, one operation per line.
//!
//! Every publish attempt is recorded per message when it is invoked (with the node it was
//! sent to and the time), then resolved: acknowledged (with the acknowledgement's term, log
//! index and node), failed (the node refused it before proposing it), or unknown (no answer,
//! `no_quorum`, `unavailable`, a broken connection: it may or may not have been stored).
//! Consumers record every message a lease handed them (a delivery) and every acknowledged
//! completion.
//!
//! The checker reports:
//! - **lost**: acknowledged, never delivered, and not in the store at the end;
//! - **unexpected**: delivered or stored, but never published;
//! - **stale**: acknowledged in a term lower than that of a failover recorded *before* the
//!   publish was invoked (an old active acknowledged after a new one took over);
//! - **duplicated**: delivered (or completed) more than once, allowed under at-least-once.
//!
//! Lost, unexpected and stale must be empty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tandem_protocol::v1;

/// Examples shown per kind of violation.
const EXAMPLES_SHOWN: usize = 5;

/// Milliseconds since the Unix epoch: the clock the nodes stamp failovers with.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq)]
pub enum PublishOutcome {
    /// Invoked, not answered yet.
    Pending,
    Acknowledged {
        term: u64,
        log_index: u64,
        node_id: u64,
    },
    Failed(String),
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct PublishAttempt {
    pub message_id: String,
    /// The node the call went to.
    pub node_id: u64,
    pub invoked_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub outcome: PublishOutcome,
}

/// A message a consumer received from a lease, or whose completion was acknowledged.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub message_id: String,
    pub node_id: u64,
    pub at_ms: i64,
}

/// The attempts one publish call recorded, in the order of its messages.
#[derive(Clone, Copy, Debug)]
pub struct Invocation {
    first: usize,
    count: usize,
}

#[derive(Default)]
struct Records {
    publishes: Vec<PublishAttempt>,
    deliveries: Vec<Delivery>,
    completions: Vec<Delivery>,
}

pub struct History {
    records: Mutex<Records>,
    /// Stamps every record: [`now_ms`], or a simulation's clock.
    clock: fn() -> i64,
}

impl Default for History {
    fn default() -> History {
        History::with_clock(now_ms)
    }
}

impl History {
    /// A history whose records are stamped by `clock` (ms since the epoch), the clock the
    /// nodes stamp failovers with.
    pub fn with_clock(clock: fn() -> i64) -> History {
        History {
            records: Mutex::default(),
            clock,
        }
    }

    /// Records a publish of `message_ids` sent to `node_id`, now.
    pub fn invoke_publish(&self, node_id: u64, message_ids: &[String]) -> Invocation {
        let invoked_at_ms = (self.clock)();
        let mut records = self.lock();
        let first = records.publishes.len();
        records
            .publishes
            .extend(message_ids.iter().map(|message_id| PublishAttempt {
                message_id: message_id.clone(),
                node_id,
                invoked_at_ms,
                answered_at_ms: None,
                outcome: PublishOutcome::Pending,
            }));
        Invocation {
            first,
            count: message_ids.len(),
        }
    }

    /// Resolves each message of an invocation, in order.
    pub fn resolve_publish(&self, invocation: Invocation, outcomes: Vec<PublishOutcome>) {
        assert_eq!(outcomes.len(), invocation.count, "one outcome per message");
        let answered_at_ms = (self.clock)();
        let mut records = self.lock();
        let attempts =
            &mut records.publishes[invocation.first..invocation.first + invocation.count];
        for (attempt, outcome) in attempts.iter_mut().zip(outcomes) {
            attempt.answered_at_ms = Some(answered_at_ms);
            attempt.outcome = outcome;
        }
    }

    /// Resolves every message of an invocation the same way.
    pub fn resolve_publish_all(&self, invocation: Invocation, outcome: PublishOutcome) {
        self.resolve_publish(invocation, vec![outcome; invocation.count]);
    }

    pub fn record_deliveries(&self, node_id: u64, message_ids: impl IntoIterator<Item = String>) {
        let at_ms = (self.clock)();
        self.lock()
            .deliveries
            .extend(message_ids.into_iter().map(|message_id| Delivery {
                message_id,
                node_id,
                at_ms,
            }));
    }

    pub fn record_completions(&self, node_id: u64, message_ids: impl IntoIterator<Item = String>) {
        let at_ms = (self.clock)();
        self.lock()
            .completions
            .extend(message_ids.into_iter().map(|message_id| Delivery {
                message_id,
                node_id,
                at_ms,
            }));
    }

    /// Every publish attempt so far.
    pub fn publishes(&self) -> Vec<PublishAttempt> {
        self.lock().publishes.clone()
    }

    /// The message ids acknowledged so far.
    pub fn acknowledged_ids(&self) -> BTreeSet<String> {
        self.lock()
            .publishes
            .iter()
            .filter(|attempt| matches!(attempt.outcome, PublishOutcome::Acknowledged { .. }))
            .map(|attempt| attempt.message_id.clone())
            .collect()
    }

    /// The message ids delivered more than once so far (after a lease expired, or a
    /// failover), the first ones to look at when replicas may disagree.
    pub fn delivered_more_than_once(&self) -> BTreeSet<String> {
        let records = self.lock();
        counts(
            records
                .deliveries
                .iter()
                .map(|delivery| delivery.message_id.as_str()),
        )
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(id, _)| id.to_string())
        .collect()
    }

    /// When the first acknowledgement in a term above `term` arrived after `since_ms`, in
    /// milliseconds after `since_ms`: how long writes were unavailable across a failover.
    pub fn first_acknowledgement_after(&self, since_ms: i64, term: u64) -> Option<i64> {
        self.lock()
            .publishes
            .iter()
            .filter_map(|attempt| match attempt.outcome {
                PublishOutcome::Acknowledged { term: acked, .. } if acked > term => {
                    attempt.answered_at_ms
                }
                _ => None,
            })
            .filter(|answered_at_ms| *answered_at_ms >= since_ms)
            .min()
            .map(|answered_at_ms| answered_at_ms - since_ms)
    }

    /// Writes every operation as one JSON line: publishes with their invoke and answer
    /// times, outcome (`ok` with term, log index and node; `fail`; `unknown`; `pending`),
    /// then deliveries and completions.
    pub fn write_jsonl(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let records = self.lock();
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for attempt in &records.publishes {
            writeln!(file, "{}", publish_json(attempt))?;
        }
        for (kind, list) in [
            ("delivery", &records.deliveries),
            ("complete", &records.completions),
        ] {
            for delivery in list {
                let line = serde_json::json!({
                    "op": kind,
                    "message_id": delivery.message_id,
                    "node": delivery.node_id,
                    "at_ms": delivery.at_ms,
                });
                writeln!(file, "{line}")?;
            }
        }
        file.flush()
    }

    /// When each acknowledgement was answered, in time order.
    pub fn acknowledgement_times(&self) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .lock()
            .publishes
            .iter()
            .filter(|attempt| matches!(attempt.outcome, PublishOutcome::Acknowledged { .. }))
            .filter_map(|attempt| attempt.answered_at_ms)
            .collect();
        times.sort_unstable();
        times
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An acknowledgement from a term that a failover had already ended when it was invoked.
#[derive(Clone, Debug)]
pub struct StaleAcknowledgement {
    pub message_id: String,
    pub term: u64,
    pub node_id: u64,
    pub invoked_at_ms: i64,
    pub superseded_by_term: u64,
    pub superseded_at_ms: i64,
}

#[derive(Debug, Default)]
pub struct HistoryReport {
    pub publish_attempts: usize,
    pub invoked_messages: usize,
    pub acknowledged: usize,
    pub failed_attempts: usize,
    pub unknown_attempts: usize,
    pub pending_attempts: usize,
    pub delivered: usize,
    pub delivered_more_than_once: usize,
    pub completed: usize,
    pub completed_more_than_once: usize,
    pub remaining: usize,
    /// Acknowledged messages, by the term of their acknowledgement.
    pub acknowledged_by_term: BTreeMap<u64, usize>,
    pub failovers: usize,
    pub lost: Vec<String>,
    pub unexpected: Vec<String>,
    pub stale: Vec<StaleAcknowledgement>,
    /// A message completed more than once, if any, and everything the clients saw of it.
    pub completed_more_than_once_example: Option<(String, String)>,
}

impl HistoryReport {
    /// Prints the figures, so that a person reading the test output sees them.
    pub fn print(&self, label: &str) {
        eprintln!(
            "[{label}] publish attempts {} for {} messages: acknowledged {}, failed {}, \
             unknown {}, pending {}; delivered {} (more than once: {}), completed {} (more \
             than once: {}), remaining in the store {}; failovers {}; acknowledged by term \
             {:?}; lost {}, unexpected {}, stale {}",
            self.publish_attempts,
            self.invoked_messages,
            self.acknowledged,
            self.failed_attempts,
            self.unknown_attempts,
            self.pending_attempts,
            self.delivered,
            self.delivered_more_than_once,
            self.completed,
            self.completed_more_than_once,
            self.remaining,
            self.failovers,
            self.acknowledged_by_term,
            self.lost.len(),
            self.unexpected.len(),
            self.stale.len()
        );
        if let Some((_, timeline)) = &self.completed_more_than_once_example {
            eprintln!("[{label}] a message completed more than once:\n{timeline}");
        }
    }

    /// What breaks the contract: anything acknowledged lost, anything unpublished seen, or
    /// an acknowledgement from a superseded term. Empty when the history is clean.
    pub fn violations(&self) -> Vec<String> {
        let mut violations = Vec::new();
        if !self.lost.is_empty() {
            violations.push(format!(
                "{} acknowledged messages lost, e.g. {:?}",
                self.lost.len(),
                &self.lost[..self.lost.len().min(EXAMPLES_SHOWN)]
            ));
        }
        if !self.unexpected.is_empty() {
            violations.push(format!(
                "{} messages delivered or stored but never published, e.g. {:?}",
                self.unexpected.len(),
                &self.unexpected[..self.unexpected.len().min(EXAMPLES_SHOWN)]
            ));
        }
        if !self.stale.is_empty() {
            violations.push(format!(
                "{} acknowledgements from a superseded term, e.g. {:?}",
                self.stale.len(),
                &self.stale[..self.stale.len().min(EXAMPLES_SHOWN)]
            ));
        }
        violations
    }

    /// Panics unless nothing acknowledged was lost, nothing unpublished appeared and no
    /// stale term acknowledged anything.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }
}

/// Checks the history against the message ids still stored at the end and the failover
/// history.
pub fn check(
    history: &History,
    remaining: &BTreeSet<String>,
    failovers: &[v1::FailoverEvent],
) -> HistoryReport {
    let records = history.lock();
    let mut report = HistoryReport {
        publish_attempts: records.publishes.len(),
        remaining: remaining.len(),
        failovers: failovers.len(),
        ..HistoryReport::default()
    };
    let mut invoked = BTreeSet::new();
    let mut acknowledged = BTreeSet::new();
    for attempt in &records.publishes {
        invoked.insert(attempt.message_id.as_str());
        match &attempt.outcome {
            PublishOutcome::Pending => report.pending_attempts += 1,
            PublishOutcome::Failed(_) => report.failed_attempts += 1,
            PublishOutcome::Unknown(_) => report.unknown_attempts += 1,
            PublishOutcome::Acknowledged {
                term,
                log_index: _,
                node_id,
            } => {
                if acknowledged.insert(attempt.message_id.as_str()) {
                    *report.acknowledged_by_term.entry(*term).or_default() += 1;
                }
                report.stale.extend(
                    superseding_failover(failovers, *term, attempt.invoked_at_ms).map(|failover| {
                        StaleAcknowledgement {
                            message_id: attempt.message_id.clone(),
                            term: *term,
                            node_id: *node_id,
                            invoked_at_ms: attempt.invoked_at_ms,
                            superseded_by_term: failover.term,
                            superseded_at_ms: failover.at_ms,
                        }
                    }),
                );
            }
        }
    }
    let deliveries = counts(
        records
            .deliveries
            .iter()
            .map(|delivery| delivery.message_id.as_str()),
    );
    let completions = counts(
        records
            .completions
            .iter()
            .map(|delivery| delivery.message_id.as_str()),
    );
    report.invoked_messages = invoked.len();
    report.acknowledged = acknowledged.len();
    report.delivered = deliveries.len();
    report.delivered_more_than_once = deliveries.values().filter(|count| **count > 1).count();
    report.completed = completions.len();
    report.completed_more_than_once = completions.values().filter(|count| **count > 1).count();
    report.completed_more_than_once_example = completions
        .iter()
        .find(|(_, count)| **count > 1)
        .map(|(id, _)| (id.to_string(), timeline(&records, id)));
    report.lost = acknowledged
        .iter()
        .filter(|id| !deliveries.contains_key(*id) && !remaining.contains(**id))
        .map(|id| id.to_string())
        .collect();
    let seen = deliveries
        .keys()
        .copied()
        .chain(completions.keys().copied())
        .chain(remaining.iter().map(String::as_str));
    report.unexpected = seen
        .filter(|id| !invoked.contains(id))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    report
}

/// Everything the clients saw of one message, in time order.
fn timeline(records: &Records, message_id: &str) -> String {
    let mut events: Vec<(i64, String)> = Vec::new();
    for attempt in records
        .publishes
        .iter()
        .filter(|attempt| attempt.message_id == message_id)
    {
        events.push((
            attempt.invoked_at_ms,
            format!(
                "publish to node {} answered at {:?}: {:?}",
                attempt.node_id, attempt.answered_at_ms, attempt.outcome
            ),
        ));
    }
    for delivery in records
        .deliveries
        .iter()
        .filter(|delivery| delivery.message_id == message_id)
    {
        events.push((
            delivery.at_ms,
            format!("leased from node {}", delivery.node_id),
        ));
    }
    for completion in records
        .completions
        .iter()
        .filter(|completion| completion.message_id == message_id)
    {
        events.push((
            completion.at_ms,
            format!("completion acknowledged by node {}", completion.node_id),
        ));
    }
    events.sort_by_key(|(at_ms, _)| *at_ms);
    events
        .iter()
        .map(|(at_ms, event)| format!("  {at_ms} {message_id}: {event}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The earliest failover to a later term than `term` recorded before `invoked_at_ms`.
fn superseding_failover(
    failovers: &[v1::FailoverEvent],
    term: u64,
    invoked_at_ms: i64,
) -> Option<&v1::FailoverEvent> {
    failovers
        .iter()
        .filter(|failover| failover.term > term && failover.at_ms < invoked_at_ms)
        .min_by_key(|failover| failover.at_ms)
}

fn counts<'a>(ids: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

fn publish_json(attempt: &PublishAttempt) -> serde_json::Value {
    let mut line = serde_json::json!({
        "op": "publish",
        "message_id": attempt.message_id,
        "node": attempt.node_id,
        "invoked_at_ms": attempt.invoked_at_ms,
        "answered_at_ms": attempt.answered_at_ms,
    });
    let (outcome, detail) = match &attempt.outcome {
        PublishOutcome::Pending => ("pending", serde_json::Value::Null),
        PublishOutcome::Acknowledged {
            term,
            log_index,
            node_id,
        } => (
            "ok",
            serde_json::json!({ "term": term, "log_index": log_index, "ack_node": node_id }),
        ),
        PublishOutcome::Failed(reason) => ("fail", serde_json::json!({ "reason": reason })),
        PublishOutcome::Unknown(reason) => ("unknown", serde_json::json!({ "reason": reason })),
    };
    line["outcome"] = outcome.into();
    if let serde_json::Value::Object(fields) = detail {
        for (key, value) in fields {
            line[key] = value;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acknowledged(term: u64) -> PublishOutcome {
        PublishOutcome::Acknowledged {
            term,
            log_index: 1,
            node_id: 1,
        }
    }

    fn failover(term: u64, at_ms: i64) -> v1::FailoverEvent {
        v1::FailoverEvent {
            term,
            at_ms,
            ..Default::default()
        }
    }

    #[test]
    fn an_acknowledged_message_never_seen_again_is_lost() {
        let history = History::default();
        let invocation = history.invoke_publish(1, &["a".to_string(), "b".to_string()]);
        history.resolve_publish_all(invocation, acknowledged(1));
        history.record_deliveries(1, ["a".to_string()]);
        let report = check(&history, &BTreeSet::new(), &[]);
        assert_eq!(report.lost, ["b"]);
        let stored: BTreeSet<String> = ["b".to_string()].into();
        assert!(check(&history, &stored, &[]).violations().is_empty());
    }

    #[test]
    fn an_acknowledgement_from_a_superseded_term_is_stale() {
        let history = History::default();
        history.record_deliveries(1, ["a".to_string()]);
        let invocation = history.invoke_publish(1, &["a".to_string()]);
        history.resolve_publish_all(invocation, acknowledged(2));
        let earlier = failover(3, now_ms() - 60_000);
        let report = check(&history, &BTreeSet::new(), &[earlier]);
        assert_eq!(report.stale.len(), 1, "{:?}", report.violations());
        let later = failover(3, now_ms() + 60_000);
        assert!(check(&history, &BTreeSet::new(), &[later]).stale.is_empty());
    }

    #[test]
    fn something_seen_but_never_published_is_unexpected() {
        let history = History::default();
        history.record_deliveries(2, ["ghost".to_string()]);
        let report = check(&history, &BTreeSet::new(), &[]);
        assert_eq!(report.unexpected, ["ghost"]);
        assert_eq!(report.violations().len(), 1);
    }

    #[test]
    fn the_history_file_has_one_operation_per_line() {
        let history = History::default();
        let invocation = history.invoke_publish(3, &["a".to_string()]);
        history.resolve_publish_all(invocation, acknowledged(4));
        history.record_deliveries(3, ["a".to_string()]);
        let file = std::env::temp_dir().join(format!("history-{}.jsonl", std::process::id()));
        history.write_jsonl(&file).expect("written");
        let text = std::fs::read_to_string(&file).expect("read");
        std::fs::remove_file(&file).expect("removed");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["op"], "publish");
        assert_eq!(lines[0]["outcome"], "ok");
        assert_eq!(lines[0]["term"], 4);
        assert_eq!(lines[1]["op"], "delivery");
    }
}
