//! [`Tables`] on a SQLite connection inside an open transaction.
//!
//! Every statement is prepared once per connection (`prepare_cached`), and taken from that
//! cache once per batch: the batch keeps the statements it used, found again by the address
//! of their SQL text, so that the thousands of statements a batch runs do not each hash
//! their SQL for the cache. A SQLite error is remembered, the failing call answers empty,
//! and the committer rolls the batch back.
//!
//! A statement's `LIMIT` takes its parameter behind a unary plus (`LIMIT +?2`). SQLite's
//! planner may use the value of a bare `LIMIT ?2`, so it marks the statement to be compiled
//! again whenever that parameter is bound, which rusqlite does on every run: each lease
//! parsed and planned its query anew. The plus makes the limit an expression the planner
//! does not look into; the plans are the same (see the tests).

use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, params};
use tandem_core::host::Host;
use tandem_core::ids::{HostId, InstanceId, MessageId, MessageSeq, SubscriptionId};
use tandem_core::instance::{Instance, InstanceState};
use tandem_core::machine::MachineState;
use tandem_core::message::StoredMessage;
use tandem_core::subscription::Subscription;
use tandem_core::tables::Tables;
use tandem_core::tracking::TrackingEvent;

use crate::batch::ClusterEvent;
use crate::context_codec;

/// The instance columns in `instance_from_row` order, as a literal so that statements can be
/// built at compile time (the committer runs them thousands of times a second).
macro_rules! instance_columns {
    () => {
        "id, message_seq, message_id, subscription_id, host_id, priority, state, attempts, \
         visible_at_ms, lease_token, lease_holder, lease_expires_at_ms, last_error, enqueued_at_ms"
    };
}

macro_rules! select_instances {
    ($condition:literal $(,)?) => {
        concat!(
            "SELECT ",
            instance_columns!(),
            " FROM instances ",
            $condition
        )
    };
}

/// A host's ready instances, in delivery order.
const READY_INSTANCES: &str = select_instances!(
    "INDEXED BY instances_ready WHERE state = 0 AND host_id = ?1 \
     ORDER BY priority, id LIMIT +?2",
);
/// Leased instances whose lease ran out by a time, oldest first.
const EXPIRED_LEASES: &str = select_instances!(
    "WHERE state = 2 AND lease_expires_at_ms <= ?1 \
     ORDER BY lease_expires_at_ms, id LIMIT +?2",
);
/// Delayed instances due by a time, oldest first.
const DUE_RETRIES: &str = select_instances!(
    "WHERE state = 1 AND visible_at_ms <= ?1 ORDER BY visible_at_ms, id LIMIT +?2",
);
/// Forgets the rows of messages deleted before a time, oldest first.
const FORGET_DELETED_MESSAGES: &str = "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
     INDEXED BY messages_removed WHERE removed = 1 AND removed_at_ms < ?1 \
     ORDER BY removed_at_ms, seq LIMIT +?2)";
/// The oldest tracking events.
const OLDEST_TRACKING_EVENTS: &str = "SELECT id, at_ms FROM tracking ORDER BY id LIMIT +?1";

macro_rules! select_messages {
    ($condition:literal $(,)?) => {
        concat!(
            "SELECT m.seq, m.message_id, p.body, p.context, m.received_at_ms, m.publisher \
             FROM messages AS m JOIN message_payloads AS p ON p.seq = m.seq ",
            $condition
        )
    };
}

/// Statements the committer prepares once and keeps (rusqlite's default keeps 16).
pub const STATEMENT_CACHE_CAPACITY: usize = 64;

pub struct SqliteTables<'connection> {
    connection: &'connection Connection,
    /// The statements this batch used, by their SQL text (compared by address).
    statements: Vec<(&'static str, CachedStatement<'connection>)>,
    failure: Option<rusqlite::Error>,
}

impl<'connection> SqliteTables<'connection> {
    pub fn new(connection: &'connection Connection) -> SqliteTables<'connection> {
        SqliteTables {
            connection,
            statements: Vec::new(),
            failure: None,
        }
    }

    /// True once a statement has failed: the batch will be rolled back.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The first storage error seen, if any: the batch must then be rolled back.
    pub fn take_failure(&mut self) -> Option<rusqlite::Error> {
        self.failure.take()
    }

    fn record<T: Default>(&mut self, result: rusqlite::Result<T>) -> T {
        match result {
            Ok(value) => value,
            Err(error) => {
                self.failure.get_or_insert(error);
                T::default()
            }
        }
    }

    /// The prepared statement for `sql`, kept for the rest of the batch.
    fn statement(
        &mut self,
        sql: &'static str,
    ) -> rusqlite::Result<&mut CachedStatement<'connection>> {
        let kept = self
            .statements
            .iter()
            .position(|(text, _)| std::ptr::eq(*text, sql));
        let position = match kept {
            Some(position) => position,
            None => {
                let statement = self.connection.prepare_cached(sql)?;
                self.statements.push((sql, statement));
                self.statements.len() - 1
            }
        };
        Ok(&mut self.statements[position].1)
    }

