//! The bounded chaos run of every test run: `tandem chaos` with a fixed list of seeds and
//! one random seed (printed, so a failure can be replayed with `tandem chaos --seed N`).
//! Each run injects every kind of fault into a real replica set under load, and must end
//! with nothing acknowledged lost, nothing unpublished seen, and no stale acknowledgement.

mod support;

use support::command::run_tandem;

/// Seeds that between them apply every kind of fault (see `tandem_chaos::nemesis`).
const FIXED_SEEDS: [u64; 2] = [2, 3];
/// How long each run injects faults.
const RUN_DURATION: &str = "20s";
/// The load must be real for a run to prove anything.
const MINIMUM_ACKNOWLEDGED: u64 = 500;

#[test]
fn chaos_runs_keep_the_contract() {
    let random_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| u64::from(elapsed.subsec_nanos()) % 1_000_000);
    eprintln!("chaos seeds: {FIXED_SEEDS:?} and the random seed {random_seed}");
    for seed in FIXED_SEEDS.into_iter().chain([random_seed]) {
        let out = tempfile::tempdir().expect("chaos output directory");
        let seed_text = seed.to_string();
        let out_text = out.path().to_str().expect("utf-8 path");
        let finished = run_tandem(&[
            "--json",
            "chaos",
            "--seed",
            &seed_text,
            "--duration",
            RUN_DURATION,
            "--out",
            out_text,
        ]);
        let replay = format!("replay with `tandem chaos --seed {seed} --duration {RUN_DURATION}`");
        let report = finished.json();
        eprintln!(
            "seed {seed}: {} faults, acknowledged {}, duplicated {}, failovers {}, lost {}, \
             stale {}",
            report["faults"].as_array().map_or(0, Vec::len),
            report["acknowledged"],
            report["duplicated"],
            report["failovers"],
            report["lost"],
            report["stale"]
        );
        assert!(
            finished.status.success(),
            "{replay}: {}",
            finished.describe()
        );
        assert_eq!(report["passed"], true, "{replay}: {report}");
        assert_eq!(report["lost"], 0, "{replay}");
        assert_eq!(report["stale"], 0, "{replay}");
        assert!(
            report["acknowledged"].as_u64().unwrap_or(0) >= MINIMUM_ACKNOWLEDGED,
            "{replay}: too little load to prove anything: {report}"
        );
        assert!(
            !report["faults"].as_array().expect("faults").is_empty(),
            "{replay}: no fault was applied"
        );
        let history =
            std::fs::read_to_string(out.path().join("history.jsonl")).expect("the history file");
        assert!(history.lines().count() as u64 >= MINIMUM_ACKNOWLEDGED);
    }
}
