//! The kind of every b-tree page of a database file, checked against its schema: a table's
//! pages hold rows by rowid, an index's (or a `WITHOUT ROWID` table's) hold keys.
//!
//! SQLite's quick check (and, in the bundled version, its integrity check) reads each page
//! as its own type byte says: a page of the wrong kind passes when its cells happen to fit
//! that kind, and an empty one (the root of an empty table or index) always does. A copy of
//! the database then reads it as the schema says and fails, and a page-for-page copy
//! installs a b-tree that no statement can read. [`check`] walks every b-tree from its
//! root, reading each page's type byte straight from the file (and the child pointers of
//! interior pages), and refuses the first page of the wrong kind.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// Page types (the first byte of a b-tree page's header): interior and leaf pages of a
/// b-tree of keys, and of a b-tree of rows.
const INTERIOR_OF_KEYS: u8 = 0x02;
const LEAF_OF_KEYS: u8 = 0x0a;
const INTERIOR_OF_ROWS: u8 = 0x05;
const LEAF_OF_ROWS: u8 = 0x0d;

/// The first page's b-tree header follows the database header.
const DATABASE_HEADER_BYTES: usize = 100;
/// An interior page's header: type, first freeblock, cell count, cell content start,
/// fragmented bytes, right-most child.
const INTERIOR_HEADER_BYTES: usize = 12;

/// One table or index of the schema: its name, root page, and whether its b-tree holds keys.
struct Tree {
    name: String,
    root_page: u64,
    holds_keys: bool,
}

/// Refuses the database at `path` (open as `connection`) if any page of any table's or
/// index's b-tree is not of that b-tree's kind, or a child pointer leads outside the file.
pub fn check(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let page_size: u64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let page_count: u64 = connection.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    let trees = trees(connection)?;
    let file = File::open(path)
        .map_err(|error| StoreError::io(format!("cannot open {}", path.display()), error))?;
    let mut pages = Pages {
        file,
        page_size,
        page_count,
        reads: 0,
    };
    for tree in &trees {
        pages.check_tree(tree).map_err(|reason| {
            StoreError::Corrupt(format!(
                "{}: the b-tree of '{}' (root page {}): {reason}",
                path.display(),
                tree.name,
                tree.root_page
            ))
        })?;
    }
    Ok(())
}

