//! [`ChaosCluster`]: a replica set of real `tandem node` processes on 127.0.0.1 where every
//! path a fault can break goes through a [`FaultProxy`]: each ordered pair of nodes has its
//! own replication link (set with the nodes' `[peer_routes]`), and clients reach each
//! node's gRPC port through a proxy of its own. Nodes can be killed (SIGKILL), restarted,
//! paused (SIGSTOP) and resumed (SIGCONT), and asked to switch over. Every process is killed
//! when the cluster is dropped.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tandem_protocol::v1;
use tandem_protocol::v1::cluster_client::ClusterClient;

use crate::proxy::FaultProxy;
use crate::workload::NodeAddress;

/// How long a node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new replica set may take to elect its first active.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(20);
/// A status call that takes longer counts as no answer.
pub const STATUS_CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the active is looked for.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Nodes listen on ports below the kernel's ephemeral range, so that no outgoing
/// connection holds a port a restarting node needs.
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `tandem` executable.
    pub binary: PathBuf,
    pub nodes: usize,
    /// Data directories and node logs go here.
    pub root: PathBuf,
    pub write_timeout_ms: u64,
}

/// Which node leads, in which term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    pub node_id: u64,
    pub term: u64,
}

struct Node {
    node_id: u64,
    grpc: SocketAddr,
    http: SocketAddr,
    raft: SocketAddr,
    data_dir: PathBuf,
    config_file: PathBuf,
    log_file: PathBuf,
    process: Option<Child>,
    paused: bool,
}

/// The proxy carrying `from`'s replication traffic to `to`.
pub struct Link {
    pub from: u64,
    pub to: u64,
    pub proxy: FaultProxy,
}

pub struct ChaosCluster {
    options: ClusterOptions,
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// One per node, in node order: what clients connect to.
    client_proxies: Vec<FaultProxy>,
}

