//! `POST /v1/messages` (one message or a batch) and `GET /v1/messages/{id}/history`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as JsonValue, json};
use tandem_core::error::Result;
use tandem_core::message::NewMessage;
use tandem_core::outcome::PublishReceipt;
use tandem_core::{Error, MessageId};

use crate::errors::{ApiError, to_json};
use crate::http::extract::{JsonBody, PathParam};
use crate::http::{base64, properties, views};
use crate::metrics::Api;
use crate::state::SharedState;
use tandem_protocol::message_id::new_message_id;

/// One message in JSON. `body` is UTF-8 text; `body_base64` carries any bytes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    pub message_id: Option<String>,
    pub properties: Option<Map<String, JsonValue>>,
    pub body: Option<String>,
    pub body_base64: Option<String>,
}

/// A publish: either one message's fields, or `messages` (a batch), never both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub publisher: Option<String>,
    pub messages: Option<Vec<MessageRequest>>,
    pub message_id: Option<String>,
    pub properties: Option<Map<String, JsonValue>>,
    pub body: Option<String>,
    pub body_base64: Option<String>,
}

impl PublishRequest {
    fn has_single_message_fields(&self) -> bool {
        self.message_id.is_some()
            || self.properties.is_some()
            || self.body.is_some()
            || self.body_base64.is_some()
    }
}

pub async fn publish(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(request): JsonBody<PublishRequest>,
) -> std::result::Result<Response, ApiError> {
    state.count_request(Api::Http, "publish");
    let publisher = request
        .publisher
        .clone()
        .unwrap_or_else(|| format!("http:{peer}"));
    if request.messages.is_some() && request.has_single_message_fields() {
        return Err(ApiError::invalid(
            "send either one message's fields or \"messages\" (a batch), not both",
        ));
    }
    match request.messages {
        Some(batch) => publish_batch(&state, publisher, batch).await,
        None => {
            let single = MessageRequest {
                message_id: request.message_id,
                properties: request.properties,
                body: request.body,
                body_base64: request.body_base64,
            };
            publish_single(&state, publisher, single).await
        }
    }
}

async fn publish_single(
    state: &SharedState,
    publisher: String,
    message: MessageRequest,
) -> std::result::Result<Response, ApiError> {
    let (_, message) = new_message(message);
    let mut published = state.publish(publisher, vec![message]).await?;
    match published.results.pop() {
        Some(Ok(receipt)) => {
            let mut view = views::receipt(&receipt);
            view["acknowledgement"] = views::acknowledgement(published.acknowledgement);
            Ok(Json(view).into_response())
        }
        Some(Err(error)) => Err(ApiError(error)),
        None => Err(ApiError(Error::unavailable("the store answered no result"))),
    }
}

async fn publish_batch(
    state: &SharedState,
    publisher: String,
    batch: Vec<MessageRequest>,
) -> std::result::Result<Response, ApiError> {
    crate::operations::check_batch_size(batch.len())?;
    let (message_ids, messages): (Vec<_>, Vec<_>) = batch.into_iter().map(new_message).unzip();
    let published = state.publish(publisher, messages).await?;
    let results: Vec<JsonValue> = message_ids
        .iter()
        .zip(published.results)
        .map(|(message_id, result)| batch_result(message_id, result))
        .collect();
    let acknowledgement = views::acknowledgement(published.acknowledgement);
    Ok(Json(json!({ "results": results, "acknowledgement": acknowledgement })).into_response())
}

fn batch_result(message_id: &str, result: Result<PublishReceipt>) -> JsonValue {
    match result {
        Ok(receipt) => views::receipt(&receipt),
        Err(error) => json!({ "message_id": message_id, "error": to_json(&error) }),
    }
}

/// The message's id (given or generated) and the message, or why it cannot be published.
fn new_message(request: MessageRequest) -> (String, Result<NewMessage>) {
    let message_id = request.message_id.unwrap_or_else(new_message_id);
    let message = message_body(request.body, request.body_base64)
        .and_then(|body| {
            let properties = properties::from_json(request.properties.unwrap_or_default())?;
            Ok(NewMessage {
                message_id: MessageId(message_id.clone()),
                body,
                properties,
            })
        })
        .map_err(|error| Error {
            message: format!("message '{message_id}': {}", error.message),
            ..error
        });
    (message_id, message)
}

fn message_body(text: Option<String>, encoded: Option<String>) -> Result<Vec<u8>> {
    match (text, encoded) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "give the body as \"body\" (text) or \"body_base64\", not both",
        )),
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(encoded)) => base64::decode(&encoded)
            .map_err(|reason| Error::invalid(format!("body_base64 is not valid base64: {reason}"))),
        (None, None) => Ok(Vec::new()),
    }
}

pub async fn history(
    State(state): State<SharedState>,
    PathParam(message_id): PathParam<String>,
) -> std::result::Result<Json<JsonValue>, ApiError> {
    state.count_request(Api::Http, "message_history");
    let history = state.store.message_history(message_id).await?;
    Ok(Json(views::history(&history, &state.store.catalog())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_from_text_or_base64_not_both() {
        assert_eq!(message_body(Some("hi".into()), None), Ok(b"hi".to_vec()));
        assert_eq!(message_body(None, Some("aGk=".into())), Ok(b"hi".to_vec()));
        assert!(message_body(Some("a".into()), Some("YQ==".into())).is_err());
        let error = message_body(None, Some("**".into())).unwrap_err();
        assert!(error.message.contains("base64"), "{}", error.message);
    }

    #[test]
    fn missing_ids_are_generated() {
        let (message_id, message) = new_message(MessageRequest::default());
        assert!(!message_id.is_empty());
        assert_eq!(message.expect("valid").message_id.as_str(), message_id);
    }
}
