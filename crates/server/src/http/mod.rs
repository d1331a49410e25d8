//! The HTTP/JSON API (axum), mirroring the gRPC services, plus `/health` and `/metrics`.
//! Every error, including malformed requests and unknown routes, is a JSON body of the
//! shape described in [`crate::errors`].
//!
//! - [`extract`]: JSON body, path and query extractors with JSON rejections.
//! - [`messages`]: publish and message history.
//! - [`delivery`]: lease, renew, complete, abandon, fail, batch settle.
//! - [`admin`]: hosts, subscriptions, instances, tracking purge, status.
//! - [`observe`]: health, metrics, unknown routes.
//! - [`cluster`]: the replica set's view, switchover, active/passive health checks.
//! - [`views`]: core types as JSON; [`properties`]: context properties as JSON.
//! - [`base64`]: the body encoding for binary messages.

pub mod admin;
pub mod base64;
pub mod cluster;
pub mod delivery;
pub mod extract;
pub mod messages;
pub mod observe;
pub mod properties;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};

use crate::errors::ActiveHttpAddress;
use crate::state::SharedState;

/// Room for the JSON envelope beyond the (possibly base64-encoded) body.
pub const REQUEST_ENVELOPE_BYTES: u64 = 1024 * 1024;
/// Body bytes may grow this many times in JSON (base64 inflates by 4/3, escapes more).
pub const BODY_ENCODING_FACTOR: u64 = 2;

/// The largest HTTP request body read: big enough that an oversized message body reaches
/// validation and gets the precise `too_large` answer.
pub fn max_request_bytes(max_body_bytes: u64) -> usize {
    let bytes = max_body_bytes
        .saturating_mul(BODY_ENCODING_FACTOR)
        .saturating_add(REQUEST_ENVELOPE_BYTES);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

pub fn router(state: SharedState) -> Router {
    let body_limit = max_request_bytes(state.config.max_body_bytes);
    Router::new()
        .route("/health", get(observe::health))
        .route("/health/active", get(cluster::health_active))
        .route("/health/passive", get(cluster::health_passive))
        .route("/v1/cluster", get(cluster::view))
        .route("/v1/cluster/switchover", post(cluster::switchover))
        .route("/metrics", get(observe::metrics))
        .route("/v1/messages", post(messages::publish))
        .route("/v1/messages/{id}/history", get(messages::history))
        .route("/v1/hosts", post(admin::create_host).get(admin::list_hosts))
        .route("/v1/hosts/{host}/lease", post(delivery::lease))
        .route(
            "/v1/subscriptions",
            post(admin::create_subscription).get(admin::list_subscriptions),
        )
        .route("/v1/subscriptions/{id}", delete(admin::delete_subscription))
        .route("/v1/instances", get(admin::list_instances))
        .route("/v1/instances/{id}/renew", post(delivery::renew))
        .route("/v1/instances/{id}/complete", post(delivery::complete))
        .route("/v1/instances/{id}/abandon", post(delivery::abandon))
        .route("/v1/instances/{id}/fail", post(delivery::fail))
        .route("/v1/settle", post(delivery::settle))
        .route("/v1/instances/{id}/resume", post(admin::resume))
        .route("/v1/instances/{id}/terminate", post(admin::terminate))
        .route("/v1/tracking/purge", post(admin::purge_tracking))
        .route("/v1/status", get(admin::status))
        .fallback(observe::not_found)
        .method_not_allowed_fallback(observe::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(redirect_to_active))
        .with_state(state)
}

/// A write that reached a passive node answers `307 Temporary Redirect` to the same path
/// and query on the active (the error knows the active's address; only this layer knows the
/// path). Clients such as `curl -L` repeat the request there, method and body included.
async fn redirect_to_active(request: Request, next: Next) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|path| path.as_str().to_string())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    let location = response
        .extensions()
        .get::<ActiveHttpAddress>()
        .map(|active| format!("http://{}{path_and_query}", active.0));
    if let Some(value) = location.and_then(|location| HeaderValue::try_from(location).ok()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
