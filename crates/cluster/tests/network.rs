//! The replication transport: hard timeouts against silent peers, garbage on the port,
//! pipelined replication sessions (bounded, and heartbeats and older peers without them), and real
//! openraft nodes electing, replicating, sending snapshots and noticing a dead leader over it.

mod support;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::error::{RPCError, ReplicationClosed};
use openraft::network::{RPCOption, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
};
use openraft::{Config, Raft};
use support::memory_log::MemoryLog;
use support::memory_state_machine::MemoryStateMachine;
use tandem_cluster::codec::{read_frame, write_frame};
use tandem_cluster::network::client::snapshot_answer_timeout;
use tandem_cluster::network::messages::{Request, Response};
use tandem_cluster::network::{
    LeaderContact, NetworkFactory, PeerClient, TcpPeerListener, TcpTransport, serve,
};
use tandem_cluster::types::{
    Entry, Member, NodeId, Proposal, Snapshot, SnapshotFile, SnapshotMeta, TypeConfig, Vote, log_id,
};
use tandem_core::limits::MAX_APPEND_ENTRIES_IN_FLIGHT;
use tandem_store::Execution;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// Every wait in these tests ends after this, so a broken transport fails instead of hanging.
const TEST_WAIT: Duration = Duration::from_secs(10);

type TestRaft = Raft<TypeConfig, MemoryStateMachine>;

fn vote_request(candidate: NodeId) -> VoteRequest<TypeConfig> {
    VoteRequest::new(Vote::new(1, candidate), None)
}

#[tokio::test]
async fn a_peer_that_never_answers_fails_the_rpc_within_the_soft_ttl() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (accepted_sender, mut accepted) = tokio::sync::mpsc::channel(4);
    let silent_peer = tokio::spawn(async move {
        let mut held_open = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held_open.push(stream);
            accepted_sender.send(()).await.unwrap();
        }
    });
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    let option = RPCOption::new(Duration::from_millis(400));

    for attempt in 0..2 {
        let started = Instant::now();
        let answer = timeout(TEST_WAIT, client.vote(vote_request(1), option.clone()))
            .await
            .expect("the client must give up on its own");
        let elapsed = started.elapsed();
        assert!(
            matches!(answer, Err(RPCError::Network(_))),
            "attempt {attempt}: {answer:?}"
        );
        assert!(elapsed >= option.soft_ttl(), "gave up early: {elapsed:?}");
        assert!(elapsed < option.hard_ttl(), "gave up late: {elapsed:?}");
        // The failed connection is dropped: every attempt opens a new one.
        timeout(TEST_WAIT, accepted.recv()).await.unwrap().unwrap();
    }
    silent_peer.abort();
}

/// A peer answers a snapshot only after checking and installing all of it: the sender waits
/// longer for that answer the larger the snapshot, instead of giving up after the RPC's soft
/// TTL and sending the whole snapshot again, forever.
#[tokio::test]
async fn the_answer_to_a_large_snapshot_is_awaited_longer_than_the_soft_ttl() {
    const SNAPSHOT_BYTES: usize = 16 * 1024 * 1024;
    let soft_ttl = Duration::from_millis(300);
    let install_time = soft_ttl * 2;
    let answer_timeout = snapshot_answer_timeout(soft_ttl, SNAPSHOT_BYTES as u64);
    // Room to spare on a loaded machine: the peer answers well within the wait.
    assert!(answer_timeout > install_time * 3, "{answer_timeout:?}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let slow_installer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let header: Option<Request> = read_frame(&mut stream).await.unwrap();
        let Some(Request::InstallSnapshot {
            vote, total_bytes, ..
        }) = header
        else {
            panic!("expected a snapshot, got {header:?}");
        };
        let mut received = vec![0; total_bytes as usize];
        stream.read_exact(&mut received).await.unwrap();
        tokio::time::sleep(install_time).await;
        let answer = Response::InstallSnapshot(SnapshotResponse::new(vote));
        write_frame(&mut stream, &answer).await.unwrap();
        stream.flush().await.unwrap();
        received.len()
    });

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("snapshot.sqlite");
    std::fs::write(&path, vec![7u8; SNAPSHOT_BYTES]).unwrap();
    let snapshot = Snapshot {
        meta: SnapshotMeta::default(),
        snapshot: SnapshotFile { path },
    };
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    let vote = Vote::new_committed(3, 1);
    let never_cancelled = std::future::pending::<ReplicationClosed>();
    let answer = timeout(
        TEST_WAIT,
        client.full_snapshot(vote, snapshot, never_cancelled, RPCOption::new(soft_ttl)),
    )
    .await
    .expect("the client must give up on its own");
    assert_eq!(answer.expect("the slow installer's answer").vote, vote);
    assert_eq!(slow_installer.await.unwrap(), SNAPSHOT_BYTES);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    let answer = timeout(
        TEST_WAIT,
        client.vote(vote_request(1), RPCOption::new(Duration::from_millis(400))),
    )
    .await
    .unwrap();
    assert!(
        matches!(answer, Err(RPCError::Unreachable(_))),
        "{answer:?}"
    );
}