impl ChaosCluster {
    /// Starts the nodes behind their proxies, forms the replica set and waits for its first
    /// active.
    pub async fn start(options: ClusterOptions) -> Result<ChaosCluster, String> {
        let reserved = reserve_ports(options.nodes * 3)?;
        let ports: Vec<SocketAddr> = reserved
            .iter()
            .map(|listener| listener.local_addr().map_err(|error| error.to_string()))
            .collect::<Result<_, _>>()?;
        let node_ids: Vec<u64> = (1..=options.nodes as u64).collect();
        let mut links = Vec::new();
        for &from in &node_ids {
            for &to in node_ids.iter().filter(|&&to| to != from) {
                let proxy = FaultProxy::start(ports[(to as usize - 1) * 3 + 2]).await;
                links.push(Link { from, to, proxy });
            }
        }
        let mut client_proxies = Vec::new();
        for &node_id in &node_ids {
            client_proxies.push(FaultProxy::start(ports[(node_id as usize - 1) * 3]).await);
        }
        let mut nodes = Vec::new();
        for &node_id in &node_ids {
            let base = (node_id as usize - 1) * 3;
            let data_dir = options.root.join(format!("node-{node_id}"));
            std::fs::create_dir_all(&data_dir)
                .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
            let config_file = options.root.join(format!("node-{node_id}.toml"));
            std::fs::write(&config_file, peer_routes(node_id, &links))
                .map_err(|error| format!("cannot write {}: {error}", config_file.display()))?;
            nodes.push(Node {
                node_id,
                grpc: ports[base],
                http: ports[base + 1],
                raft: ports[base + 2],
                data_dir,
                config_file,
                log_file: options.root.join(format!("node-{node_id}.log")),
                process: None,
                paused: false,
            });
        }
        drop(reserved);
        let mut cluster = ChaosCluster {
            options,
            nodes,
            links,
            client_proxies,
        };
        for node_id in node_ids {
            cluster.restart(node_id)?;
        }
        cluster.form().await?;
        Ok(cluster)
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|node| node.node_id).collect()
    }

    /// The nodes as clients reach them: through their client proxies.
    pub fn client_addresses(&self) -> Vec<NodeAddress> {
        self.nodes
            .iter()
            .zip(&self.client_proxies)
            .map(|(node, proxy)| NodeAddress {
                node_id: node.node_id,
                grpc: proxy.address(),
                advertised: node.grpc,
            })
            .collect()
    }

    /// The nodes' own gRPC addresses (no proxy), for the harness's status calls.
    pub fn direct_addresses(&self) -> Vec<NodeAddress> {
        self.nodes
            .iter()
            .map(|node| NodeAddress::direct(node.node_id, node.grpc))
            .collect()
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The proxy between clients and `node_id`.
    pub fn client_link(&self, node_id: u64) -> &FaultProxy {
        &self.client_proxies[node_id as usize - 1]
    }

    pub fn is_running(&self, node_id: u64) -> bool {
        self.node(node_id).process.is_some()
    }

    pub fn is_paused(&self, node_id: u64) -> bool {
        self.node(node_id).paused
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill(&mut self, node_id: u64) {
        let node = self.node_mut(node_id);
        if let Some(mut process) = node.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        node.paused = false;
    }

    pub fn pause(&mut self, node_id: u64) {
        let node = self.node_mut(node_id);
        if let Some(process) = &node.process {
            signal(process.id(), libc::SIGSTOP);
            node.paused = true;
        }
    }

    pub fn resume(&mut self, node_id: u64) {
        let node = self.node_mut(node_id);
        if let Some(process) = &node.process {
            signal(process.id(), libc::SIGCONT);
            node.paused = false;
        }
    }

    /// Starts the node (again) on its ports with its data, and waits for its ready line.
    pub fn restart(&mut self, node_id: u64) -> Result<(), String> {
        let binary = self.options.binary.clone();
        let write_timeout = format!("{}ms", self.options.write_timeout_ms);
        let node = self.node_mut(node_id);
        if node.process.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_file)
            .map_err(|error| format!("cannot open {}: {error}", node.log_file.display()))?;
        let mut child = Command::new(binary)
            .args([
                "node",
                "start",
                "--no-bootstrap",
                "--node-id",
                &node_id.to_string(),
            ])
            .args(["--grpc-listen", &node.grpc.to_string()])
            .args(["--http-listen", &node.http.to_string()])
            .args(["--raft-listen", &node.raft.to_string()])
            .args(["--write-timeout", &write_timeout])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--config")
            .arg(&node.config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| format!("cannot start node {node_id}: {error}"))?;
        let ready = wait_for_ready_line(&mut child);
        if let Err(problem) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "node {node_id}: {problem}; see {}",
                node.log_file.display()
            ));
        }
        node.process = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Every node's status, from those that answer.
    pub async fn statuses(&self) -> Vec<v1::NodeStatusResponse> {
        let mut statuses = Vec::new();
        for node in self
            .nodes
            .iter()
            .filter(|node| node.process.is_some() && !node.paused)
        {
            statuses.extend(node_status(&format!("http://{}", node.grpc)).await);
        }
        statuses
    }

    /// The node claiming the active role in the highest term any node has seen.
    pub async fn active(&self) -> Option<Active> {
        current_active(&self.statuses().await)
    }

    /// Waits up to `timeout` for an active.
    pub async fn wait_for_active(&self, timeout: Duration) -> Option<Active> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(active) = self.active().await {
                return Some(active);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        None
    }

    /// Asks the active (directly, not through a proxy) to hand its role to `to_node`.
    pub async fn switchover(&self, to_node: u64) -> Result<u64, String> {
        let active = self.active().await.ok_or("no active to switch over from")?;
        let address = format!("http://{}", self.node(active.node_id).grpc);
        let mut cluster = ClusterClient::connect(address)
            .await
            .map_err(|error| error.to_string())?;
        let answer = cluster
            .switchover(v1::SwitchoverRequest {
                to_node: Some(to_node),
            })
            .await
            .map_err(|status| status.message().to_string())?;
        Ok(answer.into_inner().active_node)
    }

    /// The failover history as the first node that answers records it.
    pub async fn failovers(&self) -> Vec<v1::FailoverEvent> {
        self.statuses()
            .await
            .into_iter()
            .map(|status| status.failovers)
            .max_by_key(Vec::len)
            .unwrap_or_default()
    }

    /// Heals every link, resumes paused nodes and restarts dead ones.
    pub fn heal_everything(&mut self) -> Result<(), String> {
        for link in &self.links {
            link.proxy.heal();
        }
        for proxy in &self.client_proxies {
            proxy.heal();
        }
        for node_id in self.node_ids() {
            if self.is_paused(node_id) {
                self.resume(node_id);
            }
            self.restart(node_id)?;
        }
        Ok(())
    }

    pub fn log_file(&self, node_id: u64) -> &Path {
        &self.node(node_id).log_file
    }

    async fn form(&self) -> Result<(), String> {
        let mut members = Vec::new();
        for node in &self.nodes {
            let status = wait_for_status(node.grpc).await?;
            members.push(status.node.ok_or("a node status without the node")?);
        }
        let first = format!("http://{}", self.nodes[0].grpc);
        let mut cluster = ClusterClient::connect(first)
            .await
            .map_err(|error| format!("cannot reach node 1: {error}"))?;
        cluster
            .initialize(v1::InitializeRequest { members })
            .await
            .map_err(|status| format!("cannot form the replica set: {}", status.message()))?;
        self.wait_for_active(FORMATION_TIMEOUT)
            .await
            .map(drop)
            .ok_or_else(|| format!("no active within {FORMATION_TIMEOUT:?}"))
    }

    fn node(&self, node_id: u64) -> &Node {
        &self.nodes[node_id as usize - 1]
    }

    fn node_mut(&mut self, node_id: u64) -> &mut Node {
        &mut self.nodes[node_id as usize - 1]
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut process) = node.process.take() {
                if node.paused {
                    signal(process.id(), libc::SIGCONT);
                }
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) only sends a signal to a process this harness started.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn wait_for_ready_line(child: &mut Child) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (sender, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("tandem node ready:") {
                let _ = sender.send(());
            }
        }
    });
    ready
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| format!("no ready line within {READY_TIMEOUT:?}"))
}

