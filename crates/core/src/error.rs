//! The errors a command can end in, each with a stable code that the server maps to wire codes.

use serde::{Deserialize, Serialize};

/// Stable error codes. The wire (gRPC status, HTTP status, JSON `code`) is derived from these
/// in one place in the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed: bad name, bad filter, bad property, out-of-range value.
    InvalidArgument,
    /// The body exceeds the configured limit.
    TooLarge,
    /// A named host, subscription, message or message instance does not exist.
    NotFound,
    /// A host or subscription with that name exists already.
    AlreadyExists,
    /// The message matched no subscription and the routing-failure queue is off.
    NoRoute,
    /// The store holds more messages than the throttle allows; retry later.
    Throttled,
    /// The lease token is not the current lease of that message instance.
    LeaseMismatch,
    /// The lease expired before the call arrived.
    LeaseExpired,
    /// The message instance is not in a state that allows the operation.
    InvalidState,
    /// The node cannot serve the request now (storage failure, shutting down, election
    /// under way); retrying is safe.
    Unavailable,
    /// This node is passive: writes go to the active, named in the error's redirect.
    NotActive,
    /// The active could not replicate to a majority of voters in time. Writes stop rather
    /// than fall back to asynchronous replication; retrying is safe.
    NoQuorum,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::Throttled => "throttled",
            ErrorCode::LeaseMismatch => "lease_mismatch",
            ErrorCode::LeaseExpired => "lease_expired",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotActive => "not_active",
            ErrorCode::NoQuorum => "no_quorum",
        }
    }
}

/// An error with a code and a message a person understands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// For [`ErrorCode::Throttled`]: when to try again.
    pub retry_after_ms: Option<u64>,
    /// For [`ErrorCode::NotActive`]: where the active node is, when known.
    pub redirect: Option<Redirect>,
}

/// How to reach the active node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub node_id: u64,
    pub grpc_address: String,
    pub http_address: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            retry_after_ms: None,
            redirect: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Unavailable, message)
    }

    /// This node is passive; the active is at `redirect`.
    pub fn not_active(message: impl Into<String>, redirect: Redirect) -> Error {
        Error {
            redirect: Some(redirect),
            ..Error::new(ErrorCode::NotActive, message)
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
