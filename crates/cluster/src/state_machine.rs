//! [`StateMachine`]: openraft's state machine on top of the node's store. Committed entries
//! become store batches (applied in order, concurrent ones in one transaction), each saving
//! the log position it reaches; snapshots are consistent copies of the store's SQLite file.
//!
//! `apply` queues the entries on the store and returns without waiting for their
//! transaction: openraft then hands over the next committed entries at once, and the store
//! puts them in the same transaction instead of a transaction of their own. Each caller is
//! answered once the store has applied its entry (a task per applied chunk waits for that),
//! which may be before the transaction commits: the entry is committed in the log already,
//! and its outcome is the one a replay would give (see `tandem_store`'s committer).
//! openraft's applied index may therefore run one transaction ahead of the store;
//! [`crate::ReplicaStatus`] reports the store's own position. A transaction that fails halts
//! the store, and the next `apply` reports the failure to openraft, which stops this node's
//! replication.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures_util::{Stream, StreamExt, TryStreamExt};
use openraft::EntryPayload;
use openraft::storage::{ApplyResponder, EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use serde::{Deserialize, Serialize};
use tandem_core::limits;
use tandem_store::{Batch, BatchResult, ClusterEvent, StoreHandle};

use crate::codec;
use crate::types::{
    Entry, LogId, Proposal, ProposalResult, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership,
    TypeConfig,
};

/// Snapshots kept on disk: the current one and the one before (a follower may still be
/// receiving it).
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_EXTENSION: &str = "sqlite";
const META_EXTENSION: &str = "meta";
const SNAPSHOT_PREFIX: &str = "snapshot-";
/// A snapshot being written, before it is complete and renamed.
const BUILDING_PREFIX: &str = "building-";

/// What the store saves with every batch: how far the log has been applied.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedPosition {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

pub struct StateMachine {
    store: StoreHandle,
    snapshot_directory: PathBuf,
    membership: StoredMembership,
    /// The first storage failure an answering task saw, reported by the next `apply`.
    failure: Arc<OnceLock<String>>,
}

impl StateMachine {
    /// Wraps `store`; snapshots live in `snapshot_directory` (created if missing, and rid of
    /// snapshots a stop left unfinished).
    pub fn open(store: StoreHandle, snapshot_directory: PathBuf) -> io::Result<StateMachine> {
        std::fs::create_dir_all(&snapshot_directory)?;
        remove_unfinished_snapshots(&snapshot_directory)?;
        let position = applied_position(&store)?;
        Ok(StateMachine {
            store,
            snapshot_directory,
            membership: position.membership,
            failure: Arc::new(OnceLock::new()),
        })
    }

    /// The store batch for `entry`, which it consumes: the commands move, copied only when the
    /// log still holds the entry in memory.
    fn batch_for(&mut self, entry: Entry) -> io::Result<Batch> {
        let log_id = entry.log_id;
        let (timestamp_ms, commands, event) = match entry.payload {
            EntryPayload::Blank => (0, Vec::new(), None),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(log_id), membership);
                (0, Vec::new(), None)
            }
            EntryPayload::Normal(Proposal::Commands {
                timestamp_ms,
                commands,
            }) => (timestamp_ms, Arc::unwrap_or_clone(commands), None),
            EntryPayload::Normal(Proposal::Failover(record)) => {
                let event = ClusterEvent {
                    at_ms: record.at_ms,
                    record: crate::failover::to_json(&record)?,
                };
                (record.at_ms, Vec::new(), Some(event))
            }
        };
        let position = AppliedPosition {
            last_applied: Some(log_id),
            membership: self.membership.clone(),
        };
        Ok(Batch {
            timestamp_ms,
            commands,
            event,
            position: Some(codec::encode(&position)?),
        })
    }
}

/// The log index of the last entry `store` has committed (0 before any; an unreadable
/// position counts as none).
pub fn committed_index(store: &StoreHandle) -> u64 {
    applied_position(store)
        .ok()
        .and_then(|position| position.last_applied)
        .map_or(0, |log_id| log_id.index)
}

fn applied_position(store: &StoreHandle) -> io::Result<AppliedPosition> {
    match store.position() {
        Some(bytes) => codec::decode(&bytes),
        None => Ok(AppliedPosition::default()),
    }
}

/// Answers each entry's caller once the store has applied it, in log order. After a failure
/// the remaining callers get no answer (openraft tells them replication stopped).
async fn answer_when_applied<Answer>(
    answers: Vec<(Answer, Option<ApplyResponder<TypeConfig>>)>,
    failure: Arc<OnceLock<String>>,
) where
    Answer: Future<Output = BatchResult>,
{
    for (answer, responder) in answers {
        match answer.await {
            Ok(outcomes) => {
                if let Some(responder) = responder {
                    responder.send(ProposalResult { outcomes });
                }
            }
            Err(error) => {
                let _ = failure.set(error.to_string());
                return;
            }
        }
    }
}

fn storage_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let position = applied_position(&self.store)?;
        Ok((position.last_applied, position.membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        if let Some(failure) = self.failure.get() {
            return Err(storage_error(failure));
        }
        let mut chunks = entries.try_ready_chunks(limits::MAX_ENTRIES_PER_APPLY);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| error.1)?;
            // Submitted one by one, in log order (the store applies them in that order).
            let mut answers = Vec::with_capacity(chunk.len());
            for (entry, responder) in chunk {
                let batch = self.batch_for(entry)?;
                let answer = self.store.submit(batch).await.map_err(storage_error)?;
                answers.push((answer, responder));
            }
            tokio::spawn(answer_when_applied(answers, self.failure.clone()));
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snapshot_directory: self.snapshot_directory.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        self.store
            .install_snapshot(snapshot.path.clone())
            .await
            .map_err(storage_error)?;
        self.membership = meta.last_membership.clone();
        keep_snapshot_off_the_runtime(&self.store, &self.snapshot_directory, meta, &snapshot.path)
            .await?;
        let up_to = meta.last_log_id.map_or(0, |log_id| log_id.index);
        eprintln!("tandem: caught up from the active's snapshot (log index {up_to})");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        current_snapshot(&self.snapshot_directory)
    }
}

