//! Protobuf request bodies, decoded and converted as the gRPC server does.
//!
//! The check is `tandem_fuzz_checks::grpc_request`; `cargo test` also runs it over
//! every seed in `fuzz/corpus/grpc_request/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tandem_fuzz_checks::grpc_request(data);
});
