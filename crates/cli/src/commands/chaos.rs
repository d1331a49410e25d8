//! `tandem chaos`: a fault-injection run against a real replica set on 127.0.0.1. Prints
//! each fault as it is applied, then a summary table and the path of the history file, and
//! exits 1 when anything acknowledged was lost, anything unpublished was seen, or an
//! acknowledgement came from a stale term.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tandem_chaos::nemesis::FAULT_KINDS;
use tandem_chaos::run::{self, ChaosOptions, ChaosReport, Window};

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::parse_milliseconds;

const CHAOS_HELP: &str = "\
Runs a replica set of real `tandem node` processes with every replication link (each
ordered pair of nodes) and every client connection behind a fault-injecting TCP proxy.
Publishers send unique message ids and host instances consume them, while a nemesis
follows a random schedule drawn from --seed: kill -9 and restart, SIGSTOP/SIGCONT,
partitions, one-way cuts, delays, dropped connections, clients cut off, switchovers.

Every operation goes into OUT/history.jsonl (invoke time, answer time, ok/fail/unknown,
the acknowledgement's term and node). The checker reports acknowledged, lost
(acknowledged, never delivered, not stored), unexpected (seen, never published),
duplicated deliveries (allowed: at least once), acknowledgements from a stale term, and
the windows with no acknowledgement for over 500 ms. Exit 1 when lost, unexpected or
stale is above zero. The same seed gives the same fault schedule.";

#[derive(Debug, Args)]
#[command(after_help = CHAOS_HELP)]
pub struct ChaosArgs {
    /// The seed of the fault schedule (default: a random one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults are injected.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_milliseconds)]
    duration: u64,
    /// Nodes in the replica set.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    nodes: u64,
    /// The fault kinds to use, comma-separated (default: all of kill, pause, partition,
    /// one-way, delay, drop, client-cut, switchover).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault_kind)]
    faults: Vec<String>,
    /// Where the nodes' data and logs and the history go (default: a new temporary
    /// directory, kept).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Concurrent consuming host instances.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
}

fn parse_fault_kind(text: &str) -> Result<String, String> {
    let kind = text.trim();
    if FAULT_KINDS.contains(&kind) {
        Ok(kind.to_string())
    } else {
        Err(format!(
            "unknown fault '{kind}'; use {}",
            FAULT_KINDS.join(", ")
        ))
    }
}

pub async fn run(arguments: ChaosArgs, context: &CommandContext) -> Result<(), CommandError> {
    let seed = arguments.seed.unwrap_or_else(random_seed);
    let out_dir = match arguments.out {
        Some(out) => out,
        None => tempfile::Builder::new()
            .prefix(&format!("tandem-chaos-{seed}-"))
            .tempdir()
            .map_err(|error| CommandError::new(format!("cannot create a directory: {error}")))?
            .keep(),
    };
    let faults = if arguments.faults.is_empty() {
        FAULT_KINDS.iter().map(|kind| kind.to_string()).collect()
    } else {
        arguments.faults
    };
    let binary = std::env::current_exe()
        .map_err(|error| CommandError::new(format!("cannot find the tandem binary: {error}")))?;
    let options = ChaosOptions {
        binary,
        seed,
        duration: Duration::from_millis(arguments.duration),
        nodes: arguments.nodes as usize,
        out_dir,
        faults,
        publishers: arguments.publishers,
        consumers: arguments.consumers,
    };
    let json = context.output.is_json();
    let report = run::run(options, |line| {
        if !json {
            println!("{line}");
        }
    })
    .await
    .map_err(CommandError::new)?;
    if json {
        context.output.print_json(&report_json(&report));
    } else {
        print_summary(&report);
    }
    if report.passed() {
        Ok(())
    } else {
        Err(CommandError::new(format!(
            "the contract was broken: {}",
            report.history.violations().join("; ")
        ))
        .with_hint(format!(
            "replay the same faults with `tandem chaos --seed {}`",
            report.seed
        )))
    }
}

/// A seed from the clock, for runs that did not ask for one.
fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64 % 1_000_000)
}

fn print_summary(report: &ChaosReport) {
    let history = &report.history;
    let longest = report
        .unavailable
        .iter()
        .map(|window| window.milliseconds)
        .max();
    println!();
    println!("seed {}: {} faults", report.seed, report.faults.len());
    let rows = [
        ("publish attempts", history.publish_attempts.to_string()),
        ("acknowledged", history.acknowledged.to_string()),
        ("failed (refused)", history.failed_attempts.to_string()),
        (
            "unknown (may have happened)",
            history.unknown_attempts.to_string(),
        ),
        ("delivered", history.delivered.to_string()),
        (
            "duplicated deliveries",
            history.delivered_more_than_once.to_string(),
        ),
        ("failovers", history.failovers.to_string()),
        ("lost", history.lost.len().to_string()),
        ("unexpected", history.unexpected.len().to_string()),
        (
            "stale-term acknowledgements",
            history.stale.len().to_string(),
        ),
        (
            "unavailable windows (>500 ms)",
            format!(
                "{} (longest {} ms)",
                report.unavailable.len(),
                longest.unwrap_or(0)
            ),
        ),
    ];
    for (name, value) in rows {
        println!("  {name:<32} {value}");
    }
    for window in &report.unavailable {
        println!("    {}", describe_window(window));
    }
    println!("  {:<32} {}", "history", report.history_path.display());
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    println!("{verdict}");
}

/// When an unavailable window began (seconds into the fault schedule), how long it lasted,
/// and the faults held during it.
fn describe_window(window: &Window) -> String {
    let during = if window.during.is_empty() {
        "no fault held then".to_string()
    } else {
        format!("during: {}", window.during.join("; "))
    };
    format!(
        "at {:.1} s for {} ms, {during}",
        window.from_ms as f64 / 1000.0,
        window.milliseconds
    )
}

fn report_json(report: &ChaosReport) -> serde_json::Value {
    let history = &report.history;
    json!({
        "seed": report.seed,
        "faults": report.faults.iter().map(|fault| json!({
            "at_ms": fault.at_ms, "fault": fault.description, "hold_ms": fault.hold_ms,
        })).collect::<Vec<_>>(),
        "publish_attempts": history.publish_attempts,
        "acknowledged": history.acknowledged,
        "failed": history.failed_attempts,
        "unknown": history.unknown_attempts,
        "delivered": history.delivered,
        "duplicated": history.delivered_more_than_once,
        "failovers": history.failovers,
        "lost": history.lost.len(),
        "unexpected": history.unexpected.len(),
        "stale": history.stale.len(),
        "unavailable_ms": report.unavailable.iter().map(|window| window.milliseconds).collect::<Vec<_>>(),
        "unavailable": report.unavailable.iter().map(|window| json!({
            "from_ms": window.from_ms, "ms": window.milliseconds, "during": window.during,
        })).collect::<Vec<_>>(),
        "history": report.history_path.display().to_string(),
        "passed": report.passed(),
    })
}
