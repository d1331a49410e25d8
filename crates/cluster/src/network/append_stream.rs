//! Pipelined replication: the entries of one openraft replication session travel over a
//! connection of their own, each AppendEntries sent as soon as openraft has it, without
//! waiting for the answer to the one before. Sent one at a time, each AppendEntries waited for
//! the passive's round trip (its write and fsync) of the previous one, and entries proposed
//! meanwhile waited with it.
//!
//! The session opens with [`Request::AppendStream`], which the peer answers with
//! [`Response::AppendStreamOpened`]; from then on the leader sends only
//! [`Request::AppendEntries`] frames and the peer answers each, in order, with
//! [`Response::Appended`] from `Raft::stream_append`, which hands the requests to its Raft
//! without waiting for their answers. The session ends when either side closes the
//! connection: the leader when openraft drops the session, the peer after an answer that ends
//! it (a conflict, a higher vote, or its Raft stopped).
//!
//! The first AppendEntries of a session goes alone: it is the one a passive whose log
//! differs refuses (a conflict ends the session), and openraft backs off before the next
//! session when requests it sent are left unanswered by one that made no progress. Once it is
//! accepted, at most `MAX_APPEND_ENTRIES_IN_FLIGHT` AppendEntries are unanswered at a time,
//! so that a passive catching up does not take in the log faster than it writes it. The oldest
//! unanswered one must be answered within the replication timeout, or the session fails and
//! openraft opens another. A peer that does not know sessions (a node of an earlier version,
//! which closes a connection on a request it cannot read) gets the session's requests one at
//! a time instead.

use std::collections::VecDeque;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use openraft::Raft;
use openraft::error::{NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendError, StreamAppendResult};
use openraft::storage::RaftStateMachine;
use openraft::vote::RaftLeaderId;
use tandem_core::limits;
use tokio::io::{AsyncBufReadExt, BufReader, BufStream, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use super::leader_contact::{ConnectionRecord, LogProgress};
use super::messages::{Request, Response};
use super::server::{IDLE_CONNECTION_TIMEOUT, STALLED_PEER_TIMEOUT, stalled};
use super::transport::BoxedConnection;
use crate::codec::{FrameBuffer, read_frame_with, write_frame_with};
use crate::types::{NodeId, SnapshotFile, TypeConfig};

/// One answer of a session as openraft takes it.
pub type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// How opening a session on a connection went.
pub enum Opening {
    /// The peer takes pipelined AppendEntries on this connection.
    Opened(BoxedConnection),
    /// The peer closed the connection on the opening request: it does not know the session.
    NotUnderstood,
}

/// Sends [`Request::AppendStream`] on a new connection and waits, until `deadline`, for the
/// peer to accept it.
pub async fn open(connection: BoxedConnection, deadline: Instant) -> io::Result<Opening> {
    let mut connection = BufStream::new(connection);
    let mut frames = FrameBuffer::default();
    let answered = timeout_at(deadline, async {
        write_frame_with(&mut connection, &Request::AppendStream, &mut frames).await?;
        read_frame_with(&mut connection, &mut frames).await
    })
    .await
    .map_err(|_elapsed| timed_out("no answer to the opening of a replication session"))?;
    match answered {
        // Nothing follows the answer until a request is sent: no buffered byte is lost.
        Ok(Some(Response::AppendStreamOpened)) => Ok(Opening::Opened(connection.into_inner())),
        Ok(Some(Response::Failed { reason })) => Err(io::Error::other(reason)),
        Ok(Some(other)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {other:?} to the opening of a replication session"),
        )),
        Ok(None) => Ok(Opening::NotUnderstood),
        Err(error) if closed_by_peer(&error) => Ok(Opening::NotUnderstood),
        Err(error) => Err(error),
    }
}

