//! [`ReplicaSet`]: N real `tandem` nodes (three by default) on fixed free loopback ports,
//! each with its own temporary data directory, formed into one replica set. Nodes can be
//! killed (-9), paused (SIGSTOP) and resumed, stopped (SIGTERM), restarted on the same
//! ports with the same data directory, and have their data directory wiped.
//!
//! With [`ReplicaSetOptions::proxied`], every ordered pair of nodes (a → b) reaches b's
//! replication port through its own [`FaultProxy`] (a `[peer_routes]` entry in a's config
//! file), so one node can be cut off from the others in both directions while the others
//! still reach each other.
//!
//! Only one replica set runs at a time in a test binary (tests wait for each other), so
//! elections are not disturbed by another test's load on a small machine. Dropping the set
//! kills every node, even when the test panics; after a failure it prints the end of each
//! node's log and keeps the data directories and logs (also after a success when
//! [`KEEP_DATA_VARIABLE`] is set).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tandem_chaos::cluster::current_active;
pub use tandem_chaos::cluster::node_status;
use tandem_protocol::v1;
use tandem_protocol::v1::cluster_client::ClusterClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};
use tonic::transport::Channel;

use super::NodeProcess;
use super::proxy::{Direction, FaultProxy};
use super::workload::NodeAddress;

/// One replica set at a time per test binary.
static ONE_REPLICA_SET_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How often a condition on the replica set is looked at again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// How long a new replica set may take to elect its first active.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(15);
/// Set this environment variable to keep the nodes' data directories and logs after a test
/// that passed (they are always kept after a failure).
pub const KEEP_DATA_VARIABLE: &str = "TANDEM_TEST_KEEP_DATA";
/// Lines of each node's log printed when a test fails.
const LOG_LINES_SHOWN_ON_FAILURE: usize = 40;

#[derive(Clone, Debug)]
pub struct ReplicaSetOptions {
    pub nodes: usize,
    pub write_timeout_ms: u64,
    /// `--snapshot-every-entries`; the node's default when `None`.
    pub snapshot_every_entries: Option<u64>,
    /// `--snapshot-min-log-percent` (0: snapshot on the entry count alone); the node's
    /// default when `None`.
    pub snapshot_min_log_percent: Option<u64>,
    /// Route each ordered pair's replication traffic through its own fault proxy.
    pub proxied: bool,
    /// Heartbeat interval and election timeouts; the node's defaults when `None`.
    pub timing: Option<ElectionTiming>,
}

