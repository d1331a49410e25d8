//! Fake nodes for the client's tests: real tonic servers on 127.0.0.1 that answer every
//! `MessageBox` call and `Switchover` from a script, count the calls, and can be killed
//! (their runtime dropped, so every connection closes at once, as with `kill -9`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tandem_client::v1;
use tandem_client::v1::cluster_server::{Cluster, ClusterServer};
use tandem_client::v1::message_box_server::{MessageBox, MessageBoxServer};
use tandem_protocol::{
    ACTIVE_GRPC_METADATA, ERROR_CODE_METADATA, FORWARD_METADATA, RETRY_AFTER_METADATA,
};
use tokio::sync::oneshot;
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// How a fake node answers one call.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Success, with an empty response.
    Serve,
    /// The node's error with this code, e.g. `unavailable`, `not_found`.
    Refuse(&'static str),
    /// `not_active`, naming the active's gRPC address.
    Redirect(String),
    /// A passive that relays a call that asks for it (served), and redirects the others
    /// to the active at this address.
    RelayOrRedirect(String),
    /// `throttled`, asking to retry after this many milliseconds.
    Throttle(u64),
    /// Does the work but answers only after this long (longer than the client waits).
    ServeLate(Duration),
}

/// The answers a node gives: `script` in order, then `otherwise` forever.
#[derive(Debug)]
pub struct Script {
    script: Mutex<VecDeque<Answer>>,
    otherwise: Answer,
    calls: AtomicU32,
    relay_requests: AtomicU32,
    /// The message ids of every publish attempt, in order.
    published_ids: Mutex<Vec<String>>,
}

impl Script {
    pub fn always(answer: Answer) -> Arc<Script> {
        Script::then(Vec::new(), answer)
    }

    pub fn then(first: Vec<Answer>, otherwise: Answer) -> Arc<Script> {
        Arc::new(Script {
            script: Mutex::new(first.into()),
            otherwise,
            calls: AtomicU32::new(0),
            relay_requests: AtomicU32::new(0),
            published_ids: Mutex::new(Vec::new()),
        })
    }

