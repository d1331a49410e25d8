//! # Tandem fuzz checks
//!
//! What each fuzz target checks, in one place, so that the cargo-fuzz targets in `fuzz/` and
//! the replay of their seed corpora in `cargo test` (`tests/corpus.rs`) run the same code.
//!
//! Each check feeds arbitrary bytes to the project's own parsing or decoding code, as the
//! node (or the host instance) would receive them, and holds the contract for bad input: a
//! clear error, never a panic, never unbounded work. A broken contract panics, which is what
//! the fuzzer reports. Every check answers a [`Verdict`] so that the corpus replay can pin
//! seeds that must stay accepted (`valid-*`) or refused (`bad-*`).
//!
//! # Layout
//!
//! - [`filter_parser`]: subscription filter text, and its canonical round trip.
//! - [`replication_frame`]: length-prefixed frames on the replication port, both ways.
//! - [`grpc_request`]: protobuf requests as the gRPC server decodes and converts them.
//! - [`bindings_parser`]: a host's bindings file.
//! - [`snapshot_reader`]: a snapshot file received from another node, checked before it
//!   is installed.

pub mod bindings_parser;
pub mod filter_parser;
pub mod grpc_request;
pub mod replication_frame;
pub mod snapshot_reader;

pub use bindings_parser::bindings_parser;
pub use filter_parser::filter_parser;
pub use grpc_request::grpc_request;
pub use replication_frame::replication_frame;
pub use snapshot_reader::snapshot_reader;

/// What the code under test made of one input. Both are fine outcomes; a broken contract
/// panics instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The input parsed or decoded, and everything the check asks of an accepted input holds.
    Accepted,
    /// The input was refused with a clear error.
    Refused,
}

/// Asserts that an error message says something.
fn clear(message: &str, what: &str) -> Verdict {
    assert!(
        !message.trim().is_empty(),
        "{what} was refused without a message"
    );
    Verdict::Refused
}
