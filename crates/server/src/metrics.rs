//! Prometheus metrics: [`RequestCounters`] (requests by API and operation) and
//! [`render`], the text exposition of everything `/metrics` shows.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use tandem_cluster::{ReplicaStatus, Role};
use tandem_core::host::QueueDepth;

use crate::state::AppState;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Which API a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Api {
    Grpc,
    Http,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Grpc => "grpc",
            Api::Http => "http",
        }
    }
}

/// Requests served, by API and operation. Operations are a small fixed set of names.
#[derive(Default)]
pub struct RequestCounters {
    counts: Mutex<BTreeMap<(Api, &'static str), u64>>,
}

impl RequestCounters {
    pub fn count(&self, api: Api, operation: &'static str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((api, operation)).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(Api, &'static str), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One unlabelled series: name, type, help text and value.
struct Series {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: f64,
}

const GAUGE: &str = "gauge";
const COUNTER: &str = "counter";

/// Renders every metric in the Prometheus text format.
pub fn render(state: &AppState) -> String {
    let mut text = String::new();
    for series in unlabelled_series(state) {
        render_series(&mut text, &series);
    }
    render_queue_depths(&mut text, &state.store.catalog().hosts);
    render_requests(&mut text, state);
    render_replica(&mut text, &state.replica.status());
    render_clock_offset(&mut text, state.replica.time().own_offset_ms());
    text
}

/// How far this node's clock is from the replica set's time, in seconds.
fn render_clock_offset(text: &mut String, offset_ms: Option<i64>) {
    render_series(
        text,
        &Series {
            name: "tandem_clock_offset_seconds",
            kind: GAUGE,
            help: "This node's clock less the replica set's time (the median of the voters' clocks), in seconds; 0 until another voter's clock is read.",
            value: offset_ms.unwrap_or(0) as f64 / 1000.0,
        },
    );
}

/// The replica set as this node sees it: its role, term and indexes, and (on the active)
/// the age of its majority's confirmation and each member's replication lag and latest
/// acknowledgement.
fn render_replica(text: &mut String, status: &ReplicaStatus) {
    let role = "tandem_replica_role";
    header(
        text,
        role,
        GAUGE,
        "1 for this node's current role (active, passive, ...).",
    );
    for candidate in [Role::Active, Role::Passive, Role::Candidate, Role::Learner] {
        let value = u8::from(status.role == candidate);
        let _ = writeln!(text, "{role}{{role=\"{}\"}} {value}", candidate.as_str());
    }
    let indexes = [
        ("tandem_replica_term", "The current term.", status.term),
        (
            "tandem_replica_last_log_index",
            "The last index in this node's log.",
            status.last_log_index,
        ),
        (
            "tandem_replica_committed_index",
            "The last index this node knows is committed.",
            status.committed_index,
        ),
        (
            "tandem_replica_applied_index",
            "The last index applied to this node's store.",
            status.applied_index,
        ),
        (
            "tandem_replica_snapshot_index",
            "The last index in this node's latest snapshot.",
            status.snapshot_index,
        ),
    ];
    for (name, help, value) in indexes {
        render_series(
            text,
            &Series {
                name,
                kind: GAUGE,
                help,
                value: value as f64,
            },
        );
    }
    if let Some(ago_ms) = status.quorum_acknowledged_ms_ago {
        render_series(
            text,
            &Series {
                name: "tandem_replica_quorum_acknowledged_age_seconds",
                kind: GAUGE,
                help: "On the active: how long ago a majority of voters last confirmed it; past the maximum election timeout it refuses writes.",
                value: ago_ms as f64 / 1000.0,
            },
        );
    }
    render_by_member(
        text,
        "tandem_replica_member_lag_entries",
        "On the active: log entries each member is behind the active.",
        status
            .members
            .iter()
            .map(|member| (member.node_id, member.lag.map(|lag| lag as f64))),
    );
    render_by_member(
        text,
        "tandem_replica_member_acknowledged_age_seconds",
        "On the active: how long ago each other member last acknowledged a heartbeat or an append (a member answers once its log is flushed).",
        status.members.iter().map(|member| {
            let ago_ms = member.acknowledged_ms_ago;
            (member.node_id, ago_ms.map(|ago| ago as f64 / 1000.0))
        }),
    );
}

/// A gauge labelled by member, with a sample for each member that has a value.
fn render_by_member(
    text: &mut String,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (u64, Option<f64>)>,
) {
    header(text, name, GAUGE, help);
    for (node_id, value) in values {
        if let Some(value) = value {
            let _ = writeln!(text, "{name}{{node=\"{node_id}\"}} {value}");
        }
    }
}

fn unlabelled_series(state: &AppState) -> [Series; 11] {
    let catalog = state.store.catalog();
    let store = state.store.metrics().snapshot();
    [
        Series {
            name: "tandem_messages_stored",
            kind: GAUGE,
            help: "Messages stored.",
            value: catalog.state.message_count as f64,
        },
        Series {
            name: "tandem_throttled",
            kind: GAUGE,
            help: "1 while publish is throttled (message count, or the active's disk), else 0.",
            value: if state.publish_throttled() { 1.0 } else { 0.0 },
        },
        Series {
            name: "tandem_disk_room_bytes",
            kind: GAUGE,
            help: "Room left under the data directory: free disk space less the next snapshot of the store (-1 until measured).",
            value: state.disk.room_bytes().map_or(-1.0, |room| room as f64),
        },
        Series {
            name: "tandem_disk_min_free_bytes",
            kind: GAUGE,
            help: "Below this much room the active refuses publishes (0: never).",
            value: state.disk.min_free_bytes() as f64,
        },
        Series {
            name: "tandem_routing_failures",
            kind: GAUGE,
            help: "Messages kept in the routing-failure queue.",
            value: catalog.state.routing_failures as f64,
        },
        Series {
            name: "tandem_subscriptions",
            kind: GAUGE,
            help: "Subscriptions.",
            value: catalog.subscriptions.len() as f64,
        },
        Series {
            name: "tandem_store_commits_total",
            kind: COUNTER,
            help: "Store transactions committed.",
            value: store.commits as f64,
        },
        Series {
            name: "tandem_store_commands_total",
            kind: COUNTER,
            help: "Commands applied by the store.",
            value: store.commands as f64,
        },
        Series {
            name: "tandem_store_commit_seconds_total",
            kind: COUNTER,
            help: "Time spent committing, in seconds.",
            value: store.commit_seconds,
        },
        Series {
            name: "tandem_store_failures_total",
            kind: COUNTER,
            help: "Store batches rolled back after a storage failure.",
            value: store.storage_failures as f64,
        },
        Series {
            name: "tandem_published_messages_total",
            kind: COUNTER,
            help: "Messages stored by publishes (duplicates excluded).",
            value: state.published_messages() as f64,
        },
    ]
}

fn render_series(text: &mut String, series: &Series) {
    header(text, series.name, series.kind, series.help);
    let _ = writeln!(text, "{} {}", series.name, series.value);
}

fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

fn render_queue_depths(text: &mut String, hosts: &[tandem_core::host::Host]) {
    let name = "tandem_queue_depth";
    header(
        text,
        name,
        "gauge",
        "Message instances in a host's queues, by state.",
    );
    for host in hosts {
        let host_name = escape_label(&host.name);
        for (state, count) in depth_by_state(&host.depth) {
            let _ = writeln!(
                text,
                "{name}{{host=\"{host_name}\",state=\"{state}\"}} {count}"
            );
        }
    }
}

fn depth_by_state(depth: &QueueDepth) -> [(&'static str, u64); 4] {
    [
        ("ready", depth.ready),
        ("delayed", depth.delayed),
        ("leased", depth.leased),
        ("suspended", depth.suspended),
    ]
}

fn render_requests(text: &mut String, state: &AppState) {
    let name = "tandem_requests_total";
    header(
        text,
        name,
        "counter",
        "Requests served, by API and operation.",
    );
    for ((api, operation), count) in state.requests.snapshot() {
        let api = api.as_str();
        let _ = writeln!(
            text,
            "{name}{{api=\"{api}\",operation=\"{operation}\"}} {count}"
        );
    }
}

/// Host names are restricted to `[A-Za-z0-9_.-]`, but escape anyway: a label must never
/// break the exposition format.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn counters_add_up_per_api_and_operation() {
        let counters = RequestCounters::default();
        counters.count(Api::Grpc, "publish");
        counters.count(Api::Grpc, "publish");
        counters.count(Api::Http, "publish");
        let snapshot = counters.snapshot();
        assert_eq!(snapshot[&(Api::Grpc, "publish")], 2);
        assert_eq!(snapshot[&(Api::Http, "publish")], 1);
    }
}
