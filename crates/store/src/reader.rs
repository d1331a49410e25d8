//! Read-only queries for operators (suspended lists, message history). They run on their
//! own connection, so they never wait for, or delay, the committer.

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use tandem_core::ids::{HostId, InstanceId, MessageId};
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
        let sql = instance_select(&format!(
            "WHERE {} ORDER BY id LIMIT ?2",
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
             ORDER BY id DESC LIMIT ?1) ORDER BY id",
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

    fn events(&self, message_id: &str) -> Result<Vec<TrackingEvent>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT message_id, instance_id, at_ms, kind, detail FROM tracking \
             WHERE message_id = ?1 ORDER BY id LIMIT {}",
            limits::MAX_LIST_ROWS
        ))?;
        let events = statement
            .query_map([message_id], |row| {
                let kind: String = row.get(3)?;
                Ok(TrackingEvent {
                    message_id: MessageId(row.get(0)?),
                    instance: row.get(1)?,
                    at_ms: row.get(2)?,
                    kind: TrackingKind::parse(&kind).unwrap_or(TrackingKind::Received),
                    detail: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(events)
    }
}