/// A closed port proves a peer's process gone; a listening one, or a route that leads
/// elsewhere (a tunnel, a proxy), proves nothing.
#[tokio::test]
async fn only_a_port_that_refuses_connections_counts_as_a_dead_process() {
    let listening = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let member_at = |address: String| Member {
        raft_address: address,
        grpc_address: String::new(),
        http_address: String::new(),
    };
    let live = member_at(listening.local_addr().unwrap().to_string());
    let dead = member_at(closed.local_addr().unwrap().to_string());
    drop(closed);
    let direct = NetworkFactory::default();
    let routed_to_the_live_port = NetworkFactory::new(
        BTreeMap::from([(2, live.raft_address.clone())]),
        Arc::new(TcpTransport),
        Execution::Threads,
    );
    let within = Duration::from_millis(500);

    assert!(direct.refuses_connections(2, &dead, within).await);
    assert!(!direct.refuses_connections(2, &live, within).await);
    assert!(
        !routed_to_the_live_port
            .refuses_connections(2, &dead, within)
            .await,
        "the route override is what is dialled"
    );
}

#[tokio::test]
async fn garbage_on_the_port_closes_only_that_connection() {
    let node = TestNode::start(1, &test_config()).await;
    let address = node.member.raft_address.clone();
    let mut client = PeerClient::new(
        1,
        address.clone(),
        Arc::new(TcpTransport),
        Execution::Threads,
    );
    let option = RPCOption::new(Duration::from_secs(2));
    let before = timeout(TEST_WAIT, client.vote(vote_request(2), option.clone())).await;
    assert!(before.unwrap().is_ok());

    let mut undecodable_frame = 5u32.to_be_bytes().to_vec();
    undecodable_frame.extend([0xc1; 5]);
    let mut wrong_type_frame = Vec::new();
    tandem_cluster::codec::write_frame(&mut wrong_type_frame, &"hello".to_string())
        .await
        .unwrap();
    let garbage: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: tandem\r\n\r\n",
        &undecodable_frame,
        &wrong_type_frame,
    ];
    for bytes in garbage {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        let read = timeout(TEST_WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("the server must close a connection that sent garbage");
        // Closed without an answer: either a clean end of stream or a reset.
        assert!(read.is_err() || answer.is_empty(), "answered {answer:?}");
    }
    // A frame cut short by the peer closing its side.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(&100u32.to_be_bytes()).await.unwrap();
    stream.write_all(&[0x92]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = timeout(TEST_WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(answer.is_empty());

    let after = timeout(TEST_WAIT, client.vote(vote_request(2), option.clone())).await;
    assert!(after.unwrap().is_ok(), "the kept connection still works");
    let mut fresh_client = PeerClient::new(1, address, Arc::new(TcpTransport), Execution::Threads);
    let fresh = timeout(TEST_WAIT, fresh_client.vote(vote_request(3), option)).await;
    assert!(fresh.unwrap().is_ok(), "new connections still work");
    node.stop().await;
}

/// A snapshot larger than the disk could install is refused before a byte of it is read:
/// the connection closes at once, nothing is written, and the node goes on answering. (Taken
/// in, its install would fail and stop the node's replication.)
#[tokio::test]
async fn a_snapshot_the_disk_has_no_room_for_is_refused_before_it_is_read() {
    let node = TestNode::start(1, &test_config()).await;
    let address = node.member.raft_address.clone();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let header = Request::InstallSnapshot {
        vote: Vote::new_committed(3, 2),
        meta: SnapshotMeta::default(),
        total_bytes: 1 << 60,
    };
    let mut frame = Vec::new();
    write_frame(&mut frame, &header).await.unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    let read = timeout(TEST_WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the connection closes at once instead of waiting for the snapshot's bytes");
    assert!(read.is_err() || answer.is_empty(), "answered {answer:?}");
    let files = std::fs::read_dir(node.snapshot_directory.path())
        .unwrap()
        .count();
    assert_eq!(files, 0, "a refused snapshot left a file behind");

    let mut client = PeerClient::new(1, address, Arc::new(TcpTransport), Execution::Threads);
    let option = RPCOption::new(Duration::from_secs(2));
    let after = timeout(TEST_WAIT, client.vote(vote_request(2), option)).await;
    assert!(after.unwrap().is_ok(), "the node still answers");
    node.stop().await;
}

#[tokio::test]
async fn three_nodes_elect_a_leader_and_replicate_a_write() {
    let nodes = start_cluster(3).await;
    let leader = wait_for_leader(&nodes).await;
    let written = timeout(TEST_WAIT, leader.raft.client_write(commands_at(42)))
        .await
        .unwrap()
        .unwrap();
    let index = written.log_id.index;
    for node in &nodes {
        wait_until_applied(&node.raft, index).await;
        assert_eq!(node.state_machine.applied_timestamps_ms(), vec![42]);
        if node.id != leader.id {
            let contact = node.contact.last_contact().expect("heard from the leader");
            assert_eq!(contact.leader_id, leader.id);
        }
    }
    stop_all(nodes).await;
}

#[tokio::test]
async fn a_new_learner_catches_up_through_a_snapshot() {
    let config = test_config();
    let nodes = start_cluster(3).await;
    let leader = wait_for_leader(&nodes).await;
    let mut last_index = 0;
    for timestamp_ms in [7, 8, 9] {
        let written = timeout(
            TEST_WAIT,
            leader.raft.client_write(commands_at(timestamp_ms)),
        )
        .await
        .unwrap()
        .unwrap();
        last_index = written.log_id.index;
    }
    leader.raft.trigger().snapshot().await.unwrap();
    wait_for_metrics(&leader.raft, "snapshot built", |metrics| {
        metrics
            .snapshot
            .is_some_and(|snapshot| snapshot.index >= last_index)
    })
    .await;
    leader.raft.trigger().purge_log(last_index).await.unwrap();
    wait_for_metrics(&leader.raft, "log purged", |metrics| {
        metrics
            .purged
            .is_some_and(|purged| purged.index >= last_index)
    })
    .await;

    let learner = TestNode::start(4, &config).await;
    timeout(
        TEST_WAIT,
        leader
            .raft
            .add_learner(learner.id, learner.member.clone(), true),
    )
    .await
    .unwrap()
    .unwrap();
    wait_until_applied(&learner.raft, last_index).await;
    assert_eq!(learner.state_machine.applied_timestamps_ms(), vec![7, 8, 9]);
    wait_for_metrics(
        &learner.raft,
        "the leader's snapshot installed",
        |metrics| {
            metrics
                .snapshot
                .is_some_and(|snapshot| snapshot.index >= last_index)
        },
    )
    .await;
    let mut leftovers = std::fs::read_dir(learner.snapshot_directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("received-"));
    assert_eq!(
        leftovers.next(),
        None,
        "the state machine took the received file"
    );
    learner.stop().await;
    stop_all(nodes).await;
}

#[tokio::test]
async fn followers_notice_at_once_when_the_leaders_connections_close() {
    let nodes = start_cluster(3).await;
    let leader = wait_for_leader(&nodes).await;
    let leader_id = leader.id;
    let written = timeout(TEST_WAIT, leader.raft.client_write(commands_at(1)))
        .await
        .unwrap()
        .unwrap();
    for node in &nodes {
        wait_until_applied(&node.raft, written.log_id.index).await;
    }
    let (leader, followers): (Vec<_>, Vec<_>) =
        nodes.into_iter().partition(|node| node.id == leader_id);
    let mut losses = Vec::new();
    for follower in &followers {
        assert_eq!(
            follower.contact.last_contact().unwrap().leader_id,
            leader_id
        );
        let loss = follower.contact.subscribe_to_losses();
        assert_eq!(*loss.borrow(), 0, "no loss while the leader runs");
        losses.push(loss);
    }

    let stopped_at = Instant::now();
    stop_all(leader).await;
    for loss in &mut losses {
        timeout(TEST_WAIT, loss.changed())
            .await
            .expect("the loss is reported")
            .unwrap();
    }
    // Far sooner than the 1.5 to 3 s election timeout of `test_config`.
    assert!(stopped_at.elapsed() < Duration::from_millis(1000));
    stop_all(followers).await;
}

/// Heartbeats every 100 ms, elections after 1.5 to 3 s: loose enough for a loaded test machine.
fn test_config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        install_snapshot_timeout: 2000,
        max_in_snapshot_log_to_keep: 0,
        ..Config::default()
    };
    Arc::new(config.validate().unwrap())
}

fn commands_at(timestamp_ms: i64) -> Proposal {
    Proposal::Commands {
        timestamp_ms,
        commands: Vec::new().into(),
    }
}

/// One Raft node with in-memory storage, served by the transport on a free local port.
struct TestNode {
    id: NodeId,
    raft: TestRaft,
    state_machine: MemoryStateMachine,
    contact: Arc<LeaderContact>,
    member: Member,
    snapshot_directory: TempDir,
    stop_serving: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
}

impl TestNode {
    async fn start(id: NodeId, config: &Arc<Config>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let member = Member {
            raft_address: listener.local_addr().unwrap().to_string(),
            ..Member::default()
        };
        let snapshot_directory = TempDir::new().unwrap();
        let state_machine = MemoryStateMachine::new(snapshot_directory.path().to_path_buf());
        let raft = Raft::new(
            id,
            Arc::clone(config),
            NetworkFactory::default(),
            MemoryLog::default(),
            state_machine.clone(),
        )
        .await
        .unwrap();
        let contact = LeaderContact::new();
        let (stop_serving, stopped) = oneshot::channel();
        let server = tokio::spawn(serve(
            Box::new(TcpPeerListener(listener)),
            raft.clone(),
            snapshot_directory.path().to_path_buf(),
            Arc::clone(&contact),
            Duration::from_millis(config.heartbeat_interval),
            Execution::Threads,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            id,
            raft,
            state_machine,
            contact,
            member,
            snapshot_directory,
            stop_serving,
            server,
        }
    }

    async fn stop(self) {
        self.raft.shutdown().await.unwrap();
        let _ = self.stop_serving.send(());
        timeout(TEST_WAIT, self.server)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

async fn start_cluster(size: u64) -> Vec<TestNode> {
    let config = test_config();
    let mut nodes = Vec::new();
    for id in 1..=size {
        nodes.push(TestNode::start(id, &config).await);
    }
    let members: BTreeMap<NodeId, Member> = nodes
        .iter()
        .map(|node| (node.id, node.member.clone()))
        .collect();
    timeout(TEST_WAIT, nodes[0].raft.initialize(members))
        .await
        .unwrap()
        .unwrap();
    nodes
}

async fn stop_all(nodes: Vec<TestNode>) {
    for node in nodes {
        node.stop().await;
    }
}

async fn wait_for_leader(nodes: &[TestNode]) -> &TestNode {
    let metrics = wait_for_metrics(&nodes[0].raft, "a leader", |metrics| {
        metrics.current_leader.is_some()
    })
    .await;
    let leader_id = metrics.current_leader.unwrap();
    let leader = nodes.iter().find(|node| node.id == leader_id).unwrap();
    // openraft refuses writes (`LeaseExpired`) until a quorum has acknowledged the new leader.
    wait_for_metrics(
        &leader.raft,
        "a quorum acknowledging the leader",
        |metrics| metrics.current_leader == Some(leader_id) && metrics.last_quorum_acked.is_some(),
    )
    .await;
    leader
}

async fn wait_until_applied(raft: &TestRaft, index: u64) {
    wait_for_metrics(raft, "applied", |metrics| {
        metrics
            .last_applied
            .is_some_and(|applied| applied.index >= index)
    })
    .await;
}

async fn wait_for_metrics(
    raft: &TestRaft,
    what: &str,
    condition: impl Fn(&openraft::RaftMetrics<TypeConfig>) -> bool + Send,
) -> openraft::RaftMetrics<TypeConfig> {
    raft.wait(Some(TEST_WAIT))
        .metrics(condition, what)
        .await
        .unwrap_or_else(|error| panic!("waiting for {what}: {error}"))
}

fn append_request(index: u64) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: (index > 1).then(|| log_id(1, 1, index - 1)),
        leader_commit: None,
        entries: vec![Entry::new_blank(log_id(1, 1, index))],
    }
}

/// A listener for a fake peer on a free loopback port, and its address.
async fn fake_peer() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

/// A fake peer's side of one accepted connection.
struct FakePeerConnection(TcpStream);

impl FakePeerConnection {
    async fn accept(listener: &TcpListener) -> FakePeerConnection {
        let (stream, _) = timeout(TEST_WAIT, listener.accept())
            .await
            .expect("the client connects")
            .unwrap();
        FakePeerConnection(stream)
    }

    async fn request(&mut self) -> Request {
        timeout(TEST_WAIT, read_frame(&mut self.0))
            .await
            .expect("the client sends a request")
            .unwrap()
            .expect("a request, not the end of the connection")
    }

    async fn answer(&mut self, response: &Response) {
        write_frame(&mut self.0, response).await.unwrap();
    }

    /// Answers, in a session, that the entries up to `index` are appended.
    async fn answer_appended(&mut self, index: u64) {
        let answer = Response::Appended(Ok(Some(log_id(1, 1, index))));
        self.answer(&answer).await;
    }

    /// Checks that nothing more arrives for a while (300 ms).
    async fn sends_nothing_more(&mut self) {
        let mut next_byte = [0u8; 1];
        let arrived = timeout(Duration::from_millis(300), self.0.peek(&mut next_byte)).await;
        assert!(arrived.is_err(), "a request came that should have waited");
    }

    /// Answers an AppendEntries of each of `indexes` as a plain call, each before the next.
    async fn answer_one_at_a_time(&mut self, indexes: &[u64]) {
        for &index in indexes {
            assert_eq!(self.appended_index().await, index);
            let answer = Response::AppendEntries(AppendEntriesResponse::Success);
            self.answer(&answer).await;
        }
    }

    async fn appended_index(&mut self) -> u64 {
        match self.request().await {
            Request::AppendEntries(rpc) => rpc.entries.last().unwrap().log_id.index,
            other => panic!("expected AppendEntries, got {other:?}"),
        }
    }
}

/// The next answer of a replication session, within the test's wait.
async fn next_answer(
    answers: &mut (
             impl Stream<Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> + Unpin
         ),
) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
    timeout(TEST_WAIT, answers.next())
        .await
        .expect("an answer within the test's wait")
        .expect("the session goes on")
}

/// Runs a replication session of three requests to `address` and checks that all are
/// acknowledged, in order.
async fn assert_all_appended(address: String) {
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    let option = RPCOption::new(Duration::from_millis(500));
    let mut answers = timeout(
        TEST_WAIT,
        client.stream_append(replication_session(), option),
    )
    .await
    .unwrap()
    .expect("the session opens");
    for index in SESSION_INDEXES {
        let answer = next_answer(&mut answers).await;
        assert_eq!(answer.unwrap(), Ok(Some(log_id(1, 1, index))));
    }
}

/// The log indexes of the requests of [`replication_session`].
const SESSION_INDEXES: [u64; 3] = [1, 2, 3];

/// Three requests that are there at once, then a session that stays open, as openraft's own.
fn replication_session() -> impl Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin {
    stream::iter(SESSION_INDEXES.map(append_request)).chain(stream::pending())
}

/// Accepts a session on `listener` and answers its opening.
async fn opened_session(listener: &TcpListener) -> FakePeerConnection {
    let mut connection = FakePeerConnection::accept(listener).await;
    assert!(matches!(connection.request().await, Request::AppendStream));
    connection.answer(&Response::AppendStreamOpened).await;
    connection
}

#[tokio::test]
async fn a_session_sends_its_first_append_entries_alone_then_the_next_before_their_answers() {
    let (listener, address) = fake_peer().await;
    let peer = tokio::spawn(async move {
        let mut connection = opened_session(&listener).await;
        assert_eq!(connection.appended_index().await, 1);
        connection.sends_nothing_more().await;
        connection.answer_appended(1).await;
        // Sent one at a time, the third would only come after the second's answer.
        let indexes = [
            connection.appended_index().await,
            connection.appended_index().await,
        ];
        assert_eq!(indexes, [2, 3]);
        for index in indexes {
            connection.answer_appended(index).await;
        }
        connection
    });
    assert_all_appended(address).await;
    peer.await.unwrap();
}

#[tokio::test]
async fn a_session_keeps_a_bounded_number_of_append_entries_unanswered() {
    let (listener, address) = fake_peer().await;
    let (sent_sender, sent) = oneshot::channel();
    let bound = MAX_APPEND_ENTRIES_IN_FLIGHT as u64;
    let peer = tokio::spawn(async move {
        let mut connection = opened_session(&listener).await;
        assert_eq!(connection.appended_index().await, 1);
        connection.answer_appended(1).await;
        for index in 2..=bound + 1 {
            assert_eq!(connection.appended_index().await, index);
        }
        connection.sends_nothing_more().await;
        connection.answer_appended(2).await;
        let next = connection.appended_index().await;
        let _ = sent_sender.send(next);
        connection
    });
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    let endless = stream::iter(1..).map(append_request);
    let option = RPCOption::new(Duration::from_secs(5));
    let mut answers = client.stream_append(endless, option).await.unwrap();
    for index in [1, 2] {
        let answer = next_answer(&mut answers).await;
        assert_eq!(answer.unwrap(), Ok(Some(log_id(1, 1, index))));
    }
    let next = timeout(TEST_WAIT, sent).await.unwrap().unwrap();
    assert_eq!(next, bound + 2, "one answer makes room for one");
    drop(answers);
    peer.await.unwrap();
}

#[tokio::test]
async fn a_peer_that_stops_answering_fails_the_session_within_the_replication_timeout() {
    let (listener, address) = fake_peer().await;
    let (held_sender, held) = oneshot::channel();
    let _peer = tokio::spawn(async move {
        let mut connection = opened_session(&listener).await;
        connection.appended_index().await;
        let _ = held_sender.send(connection);
    });
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    let option = RPCOption::new(Duration::from_millis(200));
    let started = Instant::now();
    let mut answers = client
        .stream_append(replication_session(), option)
        .await
        .expect("the session opens");
    let answer = next_answer(&mut answers).await;
    assert!(matches!(answer, Err(RPCError::Network(_))), "{answer:?}");
    // The replication timeout (1 s), not the wait of a test that hangs.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(timeout(TEST_WAIT, answers.next()).await.unwrap().is_none());
    drop(held);
}

#[tokio::test]
async fn a_heartbeat_is_one_append_entries_on_the_kept_connection() {
    let (listener, address) = fake_peer().await;
    let peer = tokio::spawn(async move {
        let mut connection = FakePeerConnection::accept(&listener).await;
        connection.answer_one_at_a_time(&[1, 2]).await;
    });
    let mut client = PeerClient::new(2, address, Arc::new(TcpTransport), Execution::Threads);
    for index in [1, 2] {
        let option = RPCOption::new(Duration::from_secs(2));
        let heartbeat = Box::pin(stream::once(async move { append_request(index) }));
        let mut answers = client.stream_append(heartbeat, option).await.unwrap();
        let answer = next_answer(&mut answers).await;
        assert_eq!(answer.unwrap(), Ok(Some(log_id(1, 1, index))));
        assert!(answers.next().await.is_none());
    }
    timeout(TEST_WAIT, peer).await.unwrap().unwrap();
}

/// A node of an earlier version cannot read the request that opens a session and closes the
/// connection; the session's requests then go one at a time.
#[tokio::test]
async fn a_peer_that_does_not_know_sessions_gets_the_requests_one_at_a_time() {
    let (listener, address) = fake_peer().await;
    let peer = tokio::spawn(async move {
        let mut session = FakePeerConnection::accept(&listener).await;
        assert!(matches!(session.request().await, Request::AppendStream));
        drop(session);
        let mut connection = FakePeerConnection::accept(&listener).await;
        connection.answer_one_at_a_time(&SESSION_INDEXES).await;
        connection
    });
    assert_all_appended(address).await;
    peer.await.unwrap();
}
