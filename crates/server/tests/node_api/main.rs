//! End-to-end tests of a real node on 127.0.0.1 (port 0, temporary data directory), over
//! gRPC (tonic clients) and HTTP (a minimal raw client).

mod support;

mod admin_operations;
mod bad_input;
mod grpc_happy_path;
mod http_happy_path;
mod long_poll;
mod maintenance;
mod settle_batch;
#[cfg(unix)]
mod signals;
