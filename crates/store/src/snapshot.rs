//! Snapshots: a consistent copy of the whole store in one SQLite file, carrying the
//! replicated log position it reflects. Written with `VACUUM INTO` on a separate read
//! connection (the committer keeps committing meanwhile) and restored with SQLite's online
//! backup API into the committer's own connection.
//!
//! A snapshot file comes from another node over the network, so it is [`check`]ed whole
//! before [`restore`] replaces anything: a file that SQLite finds sound but that does not
//! load as a Tandem store is refused like any other garbage.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tandem_core::MessageBox;

use crate::StoreError;
use crate::gradual_flush::GradualFlush;
use crate::loader::load_machine;
use crate::schema;

/// Pages copied per backup step when restoring.
const RESTORE_PAGES_PER_STEP: std::ffi::c_int = 4096;

/// Writes a snapshot of the database at `database` to `target` (which must not exist), fsyncs
/// it, and returns the log position it reflects.
///
/// The copy is checked whole where it is installed ([`check`], on the node it is sent to);
/// here only its position is read back. (Checked here too, a 1.2 GB store's snapshot cost
/// 1.3 to 2.9 s of CPU more, on top of the 2 to 5 s of the copy, while the node served.)
pub fn write(database: &Path, target: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let source = open_read_only(database)?;
    source.execute_batch("PRAGMA busy_timeout = 5000;")?;
    vacuum_into(&source, target)?;
    File::open(target)
        .and_then(|file| file.sync_all())
        .map_err(|error| StoreError::io(format!("cannot fsync {}", target.display()), error))?;
    read_position(&open_read_only(target)?)
}

/// A snapshot file that passed [`check`], with the state it holds.
pub struct CheckedSnapshot {
    path: PathBuf,
    connection: Connection,
    /// The state machine as the snapshot's tables rebuild it.
    pub machine: MessageBox,
    /// The replicated log position the snapshot reflects.
    pub position: Option<Vec<u8>>,
}

/// Checks the snapshot file at `path` as a node does before installing it: SQLite opens it,
/// it has this binary's format version, passes SQLite's quick check, has every table and
/// index of the format, and the state machine loads from it. Any other file is an error,
/// and checking writes nothing.
pub fn check(path: &Path) -> Result<CheckedSnapshot, StoreError> {
    let connection = open_checked(path)?;
    let corrupt = |error: StoreError| {
        let reason = match error {
            StoreError::Corrupt(reason) => reason,
            other => other.to_string(),
        };
        StoreError::Corrupt(format!("snapshot {}: {reason}", path.display()))
    };
    schema::check_tables(&connection).map_err(corrupt)?;
    let machine = load_machine(&connection).map_err(corrupt)?;
    let position = read_position(&connection).map_err(corrupt)?;
    Ok(CheckedSnapshot {
        path: path.to_path_buf(),
        connection,
        machine,
        position,
    })
}

/// Replaces everything in `connection`'s database by a checked snapshot.
///
/// SQLite's backup cannot change the page size of a database in WAL mode, and stores differ
/// in page size (those created before 8 KiB pages have 4 KiB): a snapshot of another size is
/// first copied at the store's size, next to the snapshot file, and restored from the copy.
pub fn restore(snapshot: &CheckedSnapshot, connection: &mut Connection) -> Result<(), StoreError> {
    let store_page_size = page_size(connection)?;
    if page_size(&snapshot.connection)? == store_page_size {
        return copy_pages(&snapshot.connection, connection);
    }
    let resized_path = snapshot
        .path
        .with_extension(format!("page-size-{store_page_size}"));
    let resized = resize(snapshot, store_page_size, &resized_path)
        .and_then(|resized| copy_pages(&resized, connection));
    let _ = std::fs::remove_file(&resized_path);
    resized
}

fn copy_pages(source: &Connection, target: &mut Connection) -> Result<(), StoreError> {
    let backup = Backup::new(source, target)?;
    backup.run_to_completion(RESTORE_PAGES_PER_STEP, Duration::ZERO, None)?;
    Ok(())
}

/// Copies the snapshot to `path` with pages of `page_size` bytes (`VACUUM INTO` writes at the
/// page size set on the connection it runs on).
fn resize(
    snapshot: &CheckedSnapshot,
    page_size: u32,
    path: &Path,
) -> Result<Connection, StoreError> {
    let _ = std::fs::remove_file(path);
    snapshot
        .connection
        .execute_batch(&format!("PRAGMA page_size = {page_size};"))?;
    vacuum_into(&snapshot.connection, path)?;
    open_read_only(path)
}