    fn execute(&mut self, sql: &'static str, parameters: impl rusqlite::Params) -> u64 {
        let result = self
            .statement(sql)
            .and_then(|statement| statement.execute(parameters))
            .map(|rows| rows as u64);
        self.record(result)
    }

    /// Saves the replicated log position the batch brings the store to (see [`crate::Batch`]).
    pub fn save_position(&mut self, position: &[u8]) {
        self.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('replica_position', ?1)",
            [position],
        );
    }

    pub fn save_cluster_event(&mut self, event: &ClusterEvent) {
        self.execute(
            "INSERT INTO cluster_events (at_ms, record) VALUES (?1, ?2)",
            params![event.at_ms, event.record],
        );
    }

    fn instances(&mut self, sql: &'static str, parameters: impl rusqlite::Params) -> Vec<Instance> {
        let result = self.statement(sql).and_then(|statement| {
            statement
                .query_map(parameters, instance_from_row)?
                .collect::<rusqlite::Result<_>>()
        });
        self.record(result)
    }
}

pub fn state_code(state: InstanceState) -> i64 {
    match state {
        InstanceState::Ready => 0,
        InstanceState::Delayed => 1,
        InstanceState::Leased => 2,
        InstanceState::Suspended => 3,
    }
}

fn state_from_code(code: i64) -> rusqlite::Result<InstanceState> {
    match code {
        0 => Ok(InstanceState::Ready),
        1 => Ok(InstanceState::Delayed),
        2 => Ok(InstanceState::Leased),
        3 => Ok(InstanceState::Suspended),
        _ => Err(rusqlite::Error::IntegralValueOutOfRange(6, code)),
    }
}

pub fn instance_select(condition: &str) -> String {
    format!("SELECT {} FROM instances {condition}", instance_columns!())
}

pub fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<Instance> {
    Ok(Instance {
        id: row.get(0)?,
        message_seq: row.get(1)?,
        message_id: MessageId(row.get(2)?),
        subscription: row.get(3)?,
        host: row.get(4)?,
        priority: row.get(5)?,
        state: state_from_code(row.get(6)?)?,
        attempts: row.get(7)?,
        visible_at_ms: row.get(8)?,
        lease_token: row.get(9)?,
        lease_holder: row.get(10)?,
        lease_expires_at_ms: row.get(11)?,
        last_error: row.get(12)?,
        enqueued_at_ms: row.get(13)?,
    })
}

pub fn message_from_row(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let stored = row.get_ref(3)?;
    let context = context_codec::decode_stored(stored).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(3, stored.data_type(), error.into())
    })?;
    Ok(StoredMessage {
        seq: row.get(0)?,
        message_id: MessageId(row.get(1)?),
        body: row.get(2)?,
        context,
        received_at_ms: row.get(4)?,
        publisher: row.get(5)?,
    })
}

pub const MESSAGE_SELECT: &str = select_messages!("");

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("core types always serialize to JSON")
}