fn closed_by_peer(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Sends `requests` over the opened `connection` as they come, and yields the peer's answers
/// in order. The oldest unanswered request must be answered within `answer_within`. `peer`
/// names the peer in errors.
pub fn pipeline<S>(
    connection: BoxedConnection,
    requests: S,
    answer_within: Duration,
    peer: String,
) -> BoxStream<'static, Answer>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(connection);
    let (sent, sent_receiver) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(1));
    let sender = AbortOnDrop(tokio::spawn(send_requests(
        BufWriter::new(writer),
        requests,
        Arc::clone(&room),
        sent,
        answer_within,
    )));
    let answers = Answers {
        reader: BufReader::new(reader),
        frames: FrameBuffer::default(),
        sent: sent_receiver,
        unanswered: VecDeque::new(),
        room,
        accepted_once: false,
        answer_within,
        peer,
        _sender: sender,
    };
    stream::unfold(Some(answers), |answers| async move {
        answers?.next_answer().await
    })
    .boxed()
}

/// What the sending task tells the reading side, in order.
enum Sent {
    /// A request is on its way, sent at this instant.
    Request(Instant),
    /// The connection failed while sending; nothing more is sent.
    Failed(io::Error),
}

/// Sends each request once `room` has a permit for it (see [`Answers::room`]).
async fn send_requests<S>(
    mut writer: BufWriter<WriteHalf<BoxedConnection>>,
    mut requests: S,
    room: Arc<Semaphore>,
    sent: mpsc::UnboundedSender<Sent>,
    write_within: Duration,
) where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin,
{
    let mut frames = FrameBuffer::default();
    loop {
        let Ok(permit) = room.acquire().await else {
            return;
        };
        permit.forget();
        let Some(rpc) = requests.next().await else {
            return;
        };
        // Announced before it is written, so that its answer is awaited from now on.
        if sent.send(Sent::Request(Instant::now())).is_err() {
            return;
        }
        let request = Request::AppendEntries(rpc);
        let written = timeout(
            write_within,
            write_frame_with(&mut writer, &request, &mut frames),
        )
        .await
        .unwrap_or_else(|_elapsed| Err(timed_out("the peer took no more requests")));
        if let Err(error) = written {
            let _ = sent.send(Sent::Failed(error));
            return;
        }
    }
}

/// The reading side of a session, and the sending task it stops when dropped.
struct Answers {
    reader: BufReader<ReadHalf<BoxedConnection>>,
    frames: FrameBuffer,
    sent: mpsc::UnboundedReceiver<Sent>,
    /// When each request not yet answered was sent, oldest first.
    unanswered: VecDeque<Instant>,
    /// Permits for requests to send: one at first; once the peer accepted a request, one goes
    /// back with each answer, up to `MAX_APPEND_ENTRIES_IN_FLIGHT` in all.
    room: Arc<Semaphore>,
    accepted_once: bool,
    answer_within: Duration,
    peer: String,
    _sender: AbortOnDrop,
}