/// Writes a compacted copy of `source`'s database to `target` (which must not exist),
/// flushing it to disk as it grows ([`GradualFlush`]).
fn vacuum_into(source: &Connection, target: &Path) -> Result<(), StoreError> {
    let target_text = target.to_str().ok_or_else(|| {
        StoreError::Corrupt(format!("snapshot path {} is not UTF-8", target.display()))
    })?;
    let _flush = GradualFlush::start(target.to_path_buf());
    source.execute("VACUUM INTO ?1", [target_text])?;
    Ok(())
}

fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

fn page_size(connection: &Connection) -> Result<u32, StoreError> {
    Ok(connection.query_row("PRAGMA page_size", [], |row| row.get(0))?)
}

/// The log position saved in a store, if it has applied any replicated batch.
pub fn read_position(connection: &Connection) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'replica_position'",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

/// Opens a snapshot file read-only and refuses anything that is not a Tandem store of this
/// format version, fails SQLite's quick check, or has a root page of the wrong kind.
fn open_checked(path: &Path) -> Result<Connection, StoreError> {
    let connection = open_read_only(path)
        .map_err(|error| StoreError::Corrupt(format!("snapshot {}: {error}", path.display())))?;
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|error| StoreError::Corrupt(format!("snapshot {}: {error}", path.display())))?;
    if version != schema::FORMAT_VERSION {
        return Err(StoreError::Format(format!(
            "snapshot {} has format version {version}, this binary reads {}",
            path.display(),
            schema::FORMAT_VERSION
        )));
    }
    let verdict: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "snapshot {} fails SQLite's quick check: {verdict}",
            path.display()
        )));
    }
    check_root_page_kinds(&connection, path)?;
    Ok(connection)
}

/// Refuses a snapshot in which the root page of a table or an index is not a b-tree page of
/// its kind (a table's holds rows by rowid; an index's, or a `WITHOUT ROWID` table's, holds
/// keys). SQLite's quick check, and its integrity check too, take an empty root page's word
/// for its kind, while copying the database reads it as the schema says and fails: a
/// snapshot whose empty index claimed to be a table page passed the check and then could
/// not be installed (found by the `snapshot_reader` fuzz target).
fn check_root_page_kinds(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let page_size: u64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let mut statement = connection.prepare(
        "SELECT m.name, m.rootpage, m.type = 'index' OR coalesce(t.wr, 0) = 1 \
         FROM sqlite_master AS m LEFT JOIN pragma_table_list AS t \
             ON t.schema = 'main' AND t.name = m.name \
         WHERE m.rootpage > 0",
    )?;
    let roots = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u64>(1)?,
                row.get::<_, bool>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut file = File::open(path)
        .map_err(|error| StoreError::io(format!("cannot open {}", path.display()), error))?;
    for (name, root_page, holds_keys) in roots {
        let kind = root_page_kind(&mut file, root_page, page_size).map_err(|error| {
            StoreError::Corrupt(format!(
                "snapshot {}: cannot read the root page {root_page} of '{name}': {error}",
                path.display()
            ))
        })?;
        let expected = if holds_keys {
            BTREE_OF_KEYS
        } else {
            BTREE_OF_ROWS
        };
        if !expected.contains(&kind) {
            return Err(StoreError::Corrupt(format!(
                "snapshot {}: the root page {root_page} of '{name}' is not a b-tree page of \
                 its kind (page type {kind})",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The page types (the first byte of a b-tree page's header) of a b-tree of keys (an index
/// or a `WITHOUT ROWID` table: interior, leaf) and of a b-tree of rows (interior, leaf).
const BTREE_OF_KEYS: [u8; 2] = [0x02, 0x0a];
const BTREE_OF_ROWS: [u8; 2] = [0x05, 0x0d];

/// The page type of page `page` (numbered from 1; the first page's header follows the
/// 100-byte database header).
fn root_page_kind(file: &mut File, page: u64, page_size: u64) -> std::io::Result<u8> {
    let header_offset = if page == 1 { 100 } else { 0 };
    let mut kind = [0u8; 1];
    file.seek(SeekFrom::Start((page - 1) * page_size + header_offset))?;
    file.read_exact(&mut kind)?;
    Ok(kind[0])
}
