//! The on-disk format: SQLite pragmas, tables, indexes and the format version.
//!
//! Queue tables have explicit integer primary keys. Partial indexes keep each queue
//! lookup (ready by priority, expired leases, due retries) an index range scan.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension};

use crate::StoreError;

/// The format this binary writes. Bump it with a migration when the schema changes.
/// Version 3 added the subscriptions' backup transport retry policy; version 4 stores new
/// messages' contexts in a binary encoding ([`crate::context_codec`]; older rows keep their
/// JSON text, which is still read); version 5 keeps a message's body and context in
/// `message_payloads`, and a deleted message's `messages` row as its dedupe entry
/// (`messages.removed`) instead of a row in a separate `dedupe` table; version 6 finds a
/// message's tracking events by its seq (`tracking.message_seq`) instead of its message id,
/// and keeps a deleted message's row, with its deletion time, while its history is kept.
pub const FORMAT_VERSION: i64 = 6;

/// The oldest format this binary upgrades when a node opens the store (see
/// [`create_or_check`]); read-only checks and snapshots need the current format.
pub const OLDEST_UPGRADABLE_FORMAT_VERSION: i64 = 2;

/// Whether a node opening a store of `version` upgrades it to [`FORMAT_VERSION`].
pub fn is_upgradable(version: i64) -> bool {
    (OLDEST_UPGRADABLE_FORMAT_VERSION..FORMAT_VERSION).contains(&version)
}

/// The database file inside a node's data directory.
pub const DATABASE_FILE: &str = "messagebox.sqlite";

const SCHEMA: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE hosts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    ready INTEGER NOT NULL,
    delayed INTEGER NOT NULL,
    leased INTEGER NOT NULL,
    suspended INTEGER NOT NULL
);
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    host_id INTEGER NOT NULL,
    filter TEXT NOT NULL,
    priority INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    retry_interval_ms INTEGER NOT NULL,
    exponential_backoff INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    backup_retry_count INTEGER,
    backup_retry_interval_ms INTEGER,
    backup_exponential_backoff INTEGER
);
-- A removed message's row stays while dedupe needs it and while its history is kept: it
-- leads from the message id to the seq its tracking events are found by. Its removal time
-- replaces its receipt time in `removed_at_ms`, so the row keeps its size.
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    publisher TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0, -- 1: the message is gone; the row stays for dedupe
    removed_at_ms INTEGER NOT NULL DEFAULT 0 -- when it went (its receipt time until then)
);
CREATE INDEX messages_by_message_id ON messages(message_id);
CREATE INDEX messages_removed ON messages(removed_at_ms) WHERE removed = 1;
CREATE TABLE message_payloads (
    seq INTEGER PRIMARY KEY, -- the message's seq; a removed message has none
    body BLOB NOT NULL,
    context BLOB NOT NULL -- binary (context_codec); JSON text in rows from formats 2 and 3
);
CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    message_seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    subscription_id INTEGER,
    host_id INTEGER,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    lease_token INTEGER NOT NULL,
    lease_holder TEXT NOT NULL,
    lease_expires_at_ms INTEGER NOT NULL,
    last_error TEXT,
    enqueued_at_ms INTEGER NOT NULL
);
CREATE INDEX instances_ready ON instances(host_id, priority, id) WHERE state = 0;
CREATE INDEX instances_delayed ON instances(visible_at_ms, id) WHERE state = 1;
CREATE INDEX instances_leased ON instances(lease_expires_at_ms, id) WHERE state = 2;
CREATE INDEX instances_suspended ON instances(host_id, id) WHERE state = 3;
CREATE INDEX instances_by_message ON instances(message_seq);
CREATE TABLE tracking (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    instance_id INTEGER,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    message_seq INTEGER -- the message's seq; NULL in events recorded before format 6
);
-- A message's events by its seq: seqs grow, so new entries go to the end of the index. (By
-- message id, often random, each event would cost a page written once the index outgrows a
-- transaction; a message's id leads to its seq through its `messages` row.)
CREATE INDEX tracking_by_message_seq ON tracking(message_seq) WHERE message_seq IS NOT NULL;
-- Events recorded before format 6, found by message id.
CREATE INDEX tracking_legacy_by_message_id ON tracking(message_id) WHERE message_seq IS NULL;
CREATE TABLE cluster_events (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
";

/// After a checkpoint, SQLite truncates a WAL larger than this. A snapshot's long read
/// keeps checkpoints from finishing, and the WAL grows meanwhile (hundreds of megabytes under
/// load); without a limit, the file would keep that size for good.
pub const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// The committer's automatic checkpoint (the backstop, see [`configure`]) runs once the WAL
/// holds this many pages.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 4096;

/// The page size of a store this binary creates. An existing store keeps the size it was
/// created with (SQLite fixes it in the file header; changing it takes a `VACUUM`). On the
/// delivery workload (`examples/store_workload.rs`, 60 rounds), 8 KiB pages cost 7 % fewer
/// instructions and 12 % fewer bytes written than SQLite's default 4 KiB: B-trees one level
/// shallower, and the 1 KiB bodies of a batch on fewer pages. 16 KiB pages cost 9 % fewer
/// instructions but wrote 6 % more than 8 KiB ones (each changed page is written whole).
pub const NEW_STORE_PAGE_SIZE: u32 = 8192;

/// Pragmas for the committer's connection. The replicated log is what makes a command
/// durable (fsynced on a majority before it is applied), so the tables run with
/// `synchronous = NORMAL`: WAL commits are not fsynced one by one, the database stays
/// consistent across a crash, and after a power loss the node replays the commands it lost
/// from its log, starting at the position saved with the last surviving transaction.
///
/// Checkpoints: [`crate::checkpointer`] copies the WAL into the database file on a thread of
/// its own, a few times a second; SQLite's automatic checkpoint on the committer's
/// connection, every 4,096 pages (32 MiB in a new store), stays as the backstop, which keeps
/// the WAL small and hot in the page cache; a WAL that grew past [`WAL_SIZE_LIMIT_BYTES`]
/// is truncated back to it. (A checkpoint thread alone, without the backstop, was tried
/// first: under sustained load it never caught up with the committer and the WAL grew past
/// 400 MiB.)
pub fn configure(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch(&format!(
        "PRAGMA page_size = {NEW_STORE_PAGE_SIZE};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -8192;
         PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};
         PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};
         PRAGMA busy_timeout = 5000;"
    ))?;
    Ok(())
}

