//! The receiving side of replication: [`serve`] accepts peers' connections and answers each
//! request with the local Raft, one request at a time per connection, except on a connection
//! that opens a pipelined replication session ([`super::append_stream`]).
//!
//! A received snapshot is written to a new `received-*.snapshot` file in the snapshot
//! directory, fsynced, and handed to the state machine through
//! `Raft::install_full_snapshot`. The state machine takes the file by renaming it (or copying
//! and removing it); whatever is still at that path once the install returns was not taken
//! (stale vote, or the snapshot is not newer than what is committed) and is removed here, as
//! are files left by transfers a crash interrupted (and the store's copies of them). A
//! snapshot the disk has no room to install is refused before it is read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesResponse, VoteRequest};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::vote::RaftLeaderId;
use tandem_core::byte_size::format_bytes;
use tandem_core::condition::Change;
use tandem_core::limits;
use tandem_store::Execution;
use tandem_store::free_space::filesystem_free_bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::append_stream;
use super::blocking_file::{self, BlockingFile};
use super::leader_contact::{ConnectionRecord, LeaderContact, LogProgress};
use super::messages::{Request, Response};
use super::transport::{BoxedConnection, Listener};
use super::{ACCEPT_RETRY_DELAY_MS, IDLE_CONNECTION_TIMEOUT_MS, STALLED_PEER_TIMEOUT_MS};
use crate::codec::{FrameBuffer, read_frame_with, write_frame_with};
use crate::snapshot_policy::received_snapshot_fits;
use crate::types::{SnapshotFile, SnapshotMeta, TypeConfig, Vote};

const RECEIVED_SNAPSHOT_PREFIX: &str = "received-";
const RECEIVED_SNAPSHOT_SUFFIX: &str = ".snapshot";

pub(super) const IDLE_CONNECTION_TIMEOUT: Duration =
    Duration::from_millis(IDLE_CONNECTION_TIMEOUT_MS);
pub(super) const STALLED_PEER_TIMEOUT: Duration = Duration::from_millis(STALLED_PEER_TIMEOUT_MS);

/// Answers replication requests on `listener` until `shutdown` completes, then closes every
/// connection. Fails only if the snapshot directory cannot be created or cleaned of
/// interrupted transfers. A vote waits up to `loss_wait` (a heartbeat interval) for the
/// active's loss to show (see `Connection::authorized_by_loss`).
pub async fn serve<SM>(
    mut listener: Box<dyn Listener>,
    raft: Raft<TypeConfig, SM>,
    snapshot_directory: PathBuf,
    contact: Arc<LeaderContact>,
    loss_wait: Duration,
    execution: Execution,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    // Plain blocking calls: they run once, before serving, and a simulation needs every
    // step to finish on its own thread.
    std::fs::create_dir_all(&snapshot_directory)?;
    remove_interrupted_transfers(&snapshot_directory)?;
    let connection_slots = Arc::new(Semaphore::new(limits::MAX_INBOUND_REPLICATION_CONNECTIONS));
    let snapshot_directory: Arc<Path> = snapshot_directory.into();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                continue;
            }
        };
        // Over the limit the connection is closed at once, so the peer fails fast and retries.
        let Ok(slot) = Arc::clone(&connection_slots).try_acquire_owned() else {
            continue;
        };
        let connection = Connection {
            raft: raft.clone(),
            snapshot_directory: Arc::clone(&snapshot_directory),
            execution,
            record: contact.connection_record(),
            loss_wait,
        };
        connections.spawn(async move {
            // A failed or garbled connection is closed without an answer; the peer reconnects.
            let _ = connection.serve(stream).await;
            drop(slot);
        });
    }
    connections.shutdown().await;
    Ok(())
}

/// One accepted connection.
struct Connection<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    raft: Raft<TypeConfig, SM>,
    snapshot_directory: Arc<Path>,
    /// Where writing a received snapshot file runs.
    execution: Execution,
    record: ConnectionRecord,
    /// How long a vote waits for the active's loss to show.
    loss_wait: Duration,
}

