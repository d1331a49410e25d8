//! A snapshot file received from another node: refused, or checked and installable.
//!
//! The check is `tandem_fuzz_checks::snapshot_reader`; `cargo test` also runs it over
//! every seed in `fuzz/corpus/snapshot_reader/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tandem_fuzz_checks::snapshot_reader(data);
});
