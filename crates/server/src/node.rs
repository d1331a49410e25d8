//! [`Node`]: one running Tandem node: its store, its replica (the Raft log and the peer
//! port), gRPC and HTTP listeners and ticker, with an ordered shutdown.
//! [`run_until_signal`] runs one until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use tandem_cluster::Replica;
use tandem_core::limits;
use tandem_protocol::v1::admin_server::AdminServer;
use tandem_protocol::v1::cluster_server::ClusterServer;
use tandem_protocol::v1::message_box_server::MessageBoxServer;
use tandem_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::disk_space::watch_disk_room;
use crate::grpc::admin::AdminService;
use crate::grpc::cluster::ClusterService;
use crate::grpc::forward::ForwardToActive;
use crate::grpc::max_decoding_message_size;
use crate::grpc::message_box::MessageBoxService;
use crate::member_probe::probe_members;
use crate::shutdown_signal::ShutdownSignals;
use crate::state::{AppState, SharedState};
use crate::ticker::run_ticker;
use crate::{NodeConfig, ServerError};

pub struct Node {
    state: SharedState,
    store: Option<Store>,
    grpc_address: SocketAddr,
    http_address: SocketAddr,
    raft_address: SocketAddr,
    grpc_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    ticker_task: JoinHandle<()>,
    disk_tasks: [JoinHandle<()>; 2],
}

impl Node {
    /// Binds the three listeners (port 0 picks a free port), opens the store, starts
    /// replication (forming a one-node replica set on first start when `bootstrap` is on),
    /// and starts serving.
    pub async fn start(config: NodeConfig) -> Result<Node, ServerError> {
        config.validate()?;
        let grpc_listener = bind(config.grpc_listen).await?;
        let http_listener = bind(config.http_listen).await?;
        let raft_listener = bind(config.raft_listen).await?;
        let grpc_address = local_address(&grpc_listener, config.grpc_listen)?;
        let http_address = local_address(&http_listener, config.http_listen)?;
        let raft_address = local_address(&raft_listener, config.raft_listen)?;
        let store = open_store(&config).await?;
        let settings = config.replica_settings(grpc_address, http_address, raft_address);
        let replica = Replica::start(settings, &config.data_dir, store.handle(), raft_listener)
            .await
            .map_err(|error| ServerError::Replication(error.to_string()))?;
        if config.bootstrap {
            bootstrap(&replica).await?;
        }
        let tick_interval = Duration::from_millis(config.tick_interval_ms);
        let state = Arc::new(AppState::new(Arc::new(replica), store.handle(), config));
        // Measured before serving, so that the guard holds from the first publish.
        let _ = state.disk.measure(&state.store).await;
        let disk_tasks = [
            tokio::spawn(watch_disk_room(state.clone())),
            tokio::spawn(probe_members(state.clone())),
        ];
        let grpc_task = tokio::spawn(serve_grpc(state.clone(), grpc_listener));
        let http_task = tokio::spawn(serve_http(state.clone(), http_listener));
        let ticker_task = tokio::spawn(run_ticker(state.clone(), tick_interval));
        eprintln!("tandem: node started (grpc {grpc_address}, http {http_address})");
        Ok(Node {
            state,
            store: Some(store),
            grpc_address,
            http_address,
            raft_address,
            grpc_task,
            http_task,
            ticker_task,
            disk_tasks,
        })
    }

    pub fn grpc_address(&self) -> SocketAddr {
        self.grpc_address
    }

    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    pub fn raft_address(&self) -> SocketAddr {
        self.raft_address
    }

    /// Stops accepting, lets in-flight requests finish (up to `limits::SHUTDOWN_GRACE_MS`), stops the
    /// ticker, then closes the store after the commands already queued.
    pub async fn shutdown(mut self) {
        eprintln!("tandem: shutting down");
        self.state.begin_shutdown();
        let servers = async {
            let _ = (&mut self.grpc_task).await;
            let _ = (&mut self.http_task).await;
        };
        if tokio::time::timeout(Duration::from_millis(limits::SHUTDOWN_GRACE_MS), servers)
            .await
            .is_err()
        {
            eprintln!(
                "tandem: requests still running after {} s; closing them",
                limits::SHUTDOWN_GRACE_MS / 1000
            );
            self.grpc_task.abort();
            self.http_task.abort();
        }
        let _ = (&mut self.ticker_task).await;
        for task in &mut self.disk_tasks {
            let _ = task.await;
        }
        self.state.replica.shutdown().await;
        if let Some(store) = self.store.take() {
            let closed = tokio::task::spawn_blocking(move || store.close()).await;
            if closed.is_err() {
                eprintln!("tandem: closing the store failed");
            }
        }
        eprintln!("tandem: node stopped");
    }
}

