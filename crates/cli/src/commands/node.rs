//! `tandem node …`: run a node, check a data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use tandem_server::NodeConfig;
use tandem_store::integrity::IntegrityReport;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::parse_milliseconds;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node in the foreground until SIGINT (Ctrl-C) or SIGTERM.
    ///
    /// Settings come from the defaults, then the TOML file given with --config, then the
    /// flags: a flag always overrides the file.
    #[command(after_help = configuration_help())]
    Start(Box<StartArgs>),
    /// Check a data directory's integrity (safe while the node runs); exits 1 when unhealthy.
    Check {
        /// The node's data directory.
        #[arg(long, value_name = "DIR", default_value = "./tandem-data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// A TOML configuration file (keys listed below); flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the node keeps its store. [TOML: data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the gRPC data plane and admin API; port 0 picks a free port.
    /// [TOML: grpc_listen]
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Address of the HTTP/JSON API, health endpoints and metrics; port 0 picks a free
    /// port. [TOML: http_listen]
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Largest message body accepted, in bytes. [TOML: max_body_bytes]
    #[arg(long, value_name = "N")]
    max_body_bytes: Option<u64>,
    /// A publish retried with the same message id within this window is stored once
    /// (e.g. 10m). [TOML: dedupe_window_ms, in milliseconds]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    dedupe_window: Option<u64>,
    /// Past this many stored messages, publish is refused as throttled.
    /// [TOML: throttle_message_count]
    #[arg(long, value_name = "N")]
    throttle_message_count: Option<u64>,
    /// While the room left under the data directory (free disk space less what the next
    /// snapshot of the store will write) is below N bytes, the active refuses publishes as
    /// throttled; 0 turns this off. [TOML: min_free_disk_bytes]
    #[arg(long, value_name = "N")]
    min_free_disk_bytes: Option<u64>,
    /// Keep messages that match no subscription in the routing-failure queue instead of
    /// refusing them. [TOML: routing_failure_queue = true]
    #[arg(long)]
    routing_failure_queue: bool,
    /// Do not record tracking events. [TOML: tracking = false]
    #[arg(long)]
    no_tracking: bool,
    /// Purge tracking events older than this automatically; 0 keeps them (e.g. 7d).
    /// [TOML: tracking_retention_ms, in milliseconds]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    tracking_retention: Option<u64>,
    /// How often maintenance runs: expired leases, due retries, dedupe cleanup (e.g. 1s).
    /// [TOML: tick_interval_ms, in milliseconds]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    tick_interval: Option<u64>,
    /// This node's id in its replica set: unique, never reused after a removal.
    /// [TOML: node_id]
    #[arg(long, value_name = "ID")]
    node_id: Option<u64>,
    /// Address replication between members listens on; port 0 picks a free port.
    /// [TOML: raft_listen]
    #[arg(long, value_name = "ADDR")]
    raft_listen: Option<SocketAddr>,
    /// Host name other members and clients use to reach this node (when listening on
    /// 0.0.0.0). [TOML: advertise_host]
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// Do not form a one-node replica set on first start: wait for `tandem cluster init`
    /// or `tandem cluster join`. [TOML: bootstrap = false]
    #[arg(long)]
    no_bootstrap: bool,
    /// How often the active sends heartbeats (e.g. 100ms).
    /// [TOML: heartbeat_interval_ms, in milliseconds]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    heartbeat_interval: Option<u64>,
    /// A passive that hears nothing from the active for a random time between the minimum
    /// and the maximum starts an election (e.g. 400ms and 700ms).
    /// [TOML: election_timeout_min_ms, election_timeout_max_ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    election_timeout_min: Option<u64>,
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    election_timeout_max: Option<u64>,
    /// A write that has not reached a majority of voters after this long answers
    /// `no_quorum` (e.g. 5s). [TOML: write_timeout_ms, in milliseconds]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    write_timeout: Option<u64>,
    /// An active whose writes no majority of voters has confirmed in time (its lease plus
    /// the minimum election timeout) for this long hands its role over to a passive by
    /// itself: for faults that leave its heartbeats flowing but lose or delay the answers
    /// (e.g. 3s; 0 never). [TOML: hand_over_after_ms, in milliseconds]
    #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
    hand_over_after: Option<u64>,
    /// Take a snapshot and purge the log before it after at least N log entries...
    /// [TOML: snapshot_every_entries]
    #[arg(long, value_name = "N")]
    snapshot_every_entries: Option<u64>,
    /// ...and once the log written since the last snapshot is at least PERCENT % of the
    /// store's size, so a large store is not copied as often as a small one (0: count
    /// entries only). [TOML: snapshot_min_log_percent]
    #[arg(long, value_name = "PERCENT")]
    snapshot_min_log_percent: Option<u64>,
    /// A drill, not for production: the node reads its clock this many milliseconds off the
    /// system clock (negative: behind), as on a machine whose clock is wrong.
    #[arg(long, value_name = "MS", hide = true, allow_hyphen_values = true)]
    drill_clock_offset_ms: Option<i64>,
}

