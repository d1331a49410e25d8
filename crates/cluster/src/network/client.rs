//! The sending side of replication: [`NetworkFactory`] gives openraft one [`PeerClient`] per
//! target member, which keeps at most one connection to the member's `raft_address` for its
//! RPCs, and opens one more for each pipelined replication session ([`super::append_stream`]).
//! The factory also tells failover whether a member's port refuses connections (its
//! process is gone: [`NetworkFactory::refuses_connections`]).
//!
//! Every RPC is bounded by `RPCOption::soft_ttl()` from connect to answer. A snapshot transfer
//! is bounded per step instead (connect, header, each chunk, the answer), so its total time
//! grows with its size, and it stops as soon as openraft cancels it. The answer comes after
//! the peer has checked and installed the whole snapshot, so its wait also grows with the
//! size ([`snapshot_answer_timeout`]). Any failure drops the
//! connection and the next RPC reconnects: a failure to connect is [`Unreachable`] (openraft
//! backs off), anything later is a [`NetworkError`] (openraft retries at once).

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2, stream_append_sequential};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::SnapshotOf;
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, StorageError};
use tandem_store::Execution;
use tokio::io::{AsyncWriteExt, BufStream};
use tokio::time::{Instant, timeout, timeout_at};

use super::messages::{Request, Response};
use tandem_core::limits::SNAPSHOT_CHUNK_BYTES;

use super::MIN_REPLICATION_TIMEOUT_MS;
use super::append_stream::{self, Answer, Opening};
use super::blocking_file::BlockingFile;
use super::transport::{BoxedConnection, TcpTransport, Transport};
use crate::codec::{FrameBuffer, read_frame, read_frame_with, write_frame, write_frame_with};
use crate::hand_over::HandOverNote;
use crate::types::{Member, NodeId, SnapshotFile, TypeConfig, Vote};

/// Creates the per-target clients openraft sends RPCs through.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    /// Peers this node reaches at another address than the one in the membership (a
    /// tunnel, a NAT, or a fault-injecting proxy in tests).
    route_overrides: Arc<BTreeMap<NodeId, String>>,
    transport: Arc<dyn Transport>,
    /// Where reading a snapshot file to send runs.
    execution: Execution,
    /// Why this node hands its role over, sent with the hand-over.
    hand_over_note: Arc<HandOverNote>,
}

impl NetworkFactory {
    pub fn new(
        route_overrides: BTreeMap<NodeId, String>,
        transport: Arc<dyn Transport>,
        execution: Execution,
    ) -> NetworkFactory {
        NetworkFactory {
            route_overrides: Arc::new(route_overrides),
            transport,
            execution,
            hand_over_note: HandOverNote::new(),
        }
    }

    /// The same factory, whose clients send the cause in `note` with a hand-over.
    pub fn with_hand_over_note(self, note: Arc<HandOverNote>) -> NetworkFactory {
        NetworkFactory {
            hand_over_note: note,
            ..self
        }
    }

    /// The address this node dials to reach `target`: its route override, or the
    /// membership's.
    fn address_of<'a>(&'a self, target: NodeId, member: &'a Member) -> &'a str {
        self.route_overrides
            .get(&target)
            .unwrap_or(&member.raft_address)
    }

    /// Whether `target`'s replication address refuses a connection within `within`: its
    /// host answers but nothing listens on the port, as at once after its process died.
    /// Anything else (accepted, timed out, unreachable) proves nothing, and answers false.
    /// An accepted connection is closed again at once.
    pub async fn refuses_connections(
        &self,
        target: NodeId,
        member: &Member,
        within: Duration,
    ) -> bool {
        let address = self.address_of(target, member);
        matches!(
            timeout(within, self.transport.connect(address)).await,
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused
        )
    }
}

impl Default for NetworkFactory {
    fn default() -> NetworkFactory {
        NetworkFactory::new(BTreeMap::new(), Arc::new(TcpTransport), Execution::Threads)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let address = self.address_of(target, node).to_string();
        PeerClient::new(target, address, self.transport.clone(), self.execution)
            .with_hand_over_note(self.hand_over_note.clone())
    }
}

/// Sends one member's RPCs, one at a time, over a connection opened on first use.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    address: String,
    transport: Arc<dyn Transport>,
    execution: Execution,
    connection: Option<BufStream<BoxedConnection>>,
    /// The buffer the connection's frames are encoded into and read into.
    frames: FrameBuffer,
    hand_over_note: Arc<HandOverNote>,
}

/// Why an exchange failed, and whether the peer was ever reached.
enum Failure {
    Connect(io::Error),
    Exchange(io::Error),
}

impl PeerClient {
    pub fn new(
        target: NodeId,
        address: String,
        transport: Arc<dyn Transport>,
        execution: Execution,
    ) -> Self {
        Self {
            target,
            address,
            transport,
            execution,
            connection: None,
            frames: FrameBuffer::default(),
            hand_over_note: HandOverNote::new(),
        }
    }