/// The node's status, or `None` when it does not answer within [`STATUS_CALL_TIMEOUT`].
pub async fn node_status(url: &str) -> Option<v1::NodeStatusResponse> {
    let call = async {
        let mut cluster = ClusterClient::connect(url.to_string()).await.ok()?;
        cluster
            .node_status(v1::NodeStatusRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner)
    };
    tokio::time::timeout(STATUS_CALL_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}

async fn wait_for_status(grpc: SocketAddr) -> Result<v1::NodeStatusResponse, String> {
    let deadline = Instant::now() + FORMATION_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = node_status(&format!("http://{grpc}")).await {
            return Ok(status);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!(
        "the node at {grpc} did not answer within {FORMATION_TIMEOUT:?}"
    ))
}

/// The node claiming the active role in the highest term, unless some node has already
/// seen a later term (an election is under way).
pub fn current_active(statuses: &[v1::NodeStatusResponse]) -> Option<Active> {
    let highest_term = statuses.iter().map(|status| status.term).max()?;
    statuses
        .iter()
        .filter(|status| status.role == "active" && status.term == highest_term)
        .find_map(|status| {
            Some(Active {
                node_id: status.node.as_ref()?.node_id,
                term: status.term,
            })
        })
}

/// The `[peer_routes]` table sending each of the node's peers through its proxy.
fn peer_routes(node_id: u64, links: &[Link]) -> String {
    let mut text = String::from("[peer_routes]\n");
    for link in links.iter().filter(|link| link.from == node_id) {
        text.push_str(&format!("\"{}\" = \"{}\"\n", link.to, link.proxy.address()));
    }
    text
}

/// `count` distinct free loopback ports from [`NODE_PORTS`], each held by a listener until
/// dropped, searched from a place that differs per process.
fn reserve_ports(count: usize) -> Result<Vec<TcpListener>, String> {
    let span = u64::from(NODE_PORTS.end - NODE_PORTS.start);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::from(elapsed.subsec_nanos()))
        .wrapping_add(u64::from(std::process::id()) * 7919);
    let listeners: Vec<TcpListener> = (0..span)
        .map(|step| NODE_PORTS.start + ((seed + step) % span) as u16)
        .filter_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
        .take(count)
        .collect();
    if listeners.len() < count {
        return Err("not enough free loopback ports".to_string());
    }
    Ok(listeners)
}
