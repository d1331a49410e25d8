//! `tandem cluster …`: the replica set: every member's role and log position with the
//! failover history (`status`), forming a replica set (`init`), adding and removing
//! members (`join`, `remove`), and handing the active role over (`switchover`).
//!
//! Also the steps `tandem up` shares: asking one node who it is ([`find_node`]), forming a
//! replica set ([`form_replica_set`]), adding a node ([`join_node`]) and waiting until an
//! active is elected ([`wait_for_active`]). Progress goes to stderr, results to stdout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use tandem_client::{ClientError, RetryPolicy, TandemClient};
use tandem_core::byte_size::format_bytes;
use tandem_core::duration::format_approximately;
use tandem_core::limits;
use tandem_protocol::v1;
use tandem_server::cluster::IN_SYNC_MAX_LAG_ENTRIES;
use tokio::task::JoinSet;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::{format_milliseconds, parse_milliseconds};
use crate::output::{Table, format_time};

/// How long asking one node for its status may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `init` (and `tandem up`) wait for the new replica set to elect an active.
pub const ELECTION_WAIT: Duration = Duration::from_secs(20);
/// How long `switchover` waits for the chosen node to report itself active.
pub const SWITCHOVER_WAIT: Duration = Duration::from_secs(15);
/// How often a wait asks the nodes again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often `join` reports the new node's progress while it catches up.
pub const JOIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The role a member shows in `status` when it does not answer.
const DOWN_ROLE: &str = "down";
/// The role a node reports when it is the active.
const ACTIVE_ROLE: &str = "active";

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every member's role, term, log indexes and lag, then the failover history.
    ///
    /// Asks the node named by --server, then every member it lists; a member that does
    /// not answer within 2 s shows as `down`.
    Status,
    /// Form a new replica set from nodes started with `tandem node start --no-bootstrap`.
    ///
    /// Every node is asked for its id and addresses first; nodes that already belong to a
    /// replica set, and node ids given twice, are refused. Then waits until an active is
    /// elected and prints it.
    Init(InitArgs),
    /// Add a node started with --no-bootstrap to the replica set reached through --server.
    ///
    /// The node catches up as a learner first (which takes a while for a big store), then
    /// becomes a voter.
    Join(JoinArgs),
    /// Remove a node from the replica set reached through --server.
    Remove {
        /// The id of the node to remove (see `tandem cluster status`).
        #[arg(long, value_name = "N")]
        node_id: u64,
    },
    /// Hand the active role to another member (a planned switchover) and wait until it has
    /// taken over.
    Switchover {
        /// The node to make the active [default: the most up-to-date passive].
        #[arg(long, value_name = "N")]
        to: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A node's gRPC address (host:port); repeat for every member. The first one is asked
    /// to form the replica set.
    #[arg(long = "node", value_name = "ADDR", required = true)]
    nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The new node's gRPC address (host:port).
    #[arg(long = "node", value_name = "ADDR")]
    node: String,
    /// How long the new node may take to catch up and become a voter.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_milliseconds)]
    timeout: u64,
}

pub async fn run(command: ClusterCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        ClusterCommand::Status => status(context).await,
        ClusterCommand::Init(arguments) => init(arguments, context).await,
        ClusterCommand::Join(arguments) => join(arguments, context).await,
        ClusterCommand::Remove { node_id } => remove(node_id, context).await,
        ClusterCommand::Switchover { to } => switchover(to, context).await,
    }
}

// ----- shared steps -----

/// A node as it describes itself: its id and advertised addresses, and whether it already
/// belongs to a replica set.
#[derive(Clone, Debug)]
pub struct FoundNode {
    /// The address it was reached at.
    pub address: String,
    pub member: v1::Member,
    pub initialized: bool,
}

/// Asks the node at `address` for its status, within [`PROBE_TIMEOUT`].
pub async fn probe(address: &str) -> Result<v1::NodeStatusResponse, ClientError> {
    let asking = async {
        TandemClient::connect(address)
            .await?
            .with_call_timeout(PROBE_TIMEOUT)
            .with_retry_policy(RetryPolicy::no_retries())
            .node_status()
            .await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, asking).await {
        Ok(answer) => answer,
        Err(_elapsed) => Err(ClientError::unreachable(
            address,
            &format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
        )),
    }
}