/// Creates the schema in an empty database, or checks the format version of an existing one
/// (upgrading an older store in place, see [`upgrade`]).
pub fn create_or_check(connection: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version == 0 {
        let has_tables: Option<String> = connection
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(table) = has_tables {
            return Err(StoreError::Format(format!(
                "the database has tables (e.g. '{table}') but no Tandem format version; \
                 it was not written by Tandem"
            )));
        }
        let transaction = connection.transaction()?;
        transaction.execute_batch(SCHEMA)?;
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES ('format_version', ?1)",
            [FORMAT_VERSION.to_string()],
        )?;
        transaction.pragma_update(None, "user_version", FORMAT_VERSION)?;
        transaction.commit()?;
        return Ok(());
    }
    if is_upgradable(version) {
        return upgrade(connection, version);
    }
    if version != FORMAT_VERSION {
        return Err(StoreError::Format(format!(
            "the data directory holds format version {version}; this binary reads format \
             version {FORMAT_VERSION} (and upgrades versions {OLDEST_UPGRADABLE_FORMAT_VERSION} \
             to {})",
            FORMAT_VERSION - 1
        )));
    }
    Ok(())
}

/// Checks that `connection`'s database has every table of this format with the same
/// columns, and every index with the same definition; [`StoreError::Corrupt`] names the
/// first one missing, or a schema entry whose SQL text SQLite would not rebuild.
pub fn check_tables(connection: &Connection) -> Result<(), StoreError> {
    check_rebuildable(connection)?;
    let expected = Connection::open_in_memory()?;
    expected.execute_batch(SCHEMA)?;
    let present = tables_and_indexes(connection)?;
    match tables_and_indexes(&expected)?
        .into_iter()
        .find(|item| !present.contains(item))
    {
        Some(missing) => Err(StoreError::Corrupt(format!(
            "the database has no {missing} (format version {FORMAT_VERSION} has it)"
        ))),
        None => Ok(()),
    }
}

/// Refuses a schema entry whose SQL text does not start as SQLite writes it (`CREATE `, in
/// capitals): SQLite rebuilds a copy of the database (`VACUUM`, and `VACUUM INTO`, which
/// installs a snapshot of another page size) only from entries that start so, and silently
/// leaves out the others. (A snapshot whose index read `CrEATE INDEX …` passed the check and
/// lacked the index once installed.)
fn check_rebuildable(connection: &Connection) -> Result<(), StoreError> {
    let skipped: Option<String> = connection
        .query_row(
            "SELECT type || ' ' || name FROM sqlite_master \
             WHERE sql IS NOT NULL AND substr(sql, 1, 7) <> 'CREATE ' LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match skipped {
        Some(entry) => Err(StoreError::Corrupt(format!(
            "the schema's SQL text for {entry} does not start with 'CREATE ' as SQLite writes \
             it; a copy of the database would leave it out"
        ))),
        None => Ok(()),
    }
}