impl Tables for SqliteTables<'_> {
    fn save_machine_state(&mut self, state: &MachineState) {
        self.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('machine_state', ?1)",
            [to_json(state)],
        );
    }

    fn save_host(&mut self, host: &Host) {
        let depth = host.depth;
        self.execute(
            "INSERT INTO hosts (id, name, created_at_ms, ready, delayed, leased, suspended) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET \
             ready = excluded.ready, delayed = excluded.delayed, leased = excluded.leased, \
             suspended = excluded.suspended",
            params![
                host.id,
                host.name,
                host.created_at_ms,
                depth.ready,
                depth.delayed,
                depth.leased,
                depth.suspended
            ],
        );
    }

    fn save_subscription(&mut self, subscription: &Subscription) {
        let retry = subscription.retry;
        let backup = subscription.backup;
        self.execute(
            "INSERT OR REPLACE INTO subscriptions (id, name, host_id, filter, priority, \
             retry_count, retry_interval_ms, exponential_backoff, created_at_ms, \
             backup_retry_count, backup_retry_interval_ms, backup_exponential_backoff) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                subscription.id,
                subscription.name,
                subscription.host,
                subscription.filter,
                subscription.priority,
                retry.retry_count,
                retry.retry_interval_ms,
                retry.exponential_backoff,
                subscription.created_at_ms,
                backup.map(|backup| backup.retry_count),
                backup.map(|backup| backup.retry_interval_ms),
                backup.map(|backup| backup.exponential_backoff)
            ],
        );
    }

    fn delete_subscription(&mut self, id: SubscriptionId) {
        self.execute("DELETE FROM subscriptions WHERE id = ?1", [id]);
    }

    /// A message's row is its dedupe entry, while the message is stored and after it is
    /// removed (see `delete_message`).
    fn find_dedupe(&mut self, message_id: &MessageId) -> Option<i64> {
        let result = self
            .statement("SELECT MAX(received_at_ms) FROM messages WHERE message_id = ?1")
            .and_then(|statement| {
                statement.query_row([message_id.as_str()], |row| row.get::<_, Option<i64>>(0))
            });
        self.record(result)
    }

    fn forget_deleted_messages_before(&mut self, before_ms: i64, limit: usize) -> u64 {
        self.execute(FORGET_DELETED_MESSAGES, params![before_ms, limit as i64])
    }

    fn insert_message(&mut self, message: &StoredMessage) {
        self.execute(
            "INSERT INTO messages (seq, message_id, received_at_ms, publisher, removed_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?3)",
            params![
                message.seq,
                message.message_id.as_str(),
                message.received_at_ms,
                message.publisher
            ],
        );
        self.execute(
            "INSERT INTO message_payloads (seq, body, context) VALUES (?1, ?2, ?3)",
            params![
                message.seq,
                message.body,
                context_codec::encode(&message.context)
            ],
        );
    }

    fn load_message(&mut self, seq: MessageSeq) -> Option<StoredMessage> {
        let result = self
            .statement(select_messages!("WHERE m.seq = ?1"))
            .and_then(|statement| statement.query_row([seq], message_from_row).optional());
        self.record(result)
    }

    /// Deletes the body and context, and keeps the message's row, marked removed at
    /// `deleted_at_ms`, as its dedupe entry and the way from its id to its history. The row
    /// keeps its size (SQLite stores 0 and 1 in no bytes, and the removal time replaces the
    /// receipt time, both six-byte integers), so it is rewritten in place, and its
    /// `messages_by_message_id` entry stays: far cheaper than deleting that entry and
    /// inserting the id into a table of its own. The payload rows of messages completed
    /// together free whole pages, which SQLite never writes again.
    fn delete_message(&mut self, seq: MessageSeq, deleted_at_ms: i64) {
        self.execute(
            "UPDATE messages SET removed = 1, removed_at_ms = ?2 WHERE seq = ?1",
            [seq as i64, deleted_at_ms],
        );
        self.execute("DELETE FROM message_payloads WHERE seq = ?1", [seq]);
    }

    fn insert_instance(&mut self, instance: &Instance) {
        self.execute(
            concat!(
                "INSERT INTO instances (",
                instance_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            instance_parameters(instance),
        );
    }

    /// Sets only the delivery-state columns: SQLite then leaves alone every index whose
    /// columns are not set (`instances_by_message` on a lease, for one), instead of deleting
    /// and re-inserting the same key.
    fn update_instance(&mut self, instance: &Instance) {
        self.execute(
            "UPDATE instances SET state = ?2, attempts = ?3, visible_at_ms = ?4, \
             lease_token = ?5, lease_holder = ?6, lease_expires_at_ms = ?7, last_error = ?8, \
             enqueued_at_ms = ?9 WHERE id = ?1",
            params![
                instance.id,
                state_code(instance.state),
                instance.attempts,
                instance.visible_at_ms,
                instance.lease_token,
                instance.lease_holder,
                instance.lease_expires_at_ms,
                instance.last_error,
                instance.enqueued_at_ms
            ],
        );
    }

    fn delete_instance(&mut self, id: InstanceId) {
        self.execute("DELETE FROM instances WHERE id = ?1", [id]);
    }

    fn load_instance(&mut self, id: InstanceId) -> Option<Instance> {
        self.instances(select_instances!("WHERE id = ?1"), [id])
            .pop()
    }

    fn ready_instances(&mut self, host: HostId, limit: usize) -> Vec<Instance> {
        self.instances(READY_INSTANCES, params![host, limit as i64])
    }

    fn expired_leases(&mut self, now_ms: i64, limit: usize) -> Vec<Instance> {
        self.instances(EXPIRED_LEASES, params![now_ms, limit as i64])
    }

    fn due_retries(&mut self, now_ms: i64, limit: usize) -> Vec<Instance> {
        self.instances(DUE_RETRIES, params![now_ms, limit as i64])
    }

    fn count_instances_of_message(&mut self, seq: MessageSeq) -> u64 {
        let result = self
            .statement("SELECT COUNT(*) FROM instances WHERE message_seq = ?1")
            .and_then(|statement| statement.query_row([seq], |row| row.get(0)));
        self.record(result)
    }

    fn append_tracking(&mut self, message_seq: MessageSeq, event: &TrackingEvent) {
        self.execute(
            "INSERT INTO tracking (message_seq, message_id, instance_id, at_ms, kind, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                message_seq,
                event.message_id.as_str(),
                event.instance,
                event.at_ms,
                event.kind.as_str(),
                event.detail
            ],
        );
    }

    /// Tracking ids grow with time (the machine's clock never runs backwards), so the
    /// events to purge are a prefix in id order: read from the oldest and stop at the first
    /// event that is recent enough. The cost is the number purged, not the table's size.
    fn purge_tracking_before(&mut self, before_ms: i64, limit: usize) -> u64 {
        let last_old_id = self
            .statement(OLDEST_TRACKING_EVENTS)
            .and_then(|statement| {
                let mut rows = statement.query([limit as i64])?;
                let mut last_old_id = None;
                while let Some(row) = rows.next()? {
                    if row.get::<_, i64>(1)? >= before_ms {
                        break;
                    }
                    last_old_id = Some(row.get::<_, i64>(0)?);
                }
                Ok(last_old_id)
            });
        match self.record(last_old_id) {
            Some(last_old_id) => self.execute("DELETE FROM tracking WHERE id <= ?1", [last_old_id]),
            None => 0,
        }
    }

    fn oldest_tracking_at(&mut self) -> Option<i64> {
        let result = self
            .statement("SELECT at_ms FROM tracking ORDER BY id LIMIT 1")
            .and_then(|statement| statement.query_row([], |row| row.get(0)).optional());
        self.record(result)
    }
}

