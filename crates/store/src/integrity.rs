//! Integrity check of a data directory: SQLite's own `integrity_check`, then Tandem's
//! invariants (counters match rows, every instance has its message, no orphan messages,
//! every stored message has its body and every body its message, id counters ahead of every
//! id in use).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::StoreError;
use crate::loader::load_machine;
use crate::schema;

/// What the check found; `problems` is empty for a healthy store.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IntegrityReport {
    pub messages: u64,
    pub instances: u64,
    pub tracking_events: u64,
    pub problems: Vec<String>,
}

impl IntegrityReport {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the store in `data_dir`. Safe while a node runs (it reads a consistent snapshot).
pub fn check(data_dir: &Path) -> Result<IntegrityReport, StoreError> {
    let path = data_dir.join(schema::DATABASE_FILE);
    if !path.exists() {
        return Err(StoreError::Missing(path));
    }
    let mut connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.execute_batch("PRAGMA busy_timeout = 5000;")?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version != schema::FORMAT_VERSION {
        let hint = if schema::is_upgradable(version) {
            "; starting a node on it upgrades it"
        } else {
            ""
        };
        return Err(StoreError::Format(format!(
            "{} has format version {version}; this binary reads {}{hint}",
            path.display(),
            schema::FORMAT_VERSION
        )));
    }
    let transaction = connection.transaction()?;
    let mut report = IntegrityReport::default();
    let sqlite_verdict: String =
        transaction.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if sqlite_verdict != "ok" {
        report
            .problems
            .push(format!("SQLite integrity_check: {sqlite_verdict}"));
    }
    report.messages = count(
        &transaction,
        "SELECT COUNT(*) FROM messages WHERE removed = 0",
    )?;
    report.instances = count(&transaction, "SELECT COUNT(*) FROM instances")?;
    report.tracking_events = count(&transaction, "SELECT COUNT(*) FROM tracking")?;
    check_invariants(&transaction, &mut report)?;
    Ok(report)
}

fn check_invariants(
    connection: &Connection,
    report: &mut IntegrityReport,
) -> Result<(), StoreError> {
    let machine = match load_machine(connection) {
        Ok(machine) => machine,
        Err(error) => {
            report
                .problems
                .push(format!("state machine does not load: {error}"));
            return Ok(());
        }
    };
    let state = machine.state();
    if state.message_count != report.messages {
        report.problems.push(format!(
            "message counter says {} but {} messages are stored",
            state.message_count, report.messages
        ));
    }
    let orphans = [
        (
            "instances whose message is missing",
            "SELECT COUNT(*) FROM instances \
             WHERE message_seq NOT IN (SELECT seq FROM messages WHERE removed = 0)",
        ),
        (
            "messages with no instance",
            "SELECT COUNT(*) FROM messages \
             WHERE removed = 0 AND seq NOT IN (SELECT message_seq FROM instances)",
        ),
        (
            "messages without their body",
            "SELECT COUNT(*) FROM messages \
             WHERE removed = 0 AND seq NOT IN (SELECT seq FROM message_payloads)",
        ),
        (
            "bodies of no stored message",
            "SELECT COUNT(*) FROM message_payloads \
             WHERE seq NOT IN (SELECT seq FROM messages WHERE removed = 0)",
        ),
    ];
    for (what, sql) in orphans {
        expect_zero(connection, report, what, sql)?;
    }
    let ids = [
        (
            "message seq",
            "SELECT COALESCE(MAX(seq), 0) FROM messages",
            state.next_message_seq,
        ),
        (
            "instance id",
            "SELECT COALESCE(MAX(id), 0) FROM instances",
            state.next_instance_id,
        ),
        (
            "lease token",
            "SELECT COALESCE(MAX(lease_token), 0) FROM instances",
            state.next_lease_token,
        ),
    ];
    for (name, sql, next) in ids {
        let highest = count(connection, sql)?;
        if highest >= next {
            report
                .problems
                .push(format!("{name} {highest} is in use but the next is {next}"));
        }
    }
    for host in machine.hosts() {
        let counted = |state: i64| -> Result<u64, StoreError> {
            let sql = format!(
                "SELECT COUNT(*) FROM instances WHERE host_id = {} AND state = {state}",
                host.id
            );
            count(connection, &sql)
        };
        let actual = [counted(0)?, counted(1)?, counted(2)?, counted(3)?];
        let recorded = [
            host.depth.ready,
            host.depth.delayed,
            host.depth.leased,
            host.depth.suspended,
        ];
        if actual != recorded {
            report.problems.push(format!(
                "host '{}' depth counters {recorded:?} (ready, delayed, leased, suspended) \
                 disagree with its instances {actual:?}",
                host.name
            ));
        }
    }
    Ok(())
}

fn expect_zero(
    connection: &Connection,
    report: &mut IntegrityReport,
    what: &str,
    sql: &str,
) -> Result<(), StoreError> {
    let found = count(connection, sql)?;
    if found != 0 {
        report.problems.push(format!("{found} {what}"));
    }
    Ok(())
}

fn count(connection: &Connection, sql: &str) -> Result<u64, StoreError> {
    Ok(connection.query_row(sql, [], |row| row.get::<_, i64>(0))? as u64)
}
