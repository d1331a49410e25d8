//! The replica set `tandem bench --nodes N` and `--failover` measure: `tandem up` started as
//! a child process on free loopback ports, with its data in a temporary directory, and
//! stopped (SIGTERM, which stops every node) when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
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
/// Ports each node listens on (gRPC, HTTP, replication).
const PORTS_PER_NODE: u16 = 3;
/// Candidate base ports tried before giving up.
const BASE_PORT_ATTEMPTS: u16 = 200;
/// Base ports are taken from below the kernel's ephemeral range (32768 and up), so no
/// outgoing connection holds a node's port.
const FIRST_BASE_PORT: u16 = 20_000;
const BASE_PORT_SPAN: u16 = 12_000;

pub struct BenchNode {
    pub node_id: u64,
    pub pid: u32,
    pub grpc_address: String,
}

pub struct BenchReplicaSet {
    child: Child,
    pub nodes: Vec<BenchNode>,
    pub active_node: u64,
    _temporary: tempfile::TempDir,
}

impl BenchReplicaSet {
    pub fn start(node_count: u64) -> Result<BenchReplicaSet, String> {
        let temporary =
            tempfile::tempdir().map_err(|error| format!("cannot create a temp dir: {error}"))?;
        let base_port = free_base_port(node_count)?;
        let executable = std::env::current_exe()
            .map_err(|error| format!("cannot find the tandem binary: {error}"))?;
        let mut child = Command::new(executable)
            .args(["--json", "up", "--nodes", &node_count.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .arg("--data-dir")
            .arg(temporary.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start `tandem up`: {error}"))?;
        let ready = match read_ready_event(&mut child) {
            Ok(ready) => ready,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        let nodes = ready["nodes"]
            .as_array()
            .map(|nodes| nodes.iter().filter_map(bench_node).collect())
            .unwrap_or_default();
        eprintln!(
            "tandem bench: started a {node_count}-node replica set (base port {base_port}) \
             with data in {}",
            temporary.path().display()
        );
        Ok(BenchReplicaSet {
            child,
            nodes,
            active_node: ready["active_node"].as_u64().unwrap_or(0),
            _temporary: temporary,
        })
    }

    /// The active's gRPC address as a URI.
    pub fn active_target(&self) -> String {
        format!("http://{}", self.active().grpc_address)
    }

    pub fn active(&self) -> &BenchNode {
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

impl Drop for BenchReplicaSet {
    fn drop(&mut self) {
        if process_signal::terminate(self.child.id()) {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_node(node: &Json) -> Option<BenchNode> {
    Some(BenchNode {
        node_id: node["node_id"].as_u64()?,
        pid: u32::try_from(node["pid"].as_u64()?).ok()?,
        grpc_address: node["grpc_address"].as_str()?.to_string(),
    })
}

/// Reads `tandem up --json` events until `ready`.
fn read_ready_event(child: &mut Child) -> Result<Json, String> {
    let stdout = child.stdout.take().ok_or("`tandem up` has no stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Json>(&line)
                && event["event"] == "ready"
            {
                let _ = sender.send(event);
            }
        }
    });
    receiver
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| format!("the replica set did not form within {READY_TIMEOUT:?}"))
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
