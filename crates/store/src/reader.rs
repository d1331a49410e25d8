//! Read-only queries for operators (suspended lists, message history). They run on their
//! own connection, so they never wait for, or delay, the committer.

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use tandem_core::ids::{HostId, InstanceId, MessageId, MessageSeq};
use tandem_core::instance::{Instance, InstanceState};
use tandem_core::limits;
use tandem_core::tracking::{TrackingEvent, TrackingKind};

use crate::StoreError;
use crate::batch::ClusterEvent;
use crate::sqlite_tables::{
    MESSAGE_SELECT, instance_from_row, instance_select, message_from_row, state_code,
};

/// Which instances to list.
#[derive(Clone, Debug, Default)]
pub struct InstanceQuery {
    pub host: Option<HostId>,
    pub state: Option<InstanceState>,
    /// Only instances with a greater id (paging).
    pub after: InstanceId,
    pub limit: usize,
}

/// Everything the store knows about one message id.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MessageHistory {
    pub messages: Vec<MessageSummary>,
    pub instances: Vec<Instance>,
    pub events: Vec<TrackingEvent>,
}

/// A stored message without its body.
#[derive(Clone, Debug, Serialize)]
pub struct MessageSummary {
    pub message_id: MessageId,
    pub body_bytes: usize,
    pub context: tandem_core::Context,
    pub received_at_ms: i64,
    pub publisher: String,
}

pub struct Reader {
    connection: Connection,
}

