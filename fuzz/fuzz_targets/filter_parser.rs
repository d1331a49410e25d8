//! Subscription filter text: a clear error, or a filter that round-trips through its
//! canonical text.
//!
//! The check is `tandem_fuzz_checks::filter_parser`; `cargo test` also runs it over
//! every seed in `fuzz/corpus/filter_parser/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tandem_fuzz_checks::filter_parser(data);
});
