//! `tandem up`: a local replica set on loopback in one command, to try Tandem out. Starts
//! the nodes as child processes of this one, forms the replica set on first start, prints
//! where everything is, and stays in the foreground until SIGINT (Ctrl-C) or SIGTERM, when
//! it stops every node (SIGTERM, then SIGKILL for any still running after
//! [`STOP_WAIT`]).
//!
//! Node i (1-based) has node id i, keeps its store in `DATA/node-i` and listens on
//! 127.0.0.1 at gRPC `P + 10(i-1)`, HTTP `+1` and replication `+2` (P is `--base-port`,
//! 7400 by default, so node 1 keeps a single node's default ports). Its stderr goes to
//! `DATA/node-i/node.log`. The nodes run in their own process group, so Ctrl-C reaches
//! `tandem up` alone and the nodes are stopped in order.
//!
//! A node that exits while `tandem up` runs (after `kill -9`, to watch a failover) is
//! reported, and started again after `--restart-after` (5 s by default), as a supervisor
//! would in production: it rejoins the replica set as a passive and catches up. A node that
//! keeps exiting soon after each start waits twice as long each time (up to
//! [`MAX_RESTART_DELAY`]); `--no-restart` leaves exited nodes down. Running `tandem up`
//! again on the same data directory restarts the same replica set (no new
//! initialization); nodes added with a larger `--nodes` join it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value as Json, json};
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::commands::cluster::{
    ELECTION_WAIT, FoundNode, find_node, form_replica_set, join_node, probe, wait_for_active,
};
use crate::duration::{format_milliseconds, parse_milliseconds};
use crate::output::Table;

/// Most nodes `tandem up` runs.
pub const MAX_NODES: u64 = 9;
/// Node i's ports start this far after node i-1's.
pub const PORT_STRIDE: u16 = 10;
/// How long a node may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the nodes may take to stop after SIGTERM before they are killed.
pub const STOP_WAIT: Duration = Duration::from_secs(15);
/// How long a node added by a larger `--nodes` may take to catch up and join.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often `tandem up` looks for nodes that exited, nodes due to start again, and a new
/// active.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a node that keeps exiting waits before it is started again.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(300);
/// A node that exits after running this long is started again after the first delay; one
/// that exits sooner waits twice as long as the last time.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// How long the start-up waits for every node to know its role before printing them.
const ROLES_WAIT: Duration = Duration::from_secs(5);
/// How often the start-up checks for ready lines and early exits.
const START_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the shutdown checks whether the nodes have exited.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of a node's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;
/// At most this much of the end of a node's log is read to find those lines.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// What a node prints on stdout once it serves.
const READY_LINE_PREFIX: &str = "tandem node ready:";
/// The file in a node's data directory its stderr goes to.
const LOG_FILE: &str = "node.log";
/// What `tandem up --help` says after the options.
const UP_HELP: &str = "\
Node i (1-based) has node id i, keeps its store in DIR/node-i and writes its stderr to
DIR/node-i/node.log. On first start the nodes form a replica set (as `tandem cluster init`);
on later starts the same replica set comes back. Prints each node's addresses and pid, which
node is the active, and commands to try.

Stays in the foreground: Ctrl-C or SIGTERM stops every node (SIGTERM, then SIGKILL after
15 s) and exits 0. A node that exits meanwhile (e.g. `kill -9` of the active, to watch a
failover) is reported, the others keep running and the new active is reported; the node is
started again after --restart-after, rejoins as a passive and catches up from the active.
A node that exits again within a minute of a start waits twice as long before the next
(at most 5 min). With --no-restart it stays down until `tandem up` runs again.

Output with --json: one JSON line per event (ready, node_exited, node_restarted,
active_changed, stopped).";