/// Who the node at `address` is.
pub async fn find_node(address: &str) -> Result<FoundNode, CommandError> {
    let status = probe(address).await?;
    let member = status.node.ok_or_else(|| {
        CommandError::new(format!(
            "the node at {address} did not say who it is (no node in its status)"
        ))
    })?;
    Ok(FoundNode {
        address: address.to_string(),
        member,
        initialized: status.initialized,
    })
}

/// Refuses node ids given twice and nodes that already belong to a replica set, then asks
/// the first node to form a replica set of all of them.
pub async fn form_replica_set(nodes: &[FoundNode]) -> Result<(), CommandError> {
    check_new_members(nodes)?;
    let Some(first) = nodes.first() else {
        return Err(CommandError::new("no node given to form a replica set"));
    };
    let members: Vec<v1::Member> = nodes
        .iter()
        .map(|node| voter(node.member.clone()))
        .collect();
    eprintln!(
        "forming a replica set of {} through node {} at {}",
        describe_ids(nodes),
        first.member.node_id,
        first.address
    );
    let client = TandemClient::connect(&first.address).await?;
    client.initialize(members).await?;
    Ok(())
}

/// Adds `node` to the replica set reached through `server` (following the redirect to the
/// active), reporting the node's progress every [`JOIN_PROGRESS_INTERVAL`] on stderr.
pub async fn join_node(
    server: &str,
    node: &FoundNode,
    timeout: Duration,
) -> Result<(), CommandError> {
    check_new_members(std::slice::from_ref(node))?;
    let client = TandemClient::connect(server)
        .await?
        .with_call_timeout(timeout);
    let replica_set = client.node_status().await?;
    if let Some(existing) = replica_set
        .members
        .iter()
        .find(|member| member.node_id == node.member.node_id)
    {
        return Err(CommandError::new(format!(
            "node id {} is already a member of the replica set (grpc {}); give the new node \
             its own --node-id",
            existing.node_id, existing.grpc_address
        )));
    }
    eprintln!(
        "adding node {} (grpc {}) to the replica set; it catches up as a learner first, then \
         becomes a voter",
        node.member.node_id, node.member.grpc_address
    );
    let adding = client.add_member(voter(node.member.clone()));
    let mut adding = std::pin::pin!(adding);
    let mut progress = tokio::time::interval(JOIN_PROGRESS_INTERVAL);
    progress.tick().await;
    loop {
        tokio::select! {
            added = &mut adding => return added.map_err(CommandError::from),
            _ = progress.tick() => report_catch_up(&client, node).await,
        }
    }
}