/// Every index, and every column of every table (with its default, which inserts that leave
/// the column out rely on), described in words, as SQLite understood the schema's SQL text
/// (which is what a copy of the database is rebuilt from), not by the names stored beside
/// it, with names in lower case (SQLite's ignore case) and types in upper case; an index
/// with its SQL text in lower case, its spaces collapsed. (A snapshot whose `sqlite_master`
/// named an index `tracking_legacy_by_message_id` while its SQL text said
/// `tracking_legAcy_by_message_id` passed the check and then lacked the index once installed
/// at another page size.)
fn tables_and_indexes(connection: &Connection) -> Result<BTreeSet<String>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT 'column ' || lower(m.name) || '.' || lower(c.name) || ' ' || upper(c.type) \
                || CASE WHEN c.\"notnull\" THEN ' NOT NULL' ELSE '' END \
                || CASE WHEN c.pk > 0 THEN ' PRIMARY KEY' ELSE '' END \
                || coalesce(' DEFAULT ' || c.dflt_value, '') \
         FROM sqlite_master AS m, pragma_table_info(m.name) AS c WHERE m.type = 'table' \
         UNION ALL \
         SELECT 'index ' || lower(i.name) || ' on ' || lower(m.name) \
                || coalesce(' (' || lower(s.sql) || ')', '') \
         FROM sqlite_master AS m, pragma_index_list(m.name) AS i \
         LEFT JOIN sqlite_master AS s ON s.type = 'index' AND s.name = i.name COLLATE NOCASE \
         WHERE m.type = 'table'",
    )?;
    let described = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .map(|described| described.map(|text| collapse_spaces(&text)))
        .collect::<rusqlite::Result<BTreeSet<String>>>()?;
    Ok(described)
}

/// `text` with every run of white space made one space.
fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Upgrades a store of an older `version` to [`FORMAT_VERSION`], one version after the
/// other, in one transaction: the store is upgraded or left as it was.
/// - 2 → 3: the subscriptions' backup transport retry policy, three nullable columns
///   (NULL: no backup transport).
/// - 3 → 4: nothing to rewrite: new contexts are binary, and the JSON ones are still read.
///   The version changes so that an older binary refuses the store instead of misreading it.
/// - 4 → 5: bodies and contexts move to `message_payloads` (every message row is rewritten:
///   the upgrade of a store holding a large backlog takes a while); `messages` gains the
///   `removed` column, and every row of the `dedupe` table becomes a removed message row with
///   a negative seq (real ones start at 1, so they never meet); the `dedupe` table goes.
/// - 5 → 6: a deleted message's row records when it was deleted (`removed_at_ms`; the
///   rows deleted before the upgrade take their publish time), and `messages_removed` is by
///   that time: the row now stays while the message's history is kept, as the way from its
///   id to its events. `tracking` gains `message_seq` (NULL in the events already
///   recorded), indexed; the index of every event by message id keeps only the events
///   recorded before the upgrade. This reads every tracking event (a few seconds per
///   million).
fn upgrade(connection: &mut Connection, version: i64) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let duration = if version <= 4 {
        "about 20 s per million stored messages"
    } else {
        "a few seconds per million tracking events"
    };
    eprintln!(
        "tandem: upgrading the store from format version {version} to {FORMAT_VERSION} \
         ({duration}; an interrupted upgrade changes nothing and runs again at the next \
         start) ..."
    );
    let transaction = connection.transaction()?;
    if version <= 2 {
        transaction.execute_batch(
            "ALTER TABLE subscriptions ADD COLUMN backup_retry_count INTEGER;
             ALTER TABLE subscriptions ADD COLUMN backup_retry_interval_ms INTEGER;
             ALTER TABLE subscriptions ADD COLUMN backup_exponential_backoff INTEGER;",
        )?;
    }
    if version <= 4 {
        transaction.execute_batch(
            "CREATE TABLE message_payloads (
                 seq INTEGER PRIMARY KEY,
                 body BLOB NOT NULL,
                 context BLOB NOT NULL
             );
             INSERT INTO message_payloads (seq, body, context)
                 SELECT seq, body, context FROM messages;
             ALTER TABLE messages DROP COLUMN body;
             ALTER TABLE messages DROP COLUMN context;
             ALTER TABLE messages ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
             CREATE INDEX messages_removed ON messages(received_at_ms) WHERE removed = 1;
             INSERT INTO messages (seq, message_id, received_at_ms, publisher, removed)
                 SELECT -ROW_NUMBER() OVER (ORDER BY published_at_ms, message_id),
                        message_id, published_at_ms, '', 1
                 FROM dedupe;
             DROP TABLE dedupe;",
        )?;
    }
    if version <= 5 {
        transaction.execute_batch(
            "ALTER TABLE messages ADD COLUMN removed_at_ms INTEGER NOT NULL DEFAULT 0;
             UPDATE messages SET removed_at_ms = received_at_ms WHERE removed = 1;
             DROP INDEX messages_removed;
             CREATE INDEX messages_removed ON messages(removed_at_ms) WHERE removed = 1;
             ALTER TABLE tracking ADD COLUMN message_seq INTEGER;
             DROP INDEX tracking_by_message;
             CREATE INDEX tracking_by_message_seq ON tracking(message_seq)
                 WHERE message_seq IS NOT NULL;
             CREATE INDEX tracking_legacy_by_message_id ON tracking(message_id)
                 WHERE message_seq IS NULL;",
        )?;
    }
    transaction.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'format_version'",
        [FORMAT_VERSION.to_string()],
    )?;
    transaction.pragma_update(None, "user_version", FORMAT_VERSION)?;
    transaction.commit()?;
    eprintln!(
        "tandem: store upgraded to format version {FORMAT_VERSION} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