impl<SM> Connection<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    async fn serve(mut self, stream: BoxedConnection) -> io::Result<()> {
        let mut stream = BufStream::new(stream);
        let mut frames = FrameBuffer::default();
        loop {
            let waiting = timeout(IDLE_CONNECTION_TIMEOUT, stream.fill_buf()).await;
            if waiting
                .map_err(|_elapsed| stalled("idle connection"))??
                .is_empty()
            {
                return Ok(());
            }
            let request = timeout(
                STALLED_PEER_TIMEOUT,
                read_frame_with(&mut stream, &mut frames),
            )
            .await
            .map_err(|_elapsed| stalled("partial frame"))??;
            let Some(request) = request else {
                return Ok(());
            };
            if let Request::AppendStream = request {
                return append_stream::serve(&self.raft, &mut self.record, stream).await;
            }
            let response = self.answer(request, &mut stream).await?;
            let answered = write_frame_with(&mut stream, &response, &mut frames);
            timeout(STALLED_PEER_TIMEOUT, answered)
                .await
                .map_err(|_elapsed| stalled("unread response"))??;
        }
    }

    /// A voter normally refuses to vote while its lease on the active runs (the lease lasts
    /// the maximum election timeout). When this node saw every replication connection of the
    /// active close and has heard nothing from it since, the active's process is gone: the
    /// vote is treated like one the active authorized (a leadership transfer), so a new
    /// active is elected at once instead of after the lease. Only liveness depends on this,
    /// never safety: a vote still needs an up-to-date log and a newer term, and an
    /// acknowledgement still needs a majority.
    ///
    /// The peer that noticed first may ask before this node has read the end of its own
    /// connections from the dead process, so while the active was heard from a moment ago
    /// the vote waits up to a heartbeat interval for that end to show.
    async fn authorized_by_loss(
        &self,
        mut rpc: VoteRequest<TypeConfig>,
    ) -> VoteRequest<TypeConfig> {
        // A switchover's vote is authorized already, and its active is alive: no wait.
        if rpc.leadership_transfer {
            return rpc;
        }
        if self.record.active_is_gone_within(self.loss_wait).await {
            rpc.leadership_transfer = true;
        }
        rpc
    }

    async fn answer(
        &mut self,
        request: Request,
        stream: &mut BufStream<BoxedConnection>,
    ) -> io::Result<Response> {
        let response = match request {
            Request::AppendEntries(rpc) => {
                let leader_id = *rpc.vote.leader_id().node_id();
                let term = rpc.vote.leader_id().term();
                let progress = LogProgress::of(&rpc);
                let response = self.raft.append_entries(rpc).await;
                if let Ok(accepted) = &response
                    && !matches!(accepted, AppendEntriesResponse::HigherVote(_))
                {
                    self.record
                        .append_entries_accepted(leader_id, term, progress);
                }
                response.map(Response::AppendEntries).map_err(failed)
            }
            Request::Vote(rpc) => {
                let candidate_log = rpc.last_log_id;
                let answer = self.raft.vote(self.authorized_by_loss(rpc).await).await;
                if let Ok(vote) = &answer
                    && !vote.vote_granted
                    && vote.last_log_id > candidate_log
                {
                    self.record.refused_a_candidate_behind();
                }
                answer.map(Response::Vote).map_err(failed)
            }
            Request::PreVote(rpc) => self
                .raft
                .pre_vote(self.authorized_by_loss(rpc).await)
                .await
                .map(Response::PreVote)
                .map_err(failed),
            Request::TransferLeader(request, cause) => {
                let from = *request.from_leader().leader_id();
                let to_this_node = *request.to_node_id() == self.raft.metrics().borrow_watched().id;
                let answer = self.raft.handle_transfer_leader(request).await;
                if to_this_node && matches!(answer, Ok(Ok(()))) {
                    self.record.handed_over(*from.node_id(), from.term(), cause);
                }
                answer.map(Response::TransferLeader).map_err(failed)
            }
            // `serve` hands a connection that opens a session to `append_stream` first.
            Request::AppendStream => Err(failed("a replication session is not answered here")),
            Request::InstallSnapshot {
                vote,
                meta,
                total_bytes,
            } => {
                room_for_received_snapshot(&self.snapshot_directory, total_bytes)?;
                let path = self.receive_snapshot(stream, total_bytes).await?;
                Ok(self.install_snapshot(vote, meta, path).await)
            }
        };
        Ok(response.unwrap_or_else(|failed| failed))
    }

    /// Copies the `total_bytes` that follow the header into a new, fsynced file.
    async fn receive_snapshot(
        &self,
        stream: &mut BufStream<BoxedConnection>,
        total_bytes: u64,
    ) -> io::Result<PathBuf> {
        let (mut file, path) =
            create_received_file(&self.snapshot_directory, self.execution).await?;
        let received = async {
            let mut chunk = vec![0u8; limits::SNAPSHOT_CHUNK_BYTES];
            let mut remaining_bytes = total_bytes;
            while remaining_bytes > 0 {
                let chunk_bytes = remaining_bytes.min(chunk.len() as u64) as usize;
                timeout(
                    STALLED_PEER_TIMEOUT,
                    stream.read_exact(&mut chunk[..chunk_bytes]),
                )
                .await
                .map_err(|_elapsed| stalled("snapshot transfer"))??;
                chunk = file.write_all(chunk, chunk_bytes).await?;
                remaining_bytes -= chunk_bytes as u64;
            }
            file.sync_all().await?;
            blocking_file::sync_directory(&self.snapshot_directory, self.execution).await
        }
        .await;
        match received {
            Ok(()) => Ok(path),
            Err(error) => {
                let _ = blocking_file::remove_file(&path, self.execution).await;
                Err(error)
            }
        }
    }

    async fn install_snapshot(&self, vote: Vote, meta: SnapshotMeta, path: PathBuf) -> Response {
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path: path.clone() },
        };
        let installed = self.raft.install_full_snapshot(vote, snapshot).await;
        // Not taken by the state machine: refused, or not newer than what is committed.
        match blocking_file::remove_file(&path, self.execution).await {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Response::Failed {
                    reason: format!("cannot remove {}: {error}", path.display()),
                };
            }
            _ => {}
        }
        match installed {
            Ok(response) => Response::InstallSnapshot(response),
            Err(fatal) => failed(fatal),
        }
    }
}

