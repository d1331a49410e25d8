//! Snapshots: a consistent copy of the whole store in one SQLite file, carrying the
//! replicated log position it reflects. Written with `VACUUM INTO` on a separate read
//! connection (the committer keeps committing meanwhile) and restored with SQLite's online
//! backup API into the committer's own connection.
//!
//! A snapshot file comes from another node over the network, so it is [`check`]ed whole
//! before [`restore`] replaces anything: a file that SQLite finds sound but that does not
//! load as a Tandem store is refused like any other garbage.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tandem_core::MessageBox;

use crate::StoreError;
use crate::btree_kinds;
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
/// format version, fails SQLite's quick check, or has a b-tree page of the wrong kind.
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
    // SQLite's checks take each page's word for its kind; a page of the wrong kind fails
    // only once the snapshot is copied (found by the `snapshot_reader` fuzz target).
    btree_kinds::check(&connection, path).map_err(|error| match error {
        StoreError::Corrupt(reason) => StoreError::Corrupt(format!("snapshot {reason}")),
        other => other,
    })?;
    Ok(connection)
}
