//! Request extractors whose rejections are JSON errors: [`JsonBody`] (content type,
//! UTF-8, JSON syntax, unknown fields, size), [`PathParam`] and [`QueryParams`]. Axum's own
//! plain-text rejections never reach a caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use tandem_core::{Error, ErrorCode};

use crate::errors::ApiError;
use crate::state::SharedState;

/// A JSON request body. An empty body counts as `{}`, so bodiless POSTs work.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<SharedState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, ApiError> {
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                body_rejection(rejection.status(), &rejection.body_text(), state)
            })?;
        parse_json(content_type.as_ref(), &bytes).map(JsonBody)
    }
}

fn body_rejection(status: StatusCode, reason: &str, state: &SharedState) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError(Error::new(
            ErrorCode::TooLarge,
            format!(
                "request body is larger than the {} bytes this node accepts over HTTP",
                super::max_request_bytes(state.config.max_body_bytes)
            ),
        ));
    }
    ApiError::invalid(format!("cannot read the request body: {reason}"))
}

/// Parses a JSON body, explaining exactly what is wrong with it.
pub fn parse_json<T: DeserializeOwned>(
    content_type: Option<&HeaderValue>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return serde_json::from_str("{}")
            .map_err(|error| ApiError::invalid(format!("a JSON body is required: {error}")));
    }
    check_content_type(content_type)?;
    let text = std::str::from_utf8(bytes).map_err(|error| {
        ApiError::invalid(format!(
            "request body is not valid UTF-8 (invalid byte at offset {})",
            error.valid_up_to()
        ))
    })?;
    serde_json::from_str(text)
        .map_err(|error| ApiError::invalid(format!("request body is not valid: {error}")))
}

fn check_content_type(content_type: Option<&HeaderValue>) -> Result<(), ApiError> {
    let Some(value) = content_type else {
        return Err(ApiError::invalid(
            "missing Content-Type header; send application/json",
        ));
    };
    let media_type = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media_type == "application/json" || media_type.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "Content-Type {value:?} is not supported; send application/json"
    )))
}

/// Path parameters, with a JSON 400 when they do not parse (e.g. a non-numeric id).
pub struct PathParam<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|rejection| {
                ApiError::invalid(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

/// Query parameters, with a JSON 400 when they do not parse.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection| {
                ApiError::invalid(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Named {
        #[allow(dead_code)]
        name: String,
    }

    fn json_type() -> HeaderValue {
        HeaderValue::from_static("application/json; charset=utf-8")
    }

    fn message(result: Result<Named, ApiError>) -> String {
        result.expect_err("refused").0.message
    }

    #[test]
    fn json_parses() {
        assert!(parse_json::<Named>(Some(&json_type()), br#"{"name":"a"}"#).is_ok());
    }

    #[test]
    fn wrong_content_type_is_refused() {
        let text = HeaderValue::from_static("text/plain");
        assert!(message(parse_json(Some(&text), b"{}")).contains("text/plain"));
        assert!(message(parse_json(None, b"{}")).contains("Content-Type"));
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let error = message(parse_json(Some(&json_type()), b"{\"name\":\"a\xff\"}"));
        assert!(
            error.contains("UTF-8") && error.contains("offset 10"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_explained() {
        let error = message(parse_json(Some(&json_type()), br#"{"name":"a","x":1}"#));
        assert!(error.contains("unknown field `x`"), "{error}");
        let error = message(parse_json(Some(&json_type()), b"{\"name\":"));
        assert!(error.contains("line 1 column"), "{error}");
    }
}