    /// How many calls reached the node.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn published_ids(&self) -> Vec<String> {
        self.published_ids.lock().expect("ids").clone()
    }

    /// How many calls asked the node to relay them to the active.
    pub fn relay_requests(&self) -> u32 {
        self.relay_requests.load(Ordering::SeqCst)
    }

    async fn answer<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let relay_asked = request.metadata().contains_key(FORWARD_METADATA);
        if relay_asked {
            self.relay_requests.fetch_add(1, Ordering::SeqCst);
        }
        let next = self
            .script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or_else(|| self.otherwise.clone());
        match next {
            Answer::Serve => Ok(()),
            Answer::Refuse(code) => Err(refusal(code)),
            Answer::Redirect(active) => Err(redirect(&active)),
            Answer::RelayOrRedirect(_) if relay_asked => Ok(()),
            Answer::RelayOrRedirect(active) => Err(redirect(&active)),
            Answer::Throttle(retry_after_ms) => {
                let mut status = refusal("throttled");
                status
                    .metadata_mut()
                    .insert(RETRY_AFTER_METADATA, MetadataValue::from(retry_after_ms));
                Err(status)
            }
            Answer::ServeLate(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

fn redirect(active: &str) -> Status {
    let mut status = refusal("not_active");
    let value = MetadataValue::try_from(active).expect("address");
    status.metadata_mut().insert(ACTIVE_GRPC_METADATA, value);
    status
}

fn refusal(code: &'static str) -> Status {
    let mut status = Status::unavailable(format!("fake node refuses: {code}"));
    status
        .metadata_mut()
        .insert(ERROR_CODE_METADATA, MetadataValue::from_static(code));
    status
}

/// A fake node serving on its own thread and runtime.
pub struct FakeNode {
    pub address: String,
    pub script: Arc<Script>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Serves `script` on a free loopback port.
    pub fn start(script: Arc<Script>) -> FakeNode {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        FakeNode::serve(listener, script)
    }

    /// Serves `script` at `address` once `delay` has passed (a node coming up later).
    pub fn start_later(address: &str, delay: Duration, script: Arc<Script>) -> FakeNode {
        let (kill, killed) = oneshot::channel();
        let (address_owned, served) = (address.to_string(), script.clone());
        let thread = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let listener = std::net::TcpListener::bind(&address_owned).expect("bind again");
            run_until_killed(listener, served, killed);
        });
        FakeNode {
            address: address.to_string(),
            script,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn serve(listener: std::net::TcpListener, script: Arc<Script>) -> FakeNode {
        let address = listener.local_addr().expect("address").to_string();
        let (kill, killed) = oneshot::channel();
        let served = script.clone();
        let thread = std::thread::spawn(move || run_until_killed(listener, served, killed));
        FakeNode {
            address,
            script,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Kills the node: its listener and every connection close at once.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("fake node thread");
        }
    }

    pub fn calls(&self) -> u32 {
        self.script.calls()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run_until_killed(
    listener: std::net::TcpListener,
    script: Arc<Script>,
    killed: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let serving = Server::builder()
            .add_service(MessageBoxServer::new(Fake(script.clone())))
            .add_service(ClusterServer::new(Fake(script)))
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::select! {
            _ = serving => {}
            _ = killed => {}
        }
    });
    // Dropping the runtime drops every connection task: the node is gone.
    drop(runtime);
}

/// A free loopback address with nothing listening (for now).
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// Holds a [`black_hole`] open.
pub struct BlackHole {
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

/// Connections queued into a black hole, at most, before one must have been swallowed.
const MAX_QUEUED_IN_A_BLACK_HOLE: usize = 16;
/// How long a connection into a black hole is given before it counts as swallowed.
const SWALLOWED_AFTER: Duration = Duration::from_millis(200);

/// A loopback address that swallows connection attempts, as the address of a machine that
/// is off, or cut off the network, does: a listener that never accepts, its queue full, so
/// the kernel drops the handshake of every new connection (no refusal comes back). Call
/// within a tokio runtime; the address swallows for as long as the guard lives.
pub fn black_hole() -> (String, BlackHole) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("loopback"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let address = listener.local_addr().expect("address");
    let mut queued = Vec::new();
    for _ in 0..MAX_QUEUED_IN_A_BLACK_HOLE {
        match std::net::TcpStream::connect_timeout(&address, SWALLOWED_AFTER) {
            Ok(stream) => queued.push(stream),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                let hole = BlackHole {
                    _listener: listener,
                    _queued: queued,
                };
                return (address.to_string(), hole);
            }
            Err(error) => panic!("filling the black hole's queue: {error}"),
        }
    }
    panic!("{MAX_QUEUED_IN_A_BLACK_HOLE} connections queued and none swallowed");
}

pub fn settle_request() -> v1::SettleRequest {
    v1::SettleRequest {
        instance: 7,
        token: 1,
    }
}

struct Fake(Arc<Script>);

#[tonic::async_trait]
impl MessageBox for Fake {
    type LeaseStreamStream = BoxStream<v1::LeasedMessage>;

    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let ids = request
            .get_ref()
            .messages
            .iter()
            .map(|m| m.message_id.clone());
        self.0.published_ids.lock().expect("ids").extend(ids);
        self.0.answer(&request).await?;
        Ok(Response::new(v1::PublishResponse::default()))
    }

    async fn lease(
        &self,
        request: Request<v1::LeaseRequest>,
    ) -> Result<Response<v1::LeaseResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::LeaseResponse::default()))
    }

    async fn lease_stream(
        &self,
        _request: Request<v1::LeaseRequest>,
    ) -> Result<Response<Self::LeaseStreamStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn renew_lease(
        &self,
        request: Request<v1::RenewLeaseRequest>,
    ) -> Result<Response<v1::RenewLeaseResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::RenewLeaseResponse::default()))
    }

    async fn complete(
        &self,
        request: Request<v1::SettleRequest>,
    ) -> Result<Response<v1::SettleResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::SettleResponse::default()))
    }

    async fn abandon(
        &self,
        request: Request<v1::SettleRequest>,
    ) -> Result<Response<v1::SettleResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::SettleResponse::default()))
    }

    async fn fail(
        &self,
        request: Request<v1::FailRequest>,
    ) -> Result<Response<v1::SettleResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::SettleResponse::default()))
    }

    async fn settle(
        &self,
        request: Request<v1::SettleBatchRequest>,
    ) -> Result<Response<v1::SettleBatchResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::SettleBatchResponse::default()))
    }
}

#[tonic::async_trait]
impl Cluster for Fake {
    async fn node_status(
        &self,
        _request: Request<v1::NodeStatusRequest>,
    ) -> Result<Response<v1::NodeStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn initialize(
        &self,
        _request: Request<v1::InitializeRequest>,
    ) -> Result<Response<v1::InitializeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn add_member(
        &self,
        _request: Request<v1::AddMemberRequest>,
    ) -> Result<Response<v1::AddMemberResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn remove_member(
        &self,
        _request: Request<v1::RemoveMemberRequest>,
    ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn switchover(
        &self,
        request: Request<v1::SwitchoverRequest>,
    ) -> Result<Response<v1::SwitchoverResponse>, Status> {
        self.0.answer(&request).await?;
        Ok(Response::new(v1::SwitchoverResponse { active_node: 1 }))
    }

    async fn member_probe(
        &self,
        _request: Request<v1::MemberProbeRequest>,
    ) -> Result<Response<v1::MemberProbeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}