    /// The same client, sending the cause in `note` with a hand-over.
    pub fn with_hand_over_note(self, note: Arc<HandOverNote>) -> Self {
        Self {
            hand_over_note: note,
            ..self
        }
    }

    /// Sends `request` and waits for its response, all within `time_limit`.
    async fn call(
        &mut self,
        request: Request,
        time_limit: Duration,
    ) -> Result<Response, RPCError<TypeConfig>> {
        let deadline = Instant::now() + time_limit;
        match self.exchange(&request, deadline).await {
            Ok(Response::Failed { reason }) => {
                Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "node {} at {}: {reason}",
                    self.target, self.address
                ))))
            }
            Ok(response) => Ok(response),
            Err(failure) => Err(self.fail(failure)),
        }
    }

    async fn exchange(
        &mut self,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        let mut frames = std::mem::take(&mut self.frames);
        let connection = self.connect(deadline).await?;
        let answered = timeout_at(deadline, async {
            write_frame_with(connection, request, &mut frames).await?;
            read_frame_with(connection, &mut frames).await
        })
        .await;
        self.frames = frames;
        match answered {
            Ok(Ok(Some(response))) => Ok(response),
            Ok(Ok(None)) => Err(Failure::Exchange(closed_before_answering())),
            Ok(Err(error)) => Err(Failure::Exchange(error)),
            Err(_elapsed) => Err(Failure::Exchange(timed_out("no answer"))),
        }
    }

    /// The open connection, or a new one if there is none or the peer closed it.
    async fn connect(
        &mut self,
        deadline: Instant,
    ) -> Result<&mut BufStream<BoxedConnection>, Failure> {
        let kept = self
            .connection
            .take()
            .and_then(|mut connection| connection.get_mut().is_open().then_some(connection));
        let connection = match kept {
            Some(connection) => connection,
            None => {
                let dialed = timeout_at(deadline, self.transport.connect(&self.address)).await;
                match dialed {
                    Ok(Ok(stream)) => BufStream::new(stream),
                    Ok(Err(error)) => return Err(Failure::Connect(error)),
                    Err(_elapsed) => return Err(Failure::Connect(timed_out("no connection"))),
                }
            }
        };
        Ok(self.connection.insert(connection))
    }

    /// Drops the connection after a failure and describes it for openraft.
    fn fail(&mut self, failure: Failure) -> RPCError<TypeConfig> {
        self.connection = None;
        match failure {
            Failure::Connect(error) => {
                RPCError::Unreachable(Unreachable::new(&self.describe(error)))
            }
            Failure::Exchange(error) => RPCError::Network(NetworkError::new(&self.describe(error))),
        }
    }

    /// A response of the wrong kind: the connection is out of step, so it is dropped.
    fn unexpected(&mut self, response: Response) -> RPCError<TypeConfig> {
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected response {response:?}"),
        );
        self.fail(Failure::Exchange(error))
    }

    fn describe(&self, error: io::Error) -> io::Error {
        io::Error::new(
            error.kind(),
            format!("node {} at {}: {error}", self.target, self.address),
        )
    }

    /// Opens a replication session on a new connection and pipelines `requests` over it; with
    /// a peer that does not know sessions, sends them one at a time on the kept connection.
    async fn pipeline<S>(
        &mut self,
        requests: S,
        option: RPCOption,
    ) -> Result<BoxStream<'_, Answer>, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let deadline = Instant::now() + option.soft_ttl();
        let dialed = timeout_at(deadline, self.transport.connect(&self.address))
            .await
            .unwrap_or_else(|_elapsed| Err(timed_out("no connection")));
        let connection = dialed.map_err(|error| self.fail(Failure::Connect(error)))?;
        let opened = append_stream::open(connection, deadline).await;
        match opened.map_err(|error| self.fail(Failure::Exchange(error)))? {
            Opening::Opened(connection) => Ok(append_stream::pipeline(
                connection,
                requests,
                replication_time_limit(&option),
                format!("node {} at {}", self.target, self.address),
            )),
            Opening::NotUnderstood => stream_append_sequential(self, requests, option).await,
        }
    }

    /// Sends the header, the file's bytes and waits for the answer, each step within the soft
    /// TTL.
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        option: &RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let (file, total_bytes) =
            BlockingFile::open(snapshot.snapshot.path.clone(), self.execution)
                .await
                .map_err(|error| {
                    let subject = ErrorSubject::Snapshot(Some(snapshot.meta.signature()));
                    StorageError::from_io_error(subject, ErrorVerb::Read, error)
                })?;
        let header = Request::InstallSnapshot {
            vote,
            meta: snapshot.meta,
            total_bytes,
        };
        let soft_ttl = option.soft_ttl();
        let connection = match self.connect(Instant::now() + soft_ttl).await {
            Ok(connection) => connection,
            Err(failure) => return Err(self.fail(failure).into()),
        };
        let answered = async {
            within(soft_ttl, write_frame(connection, &header)).await?;
            copy_snapshot(file, total_bytes, connection, soft_ttl).await?;
            within(
                snapshot_answer_timeout(soft_ttl, total_bytes),
                read_frame(connection),
            )
            .await
        }
        .await;
        match answered {
            Ok(Some(Response::InstallSnapshot(response))) => Ok(response),
            Ok(Some(Response::Failed { reason })) => Err(StreamingError::Unreachable(
                Unreachable::from_string(format!("node {}: {reason}", self.target)),
            )),
            Ok(Some(response)) => Err(self.unexpected(response).into()),
            Ok(None) => Err(self
                .fail(Failure::Exchange(closed_before_answering()))
                .into()),
            Err(error) => Err(self.fail(Failure::Exchange(error)).into()),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft bounds replication by the heartbeat interval, which is right for an
        // empty heartbeat but too short for a batch the peer must fsync under load.
        let time_limit = if rpc.entries.is_empty() {
            option.soft_ttl()
        } else {
            replication_time_limit(&option)
        };
        match self.call(Request::AppendEntries(rpc), time_limit).await? {
            Response::AppendEntries(response) => Ok(response),
            other => Err(self.unexpected(other)),
        }
    }

    /// A single request (openraft's heartbeats) goes as one AppendEntries on the kept
    /// connection; a replication session, pipelined on a connection of its own
    /// ([`append_stream`]).
    fn stream_append<'s, S>(
        &'s mut self,
        mut input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Answer>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let Some(first) = input.next().await else {
                return Ok(stream::empty().boxed());
            };
            // `Some(None)`: the input has ended already.
            let second = input.next().now_or_never();
            if let Some(None) = second {
                return stream_append_sequential(self, stream::iter([first]), option).await;
            }
            let taken = stream::iter([Some(first), second.flatten()].into_iter().flatten());
            self.pipeline(taken.chain(input), option).await
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::Vote(rpc), option.soft_ttl()).await? {
            Response::Vote(response) => Ok(response),
            other => Err(self.unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::PreVote(rpc), option.soft_ttl()).await? {
            Response::PreVote(response) => Ok(response),
            other => Err(self.unexpected(other)),
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                Request::TransferLeader(request, self.hand_over_note.cause()),
                option.soft_ttl(),
            )
            .await?
        {
            Response::TransferLeader(response) => Ok(response),
            other => Err(self.unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let cancelled = tokio::select! {
            biased;
            sent = self.send_snapshot(vote, snapshot, &option) => return sent,
            closed = cancel => closed,
        };
        // The peer is mid-snapshot and would read anything sent next as snapshot bytes.
        self.connection = None;
        Err(StreamingError::Closed(cancelled))
    }
}

/// How long an AppendEntries that carries entries may wait for its answer.
fn replication_time_limit(option: &RPCOption) -> Duration {
    option
        .soft_ttl()
        .max(Duration::from_millis(MIN_REPLICATION_TIMEOUT_MS))
}

/// The slowest rate at which a peer is expected to check and install a snapshot it received
/// (its integrity check reads the file, SQLite's backup API copies it into the store).
const MIN_SNAPSHOT_INSTALL_BYTES_PER_SECOND: u64 = 10 * 1024 * 1024;

/// How long the sender of a snapshot of `total_bytes` waits for the peer's answer: the RPC's
/// soft TTL, plus the time to install that many bytes at
/// [`MIN_SNAPSHOT_INSTALL_BYTES_PER_SECOND`]. (A fixed wait would make every transfer of a
/// store too large to install within it fail, and be sent again, forever.)
pub fn snapshot_answer_timeout(soft_ttl: Duration, total_bytes: u64) -> Duration {
    let install =
        Duration::from_secs_f64(total_bytes as f64 / MIN_SNAPSHOT_INSTALL_BYTES_PER_SECOND as f64);
    soft_ttl.saturating_add(install)
}

/// Streams exactly `total_bytes` of `file` to `connection`, each chunk within `step_timeout`.
async fn copy_snapshot(
    mut file: BlockingFile,
    total_bytes: u64,
    connection: &mut BufStream<BoxedConnection>,
    step_timeout: std::time::Duration,
) -> io::Result<()> {
    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
    let mut sent_bytes = 0u64;
    while sent_bytes < total_bytes {
        let wanted = (total_bytes - sent_bytes).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        chunk.resize(wanted, 0);
        let read_bytes;
        (chunk, read_bytes) = file.read(chunk).await?;
        if read_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("snapshot file shrank to {sent_bytes} of {total_bytes} bytes while sent"),
            ));
        }
        within(step_timeout, connection.write_all(&chunk[..read_bytes])).await?;
        sent_bytes += read_bytes as u64;
    }
    within(step_timeout, connection.flush()).await
}

async fn within<T>(
    limit: std::time::Duration,
    step: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    timeout(limit, step)
        .await
        .unwrap_or_else(|_elapsed| Err(timed_out("no progress")))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} within the RPC's soft TTL"),
    )
}

fn closed_before_answering() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the connection before answering",
    )
}