/// `--heartbeat-interval`, `--election-timeout-min` and `--election-timeout-max`.
#[derive(Clone, Copy, Debug)]
pub struct ElectionTiming {
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

impl Default for ReplicaSetOptions {
    fn default() -> ReplicaSetOptions {
        ReplicaSetOptions {
            nodes: 3,
            write_timeout_ms: 2_000,
            snapshot_every_entries: None,
            snapshot_min_log_percent: None,
            proxied: false,
            timing: None,
        }
    }
}

/// The active as one round of status calls saw it.
pub use tandem_chaos::cluster::Active as ActiveNode;

/// The three addresses a node listens on, chosen before it first starts so that a
/// restarted node comes back where the membership expects it.
#[derive(Clone, Copy, Debug)]
struct NodePorts {
    grpc: SocketAddr,
    http: SocketAddr,
    raft: SocketAddr,
}

struct ReplicaNode {
    node_id: u64,
    ports: NodePorts,
    data_dir: PathBuf,
    config_file: Option<PathBuf>,
    log_file: PathBuf,
    process: Option<NodeProcess>,
    paused: bool,
}

/// The proxy that carries `from`'s replication traffic to `to`.
struct Link {
    from: u64,
    to: u64,
    proxy: FaultProxy,
}

pub struct ReplicaSet {
    options: ReplicaSetOptions,
    nodes: Vec<ReplicaNode>,
    links: Vec<Link>,
    /// Kept (not deleted) when a test fails, for a post-mortem.
    root: Option<TempDir>,
    /// Released last, once every node is dead.
    _turn: MutexGuard<'static, ()>,
}

impl ReplicaSet {
    /// Starts the nodes, forms the replica set (node 1 initializes it with every member)
    /// and waits for its first active.
    pub async fn start(options: ReplicaSetOptions) -> ReplicaSet {
        let turn = ONE_REPLICA_SET_AT_A_TIME.lock().await;
        let root = tempfile::tempdir().expect("temporary directory for the replica set");
        let (ports, reserved) = free_node_ports(options.nodes);
        let node_ids: Vec<u64> = (1..=options.nodes as u64).collect();
        let mut links = Vec::new();
        if options.proxied {
            for &from in &node_ids {
                for &to in node_ids.iter().filter(|&&to| to != from) {
                    let target = ports[(to - 1) as usize].raft;
                    let proxy = FaultProxy::start(target).await;
                    links.push(Link { from, to, proxy });
                }
            }
        }
        // The proxies are bound; the nodes can have their ports now.
        drop(reserved);
        let nodes = node_ids
            .iter()
            .map(|&node_id| {
                let data_dir = root.path().join(format!("node-{node_id}"));
                std::fs::create_dir_all(&data_dir).expect("create data directory");
                let config_file = options.proxied.then(|| {
                    let path = root.path().join(format!("node-{node_id}.toml"));
                    std::fs::write(&path, peer_routes_config(node_id, &links))
                        .expect("write node config");
                    path
                });
                ReplicaNode {
                    node_id,
                    ports: ports[(node_id - 1) as usize],
                    data_dir,
                    config_file,
                    log_file: root.path().join(format!("node-{node_id}.log")),
                    process: None,
                    paused: false,
                }
            })
            .collect();
        let mut set = ReplicaSet {
            options,
            nodes,
            links,
            root: Some(root),
            _turn: turn,
        };
        for node_id in set.node_ids() {
            set.restart(node_id);
        }
        set.form().await;
        set
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|node| node.node_id).collect()
    }

    /// Every node's id and gRPC address, for clients that follow the active.
    pub fn addresses(&self) -> Vec<NodeAddress> {
        self.node_ids()
            .into_iter()
            .map(|node_id| self.address(node_id))
            .collect()
    }

    pub fn address(&self, node_id: u64) -> NodeAddress {
        NodeAddress::direct(node_id, self.node(node_id).ports.grpc)
    }

    pub fn grpc_url(&self, node_id: u64) -> String {
        format!("http://{}", self.node(node_id).ports.grpc)
    }

    /// A data-plane client of the node, which must be running.
    pub async fn message_box(&self, node_id: u64) -> MessageBoxClient<Channel> {
        match &self.node(node_id).process {
            Some(process) => process.message_box().await,
            None => panic!("node {node_id} is not running"),
        }
    }

    pub fn data_dir(&self, node_id: u64) -> &Path {
        &self.node(node_id).data_dir
    }

