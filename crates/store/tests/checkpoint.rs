//! The checkpoint thread: committed pages reach the database file while the store runs, long
//! before the WAL grows to the committer's own automatic checkpoint (4,096 pages).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{big_messages, catalog_commands, open, runtime};
use tandem_core::Command;
use tandem_store::schema::DATABASE_FILE;

const MESSAGES: usize = 64;
const BODY_BYTES: usize = 16 * 1024;
/// Far longer than the checkpoint interval; the test ends as soon as the pages are there.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn committed_pages_reach_the_database_file_while_the_store_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let runtime = runtime();
    runtime.block_on(async {
        for command in catalog_commands() {
            store
                .handle()
                .execute(command)
                .await
                .expect("catalog applies");
        }
        let publish = Command::Publish {
            messages: big_messages(MESSAGES, BODY_BYTES, "a"),
            publisher: "test".into(),
        };
        store
            .handle()
            .execute(publish)
            .await
            .expect("publish applies");
    });
    // About 1 MiB of bodies: 130 pages or so in the WAL, far from 4,096.
    let bodies = (MESSAGES * BODY_BYTES) as u64;
    let started = Instant::now();
    while database_file_bytes(dir.path()) < bodies {
        assert!(
            started.elapsed() < PATIENCE,
            "the database file holds {} bytes {PATIENCE:?} after committing {bodies} bytes of \
             bodies: nothing checkpointed the WAL",
            database_file_bytes(dir.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    store.close();
}

fn database_file_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(DATABASE_FILE))
        .map(|metadata| metadata.len())
        .unwrap_or(0)
}
