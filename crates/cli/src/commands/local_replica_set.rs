//! A replica set on free loopback ports that a command runs for itself (`tandem bench
//! --nodes N`, `--failover`, `tandem demo`): `tandem up` started as a child process, with its
//! data in a temporary or given directory (its messages in `up.log` there), and stopped
//! (SIGTERM, which stops every node) when dropped. A node killed on purpose can be started
//! again ([`LocalReplicaSet::restart`]); such restarted nodes are stopped on drop too.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::process_signal;

/// How long the replica set may take to form.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `tandem up` may take to stop its nodes before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Ports between two nodes, as `tandem up` lays them out.
const PORT_STRIDE: u16 = 10;
/// The file in the data directory that `tandem up`'s own messages go to.
const UP_LOG: &str = "up.log";
/// What a node prints on stdout once it serves.
const NODE_READY_PREFIX: &str = "tandem node ready:";
/// Ports each node listens on (gRPC, HTTP, replication).
const PORTS_PER_NODE: u16 = 3;
/// Candidate base ports tried before giving up.
const BASE_PORT_ATTEMPTS: u16 = 200;
/// Base ports are taken from below the kernel's ephemeral range (32768 and up), so no
/// outgoing connection holds a node's port.
const FIRST_BASE_PORT: u16 = 20_000;
const BASE_PORT_SPAN: u16 = 12_000;

pub struct LocalNode {
    pub node_id: u64,
    pub pid: u32,
    pub grpc_address: String,
}