fn trees(connection: &Connection) -> Result<Vec<Tree>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT m.name, m.rootpage, m.type = 'index' OR coalesce(t.wr, 0) = 1 \
         FROM sqlite_master AS m LEFT JOIN pragma_table_list AS t \
             ON t.schema = 'main' AND t.name = m.name \
         WHERE m.rootpage > 0",
    )?;
    let trees = statement
        .query_map([], |row| {
            Ok(Tree {
                name: row.get(0)?,
                root_page: row.get(1)?,
                holds_keys: row.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(trees)
}

/// Reads pages of the file. A sound walk reads each page once, and an interior page's
/// children once more; more reads than twice the file's pages mean its pointers loop.
struct Pages {
    file: File,
    page_size: u64,
    page_count: u64,
    reads: u64,
}

impl Pages {
    fn check_tree(&mut self, tree: &Tree) -> Result<(), String> {
        let (interior, leaf) = if tree.holds_keys {
            (INTERIOR_OF_KEYS, LEAF_OF_KEYS)
        } else {
            (INTERIOR_OF_ROWS, LEAF_OF_ROWS)
        };
        let mut waiting = vec![tree.root_page];
        while let Some(page) = waiting.pop() {
            let kind = self.kind(page)?;
            if kind == interior {
                waiting.extend(self.children(page)?);
            } else if kind != leaf {
                return Err(format!(
                    "page {page} has type {kind:#04x}, not a page of this b-tree's kind"
                ));
            }
        }
        Ok(())
    }

    /// The type byte of `page`.
    fn kind(&mut self, page: u64) -> Result<u8, String> {
        let mut kind = [0u8; 1];
        self.read_at(page, header_offset(page), &mut kind)?;
        Ok(kind[0])
    }

    /// The child pages an interior `page` points to.
    fn children(&mut self, page: u64) -> Result<Vec<u64>, String> {
        let mut bytes = vec![0u8; self.page_size as usize];
        self.read_at(page, 0, &mut bytes)?;
        let header = &bytes[header_offset(page)..];
        if header.len() < INTERIOR_HEADER_BYTES {
            return Err(format!("page {page} is too small for an interior page"));
        }
        let cells = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut children = vec![u64::from(be_u32(&header[8..12]))];
        let pointers = &header[INTERIOR_HEADER_BYTES..];
        for cell in 0..cells {
            let at = pointers
                .get(2 * cell..2 * cell + 2)
                .ok_or_else(|| format!("page {page}: cell pointer {cell} is past the page"))?;
            let offset = usize::from(u16::from_be_bytes([at[0], at[1]]));
            let child = bytes
                .get(offset..offset + 4)
                .ok_or_else(|| format!("page {page}: cell {cell} is past the page"))?;
            children.push(u64::from(be_u32(child)));
        }
        Ok(children)
    }

    fn read_at(&mut self, page: u64, offset: usize, into: &mut [u8]) -> Result<(), String> {
        if page == 0 || page > self.page_count {
            return Err(format!(
                "a pointer to page {page}, outside the file's {} pages",
                self.page_count
            ));
        }
        self.reads += 1;
        if self.reads > self.page_count * 2 {
            return Err("the b-tree's pointers lead round in a loop".to_string());
        }
        let start = (page - 1) * self.page_size + offset as u64;
        self.file
            .read_exact_at(into, start)
            .map_err(|error: io::Error| format!("page {page} cannot be read: {error}"))
    }
}

fn header_offset(page: u64) -> usize {
    if page == 1 { DATABASE_HEADER_BYTES } else { 0 }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of 512-byte pages whose table and index are several levels deep.
    fn deep_database(path: &Path) -> Connection {
        let connection = Connection::open(path).unwrap();
        connection
            .execute_batch(
                "PRAGMA page_size = 512;
                 CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
                 CREATE INDEX items_by_name ON items(name);
                 CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
                 INSERT INTO settings VALUES ('a', 'b');",
            )
            .unwrap();
        let mut insert = connection
            .prepare("INSERT INTO items (name) VALUES (?1)")
            .unwrap();
        for number in 0..2_000 {
            insert
                .execute([format!("item number {number:05}")])
                .unwrap();
        }
        drop(insert);
        connection
    }

    /// A page of type `wanted` in the b-tree of `name`, found by walking it from its root.
    fn page_of_kind(connection: &Connection, path: &Path, name: &str, wanted: u8) -> u64 {
        let trees = trees(connection).unwrap();
        let tree = trees.iter().find(|tree| tree.name == name).unwrap();
        let mut pages = Pages {
            file: File::open(path).unwrap(),
            page_size: 512,
            page_count: connection
                .query_row("PRAGMA page_count", [], |row| row.get(0))
                .unwrap(),
            reads: 0,
        };
        let mut waiting = vec![tree.root_page];
        while let Some(page) = waiting.pop() {
            let kind = pages.kind(page).unwrap();
            if kind == wanted {
                return page;
            }
            if kind == INTERIOR_OF_KEYS || kind == INTERIOR_OF_ROWS {
                waiting.extend(pages.children(page).unwrap());
            }
        }
        panic!("no page of type {wanted:#04x} in the b-tree of {name}");
    }

    fn set_kind(path: &Path, page: u64, kind: u8) {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(&[kind], (page - 1) * 512).unwrap();
    }

    #[test]
    fn a_sound_database_passes_with_deep_trees_of_both_kinds() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("deep.db");
        let connection = deep_database(&path);
        // Both b-trees have interior pages, so the walk reaches their leaves through them;
        // the `WITHOUT ROWID` table is a b-tree of keys.
        page_of_kind(&connection, &path, "items_by_name", INTERIOR_OF_KEYS);
        page_of_kind(&connection, &path, "items", INTERIOR_OF_ROWS);
        check(&connection, &path).unwrap();
    }

    #[test]
    fn a_leaf_of_the_other_kind_deep_in_an_index_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("deep.db");
        let connection = deep_database(&path);
        let leaf = page_of_kind(&connection, &path, "items_by_name", LEAF_OF_KEYS);
        set_kind(&path, leaf, LEAF_OF_ROWS);
        let error = check(&connection, &path).unwrap_err().to_string();
        assert!(
            error.contains("items_by_name") && error.contains(&format!("page {leaf} ")),
            "{error}"
        );
    }

    #[test]
    fn an_interior_page_of_the_other_kind_in_a_table_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("deep.db");
        let connection = deep_database(&path);
        let interior = page_of_kind(&connection, &path, "items", INTERIOR_OF_ROWS);
        set_kind(&path, interior, INTERIOR_OF_KEYS);
        let error = check(&connection, &path).unwrap_err().to_string();
        assert!(error.contains("'items'"), "{error}");
    }
}
