//! `tandem host run --host NAME --bindings FILE`: one host instance in the foreground. It
//! runs the host's receive locations and send ports until SIGINT (Ctrl-C) or SIGTERM, and
//! rides through failovers and outages of the message box on its own; it logs when it
//! loses the message box and when it resumes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tandem_host::{HostInstance, InstanceOptions};

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::commands::bindings;
use crate::duration::parse_milliseconds;

#[derive(Debug, Args)]
pub struct HostRunArgs {
    /// The host this instance serves.
    #[arg(long)]
    host: String,
    /// The bindings file declaring the host's receive locations and send ports.
    #[arg(long, value_name = "FILE")]
    bindings: PathBuf,
    /// This instance's name, recorded as the holder of its leases (default HOST-PID).
    #[arg(long)]
    instance: Option<String>,
    /// How long a leased message stays hidden from other instances if this one dies
    /// (renewed while a delivery runs).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_milliseconds)]
    lease_duration: u64,
    /// Log every published and delivered message.
    #[arg(long)]
    verbose: bool,
}

pub async fn run(arguments: HostRunArgs, context: &CommandContext) -> Result<(), CommandError> {
    let bindings = bindings::load(&arguments.bindings)?;
    init_logging(arguments.verbose);
    let instance = arguments
        .instance
        .unwrap_or_else(|| format!("{}-{}", arguments.host, std::process::id()));
    let options = InstanceOptions {
        servers: context.server.clone(),
        host: arguments.host,
        instance,
        lease_duration: Duration::from_millis(arguments.lease_duration),
    };
    let running = HostInstance::start(options.clone(), &bindings)
        .await
        .map_err(CommandError::new)?;
    print_ready(&options, &running, context);
    wait_for_stop_signal().await;
    eprintln!(
        "tandem host: stopping {} (finishing deliveries under way)",
        options.instance
    );
    running.stop().await;
    Ok(())
}

fn print_ready(options: &InstanceOptions, running: &HostInstance, context: &CommandContext) {
    let started = running.started();
    let http: Vec<String> = started
        .http_endpoints
        .iter()
        .map(|(name, address)| format!("{name}@{address}"))
        .collect();
    if context.output.is_json() {
        context.output.print_json(&json!({
            "event": "ready",
            "host": options.host,
            "instance": options.instance,
            "pid": std::process::id(),
            "receive_locations": started.receive_locations,
            "http_endpoints": http,
            "send_ports": started.send_ports,
        }));
    } else {
        println!(
            "tandem host instance ready: host={} instance={} receive=[{}] http=[{}] send=[{}]",
            options.host,
            options.instance,
            started.receive_locations.join(","),
            http.join(","),
            started.send_ports.join(",")
        );
    }
}

/// Log lines (warnings and recoveries; every message with `--verbose`) go to stderr.
fn init_logging(verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .try_init();
}

async fn wait_for_stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
