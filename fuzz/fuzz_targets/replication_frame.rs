//! Bytes on a replication connection, read frame by frame as a node reads requests or answers.
//!
//! The check is `tandem_fuzz_checks::replication_frame`; `cargo test` also runs it over
//! every seed in `fuzz/corpus/replication_frame/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tandem_fuzz_checks::replication_frame(data);
});
