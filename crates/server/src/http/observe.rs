//! Liveness (`/health`), Prometheus metrics (`/metrics`), and the JSON answers for
//! unknown routes and wrong methods.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::errors::ApiError;
use crate::metrics::{Api, PROMETHEUS_CONTENT_TYPE, render};
use crate::state::SharedState;

pub async fn health(State(state): State<SharedState>) -> Response {
    state.count_request(Api::Http, "health");
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn metrics(State(state): State<SharedState>) -> Response {
    state.count_request(Api::Http, "metrics");
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        render(&state),
    )
        .into_response()
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response =
        ApiError::invalid(format!("method {method} is not allowed on {}", uri.path()))
            .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