/// Waits (up to `limit`) until one of the nodes at `addresses` knows an active and that
/// node says it is the active; returns the active's own status.
pub async fn wait_for_active(
    addresses: &[String],
    limit: Duration,
) -> Result<v1::NodeStatusResponse, CommandError> {
    let started = Instant::now();
    let mut last_problem = String::from("no node answered");
    while started.elapsed() < limit {
        match find_active(addresses).await {
            Ok(active) => return Ok(active),
            Err(problem) => last_problem = problem,
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(CommandError::new(format!(
        "no active was elected within {} s: {last_problem}",
        limit.as_secs()
    ))
    .with_hint("a majority of the members must be running and reach each other"))
}

/// One look for the active: the first node that names one, confirmed by the active itself.
async fn find_active(addresses: &[String]) -> Result<v1::NodeStatusResponse, String> {
    let mut problem = String::from("no node answered");
    for address in addresses {
        let status = match probe(address).await {
            Ok(status) => status,
            Err(error) => {
                problem = error.to_string();
                continue;
            }
        };
        if status.role == ACTIVE_ROLE {
            return Ok(status);
        }
        let Some(active_id) = status.active_node else {
            problem = format!(
                "node {} knows no active yet (it is {})",
                node_id_of(&status),
                status.role
            );
            continue;
        };
        let Some(active) = status
            .members
            .iter()
            .find(|member| member.node_id == active_id)
        else {
            continue;
        };
        match probe(&active.grpc_address).await {
            Ok(answer) if answer.role == ACTIVE_ROLE => return Ok(answer),
            Ok(answer) => {
                problem = format!("node {active_id} is {} (not active yet)", answer.role);
            }
            Err(error) => problem = error.to_string(),
        }
    }
    Err(problem)
}

/// Prints how far a joining node has got: its role and applied index, and how far behind
/// the active it is when the client already talks to the active.
async fn report_catch_up(client: &TandemClient, node: &FoundNode) {
    let node_id = node.member.node_id;
    let status = match probe(&node.address).await {
        Ok(status) => status,
        Err(error) => {
            eprintln!("  node {node_id}: {error}");
            return;
        }
    };
    let lag = match tokio::time::timeout(PROBE_TIMEOUT, client.node_status()).await {
        Ok(Ok(view)) => view
            .members
            .iter()
            .find(|member| member.node_id == node_id)
            .and_then(|member| member.lag),
        Ok(Err(_)) | Err(_) => None,
    };
    let behind = lag.map_or(String::new(), |lag| {
        format!(", {lag} entries behind the active")
    });
    eprintln!(
        "  node {node_id}: {}, applied index {}{behind}",
        status.role, status.applied_index
    );
}

/// Refuses node ids given twice and nodes that already belong to a replica set.
fn check_new_members(nodes: &[FoundNode]) -> Result<(), CommandError> {
    let mut seen: BTreeMap<u64, &FoundNode> = BTreeMap::new();
    for node in nodes {
        if let Some(earlier) = seen.insert(node.member.node_id, node) {
            let message = if earlier.address == node.address {
                format!("the node at {} is given twice", node.address)
            } else {
                format!(
                    "the nodes at {} and {} both have node id {}",
                    earlier.address, node.address, node.member.node_id
                )
            };
            return Err(CommandError::new(message)
                .with_hint("start every node with its own --node-id, and name each once"));
        }
        if node.initialized {
            return Err(CommandError::new(format!(
                "node {} at {} already belongs to a replica set",
                node.member.node_id, node.address
            ))
            .with_hint(
                "only nodes started with --no-bootstrap and a fresh data directory can form \
                 or join one; see `tandem cluster status`",
            ));
        }
    }
    Ok(())
}

/// A member as it is sent to form or join a replica set: a voter.
fn voter(member: v1::Member) -> v1::Member {
    v1::Member {
        voter: true,
        matched_index: None,
        lag: None,
        ..member
    }
}

fn describe_ids(nodes: &[FoundNode]) -> String {
    let ids: Vec<String> = nodes
        .iter()
        .map(|node| node.member.node_id.to_string())
        .collect();
    format!("nodes {}", ids.join(", "))
}

fn node_id_of(status: &v1::NodeStatusResponse) -> u64 {
    status.node.as_ref().map_or(0, |node| node.node_id)
}

/// A node's addresses in one line.
pub fn describe_addresses(member: &v1::Member) -> String {
    format!(
        "grpc {}, http {}, raft {}",
        member.grpc_address, member.http_address, member.raft_address
    )
}

// ----- status -----

/// What the active reports of each member (how far behind it is, how lately it answered),
/// by node id; empty when no active answered.
type SeenByActive = BTreeMap<u64, v1::Member>;

/// One member's row: its own answer, or why it did not answer.
struct MemberView {
    member: v1::Member,
    answer: Result<v1::NodeStatusResponse, ClientError>,
}

async fn status(context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let asked = client.node_status().await?;
    let asked_id = node_id_of(&asked);
    let mut members = asked.members.clone();
    if members.is_empty() {
        members.extend(asked.node.clone());
    }
    let views = ask_members(&members, &asked).await;
    let active_view = views
        .iter()
        .filter_map(|view| view.answer.as_ref().ok())
        .find(|answer| answer.role == ACTIVE_ROLE);
    let failovers = active_view.unwrap_or(&asked).failovers.clone();
    let seen: SeenByActive = active_view
        .map(|active| {
            active
                .members
                .iter()
                .map(|member| (member.node_id, member.clone()))
                .collect()
        })
        .unwrap_or_default();
    let active_id = active_view.map(node_id_of).or(asked.active_node);
    let confirmed_ms_ago = active_view.and_then(|active| active.quorum_acknowledged_ms_ago);
    if context.output.is_json() {
        let nodes: Vec<Json> = views.iter().map(|view| member_json(view, &seen)).collect();
        let failovers: Vec<Json> = failovers.iter().map(failover_json).collect();
        context.output.print_json(&json!({
            "asked_node": asked_id,
            "initialized": asked.initialized,
            "active_node": active_id,
            "quorum_acknowledged_ms_ago": confirmed_ms_ago,
            "nodes": nodes,
            "failovers": failovers,
        }));
        return Ok(());
    }
    print_headline(&asked, active_id, confirmed_ms_ago, views.len());
    println!();
    member_table(&views, &seen).print();
    println!();
    print_failovers(&failovers);
    Ok(())
}

/// Every member's own status, asked in parallel; the node already asked is not asked again.
async fn ask_members(members: &[v1::Member], asked: &v1::NodeStatusResponse) -> Vec<MemberView> {
    let asked_id = node_id_of(asked);
    let mut asking = JoinSet::new();
    for member in members.iter().filter(|member| member.node_id != asked_id) {
        let member = member.clone();
        asking.spawn(async move {
            let answer = probe(&member.grpc_address).await;
            MemberView { member, answer }
        });
    }
    let mut views: Vec<MemberView> = asking.join_all().await;
    if let Some(member) = members.iter().find(|member| member.node_id == asked_id) {
        views.push(MemberView {
            member: member.clone(),
            answer: Ok(asked.clone()),
        });
    } else if let Some(node) = &asked.node {
        views.push(MemberView {
            member: node.clone(),
            answer: Ok(asked.clone()),
        });
    }
    views.sort_by_key(|view| view.member.node_id);
    views
}

fn print_headline(
    asked: &v1::NodeStatusResponse,
    active_id: Option<u64>,
    confirmed_ms_ago: Option<u64>,
    members: usize,
) {
    if !asked.initialized {
        println!(
            "node {} belongs to no replica set yet: form one with `tandem cluster init`, or \
             add it to one with `tandem cluster join`",
            node_id_of(asked)
        );
        return;
    }
    match active_id {
        Some(active) => println!(
            "replica set of {members} member(s); the active is node {active} (term {}){}",
            asked.term,
            confirmed_ms_ago.map_or(String::new(), |ago| format!(
                ", confirmed by a majority {ago} ms ago"
            ))
        ),
        None => println!(
            "replica set of {members} member(s); no active is known (an election may be under \
             way, or a majority is down)"
        ),
    }
}

fn member_table(views: &[MemberView], seen: &SeenByActive) -> Table {
    let mut table = Table::new(vec![
        "NODE",
        "ROLE",
        "HEALTH",
        "TERM",
        "LAST LOG",
        "APPLIED",
        "LAG",
        "ACKED",
        "DISK ROOM",
        "CLOCK",
        "GRPC",
    ]);
    for view in views {
        let by_active = seen.get(&view.member.node_id);
        let health = health_of(view, by_active.and_then(|member| member.lag));
        let lag = by_active
            .and_then(|member| member.lag)
            .map_or("-".to_string(), |lag| lag.to_string());
        let acknowledged = by_active
            .and_then(|member| member.acknowledged_ms_ago)
            .map_or("-".to_string(), |ago| format!("{ago} ms ago"));
        let row = match &view.answer {
            Ok(answer) => vec![
                view.member.node_id.to_string(),
                role_of(answer, &view.member),
                health.to_string(),
                answer.term.to_string(),
                answer.last_log_index.to_string(),
                answer.applied_index.to_string(),
                lag,
                acknowledged,
                disk_room_of(answer),
                clock_offset_of(answer),
                view.member.grpc_address.clone(),
            ],
            Err(_) => vec![
                view.member.node_id.to_string(),
                DOWN_ROLE.to_string(),
                health.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                lag,
                acknowledged,
                "-".into(),
                "-".into(),
                view.member.grpc_address.clone(),
            ],
        };
        table.add_row(row);
    }
    table
}

/// A member's health in one word: `serving` (the active), `in sync` (a passive that has
/// applied nearly everything committed), `catching up`, `electing`, or `unreachable`.
fn health_of(view: &MemberView, lag: Option<u64>) -> &'static str {
    let Ok(answer) = &view.answer else {
        return "unreachable";
    };
    let behind_the_active = lag.is_some_and(|lag| lag > IN_SYNC_MAX_LAG_ENTRIES);
    let behind_its_commits =
        answer.committed_index > answer.applied_index.saturating_add(IN_SYNC_MAX_LAG_ENTRIES);
    match answer.role.as_str() {
        "active" => "serving",
        "candidate" => "electing",
        _ if behind_the_active || behind_its_commits => "catching up",
        _ => "in sync",
    }
}

/// The member's room on disk, marked `LOW` below its floor (the active then refuses
/// publishes; a passive that runs out stops).
fn disk_room_of(answer: &v1::NodeStatusResponse) -> String {
    let room = answer.disk_room_bytes.map_or("-".to_string(), format_bytes);
    if answer.disk_low {
        format!("{room} LOW")
    } else {
        room
    }
}

/// How far the member's clock is from the replica set's time, marked `OFF` past
/// [`limits::CLOCK_OFFSET_WARNING_MS`] (its entries still carry the replica set's time, but
/// its machine's clock wants fixing).
fn clock_offset_of(answer: &v1::NodeStatusResponse) -> String {
    let Some(offset_ms) = answer.clock_offset_ms else {
        return "-".to_string();
    };
    let sign = if offset_ms < 0 { "-" } else { "+" };
    let offset = format!("{sign}{}", format_approximately(offset_ms.unsigned_abs()));
    if offset_ms.unsigned_abs() > limits::CLOCK_OFFSET_WARNING_MS {
        format!("{offset} OFF")
    } else {
        offset
    }
}

/// The role, marked when the member does not vote.
fn role_of(answer: &v1::NodeStatusResponse, member: &v1::Member) -> String {
    if member.voter || answer.role == "learner" {
        answer.role.clone()
    } else {
        format!("{} (non-voter)", answer.role)
    }
}

fn print_failovers(failovers: &[v1::FailoverEvent]) {
    if failovers.is_empty() {
        println!("no failovers recorded");
        return;
    }
    println!("failover history (newest last):");
    let mut table = Table::new(vec!["WHEN", "FROM", "TO", "TERM", "UNAVAILABLE", "REASON"]);
    for failover in failovers {
        table.add_row(vec![
            format_time(failover.at_ms),
            failover
                .from_node
                .map_or("-".to_string(), |node| format!("node {node}")),
            format!("node {}", failover.to_node),
            failover.term.to_string(),
            format!("{} ms", failover.unavailable_ms),
            failover.reason.clone(),
        ]);
    }
    table.print();
}

fn member_json(view: &MemberView, seen: &SeenByActive) -> Json {
    let member = &view.member;
    let by_active = seen.get(&member.node_id);
    let lag = by_active.and_then(|member| member.lag);
    let mut document = json!({
        "node_id": member.node_id,
        "grpc_address": member.grpc_address,
        "http_address": member.http_address,
        "raft_address": member.raft_address,
        "voter": member.voter,
        "lag": lag,
        "acknowledged_ms_ago": by_active.and_then(|member| member.acknowledged_ms_ago),
        "health": health_of(view, lag),
    });
    match &view.answer {
        Ok(answer) => {
            document["role"] = json!(answer.role);
            document["term"] = json!(answer.term);
            document["last_log_index"] = json!(answer.last_log_index);
            document["committed_index"] = json!(answer.committed_index);
            document["applied_index"] = json!(answer.applied_index);
            document["active_node"] = json!(answer.active_node);
            document["disk_room_bytes"] = json!(answer.disk_room_bytes);
            document["min_free_disk_bytes"] = json!(answer.min_free_disk_bytes);
            document["disk_low"] = json!(answer.disk_low);
            document["clock_offset_ms"] = json!(answer.clock_offset_ms);
        }
        Err(error) => {
            document["role"] = json!(DOWN_ROLE);
            document["error"] = json!(error.to_string());
        }
    }
    document
}

fn failover_json(failover: &v1::FailoverEvent) -> Json {
    json!({
        "at": format_time(failover.at_ms),
        "term": failover.term,
        "from_node": failover.from_node,
        "to_node": failover.to_node,
        "reason": failover.reason,
        "unavailable_ms": failover.unavailable_ms,
    })
}

// ----- init, join, remove, switchover -----

async fn init(arguments: InitArgs, context: &CommandContext) -> Result<(), CommandError> {
    let mut nodes = Vec::with_capacity(arguments.nodes.len());
    for address in &arguments.nodes {
        let node = find_node(address).await?;
        eprintln!(
            "found node {} at {} ({})",
            node.member.node_id,
            address,
            describe_addresses(&node.member)
        );
        nodes.push(node);
    }
    let started = Instant::now();
    form_replica_set(&nodes).await?;
    eprintln!("waiting for an active to be elected");
    let addresses: Vec<String> = nodes.iter().map(|node| node.address.clone()).collect();
    let active = wait_for_active(&addresses, ELECTION_WAIT).await?;
    let elected_in_ms = started.elapsed().as_millis();
    let active_id = node_id_of(&active);
    if context.output.is_json() {
        let members: Vec<u64> = nodes.iter().map(|node| node.member.node_id).collect();
        context.output.print_json(&json!({
            "members": members,
            "active_node": active_id,
            "term": active.term,
            "elected_in_ms": elected_in_ms,
        }));
    } else {
        let addresses = active
            .node
            .as_ref()
            .map(describe_addresses)
            .unwrap_or_default();
        println!(
            "replica set formed: {}; node {active_id} is the active ({addresses}; term {}), \
             elected in {elected_in_ms} ms",
            describe_ids(&nodes),
            active.term
        );
    }
    Ok(())
}

async fn join(arguments: JoinArgs, context: &CommandContext) -> Result<(), CommandError> {
    let node = find_node(&arguments.node).await?;
    let started = Instant::now();
    let timeout = Duration::from_millis(arguments.timeout);
    join_node(&context.server, &node, timeout).await?;
    let took_ms = started.elapsed().as_millis();
    let node_id = node.member.node_id;
    if context.output.is_json() {
        context.output.print_json(&json!({
            "joined_node": node_id,
            "took_ms": took_ms,
        }));
    } else {
        println!(
            "node {node_id} joined the replica set as a voter in {} ({})",
            format_milliseconds(u64::try_from(took_ms).unwrap_or(u64::MAX)),
            describe_addresses(&node.member)
        );
    }
    Ok(())
}

async fn remove(node_id: u64, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    client.remove_member(node_id).await?;
    if context.output.is_json() {
        context
            .output
            .print_json(&json!({ "removed_node": node_id }));
    } else {
        println!("node {node_id} removed from the replica set");
    }
    Ok(())
}

async fn switchover(to: Option<u64>, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let before = client.node_status().await?;
    let previous_active = before.active_node;
    let started = Instant::now();
    let target = client.switchover(to).await?;
    let member = before
        .members
        .iter()
        .find(|member| member.node_id == target)
        .cloned()
        .ok_or_else(|| {
            CommandError::new(format!(
                "the active chose node {target}, which node {} does not list as a member",
                node_id_of(&before)
            ))
        })?;
    if previous_active != Some(target) {
        eprintln!("waiting for node {target} to take over");
    }
    let active = wait_until_active(&member, SWITCHOVER_WAIT).await?;
    let took_ms = started.elapsed().as_millis();
    if context.output.is_json() {
        context.output.print_json(&json!({
            "active_node": target,
            "previous_active": previous_active,
            "term": active.term,
            "took_ms": took_ms,
        }));
    } else if previous_active == Some(target) {
        println!("node {target} is already the active (term {})", active.term);
    } else {
        println!(
            "node {target} is the active now ({}; term {}); the switchover took {took_ms} ms",
            describe_addresses(&member),
            active.term
        );
    }
    Ok(())
}

/// Waits (up to `limit`) until `member` says it is the active; returns its status.
async fn wait_until_active(
    member: &v1::Member,
    limit: Duration,
) -> Result<v1::NodeStatusResponse, CommandError> {
    let started = Instant::now();
    let mut last_seen = String::from("it did not answer");
    while started.elapsed() < limit {
        match probe(&member.grpc_address).await {
            Ok(status) if status.role == ACTIVE_ROLE => return Ok(status),
            Ok(status) => last_seen = format!("it is {} in term {}", status.role, status.term),
            Err(error) => last_seen = error.to_string(),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(CommandError::new(format!(
        "node {} did not become the active within {} s ({last_seen})",
        member.node_id,
        limit.as_secs()
    ))
    .with_hint("see `tandem cluster status`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(node_id: u64, address: &str, initialized: bool) -> FoundNode {
        FoundNode {
            address: address.to_string(),
            member: v1::Member {
                node_id,
                grpc_address: address.to_string(),
                ..v1::Member::default()
            },
            initialized,
        }
    }

    #[test]
    fn duplicate_node_ids_are_refused() {
        let nodes = [found(1, "a:1", false), found(1, "b:1", false)];
        let error = check_new_members(&nodes).expect_err("duplicate ids");
        assert!(error.message.contains("both have node id 1"), "{error:?}");
        let nodes = [found(1, "a:1", false), found(1, "a:1", false)];
        let error = check_new_members(&nodes).expect_err("same node twice");
        assert!(error.message.contains("given twice"), "{error:?}");
    }

    #[test]
    fn initialized_nodes_are_refused() {
        let nodes = [found(1, "a:1", false), found(2, "b:1", true)];
        let error = check_new_members(&nodes).expect_err("initialized");
        assert!(
            error.message.contains("already belongs to a replica set"),
            "{error:?}"
        );
        assert!(check_new_members(&nodes[..1]).is_ok());
    }

    #[test]
    fn down_members_show_as_down_with_what_the_active_last_saw_of_them() {
        let member = |node_id| v1::Member {
            node_id,
            grpc_address: format!("127.0.0.1:74{node_id}0"),
            voter: true,
            ..v1::Member::default()
        };
        let answer = v1::NodeStatusResponse {
            role: "active".into(),
            term: 3,
            last_log_index: 10,
            applied_index: 10,
            ..v1::NodeStatusResponse::default()
        };
        let views = [
            MemberView {
                member: member(1),
                answer: Ok(answer),
            },
            MemberView {
                member: member(2),
                answer: Err(ClientError::new("unavailable", "gone")),
            },
        ];
        let seen_member = |node_id, lag, acknowledged_ms_ago| v1::Member {
            lag: Some(lag),
            acknowledged_ms_ago,
            ..member(node_id)
        };
        let seen = BTreeMap::from([
            (1, seen_member(1, 0, None)),
            (2, seen_member(2, 7, Some(1250))),
        ]);
        let text = member_table(&views, &seen).render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("1     active  serving      3"),
            "{text}"
        );
        assert!(lines[2].contains("down"), "{text}");
        assert!(lines[2].contains("unreachable"), "{text}");
        assert!(lines[2].contains(" 7 "), "{text}");
        assert!(
            lines[2].contains("1250 ms ago"),
            "how lately the active heard from it: {text}"
        );
    }
}