#[derive(Debug, Args)]
#[command(after_help = UP_HELP)]
pub struct UpArgs {
    /// Where the nodes keep their stores: node i in DIR/node-i, with its log in
    /// DIR/node-i/node.log.
    #[arg(long, value_name = "DIR", default_value = "./tandem-data")]
    data_dir: PathBuf,
    /// How many nodes to run.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=MAX_NODES))]
    nodes: u64,
    /// Node i listens on gRPC P+10(i-1), HTTP P+10(i-1)+1 and replication P+10(i-1)+2.
    #[arg(long, value_name = "P", default_value_t = 7400,
          value_parser = clap::value_parser!(u16).range(1..))]
    base_port: u16,
    /// How long a node that exited stays down before it is started again.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_milliseconds)]
    restart_after: u64,
    /// Leave a node that exits down (until `tandem up` runs again).
    #[arg(long, conflicts_with = "restart_after")]
    no_restart: bool,
}

impl UpArgs {
    /// How long an exited node stays down the first time; `None`: it is not restarted.
    fn first_restart_delay(&self) -> Option<Duration> {
        (!self.no_restart).then(|| Duration::from_millis(self.restart_after))
    }
}

/// Where one node runs.
#[derive(Clone, Debug)]
struct PlannedNode {
    node_id: u64,
    grpc: SocketAddr,
    http: SocketAddr,
    raft: SocketAddr,
    data_dir: PathBuf,
}

/// A started node: its child process and what it has reported.
struct RunningNode {
    plan: PlannedNode,
    child: Child,
    started_at: Instant,
    restart: RestartSchedule,
    log_path: PathBuf,
    /// The log's length before this start: what follows is this run's.
    log_start: u64,
    ready_lines: mpsc::Receiver<String>,
    ready: bool,
    exit: Option<ExitStatus>,
}

/// When an exited node starts again; carried from one of its processes to the next.
#[derive(Clone, Copy, Debug)]
struct RestartSchedule {
    /// The wait before the next start after an exit.
    delay: Duration,
    /// When the exited node is due to start again (`None` while it runs).
    due: Option<Instant>,
}

impl RestartSchedule {
    fn new(first_delay: Duration) -> RestartSchedule {
        RestartSchedule {
            delay: first_delay,
            due: None,
        }
    }

    /// Schedules the next start after an exit at `now` of a process that ran for `ran`, and
    /// returns the wait: the first delay after a stable run, twice the last one after a
    /// short run (at most [`MAX_RESTART_DELAY`]).
    fn exited(&mut self, first_delay: Duration, ran: Duration, now: Instant) -> Duration {
        if ran >= STABLE_RUN {
            self.delay = first_delay;
        }
        let wait = self.delay;
        self.due = Some(now + wait);
        self.delay = (wait * 2).clamp(first_delay, MAX_RESTART_DELAY.max(first_delay));
        wait
    }
}

pub async fn run(arguments: UpArgs, context: &CommandContext) -> Result<(), CommandError> {
    let plan = plan_nodes(&arguments)?;
    let mut signals = StopSignals::install()?;
    let executable = std::env::current_exe().map_err(|error| {
        CommandError::new(format!(
            "cannot find the tandem executable to start: {error}"
        ))
    })?;
    let restart_delay = arguments.first_restart_delay();
    let schedule = RestartSchedule::new(restart_delay.unwrap_or_default());
    let mut nodes = Vec::with_capacity(plan.len());
    for planned in plan {
        match spawn_node(&executable, planned, schedule) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                stop_nodes(&mut nodes).await;
                return Err(error);
            }
        }
    }
    let started = tokio::select! {
        started = start_replica_set(&mut nodes) => Some(started),
        signal = signals.recv() => {
            eprintln!("tandem up: {signal} received while starting; stopping the nodes");
            None
        }
    };
    let outcome = match started {
        Some(Ok(active)) => {
            let roles = roles_once_known(&nodes).await;
            print_summary(&nodes, &roles, &active, &arguments, context);
            let mut watched = Watched {
                nodes: &mut nodes,
                executable: &executable,
                restart_delay,
                active_id: node_id_of(&active),
            };
            watched.watch(&mut signals, context).await
        }
        Some(Err(error)) => Err(error),
        None => Ok(()),
    };
    stop_nodes(&mut nodes).await;
    if outcome.is_ok() {
        report(
            context,
            "stopped",
            json!({}),
            "tandem up: every node stopped",
        );
    }
    outcome
}

