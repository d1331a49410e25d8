//! A host's bindings file: every problem with its line and column, or checked bindings.
//!
//! The check is `tandem_fuzz_checks::bindings_parser`; `cargo test` also runs it over
//! every seed in `fuzz/corpus/bindings_parser/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tandem_fuzz_checks::bindings_parser(data);
});