impl Answers {
    /// The next answer, and the state to read the one after it with, unless the session ended.
    async fn next_answer(mut self) -> Option<(Answer, Option<Answers>)> {
        let oldest = loop {
            while let Ok(sent) = self.sent.try_recv() {
                if let Err(error) = self.note(sent) {
                    return Some((Err(self.network_error(error)), None));
                }
            }
            if let Some(&oldest) = self.unanswered.front() {
                break oldest;
            }
            // Nothing in flight: wait for the next request, or the end of the session.
            let sent = self.sent.recv().await?;
            if let Err(error) = self.note(sent) {
                return Some((Err(self.network_error(error)), None));
            }
        };
        let deadline = oldest + self.answer_within;
        let read = timeout_at(
            deadline,
            read_frame_with(&mut self.reader, &mut self.frames),
        )
        .await;
        let answer = match read {
            Ok(Ok(Some(Response::Appended(result)))) => {
                self.unanswered.pop_front();
                let goes_on = result.is_ok();
                if goes_on && !self.accepted_once {
                    self.accepted_once = true;
                    self.room.add_permits(limits::MAX_APPEND_ENTRIES_IN_FLIGHT);
                } else {
                    self.room.add_permits(1);
                }
                return Some((Ok(result), goes_on.then_some(self)));
            }
            Ok(Ok(Some(Response::Failed { reason }))) => {
                RPCError::Unreachable(Unreachable::from_string(format!("{}: {reason}", self.peer)))
            }
            Ok(Ok(Some(other))) => self.network_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected response {other:?} in a replication session"),
            )),
            Ok(Ok(None)) => self.network_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the replication session before answering",
            )),
            Ok(Err(error)) => self.network_error(error),
            Err(_elapsed) => self.network_error(timed_out("no answer to an AppendEntries")),
        };
        Some((Err(answer), None))
    }

    fn note(&mut self, sent: Sent) -> io::Result<()> {
        match sent {
            Sent::Request(at) => {
                self.unanswered.push_back(at);
                Ok(())
            }
            Sent::Failed(error) => Err(error),
        }
    }

    fn network_error(&self, error: io::Error) -> RPCError<TypeConfig> {
        let described = io::Error::new(error.kind(), format!("{}: {error}", self.peer));
        RPCError::Network(NetworkError::new(&described))
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers a session the peer opened with [`Request::AppendStream`] on `connection`, until
/// the peer closes it or an answer ends it. Every accepted AppendEntries is recorded in
/// `record`.
pub(super) async fn serve<SM>(
    raft: &Raft<TypeConfig, SM>,
    record: &mut ConnectionRecord,
    mut connection: BufStream<BoxedConnection>,
) -> io::Result<()>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    let mut frames = FrameBuffer::default();
    let opened = write_frame_with(&mut connection, &Response::AppendStreamOpened, &mut frames);
    timeout(STALLED_PEER_TIMEOUT, opened)
        .await
        .map_err(|_elapsed| stalled("unread response"))??;
    // The peer sends nothing more until it reads the answer: no buffered byte is lost.
    let (reader, writer) = tokio::io::split(connection.into_inner());
    // A session keeps no more unanswered than this; beyond it, the peer waits on the socket.
    let (requests, request_receiver) = mpsc::channel(limits::MAX_APPEND_ENTRIES_IN_FLIGHT);
    let (leaders, mut leader_receiver) = mpsc::unbounded_channel();
    let _receiver = AbortOnDrop(tokio::spawn(receive_requests(
        BufReader::new(reader),
        requests,
        leaders,
    )));
    let received = stream::unfold(request_receiver, |mut receiver| async move {
        receiver.recv().await.map(|request| (request, receiver))
    });
    let mut answers = pin!(raft.stream_append(received));
    let mut writer = BufWriter::new(writer);
    while let Some(answer) = answers.next().await {
        let Some((leader_id, term, progress)) = leader_receiver.recv().await else {
            break;
        };
        let response = match answer {
            Ok(result) => {
                if !matches!(result, Err(StreamAppendError::HigherVote(_))) {
                    record.append_entries_accepted(leader_id, term, progress);
                }
                Response::Appended(result)
            }
            Err(fatal) => Response::Failed {
                reason: fatal.to_string(),
            },
        };
        let written = write_frame_with(&mut writer, &response, &mut frames);
        timeout(STALLED_PEER_TIMEOUT, written)
            .await
            .map_err(|_elapsed| stalled("unread response"))??;
        if !matches!(response, Response::Appended(Ok(_))) {
            break;
        }
    }
    Ok(())
}

/// Reads AppendEntries from the connection and hands each to the Raft, and its leader and
/// term to the answering side, until the peer closes the connection, stalls, or sends
/// anything else.
async fn receive_requests(
    mut reader: BufReader<ReadHalf<BoxedConnection>>,
    requests: mpsc::Sender<AppendEntriesRequest<TypeConfig>>,
    leaders: mpsc::UnboundedSender<(NodeId, u64, LogProgress)>,
) {
    let mut frames = FrameBuffer::default();
    loop {
        match timeout(IDLE_CONNECTION_TIMEOUT, reader.fill_buf()).await {
            Ok(Ok(buffered)) if !buffered.is_empty() => {}
            _ => return,
        }
        let read = timeout(
            STALLED_PEER_TIMEOUT,
            read_frame_with(&mut reader, &mut frames),
        )
        .await;
        let Ok(Ok(Some(Request::AppendEntries(rpc)))) = read else {
            return;
        };
        let leader = (
            *rpc.vote.leader_id().node_id(),
            rpc.vote.leader_id().term(),
            LogProgress::of(&rpc),
        );
        if leaders.send(leader).is_err() || requests.send(rpc).await.is_err() {
            return;
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}