/// Each node's id, ports and data directory; refuses ports past 65535.
fn plan_nodes(arguments: &UpArgs) -> Result<Vec<PlannedNode>, CommandError> {
    let loopback = Ipv4Addr::LOCALHOST;
    (1..=arguments.nodes)
        .map(|node_id| {
            let grpc_port = u16::try_from(node_id - 1)
                .ok()
                .and_then(|index| index.checked_mul(PORT_STRIDE))
                .and_then(|offset| arguments.base_port.checked_add(offset))
                .filter(|grpc_port| grpc_port.checked_add(2).is_some())
                .ok_or_else(|| {
                    CommandError::new(format!(
                        "--base-port {} leaves no room for {} nodes (node i uses ports \
                         P+10(i-1) to P+10(i-1)+2, at most 65535)",
                        arguments.base_port, arguments.nodes
                    ))
                })?;
            Ok(PlannedNode {
                node_id,
                grpc: SocketAddr::from((loopback, grpc_port)),
                http: SocketAddr::from((loopback, grpc_port + 1)),
                raft: SocketAddr::from((loopback, grpc_port + 2)),
                data_dir: arguments.data_dir.join(format!("node-{node_id}")),
            })
        })
        .collect()
}

/// Starts `tandem node start --no-bootstrap` for one node, its stderr appended to its log.
fn spawn_node(
    executable: &Path,
    plan: PlannedNode,
    restart: RestartSchedule,
) -> Result<RunningNode, CommandError> {
    let node_id = plan.node_id;
    std::fs::create_dir_all(&plan.data_dir).map_err(|error| {
        CommandError::new(format!(
            "cannot create node {node_id}'s data directory {}: {error}",
            plan.data_dir.display()
        ))
    })?;
    let log_path = plan.data_dir.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|error| {
            CommandError::new(format!(
                "cannot open node {node_id}'s log {}: {error}",
                log_path.display()
            ))
        })?;
    let log_start = log.metadata().map_or(0, |metadata| metadata.len());
    let mut command = Command::new(executable);
    command
        .args(["node", "start", "--no-bootstrap", "--node-id"])
        .arg(node_id.to_string())
        .arg("--grpc-listen")
        .arg(plan.grpc.to_string())
        .arg("--http-listen")
        .arg(plan.http.to_string())
        .arg("--raft-listen")
        .arg(plan.raft.to_string())
        .arg("--data-dir")
        .arg(&plan.data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    in_own_process_group(&mut command);
    let mut child = command.spawn().map_err(|error| {
        CommandError::new(format!(
            "cannot start node {node_id} ({}): {error}",
            executable.display()
        ))
    })?;
    let (sender, ready_lines) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || forward_ready_line(stdout, sender));
    }
    Ok(RunningNode {
        plan,
        child,
        started_at: Instant::now(),
        restart,
        log_path,
        log_start,
        ready_lines,
        ready: false,
        exit: None,
    })
}

/// Passes on the node's ready line and reads its stdout to the end, so that the node
/// never blocks writing to it.
fn forward_ready_line(stdout: impl Read, sender: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.starts_with(READY_LINE_PREFIX) {
            let _ = sender.send(line);
        }
    }
}