/// Set while this node refuses the active's snapshots for want of room, so that it says so
/// once, and once more when it has room again.
static REFUSING_SNAPSHOTS: AtomicBool = AtomicBool::new(false);

/// Refuses, before a byte of it is read, a snapshot of `total_bytes` that the disk holding
/// `directory` has no room to install (its free space cannot be measured: it is tried).
/// The connection closes; the active sends the snapshot again later, and the node stays up
/// instead of stopping on a failed install.
fn room_for_received_snapshot(directory: &Path, total_bytes: u64) -> io::Result<()> {
    let Ok(free_bytes) = filesystem_free_bytes(directory) else {
        return Ok(());
    };
    let fits = received_snapshot_fits(free_bytes, total_bytes);
    let refusal = Change::between(REFUSING_SNAPSHOTS.swap(!fits, Ordering::Relaxed), !fits);
    if fits {
        if refusal == Some(Change::Ends) {
            eprintln!("tandem: the disk has room for the active's snapshot again; taking it");
        }
        return Ok(());
    }
    let reason = format!(
        "no room for the active's snapshot: it takes {} twice (the received file, then the \
         store's copy) and {} more to spare; the disk under {} has {} free",
        format_bytes(total_bytes),
        format_bytes(limits::SNAPSHOT_SPARE_BYTES),
        directory.display(),
        format_bytes(free_bytes)
    );
    if refusal == Some(Change::Starts) {
        eprintln!("tandem: {reason}; refusing it until there is room");
    }
    Err(io::Error::new(io::ErrorKind::StorageFull, reason))
}

fn failed(error: impl std::fmt::Display) -> Response {
    Response::Failed {
        reason: error.to_string(),
    }
}

pub(super) fn stalled(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: peer stalled"))
}

/// A new file for one incoming snapshot; its name is unique within the process and, with the
/// wall clock, across restarts.
async fn create_received_file(
    directory: &Path,
    execution: Execution,
) -> io::Result<(BlockingFile, PathBuf)> {
    static RECEIVED_SNAPSHOTS: AtomicU64 = AtomicU64::new(0);
    let sequence = RECEIVED_SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
    let started_ms = crate::clock::wall_clock_ms();
    let path = directory.join(format!(
        "{RECEIVED_SNAPSHOT_PREFIX}{started_ms}-{sequence}{RECEIVED_SNAPSHOT_SUFFIX}"
    ));
    let file = BlockingFile::create_new(path.clone(), execution).await?;
    Ok((file, path))
}

/// Removes what snapshot transfers cut short by a stop left behind: received files, and
/// copies made from them (the store copies a snapshot of another page size next to it, under
/// the same name with another extension).
fn remove_interrupted_transfers(directory: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(RECEIVED_SNAPSHOT_PREFIX)
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files;

    #[test]
    fn interrupted_transfers_and_their_copies_are_removed_and_nothing_else() {
        let directory = tempfile::tempdir().expect("temp dir");
        let names = [
            "received-1700000000000-0.page-size-8192",
            "received-1700000000000-0.snapshot",
            "snapshot-00000000000000000042.meta",
            "snapshot-00000000000000000042.sqlite",
        ];
        test_files::create(directory.path(), &names);
        remove_interrupted_transfers(directory.path()).expect("the directory is read");
        assert_eq!(test_files::names(directory.path()), names[2..].to_vec());
    }
}