    /// The nodes whose process runs and is not paused.
    pub fn live_node_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|node| node.process.is_some() && !node.paused)
            .map(|node| node.node_id)
            .collect()
    }

    /// The other nodes.
    pub fn others(&self, node_id: u64) -> Vec<u64> {
        self.node_ids()
            .into_iter()
            .filter(|other| *other != node_id)
            .collect()
    }

    /// The node's status, or `None` when it is down, paused or does not answer in time.
    pub async fn status(&self, node_id: u64) -> Option<v1::NodeStatusResponse> {
        let node = self.node(node_id);
        if node.process.is_none() || node.paused {
            return None;
        }
        node_status(&self.grpc_url(node_id)).await
    }

    /// The statuses of every live node that answers.
    pub async fn statuses(&self) -> Vec<v1::NodeStatusResponse> {
        let mut statuses = Vec::new();
        for node_id in self.live_node_ids() {
            statuses.extend(self.status(node_id).await);
        }
        statuses
    }

    /// Waits for an active that no answering node has seen superseded.
    pub async fn wait_for_active(&self, timeout: Duration) -> ActiveNode {
        self.wait_for_active_after(0, timeout).await
    }

    /// Waits for an active in a term later than `term` that no answering node has seen
    /// superseded.
    pub async fn wait_for_active_after(&self, term: u64, timeout: Duration) -> ActiveNode {
        let deadline = Instant::now() + timeout;
        let mut last_seen = Vec::new();
        while Instant::now() < deadline {
            let statuses = self.statuses().await;
            if let Some(active) = current_active(&statuses).filter(|active| active.term > term) {
                return active;
            }
            last_seen = statuses;
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!(
            "no active after term {term} within {timeout:?}; last statuses: {}",
            describe_statuses(&last_seen)
        );
    }

    /// Waits until the node's status satisfies `condition`; panics with `what` if it does
    /// not within `timeout`.
    pub async fn wait_for_status(
        &self,
        node_id: u64,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&v1::NodeStatusResponse) -> bool,
    ) -> v1::NodeStatusResponse {
        let deadline = Instant::now() + timeout;
        let mut last_seen = None;
        while Instant::now() < deadline {
            if let Some(status) = self.status(node_id).await {
                if condition(&status) {
                    return status;
                }
                last_seen = Some(status);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!(
            "node {node_id}: {what} not seen within {timeout:?}; last status: {}",
            describe_statuses(last_seen.as_slice())
        );
    }

    /// Waits until every live node has applied everything the active has committed, as
    /// the active reported it once this call began.
    pub async fn wait_for_convergence(&self, timeout: Duration) -> u64 {
        let active = self.wait_for_active(timeout).await;
        let committed = self
            .status(active.node_id)
            .await
            .map(|status| status.committed_index)
            .unwrap_or(0);
        for node_id in self.live_node_ids() {
            self.wait_for_status(
                node_id,
                &format!("applied index {committed}"),
                timeout,
                |status| status.applied_index >= committed,
            )
            .await;
        }
        committed
    }

    /// The failover history as the node reports it.
    pub async fn failovers(&self, node_id: u64) -> Vec<v1::FailoverEvent> {
        self.status(node_id)
            .await
            .map(|status| status.failovers)
            .unwrap_or_default()
    }

    /// kill -9.
    pub fn kill(&mut self, node_id: u64) {
        let node = self.node_mut(node_id);
        let mut process = node.process.take().expect("the node to kill runs");
        node.paused = false;
        process.kill_hard();
    }

    /// What the node has written to its log (stderr) so far.
    pub fn log_text(&self, node_id: u64) -> String {
        std::fs::read_to_string(&self.node(node_id).log_file).unwrap_or_default()
    }

    /// How the node exited, if it did by itself; it then counts as stopped.
    pub fn exited(&mut self, node_id: u64) -> Option<ExitStatus> {
        let node = self.node_mut(node_id);
        let status = node.process.as_mut()?.exit_status()?;
        node.process = None;
        Some(status)
    }

    /// SIGSTOP.
    pub fn pause(&mut self, node_id: u64) {
        let node = self.node_mut(node_id);
        node.process
            .as_ref()
            .expect("the node to pause runs")
            .pause();
        node.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, node_id: u64) {
        let node = self.node_mut(node_id);
        node.process
            .as_ref()
            .expect("the node to resume runs")
            .resume();
        node.paused = false;
    }

    /// Sends SIGTERM without waiting, so several nodes can stop together.
    pub fn begin_stop(&mut self, node_id: u64) {
        let node = self.node(node_id);
        node.process
            .as_ref()
            .expect("the node to stop runs")
            .signal("TERM");
    }

    /// Waits (bounded) for a node sent SIGTERM to exit.
    pub fn finish_stop(&mut self, node_id: u64) -> ExitStatus {
        let mut process = self
            .node_mut(node_id)
            .process
            .take()
            .expect("the stopping node was running");
        tokio::task::block_in_place(|| process.wait_for_exit())
    }

    /// SIGTERM, and wait (bounded) for an orderly exit.
    pub fn stop(&mut self, node_id: u64) -> ExitStatus {
        self.begin_stop(node_id);
        self.finish_stop(node_id)
    }

    /// Starts the node (again) on its ports with its data directory and waits for its
    /// ready line.
    pub fn restart(&mut self, node_id: u64) {
        self.restart_with(node_id, &[], None);
    }

    /// [`ReplicaSet::restart`] with `extra_flags` after the set's own, and where with
    /// `Some(bytes)` no file of the node may grow past `bytes`, as if its disk were full
    /// beyond.
    pub fn restart_with(
        &mut self,
        node_id: u64,
        extra_flags: &[&str],
        file_size_limit: Option<u64>,
    ) {
        let mut arguments = self.node_arguments(node_id);
        arguments.extend(extra_flags.iter().map(|flag| flag.to_string()));
        let node = self.node_mut(node_id);
        assert!(node.process.is_none(), "node {node_id} is already running");
        let log = append_to(&node.log_file);
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let data_dir = node.data_dir.clone();
        let process = tokio::task::block_in_place(|| {
            NodeProcess::launch_with_file_size_limit(
                &data_dir,
                &arguments,
                Stdio::from(log),
                file_size_limit,
            )
        });
        assert_eq!(
            process.grpc, node.ports.grpc,
            "node {node_id} came back on another port"
        );
        node.process = Some(process);
        node.paused = false;
    }

    /// Empties a stopped node's data directory, as a replaced disk would.
    pub fn wipe(&mut self, node_id: u64) {
        let node = self.node(node_id);
        assert!(
            node.process.is_none(),
            "stop node {node_id} before wiping its data"
        );
        std::fs::remove_dir_all(&node.data_dir).expect("remove data directory");
        std::fs::create_dir_all(&node.data_dir).expect("recreate data directory");
    }

    /// Cuts every link to and from the node (a proxied replica set only).
    pub fn isolate(&self, node_id: u64) {
        assert!(self.options.proxied, "isolating a node needs a proxied set");
        for link in &self.links {
            if link.from == node_id || link.to == node_id {
                link.proxy.cut();
            }
        }
    }

    /// Drops the answers on the node's own links to the others, one way only (a proxied
    /// replica set only): what it sends them arrives, what they answer is lost.
    pub fn cut_answers_to(&self, node_id: u64) {
        assert!(
            self.options.proxied,
            "cutting a node's links needs a proxied set"
        );
        for link in self.links.iter().filter(|link| link.from == node_id) {
            link.proxy.cut_one_way(Direction::FromTarget);
        }
    }

    /// Holds everything sent on the node's own links to the others `delay` long, both
    /// ways (a proxied replica set only): its requests and their answers come that late.
    pub fn slow_links_from(&self, node_id: u64, delay: Duration) {
        assert!(
            self.options.proxied,
            "slowing a node's links needs a proxied set"
        );
        for link in self.links.iter().filter(|link| link.from == node_id) {
            link.proxy.delay(delay);
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        for link in &self.links {
            link.proxy.heal();
        }
    }

    /// The links that are cut, as (from, to) pairs.
    pub fn cut_links(&self) -> BTreeSet<(u64, u64)> {
        self.links
            .iter()
            .filter(|link| link.proxy.is_cut())
            .map(|link| (link.from, link.to))
            .collect()
    }

    async fn form(&self) {
        let mut members = Vec::new();
        for node_id in self.node_ids() {
            let status = self
                .wait_for_status(node_id, "an answer", FORMATION_TIMEOUT, |_| true)
                .await;
            members.push(status.node.expect("a node status names the node"));
        }
        let mut cluster = ClusterClient::connect(self.grpc_url(1))
            .await
            .expect("connect to node 1");
        cluster
            .initialize(v1::InitializeRequest { members })
            .await
            .expect("initialize the replica set");
        self.wait_for_active(FORMATION_TIMEOUT).await;
    }

    fn node_arguments(&self, node_id: u64) -> Vec<String> {
        let node = self.node(node_id);
        let options = &self.options;
        let mut arguments = vec![
            "--node-id".to_string(),
            node_id.to_string(),
            "--grpc-listen".to_string(),
            node.ports.grpc.to_string(),
            "--http-listen".to_string(),
            node.ports.http.to_string(),
            "--raft-listen".to_string(),
            node.ports.raft.to_string(),
            // Heartbeats and election timeouts stay at the node's defaults (what users get)
            // unless a test sets them.
            "--no-bootstrap".to_string(),
            "--write-timeout".to_string(),
            format!("{}ms", options.write_timeout_ms),
        ];
        if let Some(entries) = options.snapshot_every_entries {
            arguments.push("--snapshot-every-entries".to_string());
            arguments.push(entries.to_string());
        }
        if let Some(timing) = options.timing {
            for (flag, duration) in [
                ("--heartbeat-interval", timing.heartbeat_interval),
                ("--election-timeout-min", timing.election_timeout_min),
                ("--election-timeout-max", timing.election_timeout_max),
            ] {
                arguments.push(flag.to_string());
                arguments.push(format!("{}ms", duration.as_millis()));
            }
        }
        if let Some(percent) = options.snapshot_min_log_percent {
            arguments.push("--snapshot-min-log-percent".to_string());
            arguments.push(percent.to_string());
        }
        if let Some(config_file) = &node.config_file {
            arguments.push("--config".to_string());
            arguments.push(config_file.display().to_string());
        }
        arguments
    }

    fn node(&self, node_id: u64) -> &ReplicaNode {
        self.nodes
            .iter()
            .find(|node| node.node_id == node_id)
            .unwrap_or_else(|| panic!("no node {node_id} in the replica set"))
    }

    fn node_mut(&mut self, node_id: u64) -> &mut ReplicaNode {
        self.nodes
            .iter_mut()
            .find(|node| node.node_id == node_id)
            .unwrap_or_else(|| panic!("no node {node_id} in the replica set"))
    }
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut process) = node.process.take() {
                process.kill_hard();
            }
        }
        let failed = std::thread::panicking();
        if failed {
            for node in &self.nodes {
                eprintln!(
                    "--- last lines of node {}'s log ({}), without backtraces\n{}",
                    node.node_id,
                    node.log_file.display(),
                    last_log_lines(&node.log_file, LOG_LINES_SHOWN_ON_FAILURE)
                );
            }
        }
        if failed || std::env::var_os(KEEP_DATA_VARIABLE).is_some() {
            let kept = self.root.take().map(TempDir::keep);
            eprintln!(
                "--- cut links at the end: {:?}; data directories and logs kept in {kept:?}",
                self.cut_links(),
            );
        }
    }
}