pub struct LocalReplicaSet {
    child: Child,
    /// Nodes started again after a kill; `tandem up` does not know them.
    restarted: Vec<Child>,
    pub nodes: Vec<LocalNode>,
    pub active_node: u64,
    base_port: u16,
    data_dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl LocalReplicaSet {
    /// Starts `node_count` nodes with their data in a temporary directory.
    pub fn start(node_count: u64) -> Result<LocalReplicaSet, String> {
        let temporary =
            tempfile::tempdir().map_err(|error| format!("cannot create a temp dir: {error}"))?;
        let data_dir = temporary.path().to_path_buf();
        let mut replica_set = LocalReplicaSet::start_in(node_count, &data_dir)?;
        eprintln!(
            "tandem: started a {node_count}-node replica set (base port {}) with data in {}",
            replica_set.base_port,
            data_dir.display()
        );
        replica_set._temporary = Some(temporary);
        Ok(replica_set)
    }

    /// Starts `node_count` nodes with their data under `data_dir` (node i in `node-i`).
    pub fn start_in(node_count: u64, data_dir: &Path) -> Result<LocalReplicaSet, String> {
        let base_port = free_base_port(node_count)?;
        std::fs::create_dir_all(data_dir)
            .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
        let up_log_path = data_dir.join(UP_LOG);
        let up_log = std::fs::File::create(&up_log_path)
            .map_err(|error| format!("cannot create {}: {error}", up_log_path.display()))?;
        let mut child = Command::new(tandem_executable()?)
            .args(["--json", "up", "--nodes", &node_count.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(up_log))
            .spawn()
            .map_err(|error| format!("cannot start `tandem up`: {error}"))?;
        let ready = match read_ready_event(&mut child) {
            Ok(ready) => ready,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{error}; see {}", up_log_path.display()));
            }
        };
        let nodes = ready["nodes"]
            .as_array()
            .map(|nodes| nodes.iter().filter_map(local_node).collect())
            .unwrap_or_default();
        Ok(LocalReplicaSet {
            child,
            restarted: Vec::new(),
            nodes,
            active_node: ready["active_node"].as_u64().unwrap_or(0),
            base_port,
            data_dir: data_dir.to_path_buf(),
            _temporary: None,
        })
    }

    /// Starts node `node_id` again (after it was killed) with the addresses and data
    /// directory `tandem up` gave it, and waits until it serves.
    pub fn restart(&mut self, node_id: u64) -> Result<(), String> {
        let index = u16::try_from(node_id.saturating_sub(1)).map_err(|_| "no such node")?;
        let node_base = self.base_port + PORT_STRIDE * index;
        let data_dir = self.data_dir.join(format!("node-{node_id}"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("node.log"))
            .map_err(|error| format!("cannot open node {node_id}'s log: {error}"))?;
        let address = |offset: u16| format!("127.0.0.1:{}", node_base + offset);
        let mut child = Command::new(tandem_executable()?)
            .args([
                "node",
                "start",
                "--no-bootstrap",
                "--node-id",
                &node_id.to_string(),
            ])
            .args(["--grpc-listen", &address(0), "--http-listen", &address(1)])
            .args(["--raft-listen", &address(2)])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| format!("cannot restart node {node_id}: {error}"))?;
        let pid = child.id();
        let ready = wait_for_line(&mut child, |line| line.starts_with(NODE_READY_PREFIX));
        self.restarted.push(child);
        ready?;
        if let Some(node) = self.nodes.iter_mut().find(|node| node.node_id == node_id) {
            node.pid = pid;
        }
        Ok(())
    }

    /// The active's gRPC address as a URI.
    pub fn active_target(&self) -> String {
        format!("http://{}", self.active().grpc_address)
    }

    pub fn active(&self) -> &LocalNode {
        self.nodes
            .iter()
            .find(|node| node.node_id == self.active_node)
            .unwrap_or(&self.nodes[0])
    }

    /// Every node's gRPC address, comma-separated (what clients are given).
    pub fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.grpc_address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for LocalReplicaSet {
    fn drop(&mut self) {
        for child in self
            .restarted
            .iter_mut()
            .chain(std::iter::once(&mut self.child))
        {
            stop(child);
        }
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within [`STOP_TIMEOUT`].
fn stop(child: &mut Child) {
    if process_signal::terminate(child.id()) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tandem_executable() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|error| format!("cannot find the tandem binary: {error}"))
}

fn local_node(node: &Json) -> Option<LocalNode> {
    Some(LocalNode {
        node_id: node["node_id"].as_u64()?,
        pid: u32::try_from(node["pid"].as_u64()?).ok()?,
        grpc_address: node["grpc_address"].as_str()?.to_string(),
    })
}

/// Reads `tandem up --json` events until `ready`.
fn read_ready_event(child: &mut Child) -> Result<Json, String> {
    let line = wait_for_line(child, |line| {
        serde_json::from_str::<Json>(line).is_ok_and(|event| event["event"] == "ready")
    })
    .map_err(|_| format!("the replica set did not form within {READY_TIMEOUT:?}"))?;
    serde_json::from_str(&line).map_err(|error| error.to_string())
}

/// The first line of the child's stdout that `wanted` accepts, within [`READY_TIMEOUT`].
/// The rest of stdout is read (and dropped) in the background, so the child never blocks.
fn wait_for_line(
    child: &mut Child,
    wanted: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("the process has no stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if wanted(&line) {
                let _ = sender.send(line);
            }
        }
    });
    receiver
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| format!("no ready line within {READY_TIMEOUT:?}"))
}

/// A base port whose whole run of node ports is free right now.
fn free_base_port(node_count: u64) -> Result<u16, String> {
    let seed = std::process::id() as u16;
    for attempt in 0..BASE_PORT_ATTEMPTS {
        let offset = seed
            .wrapping_mul(7919)
            .wrapping_add(attempt.wrapping_mul(1009));
        let base = FIRST_BASE_PORT + offset % BASE_PORT_SPAN;
        let all_free = (0..node_count as u16).all(|node| {
            (0..PORTS_PER_NODE).all(|port| {
                TcpListener::bind(("127.0.0.1", base + node * PORT_STRIDE + port)).is_ok()
            })
        });
        if all_free {
            return Ok(base);
        }
    }
    Err("no free run of loopback ports found for the replica set".into())
}
