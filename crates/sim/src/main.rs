//! `tandem-sim`: runs deterministic simulations of a replica set, one seed or a range, and
//! prints what each found. A failing seed prints the command that replays it exactly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tandem_sim::{SimOptions, SimReport, run};

/// Deterministic simulation of a Tandem replica set and its clients on one thread.
#[derive(Parser)]
#[command(name = "tandem-sim")]
struct Arguments {
    /// The seed to run; with --seeds, the first of the range.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many consecutive seeds to run, starting at --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Simulated seconds of faults per seed (then 10 s of draining).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Keep the nodes' data and history.jsonl of each seed under DIR/seed-N.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    if !cfg!(tokio_unstable) {
        eprintln!(
            "warning: built without --cfg tokio_unstable (a RUSTFLAGS environment variable \
             replaced .cargo/config.toml's): runs check the contract but do not replay exactly"
        );
    }
    let mut failed = Vec::new();
    for seed in arguments.seed..arguments.seed.saturating_add(arguments.seeds) {
        let mut options = SimOptions::new(seed);
        options.fault_duration = Duration::from_secs(arguments.seconds);
        options.out_dir = arguments
            .keep
            .as_ref()
            .map(|directory| directory.join(format!("seed-{seed}")));
        let started = Instant::now();
        match run(&options) {
            Ok(report) => {
                print_report(&report, started.elapsed());
                if !report.passed() {
                    failed.push(seed);
                }
            }
            Err(error) => {
                eprintln!("seed {seed}: {error}");
                failed.push(seed);
            }
        }
    }
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    for seed in &failed {
        eprintln!(
            "replay: cargo run -p tandem-sim --release -- --seed {seed} --seconds {}",
            arguments.seconds
        );
    }
    ExitCode::FAILURE
}

fn print_report(report: &SimReport, took: Duration) {
    println!(
        "seed {}: {} faults, {:.1} s simulated in {:.1} s",
        report.seed,
        report.steps.len(),
        report.simulated.as_secs_f64(),
        took.as_secs_f64()
    );
    for step in &report.steps {
        println!(
            "  {:>6.2} s .. {:>6.2} s  {}",
            step.at.as_secs_f64(),
            step.healed_at.as_secs_f64(),
            step.fault
        );
    }
    report.history.print(&format!("seed {}", report.seed));
    match (&report.divergence, report.agreed_after) {
        (Some(divergence), _) => println!("[seed {}] {divergence}", report.seed),
        (None, Some(after)) => println!(
            "[seed {}] the replicas agreed {:.1} s after the drain",
            report.seed,
            after.as_secs_f64()
        ),
        (None, None) => {}
    }
}
