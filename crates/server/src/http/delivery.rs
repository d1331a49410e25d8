//! Leases and their verdicts over HTTP: `POST /v1/hosts/{host}/lease`,
//! `POST /v1/instances/{id}/renew|complete|abandon|fail` and `POST /v1/settle` (a batch).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tandem_core::{Command, Outcome};

use crate::errors::{ApiError, to_json};
use crate::http::extract::{JsonBody, PathParam};
use crate::http::views;
use crate::metrics::Api;
use crate::operations::{
    LeaseOrder, Settled, Settlement, Verdict, lease_duration_or_default, unexpected_outcome,
};
use crate::state::SharedState;

/// The lease holder recorded when an HTTP caller names none.
pub const DEFAULT_HTTP_HOLDER: &str = "http";

type JsonResult = Result<Json<JsonValue>, ApiError>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub holder: Option<String>,
    pub max_messages: Option<u32>,
    pub lease_duration_ms: Option<u64>,
    pub wait_ms: Option<u64>,
}

pub async fn lease(
    State(state): State<SharedState>,
    PathParam(host): PathParam<String>,
    JsonBody(request): JsonBody<LeaseRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "lease");
    let order = LeaseOrder::new(
        host,
        request
            .holder
            .unwrap_or_else(|| DEFAULT_HTTP_HOLDER.to_string()),
        request.max_messages.unwrap_or(0),
        request.lease_duration_ms.unwrap_or(0),
    );
    let wait = Duration::from_millis(request.wait_ms.unwrap_or(0));
    let leased = state
        .lease_waiting(&order, wait, std::future::pending())
        .await?;
    let messages: Vec<JsonValue> = leased.iter().map(views::leased_message).collect();
    Ok(Json(json!({ "messages": messages })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub token: u64,
    pub lease_duration_ms: Option<u64>,
}

pub async fn renew(
    State(state): State<SharedState>,
    PathParam(instance): PathParam<u64>,
    JsonBody(request): JsonBody<RenewRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "renew_lease");
    let command = Command::RenewLease {
        instance,
        token: request.token,
        lease_duration_ms: lease_duration_or_default(request.lease_duration_ms.unwrap_or(0)),
    };
    match state.execute(command).await? {
        Outcome::LeaseRenewed { expires_at_ms } => {
            Ok(Json(json!({ "expires_at_ms": expires_at_ms })))
        }
        _ => Err(ApiError(unexpected_outcome("renew lease"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    pub token: u64,
}

pub async fn complete(
    State(state): State<SharedState>,
    PathParam(instance): PathParam<u64>,
    JsonBody(request): JsonBody<SettleRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "complete");
    let token = request.token;
    state.execute(Command::Complete { instance, token }).await?;
    Ok(Json(json!({ "suspended": false })))
}

pub async fn abandon(
    State(state): State<SharedState>,
    PathParam(instance): PathParam<u64>,
    JsonBody(request): JsonBody<SettleRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "abandon");
    let token = request.token;
    state.execute(Command::Abandon { instance, token }).await?;
    Ok(Json(json!({ "suspended": false })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub token: u64,
    pub reason: String,
}

pub async fn fail(
    State(state): State<SharedState>,
    PathParam(instance): PathParam<u64>,
    JsonBody(request): JsonBody<FailRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "fail");
    let command = Command::Fail {
        instance,
        token: request.token,
        reason: request.reason,
    };
    match state.execute(command).await? {
        Outcome::Failed { suspended } => Ok(Json(json!({ "suspended": suspended }))),
        _ => Err(ApiError(unexpected_outcome("fail"))),
    }
}

/// `POST /v1/settle`: `{"settlements":[{"instance":1,"token":2,"verdict":"complete"}]}`,
/// verdict `complete`, `abandon` or `fail` (with `reason`). Answers
/// `{"results":[{"instance":1,"suspended":false}, {"instance":3,"error":{...}}]}` in
/// request order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleBatchRequest {
    pub settlements: Vec<SettlementRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementRequest {
    pub instance: u64,
    pub token: u64,
    pub verdict: VerdictName,
    /// For `fail`: why the delivery failed. Ignored otherwise.
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictName {
    Complete,
    Abandon,
    Fail,
}

impl SettlementRequest {
    fn settlement(self) -> Settlement {
        let verdict = match self.verdict {
            VerdictName::Complete => Verdict::Complete,
            VerdictName::Abandon => Verdict::Abandon,
            VerdictName::Fail => Verdict::Fail(self.reason.unwrap_or_default()),
        };
        Settlement {
            instance: self.instance,
            token: self.token,
            verdict,
        }
    }
}

pub async fn settle(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<SettleBatchRequest>,
) -> JsonResult {
    state.count_request(Api::Http, "settle");
    let settlements = request
        .settlements
        .into_iter()
        .map(|settlement| (settlement.instance, Ok(settlement.settlement())))
        .collect();
    let results: Vec<JsonValue> = state
        .settle_batch(settlements)
        .await?
        .into_iter()
        .map(|(instance, result)| settlement_result(instance, result))
        .collect();
    Ok(Json(json!({ "results": results })))
}

fn settlement_result(instance: u64, result: tandem_core::error::Result<Settled>) -> JsonValue {
    match result {
        Ok(settled) => json!({ "instance": instance, "suspended": settled.suspended }),
        Err(error) => json!({ "instance": instance, "error": to_json(&error) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::parse_json;
    use axum::http::HeaderValue;

    fn parse(body: &str) -> Result<SettleBatchRequest, ApiError> {
        parse_json(
            Some(&HeaderValue::from_static("application/json")),
            body.as_bytes(),
        )
    }

    #[test]
    fn verdicts_parse_by_name() {
        let request = parse(
            r#"{"settlements":[{"instance":1,"token":2,"verdict":"fail","reason":"r"},
                               {"instance":3,"token":4,"verdict":"abandon"}]}"#,
        )
        .expect("valid");
        let settlements: Vec<Settlement> = request
            .settlements
            .into_iter()
            .map(SettlementRequest::settlement)
            .collect();
        assert_eq!(settlements[0].verdict, Verdict::Fail("r".into()));
        assert_eq!(settlements[1].verdict, Verdict::Abandon);
    }

    #[test]
    fn unknown_verdicts_are_explained() {
        let error = parse(r#"{"settlements":[{"instance":1,"token":2,"verdict":"done"}]}"#)
            .expect_err("refused")
            .0;
        assert!(
            error.message.contains("unknown variant `done`"),
            "{}",
            error.message
        );
    }
}
