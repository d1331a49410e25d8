//! The integrity check finds the specific problem when a closed store is tampered with.

mod common;

use std::path::Path;

use tandem_core::command::Command;
use tandem_store::integrity::{self, IntegrityReport};

use common::{create_catalog, lease, leased, open, publish, runtime};

/// A closed store with three messages: `m0` (kind a: one instance on each host, the h0 one
/// leased), `m1` (kind b: one instance on h0), `m2` (kind a).
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let handle = store.handle();
    runtime().block_on(async {
        create_catalog(&handle).await;
        for (id, kind) in [("m0", "a"), ("m1", "b"), ("m2", "a")] {
            let outcome = handle.execute(publish(id, kind)).await;
            assert!(outcome.is_ok(), "publish {id}: {outcome:?}");
        }
        assert_eq!(leased(handle.execute(lease("h1", 1)).await).len(), 1);
    });
    store.close();
    dir
}

/// Runs `sql` (which must change exactly one row) on a fresh [`populated`] store, and checks
/// it.
fn check_tampered(sql: &str) -> IntegrityReport {
    let dir = populated();
    let changed = common::database(dir.path())
        .execute(sql, [])
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    assert_eq!(changed, 1, "{sql} should change exactly one row");
    check(dir.path())
}

fn check(dir: &Path) -> IntegrityReport {
    integrity::check(dir).expect("the integrity check runs")
}

fn assert_reports(report: &IntegrityReport, expected: &[&str]) {
    for text in expected {
        assert!(
            report.problems.iter().any(|problem| problem.contains(text)),
            "expected a problem mentioning {text:?}, got {:?}",
            report.problems
        );
    }
}

#[test]
fn an_untouched_store_is_healthy() {
    let dir = populated();
    let report = check(dir.path());
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
    assert_eq!((report.messages, report.instances), (3, 5));
    assert!(report.tracking_events > 0);
}

#[test]
fn a_deleted_instance_row_shows_as_wrong_depth_and_an_orphan_message() {
    // m1's only instance, ready on h0.
    let report = check_tampered("DELETE FROM instances WHERE message_id = 'm1'");
    assert_reports(
        &report,
        &[
            "host 'h0' depth counters [3, 0, 0, 0]",
            "disagree with its instances [2, 0, 0, 0]",
            "1 messages with no instance",
        ],
    );
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

#[test]
fn a_changed_host_depth_is_reported_for_that_host() {
    let report = check_tampered("UPDATE hosts SET leased = 7 WHERE name = 'h1'");
    assert_reports(&report, &["host 'h1' depth counters [1, 0, 7, 0]"]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
}

#[test]
fn a_deleted_message_row_shows_as_missing_message_and_wrong_counter() {
    let report = check_tampered("DELETE FROM messages WHERE message_id = 'm1'");
    assert_reports(
        &report,
        &[
            "message counter says 3 but 2 messages are stored",
            "1 instances whose message is missing",
        ],
    );
}

#[test]
fn a_message_without_its_body_is_reported() {
    let report = check_tampered(
        "DELETE FROM message_payloads WHERE seq = \
         (SELECT seq FROM messages WHERE message_id = 'm1')",
    );
    assert_reports(&report, &["1 messages without their body"]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
}

#[test]
fn a_body_whose_message_was_removed_is_reported() {
    let report = check_tampered("UPDATE messages SET removed = 1 WHERE message_id = 'm1'");
    assert_reports(
        &report,
        &[
            "message counter says 3 but 2 messages are stored",
            "1 instances whose message is missing",
            "1 bodies of no stored message",
        ],
    );
}

#[test]
fn a_lease_token_beyond_the_counter_is_reported() {
    let report = check_tampered("UPDATE instances SET lease_token = 1000 WHERE state = 2");
    assert_reports(&report, &["lease token 1000 is in use but the next is 2"]);
}

#[test]
fn an_unreadable_machine_state_is_reported() {
    let report = check_tampered("UPDATE meta SET value = '{' WHERE key = 'machine_state'");
    assert_reports(&report, &["state machine does not load"]);
}

#[test]
fn the_check_runs_while_the_store_is_open() {
    let dir = populated();
    let store = open(dir.path());
    let handle = store.handle();
    let outcome = runtime().block_on(handle.execute(Command::Tick));
    assert!(outcome.is_ok(), "{outcome:?}");
    let report = check(dir.path());
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
    store.close();
}