impl Reader {
    pub fn open(path: &std::path::Path) -> Result<Reader, StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16384;")?;
        Ok(Reader { connection })
    }

    pub fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, StoreError> {
        let limit = query.limit.clamp(1, limits::MAX_LIST_ROWS) as i64;
        // The state is written into the SQL as a literal so that SQLite can use the partial
        // index of that state (e.g. a host's suspended queue).
        let mut conditions = vec!["id > ?1".to_string()];
        if let Some(state) = query.state {
            conditions.push(format!("state = {}", state_code(state)));
        }
        if query.host.is_some() {
            conditions.push("host_id = ?3".to_string());
        }
        // `+?2`: see `sqlite_tables` on limits.
        let sql = instance_select(&format!(
            "WHERE {} ORDER BY id LIMIT +?2",
            conditions.join(" AND ")
        ));
        let mut statement = self.connection.prepare_cached(&sql)?;
        let mut parameters: Vec<i64> = vec![query.after as i64, limit];
        if let Some(host) = query.host {
            parameters.push(host as i64);
        }
        let rows = statement
            .query_map(rusqlite::params_from_iter(parameters), instance_from_row)?
            .collect::<rusqlite::Result<Vec<Instance>>>()?;
        Ok(rows)
    }

    pub fn message_history(&self, message_id: &str) -> Result<MessageHistory, StoreError> {
        let mut messages = self.connection.prepare_cached(&format!(
            "{MESSAGE_SELECT} WHERE m.message_id = ?1 ORDER BY m.seq LIMIT {}",
            limits::MAX_LIST_ROWS
        ))?;
        let messages = messages
            .query_map([message_id], message_from_row)?
            .map(|row| {
                row.map(|message| MessageSummary {
                    message_id: message.message_id,
                    body_bytes: message.body.len(),
                    context: message.context,
                    received_at_ms: message.received_at_ms,
                    publisher: message.publisher,
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut instances = self.connection.prepare_cached(&instance_select(&format!(
            "WHERE message_seq IN (SELECT seq FROM messages WHERE message_id = ?1) \
             ORDER BY id LIMIT {}",
            limits::MAX_LIST_ROWS
        )))?;
        let instances = instances
            .query_map([message_id], instance_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(MessageHistory {
            messages,
            instances,
            events: self.events(message_id)?,
        })
    }

    pub fn cluster_events(&self, limit: usize) -> Result<Vec<ClusterEvent>, StoreError> {
        let limit = limit.clamp(1, limits::MAX_LIST_ROWS) as i64;
        let mut statement = self.connection.prepare_cached(
            "SELECT at_ms, record FROM (SELECT id, at_ms, record FROM cluster_events \
             ORDER BY id DESC LIMIT +?1) ORDER BY id",
        )?;
        let events = statement
            .query_map([limit], |row| {
                Ok(ClusterEvent {
                    at_ms: row.get(0)?,
                    record: row.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(events)
    }

    /// The bytes a copy of the store would hold: its pages in use, free pages left out
    /// (what a snapshot writes).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let pragma = |name: &str| -> Result<u64, StoreError> {
            let value: i64 = self
                .connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?;
            Ok(value.max(0) as u64)
        };
        let used_pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
        Ok(used_pages * pragma("page_size")?)
    }

    /// When each of `message_ids` was last published (what dedupe compares with its window):
    /// the latest receipt among the stored messages with that id and the entries their
    /// deletions left; `None` for an id never seen or forgotten.
    pub fn last_published_at(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT MAX(received_at_ms) FROM messages WHERE message_id = ?1")?;
        message_ids
            .iter()
            .map(|message_id| Ok(statement.query_row([message_id], |row| row.get(0))?))
            .collect()
    }

    pub fn message_body(&self, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT p.body FROM messages AS m JOIN message_payloads AS p ON p.seq = m.seq \
             WHERE m.message_id = ?1 ORDER BY m.seq DESC LIMIT 1",
        )?;
        let mut rows = statement.query([message_id])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// The events of every message published under `message_id`, oldest first. Events are
    /// indexed by their message's seq, and the message's row (kept after its deletion while
    /// its history is) leads from the id to the seq. Events recorded before format 6 have no
    /// seq and are indexed by message id.
    fn events(&self, message_id: &str) -> Result<Vec<TrackingEvent>, StoreError> {
        let mut events = Vec::new();
        let mut legacy = self.connection.prepare_cached(&legacy_events_sql())?;
        for row in legacy.query_map([message_id], tracking_row)? {
            events.push(row?);
        }
        let mut seqs = self.connection.prepare_cached(&format!(
            "SELECT seq FROM messages WHERE message_id = ?1 ORDER BY seq LIMIT {}",
            limits::MAX_LIST_ROWS
        ))?;
        let seqs = seqs
            .query_map([message_id], |row| row.get::<_, MessageSeq>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut of_message = self.connection.prepare_cached(&events_of_message_sql())?;
        for seq in seqs {
            for row in of_message.query_map([seq], tracking_row)? {
                events.push(row?);
            }
        }
        events.sort_by_key(|(id, _)| *id);
        events.truncate(limits::MAX_LIST_ROWS);
        Ok(events.into_iter().map(|(_, event)| event).collect())
    }
}

/// The events of message id `?1` recorded before format 6.
fn legacy_events_sql() -> String {
    format!(
        "SELECT {TRACKING_COLUMNS} FROM tracking WHERE message_id = ?1 \
         AND message_seq IS NULL ORDER BY id LIMIT {}",
        limits::MAX_LIST_ROWS
    )
}

/// The events of the message with seq `?1`.
fn events_of_message_sql() -> String {
    format!(
        "SELECT {TRACKING_COLUMNS} FROM tracking WHERE message_seq = ?1 ORDER BY id LIMIT {}",
        limits::MAX_LIST_ROWS
    )
}

/// The columns [`tracking_row`] reads.
const TRACKING_COLUMNS: &str = "id, message_id, instance_id, at_ms, kind, detail";

/// A tracking row: its id and the event.
fn tracking_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, TrackingEvent)> {
    let kind: String = row.get(4)?;
    Ok((
        row.get(0)?,
        TrackingEvent {
            message_id: MessageId(row.get(1)?),
            instance: row.get(2)?,
            at_ms: row.get(3)?,
            kind: TrackingKind::parse(&kind).unwrap_or(TrackingKind::Received),
            detail: row.get(5)?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `sql`, one line per step.
    fn plan(connection: &Connection, sql: &str) -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("a query SQLite can plan");
        let steps = statement
            .query_map([1], |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan steps");
        steps.join("\n")
    }

    /// A history lookup that stopped matching its (partial) index would read every tracking
    /// event of the retention period.
    #[test]
    fn history_lookups_search_the_tracking_indexes() {
        let mut connection = Connection::open_in_memory().expect("in-memory database");
        crate::schema::create_or_check(&mut connection).expect("schema");
        let legacy = plan(&connection, &legacy_events_sql());
        assert!(
            legacy.contains("USING INDEX tracking_legacy_by_message_id (message_id=?)"),
            "{legacy}"
        );
        let of_message = plan(&connection, &events_of_message_sql());
        assert!(
            of_message.contains("USING INDEX tracking_by_message_seq (message_seq=?)"),
            "{of_message}"
        );
    }
}
