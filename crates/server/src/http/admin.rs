//! The admin API over HTTP: hosts, subscriptions, instances (list, resume, terminate),
//! tracking purge and status.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tandem_core::subscription::RetryPolicy;
use tandem_core::{Command, Outcome};

use crate::errors::ApiError;
use crate::http::extract::{JsonBody, PathParam, QueryParams};
use crate::http::views;
use crate::metrics::Api;
use crate::operations::{DEFAULT_TERMINATE_REASON, SubscriptionOrder, unexpected_outcome};
use crate::state::SharedState;

type JsonResult = Result<Json<JsonValue>, ApiError>;
type CreatedResult = Result<(StatusCode, Json<JsonValue>), ApiError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateHostRequest {
    pub name: String,
}

pub async fn create_host(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<CreateHostRequest>,
) -> CreatedResult {
    state.count_request(Api::Http, "create_host");
    let name = request.name;
    match state.execute(Command::CreateHost { name }).await? {
        Outcome::HostCreated(host) => Ok((StatusCode::CREATED, Json(views::host(&host)))),
        _ => Err(ApiError(unexpected_outcome("create host"))),
    }
}

pub async fn list_hosts(State(state): State<SharedState>) -> Json<JsonValue> {
    state.count_request(Api::Http, "list_hosts");
    let catalog = state.store.catalog();
    let hosts: Vec<JsonValue> = catalog.hosts.iter().map(views::host).collect();
    Json(json!({ "hosts": hosts }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    pub name: Option<String>,
    pub host: String,
    pub filter: String,
    pub priority: Option<u32>,
    pub retry_count: Option<u32>,
    pub retry_interval_ms: Option<u64>,
    pub exponential_backoff: Option<bool>,
    /// The backup transport's retries; absent or null means none.
    pub backup: Option<RetryPolicyRequest>,
    /// The id of a subscription that takes this definition in one step (keeping its id).
    pub replaces: Option<u64>,
}

/// A backup transport's retry policy, as gRPC's `RetryPolicy` message: omitted fields are
/// 0 and false, as there.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicyRequest {
    pub retry_count: u32,
    pub retry_interval_ms: u64,
    pub exponential_backoff: bool,
}

impl From<RetryPolicyRequest> for RetryPolicy {
    fn from(request: RetryPolicyRequest) -> RetryPolicy {
        RetryPolicy {
            retry_count: request.retry_count,
            retry_interval_ms: request.retry_interval_ms,
            exponential_backoff: request.exponential_backoff,
        }
    }
}

pub async fn create_subscription(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<CreateSubscriptionRequest>,
) -> CreatedResult {
    state.count_request(Api::Http, "create_subscription");
    let order = SubscriptionOrder {
        name: request.name.unwrap_or_default(),
        host: request.host,
        filter: request.filter,
        priority: request.priority.unwrap_or(0),
        retry_count: request.retry_count,
        retry_interval_ms: request.retry_interval_ms,
        exponential_backoff: request.exponential_backoff.unwrap_or(false),
        backup: request.backup.map(RetryPolicy::from),
        replaces: request.replaces,
    };
    let subscription = state.create_subscription(order).await?;
    let view = views::subscription(&subscription, &state.store.catalog());
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list_subscriptions(State(state): State<SharedState>) -> Json<JsonValue> {
    state.count_request(Api::Http, "list_subscriptions");
    let catalog = state.store.catalog();
    let subscriptions: Vec<JsonValue> = catalog
        .subscriptions
        .iter()
        .map(|subscription| views::subscription(subscription, &catalog))
        .collect();
    Json(json!({ "subscriptions": subscriptions }))
}

pub async fn delete_subscription(
    State(state): State<SharedState>,
    PathParam(id): PathParam<u64>,
) -> JsonResult {
    state.count_request(Api::Http, "delete_subscription");
    state.execute(Command::DeleteSubscription { id }).await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancesQuery {
    pub host: Option<String>,
    pub state: Option<String>,
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

pub async fn list_instances(
    State(state): State<SharedState>,
    QueryParams(query): QueryParams<InstancesQuery>,
) -> JsonResult {
    state.count_request(Api::Http, "list_instances");
    let instances = state
        .list_instances(
            query.host.as_deref().unwrap_or_default(),
            query.state.as_deref().unwrap_or_default(),
            query.after.unwrap_or(0),
            query.limit.unwrap_or(0),
        )
        .await?;
    let catalog = state.store.catalog();
    let instances: Vec<JsonValue> = instances
        .iter()
        .map(|instance| views::instance(instance, &catalog))
        .collect();
    Ok(Json(json!({ "instances": instances })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {}

pub async fn resume(
    State(state): State<SharedState>,
    PathParam(instance): PathParam<u64>,
    JsonBody(_request): JsonBody<ResumeRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "resume");
    state.execute(Command::Resume { instance }).await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminateRequest {
    pub reason: Option<String>,
}

pub async fn terminate(
    State(state): State<SharedState>,
    PathParam(instance): PathParam<u64>,
    JsonBody(request): JsonBody<TerminateRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "terminate");
    let reason = request
        .reason
        .filter(|reason| !reason.is_empty())
        .unwrap_or_else(|| DEFAULT_TERMINATE_REASON.to_string());
    state
        .execute(Command::Terminate { instance, reason })
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    pub older_than_ms: u64,
}

pub async fn purge_tracking(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<PurgeRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "purge_tracking");
    let events = state.purge_tracking(request.older_than_ms).await?;
    Ok(Json(json!({ "events": events })))
}

pub async fn status(State(state): State<SharedState>) -> Json<JsonValue> {
    state.count_request(Api::Http, "status");
    Json(views::status(&state))
}
