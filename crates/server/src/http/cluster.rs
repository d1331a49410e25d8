//! The replica set over HTTP: `GET /v1/cluster` (this node's view, members, failover
//! history), `POST /v1/cluster/switchover`, and the load-balancer health checks
//! `GET /health/active` and `GET /health/passive`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

use crate::cluster::ClusterView;
use crate::disk_space::DiskGuard;
use crate::errors::ApiError;
use crate::http::extract::JsonBody;
use crate::metrics::Api;
use crate::state::SharedState;

pub async fn view(State(state): State<SharedState>) -> Result<Json<JsonValue>, ApiError> {
    state.count_request(Api::Http, "cluster");
    Ok(Json(cluster_json(
        &state.cluster_view().await?,
        &state.disk,
        state.replica.time().own_offset_ms(),
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// The node to hand the active role to; the most up-to-date passive when absent.
    pub to: Option<u64>,
}

pub async fn switchover(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<SwitchoverRequest>,
) -> Result<Json<JsonValue>, ApiError> {
    state.count_request(Api::Http, "switchover");
    let active = state.replica.switchover(request.to).await?;
    Ok(Json(json!({ "active_node": active })))
}

pub async fn health_active(State(state): State<SharedState>) -> Response {
    state.count_request(Api::Http, "health_active");
    verdict(state.is_serving_active(), "active", &state)
}

pub async fn health_passive(State(state): State<SharedState>) -> Response {
    state.count_request(Api::Http, "health_passive");
    verdict(state.is_in_sync_passive(), "passive", &state)
}

fn verdict(healthy: bool, wanted: &str, state: &SharedState) -> Response {
    let status = state.replica.status();
    let body = Json(json!({
        "status": if healthy { "ok" } else { "no" },
        "wanted": wanted,
        "role": status.role.as_str(),
        "node_id": status.node_id,
        "term": status.term,
    }));
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
}

fn cluster_json(view: &ClusterView, disk: &DiskGuard, clock_offset_ms: Option<i64>) -> JsonValue {
    let status = &view.status;
    json!({
        "node_id": status.node_id,
        "role": status.role.as_str(),
        "term": status.term,
        "last_log_index": status.last_log_index,
        "committed_index": status.committed_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "purged_index": status.purged_index,
        "active_node": status.active,
        "initialized": status.initialized,
        "members": status.members,
        "failovers": view.failovers,
        "disk_room_bytes": disk.room_bytes(),
        "min_free_disk_bytes": disk.min_free_bytes(),
        "disk_low": disk.is_low(),
        "clock_offset_ms": clock_offset_ms,
        "quorum_acknowledged_ms_ago": status.quorum_acknowledged_ms_ago,
    })
}
