//! [`snapshot_reader`]: a snapshot file as a node receives it from another node. The bytes
//! are written to a file and checked with `tandem_store::snapshot::check`, exactly what the
//! store runs before a snapshot replaces anything. A refused file answers an error; an
//! accepted one must install (SQLite's backup API, into a fresh in-memory database) and
//! leave a store that has every table of the format and loads, at the checked position.
//!
//! Tandem has no backup file format yet (a later issue adds one); when it does, its reader
//! gets a target of its own.

use rusqlite::Connection;
use tandem_store::loader::load_machine;
use tandem_store::{schema, snapshot};

use crate::{Verdict, clear};

/// Checks `data` as a received snapshot file, and installs it when the check accepts it.
pub fn snapshot_reader(data: &[u8]) -> Verdict {
    let directory = tempfile::tempdir().expect("a temporary folder");
    let path = directory.path().join("received.snapshot");
    std::fs::write(&path, data).expect("write the received snapshot");
    let checked = match snapshot::check(&path) {
        Ok(checked) => checked,
        Err(error) => return clear(&error.to_string(), "a snapshot"),
    };
    let mut installed = Connection::open_in_memory().expect("an in-memory database");
    snapshot::restore(&checked, &mut installed)
        .unwrap_or_else(|error| panic!("a checked snapshot does not install: {error}"));
    schema::check_tables(&installed)
        .unwrap_or_else(|error| panic!("an installed snapshot lacks part of the format: {error}"));
    load_machine(&installed)
        .unwrap_or_else(|error| panic!("an installed snapshot does not load: {error}"));
    assert_eq!(
        snapshot::read_position(&installed).expect("the installed position"),
        checked.position,
        "the installed snapshot is at the checked position"
    );
    Verdict::Accepted
}
