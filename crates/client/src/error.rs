//! [`ClientError`]: what went wrong with a call, as a stable code and a readable message.

use tandem_protocol::{
    ACTIVE_GRPC_METADATA, ACTIVE_HTTP_METADATA, ERROR_CODE_METADATA, RETRY_AFTER_METADATA, v1,
};
use tonic::{Code, Status};

/// A failed call: the node's stable error code (`no_route`, `not_found`, `throttled`,
/// `not_active`, `no_quorum`, …, or the gRPC code in snake_case when the node gave none), a
/// message a person can read, when throttled how long to wait before retrying, and when
/// the node was passive (`not_active`) where the active is, and whether an earlier attempt
/// of the call may have taken effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    pub code: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    /// On `not_active`: the active node's gRPC address, where the call can be sent again.
    pub active_grpc_address: Option<String>,
    /// On `not_active`: the active node's HTTP address.
    pub active_http_address: Option<String>,
    /// True when the call was sent again after an attempt whose outcome is unknown (its
    /// answer was lost with the connection, did not come in time, or was `no_quorum`): that
    /// earlier attempt may have taken effect, and this error may be its trace. See
    /// [`ClientError::completed_by_earlier_attempt`].
    pub after_retry: bool,
}

impl ClientError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ClientError {
        ClientError {
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
            active_grpc_address: None,
            active_http_address: None,
            after_retry: false,
        }
    }

    /// The node could not be reached at `address`; `reason` says why.
    pub fn unreachable(address: &str, reason: &str) -> ClientError {
        ClientError::new(
            "unavailable",
            format!(
                "cannot reach the node at {address}: {reason}; is `tandem node start` running?"
            ),
        )
    }

    /// None of several nodes could be reached: each `(address, reason)` is named.
    pub fn unreachable_nodes(nodes: &[(String, String)]) -> ClientError {
        if let [(address, reason)] = nodes {
            return ClientError::unreachable(address, reason);
        }
        let each = nodes
            .iter()
            .map(|(address, reason)| format!("{address} ({reason})"))
            .collect::<Vec<_>>()
            .join(", ");
        ClientError::new(
            "unavailable",
            format!("cannot reach the nodes at {each}; is `tandem node start` running?"),
        )
    }

    /// True when the error carries this code, e.g. `no_route`.
    pub fn is_code(&self, code: &str) -> bool {
        self.code == code
    }

    /// For `complete`: true when the message is done although the call failed: a retried
    /// completion answered `not_found` ([`ClientError::after_retry`]), which is what an
    /// earlier attempt that landed leaves behind (the instance is gone). A `not_found`
    /// without a retry, or `lease_expired` / `lease_mismatch`, means the completion was
    /// fenced: the message is, or will be, delivered again.
    pub fn completed_by_earlier_attempt(&self) -> bool {
        self.after_retry && self.is_code("not_found")
    }

    /// True when the error says "not now" rather than "not this call": no node could serve
    /// it as an active (unreachable, passive, electing, without a quorum, no answer in
    /// time) or the active asked for patience (throttled). The same call can succeed later;
    /// every other code is the node's answer to the call itself.
    pub fn is_transient(&self) -> bool {
        self.is_code("deadline_exceeded") || crate::attempt_failure::is_retryable_answer(self)
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ClientError {}

impl From<Status> for ClientError {
    fn from(status: Status) -> ClientError {
        let metadata = status.metadata();
        let code = metadata
            .get(ERROR_CODE_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| grpc_code_name(status.code()).to_string());
        let retry_after_ms = metadata
            .get(RETRY_AFTER_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok());
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        ClientError {
            code,
            message: status.message().to_string(),
            retry_after_ms,
            active_grpc_address: text(ACTIVE_GRPC_METADATA),
            active_http_address: text(ACTIVE_HTTP_METADATA),
            after_retry: false,
        }
    }
}

impl From<v1::Error> for ClientError {
    fn from(error: v1::Error) -> ClientError {
        ClientError {
            retry_after_ms: (error.retry_after_ms > 0).then_some(error.retry_after_ms),
            ..ClientError::new(error.code, error.message)
        }
    }
}

/// The gRPC status code's name in snake_case, e.g. `unavailable`, `deadline_exceeded`.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    #[test]
    fn outages_and_throttling_are_transient_and_answers_are_not() {
        for code in [
            "unavailable",
            "not_active",
            "no_quorum",
            "throttled",
            "deadline_exceeded",
        ] {
            assert!(ClientError::new(code, "x").is_transient(), "{code}");
        }
        for code in [
            "no_route",
            "invalid_argument",
            "not_found",
            "too_large",
            "lease_expired",
        ] {
            assert!(!ClientError::new(code, "x").is_transient(), "{code}");
        }
    }

    #[test]
    fn status_metadata_gives_the_code_and_retry_hint() {
        let mut status = Status::resource_exhausted("the message box holds too many messages");
        status
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, MetadataValue::from_static("throttled"));
        status
            .metadata_mut()
            .insert(RETRY_AFTER_METADATA, MetadataValue::from_static("1000"));
        let error = ClientError::from(status);
        assert_eq!(error.code, "throttled");
        assert_eq!(error.retry_after_ms, Some(1000));
        assert_eq!(
            error.to_string(),
            "throttled: the message box holds too many messages"
        );
    }

    #[test]
    fn not_active_statuses_name_the_active() {
        let mut status = Status::unavailable("node 2 is passive; the active is node 1");
        let metadata = status.metadata_mut();
        metadata.insert(
            ERROR_CODE_METADATA,
            MetadataValue::from_static("not_active"),
        );
        metadata.insert(
            ACTIVE_GRPC_METADATA,
            MetadataValue::from_static("127.0.0.1:7400"),
        );
        metadata.insert(
            ACTIVE_HTTP_METADATA,
            MetadataValue::from_static("127.0.0.1:7401"),
        );
        let error = ClientError::from(status);
        assert!(error.is_code("not_active"));
        assert_eq!(error.active_grpc_address.as_deref(), Some("127.0.0.1:7400"));
        assert_eq!(error.active_http_address.as_deref(), Some("127.0.0.1:7401"));
    }

    #[test]
    fn status_without_metadata_falls_back_to_the_grpc_code() {
        let error = ClientError::from(Status::deadline_exceeded("too slow"));
        assert_eq!(error.code, "deadline_exceeded");
        assert_eq!(error.retry_after_ms, None);
        assert_eq!(error.to_string(), "deadline_exceeded: too slow");
    }

    #[test]
    fn per_message_errors_convert() {
        let error = ClientError::from(v1::Error {
            code: "no_route".into(),
            message: "no subscription matches".into(),
            retry_after_ms: 0,
        });
        assert_eq!(error.to_string(), "no_route: no subscription matches");
        assert_eq!(error.retry_after_ms, None);
    }

    #[test]
    fn unreachable_nodes_say_what_to_do() {
        let error = ClientError::unreachable("127.0.0.1:7400", "connection refused");
        assert_eq!(
            error.to_string(),
            "unavailable: cannot reach the node at 127.0.0.1:7400: connection refused; \
             is `tandem node start` running?"
        );
    }

    #[test]
    fn several_unreachable_nodes_are_each_named() {
        let nodes = [
            (
                "127.0.0.1:7400".to_string(),
                "connection refused".to_string(),
            ),
            ("127.0.0.1:7410".to_string(), "connection reset".to_string()),
        ];
        let error = ClientError::unreachable_nodes(&nodes);
        assert_eq!(
            error.to_string(),
            "unavailable: cannot reach the nodes at 127.0.0.1:7400 (connection refused), \
             127.0.0.1:7410 (connection reset); is `tandem node start` running?"
        );
        assert_eq!(
            ClientError::unreachable_nodes(&nodes[..1]),
            ClientError::unreachable("127.0.0.1:7400", "connection refused")
        );
    }

    #[test]
    fn only_a_retried_not_found_counts_as_completed() {
        let mut not_found = ClientError::new("not_found", "message instance 7 does not exist");
        assert!(!not_found.completed_by_earlier_attempt());
        not_found.after_retry = true;
        assert!(not_found.completed_by_earlier_attempt());
        let mut expired = ClientError::new("lease_expired", "the lease ended");
        expired.after_retry = true;
        assert!(!expired.completed_by_earlier_attempt());
    }
}
