//! The commands that measure and demonstrate, run small: `tandem bench` on fresh nodes (two
//! runs and their medians) and on a replica set (with random message ids), `tandem bench --failover` (two kill -9s of
//! the active), and `tandem demo` (an integration flow through a failover). The figures they
//! print vary from run to run and are not asserted; what they report about the messages is:
//! nothing acknowledged lost, nothing duplicated, every file delivered once.

mod support;

use serde_json::Value as Json;
use support::command::{Finished, run_tandem};

const MESSAGES: u64 = 600;
/// Enough that half the publishing is still ahead when the active is killed.
const FAILOVER_MESSAGES: u64 = 2000;
const DEMO_FILES: u64 = 30;

fn run_json(arguments: &[&str]) -> (Finished, Json) {
    let finished = run_tandem(arguments).expect_success();
    let json = finished.json();
    (finished, json)
}

/// `tandem --json bench` from 4 clients, with `messages` per phase in calls of `batch`.
fn run_bench(messages: u64, batch: u64, extra: &[&str]) -> (Finished, Json) {
    let (messages, batch) = (messages.to_string(), batch.to_string());
    let mut arguments = vec!["--json", "bench", "--messages", &messages, "--clients", "4"];
    arguments.extend(["--batch", &batch]);
    arguments.extend_from_slice(extra);
    run_json(&arguments)
}

fn figure(report: &Json, name: &str) -> f64 {
    report[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no figure {name} in {report}"))
}

fn count(report: &Json, name: &str) -> u64 {
    report[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {name} in {report}"))
}

/// Both phases measured something, and the latencies are ordered.
fn assert_measured(report: &Json) {
    for name in [
        "publish_messages_per_second",
        "end_to_end_messages_per_second",
        "ack_latency_p50_ms",
        "ack_latency_p99_ms",
    ] {
        let value = figure(report, name);
        assert!(
            value.is_finite() && value > 0.0,
            "{name} = {value}: {report}"
        );
    }
    assert!(
        figure(report, "ack_latency_p50_ms") <= figure(report, "ack_latency_p99_ms"),
        "{report}"
    );
    assert_eq!(count(report, "messages"), MESSAGES, "{report}");
    // Present whether or not the active refused any call for a moment.
    count(report, "calls_retried");
}

/// The usage account names the processes in order (the active, the passives, the clients),
/// and the run cost them some CPU time (counted in clock ticks, so a process may show none
/// in a short phase, but not all of them together). Where the kernel accounts bytes written
/// per process, every node wrote in both phases: each holds the log and the store on its
/// own disk, passives included.
fn assert_usage_accounted(report: &Json, passives: usize) {
    let usage = report["usage"].as_array().expect("a usage account");
    let roles: Vec<&str> = usage
        .iter()
        .filter_map(|process| process["role"].as_str())
        .collect();
    let mut expected = vec!["active"];
    expected.extend(std::iter::repeat_n("passive", passives));
    expected.push("clients");
    assert_eq!(roles, expected, "{report}");
    let mut total = 0.0;
    for process in usage {
        for name in ["publish_us_per_message", "end_to_end_us_per_message"] {
            let value = figure(process, name);
            assert!(
                value.is_finite() && value >= 0.0,
                "{name} = {value}: {report}"
            );
            total += value;
        }
    }
    assert!(total > 0.0, "the run cost some CPU: {report}");
    if std::fs::read_to_string("/proc/self/io").is_err() {
        return;
    }
    for process in usage.iter().filter(|process| process["role"] != "clients") {
        for name in [
            "publish_bytes_written_per_message",
            "end_to_end_bytes_written_per_message",
        ] {
            let value = figure(process, name);
            assert!(value > 0.0, "{name} = {value}: {report}");
        }
    }
}

#[test]
fn bench_runs_on_a_fresh_node_each_time_and_reports_the_medians() {
    let (finished, output) = run_bench(MESSAGES, 20, &["--runs", "2"]);
    let runs = output["runs"].as_array().expect("a list of runs");
    assert_eq!(runs.len(), 2, "{}", finished.describe());
    runs.iter().for_each(assert_measured);
    let median = &output["median"];
    assert_measured(median);
    runs.iter()
        .chain([median])
        .for_each(|report| assert_usage_accounted(report, 0));
    for name in [
        "publish_messages_per_second",
        "end_to_end_messages_per_second",
    ] {
        let middle = (figure(&runs[0], name) + figure(&runs[1], name)) / 2.0;
        assert!(
            (figure(median, name) - middle).abs() < 1e-6,
            "the median {name} of two runs is their mean: {output}"
        );
    }
    assert_eq!(
        finished.stderr.matches("started a node at").count(),
        2,
        "each run starts a node of its own:\n{}",
        finished.describe()
    );
}

#[test]
fn bench_measures_the_active_of_a_replica_set_with_random_ids() {
    let (finished, report) = run_bench(MESSAGES, 20, &["--nodes", "3", "--random-ids"]);
    assert_measured(&report);
    assert_usage_accounted(&report, 2);
    assert_eq!(report["random_ids"], true, "{report}");
    assert!(
        finished.stderr.contains("started a 3-node replica set"),
        "{}",
        finished.describe()
    );
}

#[test]
fn bench_failover_loses_and_duplicates_nothing_across_two_kills() {
    let (finished, output) = run_bench(FAILOVER_MESSAGES, 10, &["--failover", "--runs", "2"]);
    let runs = output["runs"].as_array().expect("a list of runs");
    assert_eq!(runs.len(), 2, "{}", finished.describe());
    for run in runs {
        assert_eq!(count(run, "acknowledged"), FAILOVER_MESSAGES, "{run}");
        assert_eq!(count(run, "lost"), 0, "{run}");
        assert_eq!(count(run, "duplicated"), 0, "{run}");
        assert!(
            count(run, "new_term") > count(run, "old_term"),
            "a publish was acknowledged by a new active: {run}"
        );
        let unavailable = figure(run, "unavailable_ms");
        assert!(unavailable.is_finite() && unavailable > 0.0, "{run}");
    }
    let summary = &output["summary"];
    assert_eq!(
        count(summary, "acknowledged"),
        2 * FAILOVER_MESSAGES,
        "{summary}"
    );
    assert_eq!(count(summary, "lost"), 0, "{summary}");
    assert_eq!(count(summary, "duplicated"), 0, "{summary}");
    assert!(
        figure(summary, "unavailable_ms_max") >= figure(summary, "unavailable_ms_median"),
        "{summary}"
    );
}

#[test]
fn the_demo_delivers_every_file_once_through_a_failover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo_dir = dir.path().join("demo");
    let demo_dir = demo_dir.to_str().expect("temp paths are UTF-8");
    let files = DEMO_FILES.to_string();
    let (finished, report) = run_json(&[
        "--json", "demo", "--dir", demo_dir, "--files", &files, "--rate", "30", "--kills", "1",
    ]);
    assert_eq!(report["ok"], true, "{}", finished.describe());
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(count(&report, "lost"), 0, "{report}");
    let failovers = report["failovers"].as_array().expect("failovers");
    assert_eq!(failovers.len(), 1, "one kill, one failover: {report}");
    assert_eq!(
        count(&report, "archived"),
        count(&report, "archive_expected"),
        "{report}"
    );
    assert_eq!(
        count(&report, "partner_orders"),
        count(&report, "partner_expected"),
        "{report}"
    );
    assert_eq!(
        count(&report, "archived") + count(&report, "partner_orders"),
        DEMO_FILES,
        "{report}"
    );
}
