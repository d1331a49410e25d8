//! Rebuilds the in-memory state machine from the tables on disk.

use rusqlite::{Connection, OptionalExtension};
use tandem_core::MessageBox;
use tandem_core::host::{Host, QueueDepth};
use tandem_core::machine::MachineState;
use tandem_core::subscription::{RetryPolicy, Subscription};

use crate::StoreError;

pub fn load_machine(connection: &Connection) -> Result<MessageBox, StoreError> {
    let state_json: Option<String> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'machine_state'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let Some(state_json) = state_json else {
        return Ok(MessageBox::new());
    };
    let state: MachineState = serde_json::from_str(&state_json)
        .map_err(|error| StoreError::Corrupt(format!("machine state does not parse: {error}")))?;
    MessageBox::load(
        state,
        load_hosts(connection)?,
        load_subscriptions(connection)?,
    )
    .map_err(StoreError::Corrupt)
}

fn load_hosts(connection: &Connection) -> Result<Vec<Host>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT id, name, created_at_ms, ready, delayed, leased, suspended FROM hosts ORDER BY id",
    )?;
    let hosts = statement
        .query_map([], |row| {
            Ok(Host {
                id: row.get(0)?,
                name: row.get(1)?,
                created_at_ms: row.get(2)?,
                depth: QueueDepth {
                    ready: row.get(3)?,
                    delayed: row.get(4)?,
                    leased: row.get(5)?,
                    suspended: row.get(6)?,
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<Host>>>()?;
    Ok(hosts)
}

fn load_subscriptions(connection: &Connection) -> Result<Vec<Subscription>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT id, name, host_id, filter, priority, retry_count, retry_interval_ms, \
         exponential_backoff, created_at_ms, backup_retry_count, backup_retry_interval_ms, \
         backup_exponential_backoff FROM subscriptions ORDER BY id",
    )?;
    let subscriptions = statement
        .query_map([], |row| {
            let backup_retry_count: Option<u32> = row.get(9)?;
            let backup = match backup_retry_count {
                Some(retry_count) => Some(RetryPolicy {
                    retry_count,
                    retry_interval_ms: row.get(10)?,
                    exponential_backoff: row.get(11)?,
                }),
                None => None,
            };
            Ok(Subscription {
                id: row.get(0)?,
                name: row.get(1)?,
                host: row.get(2)?,
                filter: row.get(3)?,
                priority: row.get(4)?,
                retry: RetryPolicy {
                    retry_count: row.get(5)?,
                    retry_interval_ms: row.get(6)?,
                    exponential_backoff: row.get(7)?,
                },
                backup,
                created_at_ms: row.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<Subscription>>>()?;
    Ok(subscriptions)
}
