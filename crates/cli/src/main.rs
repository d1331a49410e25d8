//! `tandem`: run nodes, declare hosts and subscriptions, publish, consume, operate.
//!
//! Exit status: 0 on success, 1 when the node (or the local check) reports an error,
//! 2 on a usage error.
//!
//! # Layout
//!
//! - `commands/<group>.rs`: one module per command group, each with its arguments and `run`.
//! - [`command_context`]: the global options every command gets.
//! - [`command_error`]: the `error: …` / `hint: …` a failed command prints.
//! - [`output`]: tables, JSON, and renderings shared by commands.
//! - [`process_signal`]: SIGTERM and SIGKILL for processes a command started.
//! - `duration` (from core): `500ms`, `30s`, `5m`, `2h`, `7d`.
//! - [`property_spec`]: `NAME[:TYPE]=VALUE` context properties.

mod command_context;
mod command_error;
mod commands;
use tandem_core::duration;
mod output;
mod process_signal;
mod property_spec;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use command_context::CommandContext;
use command_error::CommandError;
use commands::bench::BenchArgs;
use commands::bindings::BindingsCommand;
use commands::chaos::ChaosArgs;
use commands::cluster::ClusterCommand;
use commands::consume::ConsumeArgs;
use commands::demo::DemoArgs;
use commands::host::HostCommand;
use commands::message::MessageCommand;
use commands::node::NodeCommand;
use commands::publish::PublishArgs;
use commands::subscription::SubscriptionCommand;
use commands::suspended::SuspendedCommand;
use commands::tracking::TrackingCommand;
use commands::up::UpArgs;

/// A node allocates and frees message bodies (about 1 KiB each, just above glibc's small-bin
/// sizes) millions of times a second on several threads; glibc's allocator then spends a
/// third of the tokio workers' time consolidating its free lists. mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tandem: a durable, highly available MessageBox.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about)]
struct Cli {
    /// The node to talk to (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        env = "TANDEM_SERVER",
        default_value = "127.0.0.1:7400"
    )]
    server: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node or check its data directory.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The replica set: status and failover history, init, join, remove, switchover.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run a local replica set (3 nodes by default) on 127.0.0.1 in the foreground.
    Up(UpArgs),
    /// Declare and list hosts (named classes of work with their own queues), and run host
    /// instances.
    #[command(subcommand)]
    Host(HostCommand),
    /// Check and apply bindings files: hosts, receive locations and send ports.
    #[command(subcommand)]
    Bindings(BindingsCommand),
    /// Create, list and delete subscriptions.
    #[command(subcommand)]
    Subscription(SubscriptionCommand),
    /// Publish one message.
    Publish(PublishArgs),
    /// Lease messages from a host's queue, print them and complete them.
    Consume(ConsumeArgs),
    /// The node's status: counts, settings and queue depths.
    Status,
    /// The host queue depths.
    Queue,
    /// Inspect, resume and terminate suspended messages.
    #[command(subcommand)]
    Suspended(SuspendedCommand),
    /// Inspect messages.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Manage tracking events.
    #[command(subcommand)]
    Tracking(TrackingCommand),
    /// Measure durable-publish and end-to-end throughput and ack latency on a real node.
    Bench(BenchArgs),
    /// Run an integration flow end to end on a local replica set, killing the active
    /// midway, and check that every file arrived exactly once.
    Demo(DemoArgs),
    /// Inject faults into a local replica set under load and check the history.
    Chaos(ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.only_prints_answers() {
        process_signal::exit_when_output_closes();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.print();
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Whether the command only asks a node and prints what it answered: such a command may
    /// simply end when its output is closed. The others run or supervise nodes, host
    /// instances or a workload, and must stop what they started: for them a closed output
    /// is a failed write, not the end.
    fn only_prints_answers(&self) -> bool {
        !matches!(
            self,
            Command::Node(_)
                | Command::Up(_)
                | Command::Host(_)
                | Command::Bench(_)
                | Command::Demo(_)
                | Command::Chaos(_)
        )
    }
}

async fn run(cli: Cli) -> Result<(), CommandError> {
    let context = CommandContext::new(cli.server, cli.json);
    match cli.command {
        Command::Node(command) => commands::node::run(command, &context).await,
        Command::Cluster(command) => commands::cluster::run(command, &context).await,
        Command::Up(arguments) => commands::up::run(arguments, &context).await,
        Command::Host(command) => commands::host::run(command, &context).await,
        Command::Bindings(command) => commands::bindings::run(command, &context).await,
        Command::Subscription(command) => commands::subscription::run(command, &context).await,
        Command::Publish(arguments) => commands::publish::run(arguments, &context).await,
        Command::Consume(arguments) => commands::consume::run(arguments, &context).await,
        Command::Status => commands::status::run_status(&context).await,
        Command::Queue => commands::status::run_queue(&context).await,
        Command::Suspended(command) => commands::suspended::run(command, &context).await,
        Command::Message(command) => commands::message::run(command, &context).await,
        Command::Tracking(command) => commands::tracking::run(command, &context).await,
        Command::Demo(arguments) => commands::demo::run(arguments, &context).await,
        Command::Chaos(arguments) => commands::chaos::run(arguments, &context).await,
        Command::Bench(arguments) => commands::bench::run(arguments, cli.json)
            .await
            .map_err(CommandError::new),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_issue_example_parses() {
        let cli = Cli::try_parse_from([
            "tandem",
            "publish",
            "--property",
            "MessageType=Order",
            "--property",
            "Total:int=1500",
            "--body",
            "@order.json",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }

    #[test]
    fn bad_property_specs_name_the_flag() {
        let error = Cli::try_parse_from(["tandem", "publish", "--property", "Total:int=x"])
            .expect_err("bad int");
        let text = error.to_string();
        assert!(text.contains("--property"), "{text}");
        assert!(text.contains("not an int"), "{text}");
    }
}