#[cfg(unix)]
fn in_own_process_group(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

#[cfg(not(unix))]
fn in_own_process_group(_command: &mut Command) {}

/// Waits for every ready line, forms the replica set on first start (or adds new nodes to
/// an existing one), and waits for an active; returns the active's status.
async fn start_replica_set(
    nodes: &mut [RunningNode],
) -> Result<v1::NodeStatusResponse, CommandError> {
    wait_until_ready(nodes).await?;
    let mut found = Vec::with_capacity(nodes.len());
    for node in nodes.iter() {
        found.push(find_node(&node.plan.grpc.to_string()).await?);
    }
    let (initialized, new): (Vec<FoundNode>, Vec<FoundNode>) =
        found.into_iter().partition(|node| node.initialized);
    let all_addresses: Vec<String> = nodes
        .iter()
        .map(|node| node.plan.grpc.to_string())
        .collect();
    if initialized.is_empty() {
        form_replica_set(&new).await?;
    } else {
        let members: Vec<String> = initialized
            .iter()
            .map(|node| node.address.clone())
            .collect();
        eprintln!("tandem up: restarting the replica set found in the data directory");
        if !new.is_empty() {
            wait_for_active(&members, ELECTION_WAIT).await?;
        }
        for node in &new {
            join_node(&members.join(","), node, JOIN_TIMEOUT).await?;
        }
    }
    eprintln!("tandem up: waiting for an active to be elected");
    wait_for_active(&all_addresses, ELECTION_WAIT).await
}

/// Each node's role (`down` when it does not answer), once every node reports itself active
/// or passive, or as they are after [`ROLES_WAIT`]: right after the replica set forms, a
/// node that has not yet received its membership reports itself a learner.
async fn roles_once_known(nodes: &[RunningNode]) -> Vec<String> {
    let started = Instant::now();
    loop {
        let mut roles = Vec::with_capacity(nodes.len());
        for node in nodes {
            let role = match probe(&node.plan.grpc.to_string()).await {
                Ok(status) => status.role,
                Err(_) => "down".to_string(),
            };
            roles.push(role);
        }
        let known = roles
            .iter()
            .all(|role| role == "active" || role == "passive");
        if known || started.elapsed() >= ROLES_WAIT {
            return roles;
        }
        tokio::time::sleep(START_POLL_INTERVAL).await;
    }
}

/// Waits (up to [`READY_TIMEOUT`]) until every node has printed its ready line; a node
/// that exits or stays silent fails the start with the end of its log.
async fn wait_until_ready(nodes: &mut [RunningNode]) -> Result<(), CommandError> {
    let started = Instant::now();
    loop {
        let mut waiting = 0;
        for node in nodes.iter_mut().filter(|node| !node.ready) {
            if node.ready_lines.try_recv().is_ok() {
                node.ready = true;
                continue;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                node.exit = Some(status);
                let problem = format!(
                    "node {} exited before it was ready ({status})",
                    node.plan.node_id
                );
                return Err(start_failure(node, problem));
            }
            waiting += 1;
        }
        if waiting == 0 {
            return Ok(());
        }
        if started.elapsed() >= READY_TIMEOUT {
            let Some(node) = nodes.iter().find(|node| !node.ready) else {
                return Ok(());
            };
            let problem = format!(
                "node {} did not report ready within {} s",
                node.plan.node_id,
                READY_TIMEOUT.as_secs()
            );
            return Err(start_failure(node, problem));
        }
        tokio::time::sleep(START_POLL_INTERVAL).await;
    }
}

/// A failed start, with the end of the node's log and what to check.
fn start_failure(node: &RunningNode, problem: String) -> CommandError {
    let tail = log_tail(&node.log_path, node.log_start);
    let log = node.log_path.display();
    let message = if tail.is_empty() {
        format!("{problem}; its log {log} is empty")
    } else {
        format!("{problem}; the end of {log}:\n{tail}")
    };
    CommandError::new(message).with_hint(format!(
        "is something else (another `tandem up` or node) using ports {}-{}? choose other \
         ports with --base-port",
        node.plan.grpc.port(),
        node.plan.raft.port()
    ))
}

/// The last [`LOG_TAIL_LINES`] lines written to the log since `start`, indented.
fn log_tail(path: &Path, start: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    let from = start.max(length.saturating_sub(LOG_TAIL_BYTES));
    if file.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    shown
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ----- running -----

/// The running replica set, as `tandem up` watches it.
struct Watched<'nodes> {
    nodes: &'nodes mut [RunningNode],
    executable: &'nodes Path,
    /// How long an exited node first stays down; `None`: it is not restarted.
    restart_delay: Option<Duration>,
    active_id: u64,
}

impl Watched<'_> {
    /// Stays in the foreground: reports nodes that exit, starts them again when they are
    /// due, and reports changes of the active, until a stop signal (Ok) or, when nodes are
    /// not restarted, until every node has exited (an error).
    async fn watch(
        &mut self,
        signals: &mut StopSignals,
        context: &CommandContext,
    ) -> Result<(), CommandError> {
        loop {
            let tick = async {
                tokio::time::sleep(WATCH_INTERVAL).await;
                self.report_exits(context);
                self.restart_due_nodes(context);
                if self.restart_delay.is_none() && self.nodes.iter().all(|node| node.exit.is_some())
                {
                    return Err(CommandError::new("every node has exited"));
                }
                self.report_new_active(context).await;
                Ok(())
            };
            tokio::select! {
                signal = signals.recv() => {
                    eprintln!("tandem up: {signal} received; stopping the nodes");
                    return Ok(());
                }
                ticked = tick => ticked?,
            }
        }
    }

    /// Notes and reports the nodes that have exited since the last look, and when each
    /// starts again.
    fn report_exits(&mut self, context: &CommandContext) {
        let now = Instant::now();
        for node in self.nodes.iter_mut().filter(|node| node.exit.is_none()) {
            let Ok(Some(status)) = node.child.try_wait() else {
                continue;
            };
            node.exit = Some(status);
            let node_id = node.plan.node_id;
            let restart_in = self
                .restart_delay
                .map(|first_delay| node.restart.exited(first_delay, now - node.started_at, now));
            let what_next = match restart_in {
                Some(wait) => format!(
                    "It starts again in {}; its log is {}",
                    spelled(wait),
                    node.log_path.display()
                ),
                None => format!(
                    "It is not restarted (--no-restart): its log is {}, and running `tandem \
                     up` again brings every node back",
                    node.log_path.display()
                ),
            };
            report(
                context,
                "node_exited",
                json!({
                    "node_id": node_id,
                    "pid": node.child.id(),
                    "status": status.to_string(),
                    "log": node.log_path.display().to_string(),
                    "restart_in_ms": restart_in.map(|wait| wait.as_millis()),
                }),
                &format!(
                    "tandem up: node {node_id} (pid {}) exited ({status}); the other nodes \
                     keep running. {what_next}",
                    node.child.id(),
                ),
            );
        }
    }

    /// Starts again every exited node whose wait is over; a node that cannot be started
    /// waits again, longer.
    fn restart_due_nodes(&mut self, context: &CommandContext) {
        let Some(first_delay) = self.restart_delay else {
            return;
        };
        let now = Instant::now();
        for node in self.nodes.iter_mut() {
            let due = node.exit.is_some() && node.restart.due.is_some_and(|due| due <= now);
            if !due {
                continue;
            }
            let mut schedule = node.restart;
            schedule.due = None;
            let node_id = node.plan.node_id;
            match spawn_node(self.executable, node.plan.clone(), schedule) {
                Ok(started) => {
                    *node = started;
                    report(
                        context,
                        "node_restarted",
                        json!({ "node_id": node_id, "pid": node.child.id() }),
                        &format!(
                            "tandem up: node {node_id} started again (pid {}); it rejoins the \
                             replica set and catches up from the active",
                            node.child.id()
                        ),
                    );
                }
                Err(error) => {
                    let wait = node.restart.exited(first_delay, Duration::ZERO, now);
                    eprintln!(
                        "tandem up: {}; trying again in {}",
                        error.message,
                        spelled(wait)
                    );
                }
            }
        }
    }

    /// Reports the active when it is another node than the last one reported.
    async fn report_new_active(&mut self, context: &CommandContext) {
        let Some(active) = current_active(self.nodes).await else {
            return;
        };
        let now_active = node_id_of(&active);
        if now_active == self.active_id {
            return;
        }
        self.active_id = now_active;
        report(
            context,
            "active_changed",
            json!({ "active_node": now_active, "term": active.term }),
            &format!(
                "tandem up: node {now_active} is the active now (term {})",
                active.term
            ),
        );
    }
}