#[allow(clippy::type_complexity)]
fn instance_parameters(
    instance: &Instance,
) -> (
    u64,
    u64,
    &str,
    Option<u64>,
    Option<u64>,
    u8,
    i64,
    u32,
    i64,
    u64,
    &str,
    i64,
    Option<&str>,
    i64,
) {
    (
        instance.id,
        instance.message_seq,
        instance.message_id.as_str(),
        instance.subscription,
        instance.host,
        instance.priority,
        state_code(instance.state),
        instance.attempts,
        instance.visible_at_ms,
        instance.lease_token,
        instance.lease_holder.as_str(),
        instance.lease_expires_at_ms,
        instance.last_error.as_deref(),
        instance.enqueued_at_ms,
    )
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// The queue sweeps and a lease run their statements many times a second with a new
    /// limit or time each run: none may be compiled again for it.
    #[test]
    fn statements_with_a_limit_are_not_compiled_again_on_every_run() {
        let mut connection = Connection::open_in_memory().expect("in-memory database");
        crate::schema::create_or_check(&mut connection).expect("schema");
        let transaction = connection.transaction().expect("a transaction");
        {
            let mut tables = SqliteTables::new(&transaction);
            for run in 1..=3_i64 {
                tables.ready_instances(run as u64, run as usize);
                tables.expired_leases(run, run as usize);
                tables.due_retries(run, run as usize);
                tables.forget_deleted_messages_before(run, run as usize);
                tables.purge_tracking_before(run, run as usize);
            }
            assert!(tables.take_failure().is_none());
        }
        for sql in [
            READY_INSTANCES,
            EXPIRED_LEASES,
            DUE_RETRIES,
            FORGET_DELETED_MESSAGES,
            OLDEST_TRACKING_EVENTS,
        ] {
            let statement = transaction.prepare_cached(sql).expect("a cached statement");
            assert_eq!(statement.get_status(StatementStatus::Run), 3, "{sql}");
            assert_eq!(
                statement.get_status(StatementStatus::RePrepare),
                0,
                "compiled again on its runs: {sql}"
            );
        }
    }

    /// The plus in front of a limit's parameter keeps each sweep on its partial index, in
    /// the index's order (no sort).
    #[test]
    fn the_sweeps_and_leases_search_their_partial_indexes_without_sorting() {
        let mut connection = Connection::open_in_memory().expect("in-memory database");
        crate::schema::create_or_check(&mut connection).expect("schema");
        for (sql, index) in [
            (READY_INSTANCES, "instances_ready"),
            (EXPIRED_LEASES, "instances_leased"),
            (DUE_RETRIES, "instances_delayed"),
            (FORGET_DELETED_MESSAGES, "messages_removed"),
        ] {
            let mut statement = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("a plan");
            let plan = statement
                .query_map([1, 2], |row| row.get::<_, String>(3))
                .expect("plan")
                .collect::<rusqlite::Result<Vec<_>>>()
                .expect("plan steps")
                .join("\n");
            assert!(plan.contains(&format!("INDEX {index} (")), "{sql}:\n{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}:\n{plan}");
        }
    }
}
