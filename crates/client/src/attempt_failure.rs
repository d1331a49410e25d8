//! [`AttemptFailure`]: one failed attempt of a call, sorted by what it means for the next
//! attempt: send it elsewhere, send it again later, or report it (the node's answer).

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::time::Duration;

use tandem_protocol::ERROR_CODE_METADATA;
use tonic::{Code, Status, TimeoutExpired};

use crate::error::ClientError;

/// A failed attempt: the error to report if no other attempt follows, and its kind.
#[derive(Debug)]
pub(crate) struct AttemptFailure {
    pub error: ClientError,
    pub kind: FailureKind,
}

/// What a failed attempt says about where and when to try again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The node could not be reached (transport failure) or did not answer in time: the next
    /// attempt goes to the next address. `outcome_unknown` unless no connection could be
    /// opened (refused, or timed out: then the request never left).
    Unreachable {
        reason: String,
        outcome_unknown: bool,
    },
    /// The node is passive and named the active's gRPC address: send it there at once.
    Redirected { active_address: String },
    /// The node knows no active that can serve (an election, `not_active` without an
    /// address, a node shutting down) and did nothing: try the next address after a pause.
    NoActive,
    /// The active could not replicate in time (`no_quorum`): the write may still commit.
    /// Try the next address after a pause.
    Unconfirmed,
    /// The active is throttling writes: try it again after at least `retry_after`.
    Throttled { retry_after: Duration },
    /// Anything else is the node's answer to the call.
    Answer,
}

impl AttemptFailure {
    /// A failed call to the node at `address`.
    pub fn from_status(address: &str, status: Status) -> AttemptFailure {
        if let Some(reason) = transport_failure(&status) {
            let outcome_unknown = !never_sent(&status);
            return AttemptFailure::unreachable(address, reason, outcome_unknown);
        }
        let error = ClientError::from(status);
        let kind = kind_of_answer(&error);
        AttemptFailure { error, kind }
    }

    /// The node at `address` gave no answer within `limit`.
    pub fn no_answer_within(address: &str, limit: Duration) -> AttemptFailure {
        let reason = format!("no answer within {} ms", limit.as_millis());
        let error = ClientError::new(
            "deadline_exceeded",
            format!(
                "the node at {address} did not answer within {} ms",
                limit.as_millis()
            ),
        );
        AttemptFailure {
            error,
            kind: FailureKind::Unreachable {
                reason,
                outcome_unknown: true,
            },
        }
    }

    fn unreachable(address: &str, reason: String, outcome_unknown: bool) -> AttemptFailure {
        AttemptFailure {
            error: ClientError::unreachable(address, &reason),
            kind: FailureKind::Unreachable {
                reason,
                outcome_unknown,
            },
        }
    }
}

impl FailureKind {
    /// True when the attempt may have taken effect although it failed.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            FailureKind::Unreachable {
                outcome_unknown, ..
            } => *outcome_unknown,
            FailureKind::Unconfirmed => true,
            _ => false,
        }
    }

    /// True when the node failed to serve the call as an active would: it is gone, passive,
    /// or without a quorum. (A throttled active serves; it asks for patience.)
    pub fn is_outage(&self) -> bool {
        !matches!(self, FailureKind::Throttled { .. } | FailureKind::Answer)
    }
}

/// True when the call's own deadline (the `grpc-timeout` the client set) ran out on this
/// side: the node gave no answer in time.
pub(crate) fn timed_out_here(status: &Status) -> bool {
    let mut current = status.source();
    while let Some(cause) = current {
        if cause.downcast_ref::<TimeoutExpired>().is_some() {
            return true;
        }
        current = cause.source();
    }
    false
}

/// [`ClientError`] for a failed call to the node at `address`, e.g. a broken stream.
pub(crate) fn error_from_status_at(address: &str, status: Status) -> ClientError {
    AttemptFailure::from_status(address, status).error
}

/// Whether a node's error code asks for another attempt rather than being the answer.
pub(crate) fn is_retryable_answer(error: &ClientError) -> bool {
    !matches!(kind_of_answer(error), FailureKind::Answer)
}

/// What a node's own error code means for the next attempt.
fn kind_of_answer(error: &ClientError) -> FailureKind {
    match error.code.as_str() {
        "not_active" => match &error.active_grpc_address {
            Some(active_address) => FailureKind::Redirected {
                active_address: active_address.clone(),
            },
            None => FailureKind::NoActive,
        },
        "unavailable" => FailureKind::NoActive,
        "no_quorum" => FailureKind::Unconfirmed,
        "throttled" => FailureKind::Throttled {
            retry_after: Duration::from_millis(error.retry_after_ms.unwrap_or(0)),
        },
        _ => FailureKind::Answer,
    }
}

/// Why the call never got an answer from a node, when it did not: a status made on this
/// side (no error code from a node) by the transport, or a deadline that passed.
fn transport_failure(status: &Status) -> Option<String> {
    if status.metadata().get(ERROR_CODE_METADATA).is_some() {
        return None;
    }
    let made_here = status.source().is_some();
    match status.code() {
        Code::DeadlineExceeded => Some(format!("no answer in time ({})", status.message())),
        Code::Unavailable => Some(describe_status(status)),
        _ if made_here => Some(describe_status(status)),
        _ => None,
    }
}