/// The active as the first running node that answers sees it, confirmed by the active.
async fn current_active(nodes: &[RunningNode]) -> Option<v1::NodeStatusResponse> {
    let running: Vec<String> = nodes
        .iter()
        .filter(|node| node.exit.is_none())
        .map(|node| node.plan.grpc.to_string())
        .collect();
    for address in &running {
        let Ok(status) = probe(address).await else {
            continue;
        };
        if status.role == "active" {
            return Some(status);
        }
        let active_address = status
            .active_node
            .and_then(|active| {
                status
                    .members
                    .iter()
                    .find(|member| member.node_id == active)
            })
            .map(|member| member.grpc_address.clone())?;
        return probe(&active_address)
            .await
            .ok()
            .filter(|active| active.role == "active");
    }
    None
}

/// A wait as people write it: `5s`, `1m`.
fn spelled(wait: Duration) -> String {
    format_milliseconds(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

fn node_id_of(status: &v1::NodeStatusResponse) -> u64 {
    status.node.as_ref().map_or(0, |node| node.node_id)
}

/// Prints a line for people, or a JSON line with `event` for machines.
fn report(context: &CommandContext, event: &str, mut details: Json, text: &str) {
    if context.output.is_json() {
        details["event"] = json!(event);
        context.output.print_json_line(&details);
    } else {
        println!("{text}");
    }
}

// ----- summary -----

fn print_summary(
    nodes: &[RunningNode],
    roles: &[String],
    active: &v1::NodeStatusResponse,
    arguments: &UpArgs,
    context: &CommandContext,
) {
    let data_dir = &arguments.data_dir;
    let active_id = node_id_of(active);
    if context.output.is_json() {
        let described: Vec<Json> = nodes
            .iter()
            .zip(roles)
            .map(|(node, role)| node_json(node, role))
            .collect();
        context.output.print_json_line(&json!({
            "event": "ready",
            "data_dir": data_dir.display().to_string(),
            "active_node": active_id,
            "term": active.term,
            "nodes": described,
        }));
        return;
    }
    println!(
        "tandem up: {} node(s) running on 127.0.0.1, data in {} (each node's stderr goes to \
         node.log in its data directory)",
        nodes.len(),
        data_dir.display()
    );
    println!();
    let mut table = Table::new(vec![
        "NODE", "ROLE", "PID", "GRPC", "HTTP", "RAFT", "DATA DIR",
    ]);
    for (node, role) in nodes.iter().zip(roles) {
        table.add_row(vec![
            node.plan.node_id.to_string(),
            role.clone(),
            node.child.id().to_string(),
            node.plan.grpc.to_string(),
            node.plan.http.to_string(),
            node.plan.raft.to_string(),
            node.plan.data_dir.display().to_string(),
        ]);
    }
    table.print();
    println!();
    print_next_steps(nodes, active_id, arguments.first_restart_delay());
}

fn print_next_steps(nodes: &[RunningNode], active_id: u64, restart_delay: Option<Duration>) {
    let servers: Vec<String> = nodes
        .iter()
        .map(|node| node.plan.grpc.to_string())
        .collect();
    let active_pid = nodes
        .iter()
        .find(|node| node.plan.node_id == active_id)
        .map_or(0, |node| node.child.id());
    println!("try next, in another terminal:");
    println!("  export TANDEM_SERVER={}", servers.join(","));
    println!("  tandem host create orders");
    println!("  tandem subscription create --host orders --filter 'MessageType == \"Order\"'");
    println!("  tandem publish --property MessageType=Order --body hello");
    println!("  tandem consume --host orders --max 1");
    println!("  tandem cluster status");
    println!(
        "  kill -9 {active_pid}    # the active (node {active_id}): watch another node take \
         over, then run `tandem cluster status`"
    );
    if let Some(delay) = restart_delay {
        println!(
            "  # {} later, node {active_id} starts again, rejoins as a passive and catches up",
            spelled(delay)
        );
    }
    println!("Ctrl-C stops every node.");
}

fn node_json(node: &RunningNode, role: &str) -> Json {
    json!({
        "node_id": node.plan.node_id,
        "pid": node.child.id(),
        "role": role,
        "grpc_address": node.plan.grpc.to_string(),
        "http_address": node.plan.http.to_string(),
        "raft_address": node.plan.raft.to_string(),
        "data_dir": node.plan.data_dir.display().to_string(),
        "log": node.log_path.display().to_string(),
    })
}

// ----- stopping -----

/// SIGTERM to every running node, a bounded wait, then SIGKILL for any still running.
async fn stop_nodes(nodes: &mut [RunningNode]) {
    for node in nodes.iter_mut() {
        if node.exit.is_none() && matches!(node.child.try_wait(), Ok(None)) {
            ask_to_stop(&mut node.child);
        }
    }
    let started = Instant::now();
    while started.elapsed() < STOP_WAIT {
        let mut running = 0;
        for node in nodes.iter_mut().filter(|node| node.exit.is_none()) {
            match node.child.try_wait() {
                Ok(Some(status)) => node.exit = Some(status),
                _ => running += 1,
            }
        }
        if running == 0 {
            return;
        }
        tokio::time::sleep(STOP_POLL_INTERVAL).await;
    }
    for node in nodes.iter_mut().filter(|node| node.exit.is_none()) {
        eprintln!(
            "tandem up: node {} did not stop within {} s of SIGTERM; killing it",
            node.plan.node_id,
            STOP_WAIT.as_secs()
        );
        kill_now(node);
    }
}

/// SIGTERM; SIGKILL when even that cannot be sent.
fn ask_to_stop(child: &mut Child) {
    if !crate::process_signal::terminate(child.id()) {
        let _ = child.kill();
    }
}

fn kill_now(node: &mut RunningNode) {
    let _ = node.child.kill();
    if let Ok(status) = node.child.wait() {
        node.exit = Some(status);
    }
}

impl Drop for RunningNode {
    /// A node still running when `tandem up` unwinds (a panic) is killed, never left behind.
    fn drop(&mut self) {
        if self.exit.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            kill_now(self);
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, installed before the first node starts so that none is lost.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn install() -> Result<StopSignals, CommandError> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind| {
            signal(kind).map_err(|error| {
                CommandError::new(format!("cannot install the signal handlers: {error}"))
            })
        };
        Ok(StopSignals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> Result<StopSignals, CommandError> {
        Ok(StopSignals {})
    }

    /// The next stop signal's name.
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(nodes: u64, base_port: u16) -> UpArgs {
        UpArgs {
            data_dir: PathBuf::from("data"),
            nodes,
            base_port,
            restart_after: 5000,
            no_restart: false,
        }
    }

    #[test]
    fn a_node_that_keeps_exiting_waits_longer_each_time() {
        let first = Duration::from_secs(5);
        let mut schedule = RestartSchedule::new(first);
        let now = Instant::now();
        let short_run = Duration::from_secs(2);
        let waits: Vec<u64> = (0..9)
            .map(|_| schedule.exited(first, short_run, now).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(schedule.due, Some(now + MAX_RESTART_DELAY));
        let after_a_stable_run = schedule.exited(first, STABLE_RUN, now);
        assert_eq!(after_a_stable_run, first);
    }

    #[test]
    fn no_restart_means_no_delay() {
        let mut arguments = arguments(3, 7400);
        assert_eq!(
            arguments.first_restart_delay(),
            Some(Duration::from_secs(5))
        );
        arguments.no_restart = true;
        assert_eq!(arguments.first_restart_delay(), None);
    }

    #[test]
    fn node_one_keeps_the_single_node_ports() {
        let plan = plan_nodes(&arguments(3, 7400)).expect("plan");
        let ports: Vec<(u64, u16, u16, u16)> = plan
            .iter()
            .map(|node| {
                (
                    node.node_id,
                    node.grpc.port(),
                    node.http.port(),
                    node.raft.port(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (1, 7400, 7401, 7402),
                (2, 7410, 7411, 7412),
                (3, 7420, 7421, 7422)
            ]
        );
        assert_eq!(plan[1].data_dir, Path::new("data").join("node-2"));
    }

    #[test]
    fn ports_past_the_last_are_refused() {
        let error = plan_nodes(&arguments(3, 65520)).expect_err("no room");
        assert!(error.message.contains("--base-port 65520"), "{error:?}");
        assert!(plan_nodes(&arguments(1, 65533)).is_ok());
    }

    #[test]
    fn the_log_tail_shows_only_this_run() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join(LOG_FILE);
        std::fs::write(&path, "old run\n").expect("write");
        let start = std::fs::metadata(&path).expect("metadata").len();
        let lines: Vec<String> = (1..=30).map(|line| format!("line {line}")).collect();
        std::fs::write(&path, format!("old run\n{}\n", lines.join("\n"))).expect("write");
        let tail = log_tail(&path, start);
        assert!(!tail.contains("old run"), "{tail}");
        assert!(tail.starts_with("  line 11"), "{tail}");
        assert!(tail.ends_with("  line 30"), "{tail}");
    }
}
