//! `tandem cluster …` and `tandem up` against real processes on 127.0.0.1: forming a
//! replica set of three nodes, its status, a publish sent to a passive (the client follows
//! the redirect), a switchover, and `tandem up` from start to SIGTERM, restarting a node
//! killed on the way, with no process left behind.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::command::{read_in_background, run_tandem};
use support::tandem_binary;

/// How long a node, or `tandem up`, may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts of a set of nodes tried before the test fails (a port may be taken meanwhile).
const START_ATTEMPTS: usize = 3;
/// The tests of this file run one at a time: each picks free ports and releases them
/// before its nodes bind them, and the other's nodes would compete for them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// How long the replica set may take to settle into one active and passives.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `tandem up` may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports a `tandem up` node uses past the base port: gRPC, HTTP and replication, for three
/// nodes ten ports apart.
const UP_PORT_OFFSETS: [u16; 9] = [0, 1, 2, 10, 11, 12, 20, 21, 22];

/// The child's exit status, or None when it is still running after `limit`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Sends every line of a child's stdout to a channel, reading on to the end.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    receiver
}

/// The first line for which `wanted` holds, within `limit`.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    limit: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let started = Instant::now();
    while let Some(left) = limit.checked_sub(started.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Some(line),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// `count` free loopback ports: all reserved at once (so they differ), then released.
fn free_ports(count: usize) -> Vec<u16> {
    support::reserve_node_ports(count)
        .iter()
        .map(|listener| listener.local_addr().expect("address").port())
        .collect()
}

/// A base port P for `tandem up` with P+0..2, P+10..12 and P+20..22 all free.
fn free_base_port() -> u16 {
    for _ in 0..100 {
        let base = free_ports(1)[0];
        if base > u16::MAX - 30 {
            continue;
        }
        let all_free: Option<Vec<TcpListener>> = UP_PORT_OFFSETS
            .iter()
            .map(|offset| TcpListener::bind(("127.0.0.1", base + offset)).ok())
            .collect();
        if all_free.is_some() {
            return base;
        }
    }
    panic!("found no run of free ports for tandem up");
}

/// Sends SIGKILL to a process.
fn kill_nine(pid: u32) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

/// The first JSON line of each of `events` (by its `event` field), gathered until all have
/// come or `limit` has passed.
fn wait_for_events(
    lines: &mpsc::Receiver<String>,
    limit: Duration,
    events: &[&str],
) -> std::collections::BTreeMap<String, Json> {
    let mut seen = std::collections::BTreeMap::new();
    let started = Instant::now();
    while seen.len() < events.len() {
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            break;
        };
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        let Ok(document) = serde_json::from_str::<Json>(&line) else {
            continue;
        };
        if let Some(event) = document["event"]
            .as_str()
            .filter(|event| events.contains(event))
        {
            seen.entry(event.to_string()).or_insert(document);
        }
    }
    seen
}