pub fn describe_statuses(statuses: &[v1::NodeStatusResponse]) -> String {
    let described: Vec<String> = statuses
        .iter()
        .map(|status| {
            format!(
                "node {} {} term {} active {:?} last {} committed {} applied {} snapshot {}",
                status.node.as_ref().map_or(0, |node| node.node_id),
                status.role,
                status.term,
                status.active_node,
                status.last_log_index,
                status.committed_index,
                status.applied_index,
                status.snapshot_index
            )
        })
        .collect();
    format!("[{}]", described.join("; "))
}

/// Free loopback ports for `count` nodes, all bound at once so none repeats; they stay
/// reserved until the returned listeners are dropped.
fn free_node_ports(count: usize) -> (Vec<NodePorts>, Vec<TcpListener>) {
    let listeners = super::reserve_node_ports(count * 3);
    let addresses: Vec<SocketAddr> = listeners
        .iter()
        .map(|listener| listener.local_addr().expect("free port address"))
        .collect();
    let ports = addresses
        .chunks(3)
        .map(|chunk| NodePorts {
            grpc: chunk[0],
            http: chunk[1],
            raft: chunk[2],
        })
        .collect();
    (ports, listeners)
}

/// The `[peer_routes]` table sending each of the node's peers through its proxy.
fn peer_routes_config(node_id: u64, links: &[Link]) -> String {
    let mut text = String::from("[peer_routes]\n");
    for link in links.iter().filter(|link| link.from == node_id) {
        text.push_str(&format!("\"{}\" = \"{}\"\n", link.to, link.proxy.address()));
    }
    text
}

/// The last `count` lines of a node's log, leaving out the frames of backtraces.
fn last_log_lines(path: &Path, count: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return "(no log)".to_string();
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !is_backtrace_frame(line))
        .collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

fn is_backtrace_frame(line: &str) -> bool {
    let trimmed = line.trim_start();
    let numbered = trimmed
        .split_once(": ")
        .is_some_and(|(number, _)| number.chars().all(|character| character.is_ascii_digit()));
    line.starts_with(' ') && (numbered || trimmed.starts_with("at "))
}

/// Opens (creating) a file for appending.
fn append_to(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for appending")
}