impl Drop for Node {
    /// A node dropped without [`Node::shutdown`] still stops its tasks and closes its store
    /// (on a plain thread: closing blocks, which an async context must not).
    fn drop(&mut self) {
        self.state.begin_shutdown();
        self.grpc_task.abort();
        self.http_task.abort();
        for task in &self.disk_tasks {
            task.abort();
        }
        if let Some(store) = self.store.take() {
            let _ = std::thread::Builder::new()
                .name("tandem-store-close".into())
                .spawn(move || store.close());
        }
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen { address, source })
}

fn local_address(listener: &TcpListener, address: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|source| ServerError::Listen { address, source })
}

/// On first start, with nothing in its log, a node with `bootstrap` on forms a one-node
/// replica set and waits (bounded) until it is the active.
async fn bootstrap(replica: &Replica) -> Result<(), ServerError> {
    let initialized = replica
        .is_initialized()
        .await
        .map_err(|error| ServerError::Replication(error.to_string()))?;
    if initialized {
        // A restarted member: give the election a moment so the node reports ready with
        // an active known, but do not insist (the other members may still be down).
        let wait = Duration::from_millis(RESTART_ELECTION_WAIT_MS);
        replica.wait_for_active(wait).await;
        return Ok(());
    }
    let members = BTreeMap::from([(replica.node_id(), replica.member().clone())]);
    replica
        .initialize(members)
        .await
        .map_err(|error| ServerError::Replication(error.to_string()))?;
    let wait = Duration::from_millis(BOOTSTRAP_WAIT_MS);
    if replica.wait_for_active(wait).await.is_none() {
        return Err(ServerError::Replication(format!(
            "the new one-node replica set elected no active within {BOOTSTRAP_WAIT_MS} ms"
        )));
    }
    Ok(())
}

/// How long a bootstrapping node waits to become the active of its one-node replica set.
const BOOTSTRAP_WAIT_MS: u64 = 10_000;
/// How long a restarted member waits for an active before it reports ready anyway.
const RESTART_ELECTION_WAIT_MS: u64 = 3_000;

async fn open_store(config: &NodeConfig) -> Result<Store, ServerError> {
    let data_dir = config.data_dir.clone();
    let opening = data_dir.clone();
    tokio::task::spawn_blocking(move || Store::open(&opening))
        .await
        .map_err(|error| ServerError::Internal(format!("opening the store panicked: {error}")))?
        .map_err(|source| ServerError::Store { data_dir, source })
}

async fn serve_grpc(state: SharedState, listener: TcpListener) {
    let limit = max_decoding_message_size(state.config.max_body_bytes);
    let message_box = MessageBoxServer::new(MessageBoxService::new(state.clone()))
        .max_decoding_message_size(limit);
    let admin = AdminServer::new(AdminService::new(state.clone())).max_decoding_message_size(limit);
    let cluster = ClusterServer::new(ClusterService::new(state.clone()));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown_state = state.clone();
    let routes = Routes::new(message_box)
        .add_service(admin)
        .add_service(cluster);
    let services = ForwardToActive::new(routes, state.clone());
    let served = Server::builder()
        .serve_with_incoming_shutdown(services, incoming, async move {
            shutdown_state.shutdown_begun().await;
        })
        .await;
    if let Err(error) = served {
        eprintln!("tandem: the gRPC server stopped: {error}");
    }
}

async fn serve_http(state: SharedState, listener: TcpListener) {
    let shutdown_state = state.clone();
    let service = crate::http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown_state.shutdown_begun().await })
        .await;
    if let Err(error) = served {
        eprintln!("tandem: the HTTP server stopped: {error}");
    }
}

/// Starts a node, prints one ready line to stdout, waits for SIGINT or SIGTERM, shuts the
/// node down and prints `tandem node stopped`. If replication stops on its own first (the
/// store failed), the node shuts down and answers [`ServerError::ReplicationStopped`], so that
/// the process exits with an error and a supervisor restarts it.
pub async fn run_until_signal(config: NodeConfig) -> Result<(), ServerError> {
    let signals = ShutdownSignals::install()?;
    let data_dir = config.data_dir.clone();
    let node = Node::start(config).await?;
    print_line(&format!(
        "tandem node ready: grpc={} http={} raft={} data_dir={}",
        node.grpc_address(),
        node.http_address(),
        node.raft_address(),
        data_dir.display()
    ));
    let failure = tokio::select! {
        () = signals.wait() => None,
        reason = node.state.replica.stopped_by_failure() => Some(reason),
    };
    node.shutdown().await;
    match failure {
        None => {
            print_line("tandem node stopped");
            Ok(())
        }
        Some(reason) => Err(ServerError::ReplicationStopped(reason)),
    }
}

fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