/// Sends SIGTERM to a process.
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// True while a process with this id exists.
fn is_running(pid: u32) -> bool {
    Command::new("kill")
        .arg("-0")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

// ----- nodes formed with `tandem cluster init` -----

/// `tandem node start --no-bootstrap` processes on fixed free ports; killed when dropped.
struct LocalNodes {
    children: Vec<Child>,
    grpc: Vec<String>,
}

impl LocalNodes {
    /// Starts `count` nodes. Ports are found free and then released, so another process may
    /// take one before a node binds it: a start that fails is retried on fresh ports.
    fn start(data: &Path, count: usize) -> LocalNodes {
        for attempt in 1..=START_ATTEMPTS {
            let attempt_data = data.join(format!("attempt-{attempt}"));
            if let Some(nodes) = LocalNodes::try_start(&attempt_data, count) {
                return nodes;
            }
            eprintln!("attempt {attempt}: {}", node_logs(&attempt_data, count));
        }
        panic!("{count} nodes did not all report ready in {START_ATTEMPTS} attempts");
    }

    fn try_start(data: &Path, count: usize) -> Option<LocalNodes> {
        let ports = free_ports(3 * count);
        let mut nodes = LocalNodes {
            children: Vec::new(),
            grpc: Vec::new(),
        };
        let mut ready_lines = Vec::new();
        for (index, ports) in ports.chunks(3).enumerate() {
            let address = |port: u16| format!("127.0.0.1:{port}");
            let node_id = (index + 1).to_string();
            std::fs::create_dir_all(data).expect("data dir");
            let log =
                std::fs::File::create(data.join(format!("node-{node_id}.log"))).expect("node log");
            let mut child = Command::new(tandem_binary())
                .args(["node", "start", "--no-bootstrap", "--node-id", &node_id])
                .args(["--grpc-listen", &address(ports[0])])
                .args(["--http-listen", &address(ports[1])])
                .args(["--raft-listen", &address(ports[2])])
                .arg("--data-dir")
                .arg(data.join(format!("node-{node_id}")))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("spawn tandem node");
            ready_lines.push(lines_of(&mut child));
            nodes.children.push(child);
            nodes.grpc.push(address(ports[0]));
        }
        let all_ready = ready_lines.iter().all(|lines| {
            wait_for_line(lines, READY_TIMEOUT, |line| {
                line.starts_with("tandem node ready:")
            })
            .is_some()
        });
        // Dropping `nodes` kills every node of a failed attempt.
        all_ready.then_some(nodes)
    }
}

/// What the nodes of one start attempt wrote to stderr.
fn node_logs(data: &Path, count: usize) -> String {
    (1..=count)
        .map(|node| {
            let log = std::fs::read_to_string(data.join(format!("node-{node}.log")));
            format!("--- node {node}\n{}", log.unwrap_or_default())
        })
        .collect()
}

impl Drop for LocalNodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tandem --json cluster status` through `server`, until one node is active, the others
/// passive, and the election recorded in the failover history (the active stamps that
/// record once it has read another voter's clock); returns the status document.
fn settled_status(server: &str) -> Json {
    let started = Instant::now();
    loop {
        let status = run_tandem(&["--server", server, "--json", "cluster", "status"]);
        let status = status.expect_success();
        let document = status.json();
        let roles: Vec<&str> = document["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|node| node["role"].as_str().expect("role"))
            .collect();
        let active = roles.iter().filter(|role| **role == "active").count();
        let passive = roles.iter().filter(|role| **role == "passive").count();
        let recorded = document["failovers"]
            .as_array()
            .is_some_and(|failovers| !failovers.is_empty());
        if active == 1 && passive == roles.len() - 1 && recorded {
            return document;
        }
        assert!(
            started.elapsed() < SETTLE_TIMEOUT,
            "the replica set did not settle: {roles:?}\n{}",
            status.describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The (node id, gRPC address) of the first node in `status` with `role`.
fn node_with_role(status: &Json, role: &str) -> (u64, String) {
    let node = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|node| node["role"] == role)
        .unwrap_or_else(|| panic!("no {role} node in {status}"));
    (
        node["node_id"].as_u64().expect("node id"),
        node["grpc_address"].as_str().expect("address").to_string(),
    )
}

#[test]
fn init_forms_a_replica_set_that_redirects_writes_switches_over_and_changes_members() {
    let _one_at_a_time = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data = tempfile::tempdir().expect("temp dir");
    let nodes = LocalNodes::start(data.path(), 4);
    let mut init = vec!["cluster", "init"];
    for address in &nodes.grpc[..3] {
        init.extend(["--node", address.as_str()]);
    }
    let formed = run_tandem(&init).expect_success();
    assert!(
        formed.stdout.contains("replica set formed: nodes 1, 2, 3"),
        "{}",
        formed.describe()
    );
    assert!(
        formed.stdout.contains("is the active"),
        "{}",
        formed.describe()
    );

    let again = run_tandem(&init).expect_exit_code(1);
    assert!(
        again.stderr.contains("already belongs to a replica set"),
        "{}",
        again.describe()
    );

    let status = settled_status(&nodes.grpc[0]);
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    let every_node_measured_its_disk = status["nodes"].as_array().is_some_and(|nodes| {
        nodes.iter().all(|node| {
            node["disk_room_bytes"]
                .as_u64()
                .is_some_and(|room| room > 0)
        })
    });
    assert!(every_node_measured_its_disk, "{status}");
    // One machine's clock: each node reports its offset from the replica set's time (the
    // median of the voters' clocks) as small, or not yet measured.
    let every_clock_agrees = status["nodes"].as_array().is_some_and(|nodes| {
        nodes.iter().all(|node| match &node["clock_offset_ms"] {
            Json::Null => node.get("clock_offset_ms").is_some(),
            offset => offset.as_i64().is_some_and(|ms| ms.abs() < 60_000),
        })
    });
    assert!(every_clock_agrees, "{status}");
    let text = run_tandem(&["--server", &nodes.grpc[0], "cluster", "status"]).expect_success();
    assert!(
        text.stdout.contains("failover history")
            && text.stdout.contains("DISK ROOM")
            && text.stdout.contains("CLOCK"),
        "{}",
        text.describe()
    );

    let (passive_id, passive) = node_with_role(&status, "passive");
    // Every command sent to the passive: the client follows the redirect to the active.
    declare_and_publish(&passive);

    let switched = run_tandem(&[
        "--server",
        &passive,
        "cluster",
        "switchover",
        "--to",
        &passive_id.to_string(),
    ])
    .expect_success();
    assert!(
        switched
            .stdout
            .contains(&format!("node {passive_id} is the active now")),
        "{}",
        switched.describe()
    );
    let status = settled_status(&nodes.grpc[0]);
    assert_eq!(node_with_role(&status, "active").0, passive_id, "{status}");

    // A fourth node joins (catching up first), then leaves again.
    run_tandem(&[
        "--server",
        &nodes.grpc[0],
        "cluster",
        "join",
        "--node",
        &nodes.grpc[3],
    ])
    .expect_success();
    let status = settled_status(&nodes.grpc[0]);
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(4),
        "{status}"
    );
    run_tandem(&[
        "--server",
        &nodes.grpc[0],
        "cluster",
        "remove",
        "--node-id",
        "4",
    ])
    .expect_success();
    let status = settled_status(&nodes.grpc[0]);
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
}

/// Declares a route and publishes through `server`.
fn declare_and_publish(server: &str) {
    run_tandem(&["--server", server, "host", "create", "orders"]).expect_success();
    run_tandem(&[
        "--server",
        server,
        "subscription",
        "create",
        "--host",
        "orders",
        "--filter",
        r#"MessageType == "Order""#,
    ])
    .expect_success();
    let published = run_tandem(&[
        "--server",
        server,
        "publish",
        "--message-id",
        "order-1",
        "--property",
        "MessageType=Order",
        "--body",
        "hello",
    ])
    .expect_success();
    assert_eq!(
        published.stdout.trim(),
        "order-1",
        "{}",
        published.describe()
    );
}

// ----- tandem up -----

/// A running `tandem up`, and the node pids it reported; everything is killed when
/// dropped.
struct Up {
    child: Child,
    node_pids: Vec<u32>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.node_pids {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

#[test]
fn up_runs_a_replica_set_restarts_a_killed_active_and_leaves_nothing_behind() {
    let _one_at_a_time = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data = tempfile::tempdir().expect("temp dir");
    let base_port = free_base_port().to_string();
    let mut child = Command::new(tandem_binary())
        .args([
            "--json",
            "up",
            "--restart-after",
            "1s",
            "--base-port",
            &base_port,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("TANDEM_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tandem up");
    let stderr = read_in_background(child.stderr.take().expect("stderr"));
    let lines = lines_of(&mut child);
    let mut up = Up {
        child,
        node_pids: Vec::new(),
    };
    let ready = wait_for_line(&lines, READY_TIMEOUT, |line| {
        line.contains(r#""event":"ready""#)
    });
    let Some(ready) = ready else {
        let _ = up.child.kill();
        let stderr = stderr.join().unwrap_or_default();
        panic!("tandem up did not report ready:\n{stderr}");
    };
    let ready: Json = serde_json::from_str(&ready).expect("the ready line is JSON");
    let nodes = ready["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 3, "{ready}");
    let roles: Vec<&str> = nodes
        .iter()
        .map(|node| node["role"].as_str().expect("role"))
        .collect();
    assert!(
        roles
            .iter()
            .all(|role| ["active", "passive"].contains(role)),
        "the summary shows every node active or passive: {roles:?}"
    );
    up.node_pids = nodes
        .iter()
        .map(|node| {
            let pid = node["pid"].as_u64().expect("pid");
            u32::try_from(pid).expect("pid fits")
        })
        .collect();
    let node_log = data.path().join("node-1").join("node.log");
    assert!(node_log.exists(), "no {}", node_log.display());
    assert_eq!(
        nodes[0]["grpc_address"],
        format!("127.0.0.1:{base_port}"),
        "{ready}"
    );

    let servers: Vec<&str> = nodes
        .iter()
        .map(|node| node["grpc_address"].as_str().expect("address"))
        .collect();
    // Node 3 first: a passive unless it won the election; either way the publish lands.
    let server = format!("{},{}", servers[2], servers[0]);
    declare_and_publish(&server);
    let status = settled_status(&server);
    let active_id = ready["active_node"].as_u64().expect("active");
    assert_eq!(node_with_role(&status, "active").0, active_id, "{status}");

    let active_pid = up.node_pids[usize::try_from(active_id - 1).expect("index")];
    kill_nine(active_pid);
    let events = wait_for_events(
        &lines,
        SETTLE_TIMEOUT,
        &["node_exited", "active_changed", "node_restarted"],
    );
    let missing = |event: &str| format!("no {event} event after the kill: {events:?}");
    let exited = events
        .get("node_exited")
        .unwrap_or_else(|| panic!("{}", missing("node_exited")));
    assert_eq!(exited["node_id"], active_id, "{exited}");
    assert_eq!(exited["restart_in_ms"], 1000, "{exited}");
    let changed = events
        .get("active_changed")
        .unwrap_or_else(|| panic!("{}", missing("active_changed")));
    assert_ne!(changed["active_node"], active_id, "{changed}");
    let restarted = events
        .get("node_restarted")
        .unwrap_or_else(|| panic!("{}", missing("node_restarted")));
    assert_eq!(restarted["node_id"], active_id, "{restarted}");
    let new_pid = u32::try_from(restarted["pid"].as_u64().expect("pid")).expect("pid fits");
    up.node_pids.push(new_pid);
    // Back as a passive: the settled status has every node active or passive again.
    let status = settled_status(&server);
    let (now_active, _) = node_with_role(&status, "active");
    assert_ne!(now_active, active_id, "{status}");

    terminate(up.child.id());
    let exit = wait_bounded(&mut up.child, STOP_TIMEOUT);
    let stderr = stderr.join().unwrap_or_default();
    let exit = exit.unwrap_or_else(|| panic!("tandem up did not stop:\n{stderr}"));
    assert!(exit.success(), "tandem up exited with {exit:?}:\n{stderr}");
    let stopped = wait_for_line(&lines, Duration::from_secs(5), |line| {
        line.contains(r#""event":"stopped""#)
    });
    assert!(stopped.is_some(), "no stopped event:\n{stderr}");
    let left: Vec<u32> = up
        .node_pids
        .iter()
        .copied()
        .filter(|pid| is_running(*pid))
        .collect();
    assert!(left.is_empty(), "nodes still running: {left:?}\n{stderr}");
    // Gone, so their ids may be reused: the guard must not signal them.
    up.node_pids.clear();
}