fn describe_status(status: &Status) -> String {
    match status.source() {
        Some(cause) => describe_cause(cause),
        None => status.message().to_lowercase(),
    }
}

/// True when the transport failed before the request could leave: no connection was
/// opened (refused because nothing listened, or timed out because nothing answered, as at
/// the address of a machine that is off).
fn never_sent(status: &Status) -> bool {
    let mut current = status.source();
    while let Some(cause) = current {
        if cause.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            return io_error.kind() == ErrorKind::ConnectionRefused;
        }
        current = cause.source();
    }
    false
}

/// The most specific reason in an error's chain, e.g. "connection refused".
pub(crate) fn describe_cause(error: &(dyn StdError + 'static)) -> String {
    let mut innermost = error;
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            return describe_io_error(io_error);
        }
        innermost = cause;
        current = cause.source();
    }
    innermost.to_string()
}

fn describe_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use tandem_protocol::{ACTIVE_GRPC_METADATA, RETRY_AFTER_METADATA};
    use tonic::metadata::MetadataValue;

    use super::*;

    fn status_with(code: &'static str) -> Status {
        let mut status = Status::unavailable("refused");
        status
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, MetadataValue::from_static(code));
        status
    }

    fn kind_of(status: Status) -> FailureKind {
        AttemptFailure::from_status("127.0.0.1:7400", status).kind
    }

    #[test]
    fn passives_redirect_and_elections_move_on() {
        let mut passive = status_with("not_active");
        passive.metadata_mut().insert(
            ACTIVE_GRPC_METADATA,
            MetadataValue::from_static("127.0.0.1:7410"),
        );
        assert_eq!(
            kind_of(passive),
            FailureKind::Redirected {
                active_address: "127.0.0.1:7410".into()
            }
        );
        assert_eq!(kind_of(status_with("not_active")), FailureKind::NoActive);
        assert_eq!(kind_of(status_with("unavailable")), FailureKind::NoActive);
        assert_eq!(kind_of(status_with("no_quorum")), FailureKind::Unconfirmed);
    }

    #[test]
    fn throttled_carries_its_retry_hint() {
        let mut throttled = status_with("throttled");
        throttled
            .metadata_mut()
            .insert(RETRY_AFTER_METADATA, MetadataValue::from_static("1500"));
        let kind = kind_of(throttled);
        assert_eq!(
            kind,
            FailureKind::Throttled {
                retry_after: Duration::from_millis(1500)
            }
        );
        assert!(!kind.is_outage());
    }

    #[test]
    fn a_status_without_a_node_code_is_a_transport_failure() {
        let failure = AttemptFailure::from_status(
            "127.0.0.1:7400",
            Status::unavailable("Connection refused"),
        );
        assert!(
            failure.error.message.contains("127.0.0.1:7400"),
            "{}",
            failure.error
        );
        assert!(
            failure.error.message.contains("tandem node start"),
            "{}",
            failure.error
        );
        assert!(failure.kind.is_outage());
        // Without the io error in the chain, the request may have left.
        assert!(failure.kind.outcome_unknown());
        let timed_out = kind_of(Status::deadline_exceeded("timeout expired"));
        assert!(matches!(timed_out, FailureKind::Unreachable { .. }));
    }

    #[test]
    fn a_connection_that_never_opened_never_carried_the_request() {
        let timed_out = std::io::Error::new(ErrorKind::TimedOut, "connect timed out");
        let connect = Status::from_error(Box::new(tonic::ConnectError(Box::new(timed_out))));
        let kind = kind_of(connect);
        assert!(matches!(kind, FailureKind::Unreachable { .. }), "{kind:?}");
        assert!(!kind.outcome_unknown());
        // The same io error on an open connection: the request may have left.
        let reset = std::io::Error::new(ErrorKind::TimedOut, "read timed out");
        assert!(kind_of(Status::from_error(Box::new(reset))).outcome_unknown());
    }

    #[test]
    fn other_answers_are_final() {
        for code in ["not_found", "lease_expired", "lease_mismatch", "no_route"] {
            let kind = kind_of(status_with(code));
            assert_eq!(kind, FailureKind::Answer, "{code}");
            assert!(!kind.outcome_unknown());
        }
        let invalid =
            AttemptFailure::from_status("127.0.0.1:7400", Status::invalid_argument("bad filter"));
        assert_eq!(invalid.error.code, "invalid_argument");
        assert_eq!(invalid.kind, FailureKind::Answer);
    }

    #[test]
    fn the_clients_own_timeout_is_told_apart() {
        let expired = Status::from_error(Box::new(TimeoutExpired(())));
        assert!(timed_out_here(&expired));
        assert!(!timed_out_here(&Status::unavailable("connection refused")));
    }

    #[test]
    fn answers_lost_in_time_or_to_quorum_are_uncertain() {
        let no_answer = AttemptFailure::no_answer_within("127.0.0.1:7400", Duration::from_secs(1));
        assert_eq!(no_answer.error.code, "deadline_exceeded");
        assert!(no_answer.kind.outcome_unknown());
        assert!(FailureKind::Unconfirmed.outcome_unknown());
        assert!(!FailureKind::NoActive.outcome_unknown());
    }
}