pub async fn run(command: NodeCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        NodeCommand::Start(arguments) => start(*arguments).await,
        NodeCommand::Check { data_dir } => check(&data_dir, context),
    }
}

async fn start(arguments: StartArgs) -> Result<(), CommandError> {
    if let Some(offset_ms) = arguments.drill_clock_offset_ms {
        eprintln!("tandem: drill: this node's clock reads {offset_ms} ms off the system clock");
        tandem_server::set_clock_off_for_drills(offset_ms);
    }
    let config = configuration(arguments)?;
    tandem_server::run_until_signal(config)
        .await
        .map_err(|error| CommandError::new(error.to_string()))
}

/// The defaults, overridden by the file, overridden by the flags.
fn configuration(arguments: StartArgs) -> Result<NodeConfig, CommandError> {
    let mut config = match &arguments.config {
        Some(path) => {
            NodeConfig::load(path).map_err(|error| CommandError::new(error.to_string()))?
        }
        None => NodeConfig::default(),
    };
    apply_flags(&mut config, arguments);
    Ok(config)
}

fn apply_flags(config: &mut NodeConfig, arguments: StartArgs) {
    apply_replication_flags(config, &arguments);
    if let Some(data_dir) = arguments.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(grpc_listen) = arguments.grpc_listen {
        config.grpc_listen = grpc_listen;
    }
    if let Some(http_listen) = arguments.http_listen {
        config.http_listen = http_listen;
    }
    if let Some(max_body_bytes) = arguments.max_body_bytes {
        config.max_body_bytes = max_body_bytes;
    }
    if let Some(dedupe_window_ms) = arguments.dedupe_window {
        config.dedupe_window_ms = dedupe_window_ms;
    }
    if let Some(throttle_message_count) = arguments.throttle_message_count {
        config.throttle_message_count = throttle_message_count;
    }
    if let Some(min_free_disk_bytes) = arguments.min_free_disk_bytes {
        config.min_free_disk_bytes = min_free_disk_bytes;
    }
    if arguments.routing_failure_queue {
        config.routing_failure_queue = true;
    }
    if arguments.no_tracking {
        config.tracking = false;
    }
    if let Some(tracking_retention_ms) = arguments.tracking_retention {
        config.tracking_retention_ms = tracking_retention_ms;
    }
    if let Some(tick_interval_ms) = arguments.tick_interval {
        config.tick_interval_ms = tick_interval_ms;
    }
}

fn apply_replication_flags(config: &mut NodeConfig, arguments: &StartArgs) {
    if let Some(node_id) = arguments.node_id {
        config.node_id = node_id;
    }
    if let Some(raft_listen) = arguments.raft_listen {
        config.raft_listen = raft_listen;
    }
    if let Some(host) = &arguments.advertise_host {
        config.advertise_host = Some(host.clone());
    }
    if arguments.no_bootstrap {
        config.bootstrap = false;
    }
    if let Some(interval) = arguments.heartbeat_interval {
        config.heartbeat_interval_ms = interval;
    }
    if let Some(timeout) = arguments.election_timeout_min {
        config.election_timeout_min_ms = timeout;
    }
    if let Some(timeout) = arguments.election_timeout_max {
        config.election_timeout_max_ms = timeout;
    }
    if let Some(timeout) = arguments.write_timeout {
        config.write_timeout_ms = timeout;
    }
    if let Some(after) = arguments.hand_over_after {
        config.hand_over_after_ms = after;
    }
    if let Some(entries) = arguments.snapshot_every_entries {
        config.snapshot_every_entries = entries;
    }
    if let Some(percent) = arguments.snapshot_min_log_percent {
        config.snapshot_min_log_percent = percent;
    }
}

