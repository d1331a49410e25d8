//! The simulation seeds of the default test run: a fixed list and one random seed (printed,
//! so that a failure can be replayed), each checked for lost, unexpected and stale
//! acknowledgements, and one seed run twice to prove that a seed replays exactly.
//!
//! More seeds run on demand: `cargo run -p tandem-sim --release -- --seed 1 --seeds 100`.

use std::time::Duration;

use tandem_sim::{SimOptions, SimReport, run};

/// Simulated seconds of faults per seed in the default run.
const FAULT_SECONDS: u64 = 15;

fn run_seed(seed: u64) -> SimReport {
    let mut options = SimOptions::new(seed);
    options.fault_duration = Duration::from_secs(FAULT_SECONDS);
    let report = run(&options).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    report.history.print(&format!("seed {seed}"));
    for step in &report.steps {
        println!("  {:?} .. {:?}: {}", step.at, step.healed_at, step.fault);
    }
    report
}

fn assert_contract_held(report: &SimReport) {
    let violations = report.violations();
    assert!(
        violations.is_empty(),
        "seed {} broke the contract; replay with `cargo run -p tandem-sim --release -- --seed {} \
         --seconds {FAULT_SECONDS}`:\n{}",
        report.seed,
        report.seed,
        violations.join("\n")
    );
    assert!(
        report.history.acknowledged > 500,
        "seed {}: too little was acknowledged to prove anything: {}",
        report.seed,
        report.history.acknowledged
    );
    assert_eq!(
        report.history.pending_attempts, 0,
        "every publish was answered"
    );
}

#[test]
fn fixed_seeds_keep_the_contract() {
    for seed in [3, 5] {
        let report = run_seed(seed);
        assert_contract_held(&report);
        assert!(!report.steps.is_empty(), "seed {seed} applied no fault");
    }
}

#[test]
fn a_random_seed_keeps_the_contract() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |elapsed| elapsed.subsec_nanos() as u64);
    println!("random simulation seed: {seed}");
    assert_contract_held(&run_seed(seed));
}

#[test]
fn a_seed_replays_exactly() {
    if !cfg!(tokio_unstable) {
        panic!(
            "the simulation is only deterministic when built with --cfg tokio_unstable (set in \
             .cargo/config.toml; a RUSTFLAGS environment variable replaces it)"
        );
    }
    let first = run_seed(2);
    let second = run_seed(2);
    assert_contract_held(&first);
    assert_eq!(first.steps, second.steps);
    assert!(
        first.history_jsonl == second.history_jsonl,
        "two runs of seed 2 recorded different histories"
    );
}
