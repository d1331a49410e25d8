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
    Start(StartArgs),
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
}

pub async fn run(command: NodeCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        NodeCommand::Start(arguments) => start(arguments).await,
        NodeCommand::Check { data_dir } => check(&data_dir, context),
    }
}

async fn start(arguments: StartArgs) -> Result<(), CommandError> {
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