/// Every configuration key with its default, shown under `tandem node start --help`.
fn configuration_help() -> String {
    let defaults = NodeConfig::default();
    let keys = [
        (
            "data_dir",
            format!("{:?}", defaults.data_dir.display().to_string()),
            "where the node keeps its store",
        ),
        (
            "grpc_listen",
            format!("\"{}\"", defaults.grpc_listen),
            "gRPC data plane and admin API",
        ),
        (
            "http_listen",
            format!("\"{}\"", defaults.http_listen),
            "HTTP/JSON API, health, metrics",
        ),
        (
            "max_body_bytes",
            defaults.max_body_bytes.to_string(),
            "largest body accepted",
        ),
        (
            "dedupe_window_ms",
            defaults.dedupe_window_ms.to_string(),
            "idempotent publish window",
        ),
        (
            "throttle_message_count",
            defaults.throttle_message_count.to_string(),
            "refuse publishes past this many messages",
        ),
        (
            "min_free_disk_bytes",
            defaults.min_free_disk_bytes.to_string(),
            "refuse publishes with less room on disk",
        ),
        (
            "routing_failure_queue",
            defaults.routing_failure_queue.to_string(),
            "keep unroutable messages instead of refusing",
        ),
        (
            "tracking",
            defaults.tracking.to_string(),
            "record tracking events",
        ),
        (
            "tracking_retention_ms",
            defaults.tracking_retention_ms.to_string(),
            "purge older tracking events; 0 keeps them",
        ),
        (
            "tick_interval_ms",
            defaults.tick_interval_ms.to_string(),
            "maintenance interval",
        ),
        (
            "node_id",
            defaults.node_id.to_string(),
            "this node's id in its replica set",
        ),
        (
            "raft_listen",
            format!("\"{}\"", defaults.raft_listen),
            "replication between members",
        ),
        (
            "advertise_host",
            "(the listen host)".to_string(),
            "host others use to reach this node",
        ),
        (
            "bootstrap",
            defaults.bootstrap.to_string(),
            "form a one-node replica set on first start",
        ),
        (
            "heartbeat_interval_ms",
            defaults.heartbeat_interval_ms.to_string(),
            "active's heartbeat interval",
        ),
        (
            "election_timeout_min_ms",
            defaults.election_timeout_min_ms.to_string(),
            "passive's election timeout, lower bound",
        ),
        (
            "election_timeout_max_ms",
            defaults.election_timeout_max_ms.to_string(),
            "passive's election timeout, upper bound",
        ),
        (
            "write_timeout_ms",
            defaults.write_timeout_ms.to_string(),
            "answer no_quorum after this long",
        ),
        (
            "hand_over_after_ms",
            defaults.hand_over_after_ms.to_string(),
            "unconfirmed this long, the active hands over (0: never)",
        ),
        (
            "snapshot_every_entries",
            defaults.snapshot_every_entries.to_string(),
            "snapshot and purge the log after at least this many entries",
        ),
        (
            "snapshot_min_log_percent",
            defaults.snapshot_min_log_percent.to_string(),
            "... and once the log since the last one is this % of the store",
        ),
    ];
    let mut help = String::from(
        "Configuration file (TOML, every key optional; unknown keys are refused).\n\
         Flags given on the command line override the file's values.\n\
         Keys with their defaults:\n",
    );
    for (key, default, meaning) in keys {
        let assignment = format!("{key} = {default}");
        help.push_str(&format!("  {assignment:<40} # {meaning}\n"));
    }
    help
}

fn check(data_dir: &Path, context: &CommandContext) -> Result<(), CommandError> {
    let report = tandem_store::integrity::check(data_dir).map_err(|error| {
        CommandError::new(format!("cannot check {}: {error}", data_dir.display()))
    })?;
    if context.output.is_json() {
        print_report_json(&report, context);
    } else {
        print_report(&report, data_dir);
    }
    if report.is_healthy() {
        Ok(())
    } else {
        Err(CommandError::new(format!(
            "{} is unhealthy: {} problem(s) found",
            data_dir.display(),
            report.problems.len()
        )))
    }
}

fn print_report(report: &IntegrityReport, data_dir: &Path) {
    println!("data dir:         {}", data_dir.display());
    println!("messages:         {}", report.messages);
    println!("instances:        {}", report.instances);
    println!("tracking events:  {}", report.tracking_events);
    if report.is_healthy() {
        println!("healthy");
        return;
    }
    println!("problems:");
    for problem in &report.problems {
        println!("  {problem}");
    }
}

fn print_report_json(report: &IntegrityReport, context: &CommandContext) {
    context.output.print_json(&json!({
        "healthy": report.is_healthy(),
        "messages": report.messages,
        "instances": report.instances,
        "tracking_events": report.tracking_events,
        "problems": report.problems,
    }));
}
