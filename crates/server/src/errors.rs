//! The one place that maps core errors ([`tandem_core::Error`], [`ErrorCode`]) to the
//! wire: gRPC statuses with the `tandem-error-code` (and `retry-after-ms`) metadata, HTTP
//! statuses with a JSON body, and the per-message `Error` of a publish result.
//!
//! HTTP error bodies always have this shape:
//! `{"error":{"code":"not_found","message":"host 'x' does not exist","retry_after_ms":1000}}`
//! (`retry_after_ms` only when the caller should retry later). A write sent to a passive
//! node answers `not_active`: over gRPC with the active's addresses in the
//! `tandem-active-grpc` and `tandem-active-http` metadata, over HTTP as a
//! `307 Temporary Redirect` to the same path on the active, with an `active` object in the
//! body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tandem_core::{Error, ErrorCode};
use tandem_protocol::v1;
use tandem_protocol::{
    ACTIVE_GRPC_METADATA, ACTIVE_HTTP_METADATA, ERROR_CODE_METADATA, RETRY_AFTER_METADATA,
};
use tonic::metadata::MetadataValue;

/// Milliseconds per second, for the HTTP `Retry-After` header (whole seconds).
const MILLISECONDS_PER_SECOND: u64 = 1000;

/// The gRPC code for each error code.
pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::TooLarge => tonic::Code::InvalidArgument,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
        ErrorCode::NoRoute
        | ErrorCode::LeaseMismatch
        | ErrorCode::LeaseExpired
        | ErrorCode::InvalidState => tonic::Code::FailedPrecondition,
        ErrorCode::Throttled => tonic::Code::ResourceExhausted,
        ErrorCode::Unavailable | ErrorCode::NotActive | ErrorCode::NoQuorum => {
            tonic::Code::Unavailable
        }
    }
}

/// The HTTP status for each error code.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::AlreadyExists
        | ErrorCode::LeaseMismatch
        | ErrorCode::LeaseExpired
        | ErrorCode::InvalidState => StatusCode::CONFLICT,
        ErrorCode::NoRoute => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::NoQuorum => StatusCode::SERVICE_UNAVAILABLE,
        // The Location header is added by `http::redirect_to_active`, which knows the path.
        ErrorCode::NotActive => StatusCode::TEMPORARY_REDIRECT,
    }
}

/// A gRPC status a person can read, with the stable code (and retry hint) as metadata.
pub fn to_status(error: &Error) -> tonic::Status {
    let mut status = tonic::Status::new(grpc_code(error.code), error.message.clone());
    let metadata = status.metadata_mut();
    metadata.insert(
        ERROR_CODE_METADATA,
        MetadataValue::from_static(error.code.as_str()),
    );
    if let Some(retry_after_ms) = error.retry_after_ms {
        metadata.insert(RETRY_AFTER_METADATA, MetadataValue::from(retry_after_ms));
    }
    if let Some(redirect) = &error.redirect {
        let addresses = [
            (ACTIVE_GRPC_METADATA, &redirect.grpc_address),
            (ACTIVE_HTTP_METADATA, &redirect.http_address),
        ];
        for (key, address) in addresses {
            if let Ok(value) = MetadataValue::try_from(address.as_str()) {
                metadata.insert(key, value);
            }
        }
    }
    status
}

/// The answer to a call relayed to the active (`grpc::forward`) whose relay failed after
/// the call left: the active may have carried it out. It carries no error code, so that the
/// client takes it as it takes a connection lost mid-call: outcome unknown, try another
/// node.
pub fn relay_cut_off(
    this_node: u64,
    active_node: u64,
    active_address: &str,
    error: &dyn std::fmt::Display,
) -> tonic::Status {
    tonic::Status::unavailable(format!(
        "node {this_node} relayed the call to the active, node {active_node} at \
         {active_address}, but lost it before the answer: {error}; its outcome is unknown"
    ))
}

/// The per-message error of a publish result.
pub fn to_wire_error(error: &Error) -> v1::Error {
    v1::Error {
        code: error.code.as_str().to_string(),
        message: error.message.clone(),
        retry_after_ms: error.retry_after_ms.unwrap_or(0),
    }
}

/// The JSON object describing an error (the value of the `error` key).
pub fn to_json(error: &Error) -> serde_json::Value {
    let mut object = serde_json::json!({
        "code": error.code.as_str(),
        "message": error.message,
    });
    if let Some(retry_after_ms) = error.retry_after_ms {
        object["retry_after_ms"] = serde_json::json!(retry_after_ms);
    }
    if let Some(redirect) = &error.redirect {
        object["active"] = serde_json::json!({
            "node_id": redirect.node_id,
            "grpc_address": redirect.grpc_address,
            "http_address": redirect.http_address,
        });
    }
    object
}

/// Set on an HTTP error response that must redirect to the active node's HTTP address.
#[derive(Clone, Debug)]
pub struct ActiveHttpAddress(pub String);

/// An error answered over HTTP: status from the code, JSON body, `Retry-After` when set.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError(Error::invalid(message))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(Error::not_found(message))
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let body = axum::Json(serde_json::json!({ "error": to_json(&error) }));
        let mut response = (http_status(error.code), body).into_response();
        if let Some(retry_after_ms) = error.retry_after_ms {
            let seconds = retry_after_ms.div_ceil(MILLISECONDS_PER_SECOND);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(redirect) = error.redirect {
            response
                .extensions_mut()
                .insert(ActiveHttpAddress(redirect.http_address));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled() -> Error {
        Error {
            code: ErrorCode::Throttled,
            message: "full".into(),
            retry_after_ms: Some(1500),
            redirect: None,
        }
    }

    #[test]
    fn grpc_statuses_carry_the_code_and_retry_hint() {
        let status = to_status(&throttled());
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "full");
        let metadata = status.metadata();
        assert_eq!(
            metadata
                .get(ERROR_CODE_METADATA)
                .and_then(|value| value.to_str().ok()),
            Some("throttled")
        );
        assert_eq!(
            metadata
                .get(RETRY_AFTER_METADATA)
                .and_then(|value| value.to_str().ok()),
            Some("1500")
        );
    }

    #[test]
    fn http_responses_round_retry_after_up_to_seconds() {
        let response = ApiError(throttled()).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn too_large_is_413_over_http() {
        let error = Error::new(ErrorCode::TooLarge, "big");
        assert_eq!(http_status(error.code), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(grpc_code(error.code), tonic::Code::InvalidArgument);
        assert_eq!(to_json(&error)["code"], "too_large");
        assert!(to_json(&error).get("retry_after_ms").is_none());
    }
}
