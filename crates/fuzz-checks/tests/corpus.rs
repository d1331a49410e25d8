//! Replays every seed of every fuzz target (`fuzz/corpus/<target>/`) through the target's
//! check, on every `cargo test`: the fuzz targets' contract holds for each seed without a
//! fuzzer or a nightly toolchain. Seeds named `valid-*` must be accepted and `bad-*`
//! refused, so that a seed that drifts out of date (a new format version, say) is noticed;
//! any other name (an input a fuzzer found) only has to keep the contract.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use tandem_fuzz_checks::Verdict;

/// Fewer seeds than this means the corpus folder went missing or was emptied.
const MIN_SEEDS: usize = 10;

#[test]
fn filter_parser_corpus() {
    replay("filter_parser", tandem_fuzz_checks::filter_parser);
}

#[test]
fn replication_frame_corpus() {
    replay("replication_frame", tandem_fuzz_checks::replication_frame);
}

#[test]
fn grpc_request_corpus() {
    replay("grpc_request", tandem_fuzz_checks::grpc_request);
}

#[test]
fn bindings_parser_corpus() {
    replay("bindings_parser", tandem_fuzz_checks::bindings_parser);
}

#[test]
fn snapshot_reader_corpus() {
    replay("snapshot_reader", tandem_fuzz_checks::snapshot_reader);
}

fn replay(target: &str, check: fn(&[u8]) -> Verdict) {
    let seeds = seeds(target);
    assert!(
        seeds.len() >= MIN_SEEDS,
        "{target}: only {} seeds in its corpus",
        seeds.len()
    );
    let mut failures = Vec::new();
    for seed in &seeds {
        let name = seed
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        let data = std::fs::read(seed).expect("read a seed");
        let expected = if name.starts_with("valid-") {
            Some(Verdict::Accepted)
        } else if name.starts_with("bad-") {
            Some(Verdict::Refused)
        } else {
            None
        };
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Err(_) => failures.push(format!("{name}: the check panicked (see above)")),
            Ok(verdict) if expected.is_some_and(|expected| expected != verdict) => {
                failures.push(format!("{name}: {verdict:?}"));
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} seeds failed:\n{}\nreplay one with `cargo fuzz run {target} \
         fuzz/corpus/{target}/<seed>` (see README, Fuzzing)",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}

/// The seed files of `target`, by name.
fn seeds(target: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    seeds.sort();
    seeds
}