pub struct SnapshotBuilder {
    store: StoreHandle,
    snapshot_directory: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let building = self.snapshot_directory.join(format!(
            "{BUILDING_PREFIX}{}.{SNAPSHOT_EXTENSION}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&building);
        let position = self
            .store
            .write_snapshot(building.clone())
            .await
            .map_err(storage_error)?;
        let position: AppliedPosition = match position {
            Some(bytes) => codec::decode(&bytes)?,
            None => AppliedPosition::default(),
        };
        let meta = SnapshotMeta {
            last_log_id: position.last_applied,
            last_membership: position.membership,
        };
        let path =
            keep_snapshot_off_the_runtime(&self.store, &self.snapshot_directory, &meta, &building)
                .await?;
        Ok(Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        })
    }
}

/// [`keep_snapshot`] where the store runs its blocking work: a runtime thread blocked by it
/// holds back the replica's other tasks (removing a 1.2 GB snapshot takes half a second, and
/// acknowledgements waited that long after each snapshot).
async fn keep_snapshot_off_the_runtime(
    store: &StoreHandle,
    directory: &Path,
    meta: &SnapshotMeta,
    file: &Path,
) -> io::Result<PathBuf> {
    let (directory, meta, file) = (directory.to_path_buf(), meta.clone(), file.to_path_buf());
    store
        .execution()
        .run_blocking(move || keep_snapshot(&directory, &meta, &file))
        .await?
}

/// Moves a complete snapshot file to its final name beside its metadata, then drops the
/// oldest snapshots beyond [`SNAPSHOTS_KEPT`].
fn keep_snapshot(directory: &Path, meta: &SnapshotMeta, file: &Path) -> io::Result<PathBuf> {
    let index = meta.last_log_id.map(|id| id.index).unwrap_or(0);
    let stem = format!("{SNAPSHOT_PREFIX}{index:020}");
    let path = directory.join(format!("{stem}.{SNAPSHOT_EXTENSION}"));
    let meta_path = directory.join(format!("{stem}.{META_EXTENSION}"));
    if file != path {
        std::fs::rename(file, &path)?;
    }
    write_synced(&meta_path, &codec::encode(meta)?)?;
    sync_directory(directory)?;
    let mut stems = snapshot_stems(directory)?;
    while stems.len() > SNAPSHOTS_KEPT {
        let oldest = stems.remove(0);
        let _ = std::fs::remove_file(directory.join(format!("{oldest}.{META_EXTENSION}")));
        let _ = std::fs::remove_file(directory.join(format!("{oldest}.{SNAPSHOT_EXTENSION}")));
    }
    Ok(path)
}

fn current_snapshot(directory: &Path) -> io::Result<Option<Snapshot>> {
    let Some(stem) = snapshot_stems(directory)?.pop() else {
        return Ok(None);
    };
    let meta: SnapshotMeta = codec::decode(&std::fs::read(
        directory.join(format!("{stem}.{META_EXTENSION}")),
    )?)?;
    Ok(Some(Snapshot {
        meta,
        snapshot: SnapshotFile {
            path: directory.join(format!("{stem}.{SNAPSHOT_EXTENSION}")),
        },
    }))
}

/// Snapshots that have both their file and their metadata, oldest first.
fn snapshot_stems(directory: &Path) -> io::Result<Vec<String>> {
    let mut stems = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        let is_meta = path
            .extension()
            .is_some_and(|extension| extension == META_EXTENSION);
        let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if is_meta
            && stem.starts_with(SNAPSHOT_PREFIX)
            && directory
                .join(format!("{stem}.{SNAPSHOT_EXTENSION}"))
                .exists()
        {
            stems.push(stem.to_string());
        }
    }
    stems.sort();
    Ok(stems)
}

/// Removes what a stop halfway through building or keeping a snapshot leaves behind: a
/// snapshot being built, metadata being written, and a snapshot file renamed before its
/// metadata was written. Complete snapshots (file and metadata) stay.
fn remove_unfinished_snapshots(directory: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let extension = path.extension().and_then(|extension| extension.to_str());
        let unfinished = name.starts_with(BUILDING_PREFIX)
            || name.starts_with(SNAPSHOT_PREFIX)
                && match extension {
                    Some("tmp") => true,
                    Some(SNAPSHOT_EXTENSION) => !path.with_extension(META_EXTENSION).exists(),
                    _ => false,
                };
        if unfinished {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, path)
}

fn sync_directory(directory: &Path) -> io::Result<()> {
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files;

    #[test]
    fn unfinished_snapshots_are_removed_and_nothing_else() {
        let directory = tempfile::tempdir().expect("temp dir");
        let kept = [
            // A complete snapshot.
            "snapshot-00000000000000000007.meta",
            "snapshot-00000000000000000007.sqlite",
            // The network's: a received transfer.
            "received-1700000000000-0.snapshot",
        ];
        let unfinished = [
            "building-4242.sqlite",
            "snapshot-00000000000000000009.sqlite",
            "snapshot-00000000000000000009.tmp",
        ];
        test_files::create(directory.path(), &kept);
        test_files::create(directory.path(), &unfinished);
        remove_unfinished_snapshots(directory.path()).expect("the directory is read");
        let mut expected = kept.map(String::from).to_vec();
        expected.sort();
        assert_eq!(test_files::names(directory.path()), expected);
    }
}
