//! HTTP receive: a POST endpoint. Each request body is one message; the answer is sent
//! only after the durable acknowledgement:
//!
//! - `202 Accepted` with `{"message_id": …, "duplicate": …}` once stored;
//! - `503 Service Unavailable` with `Retry-After` while no active node can store it (the
//!   sender tries again later; sending the same `x-tandem-message-id` makes that safe);
//! - `4xx` with `{"error": {"code", "message"}}` when the message box refuses the message
//!   itself (no subscription matches, a property of the wrong type, too large);
//! - `404` for other paths, `405` for other methods.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tandem_client::{ClientError, TandemClient, new_message_id};
use tandem_core::limits;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bindings::{HttpReceive, ReceiveLocation};
use crate::promotion::{Arrival, promote};
use crate::receive::{PublishOutcome, publish};
use crate::send::http::MESSAGE_ID_HEADER;

/// Seconds a sender is told to wait when no active node is reachable.
const RETRY_AFTER_SECONDS: &str = "1";

/// A bound endpoint, ready to serve.
pub struct HttpEndpoint {
    listener: TcpListener,
    handler: Arc<Handler>,
}

struct Handler {
    location: ReceiveLocation,
    path: String,
    client: TandemClient,
}

impl HttpEndpoint {
    /// Binds the listen address now, so that a port in use stops the host instance at
    /// start with a clear error instead of later.
    pub async fn bind(
        location: &ReceiveLocation,
        http: &HttpReceive,
        client: TandemClient,
    ) -> io::Result<HttpEndpoint> {
        let listener = TcpListener::bind(http.listen).await.map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "receive location '{}' cannot listen on {}: {error}",
                    location.name, http.listen
                ),
            )
        })?;
        let handler = Arc::new(Handler {
            location: location.clone(),
            path: http.path.clone(),
            client,
        });
        Ok(HttpEndpoint { listener, handler })
    }

    pub fn local_address(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            let Ok((stream, _peer)) = accepted else {
                continue;
            };
            let handler = Arc::clone(&self.handler);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(handler.handle(request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!("an HTTP receive connection ended: {error}");
                }
            });
        }
    }
}

impl Handler {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != self.path {
            return answer(
                StatusCode::NOT_FOUND,
                error_json("not_found", "no receive location at this path"),
            );
        }
        if request.method() != Method::POST {
            let mut response = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                error_json("method_not_allowed", "POST a message body here"),
            );
            response
                .headers_mut()
                .insert(ALLOW, "POST".parse().expect("a header value"));
            return response;
        }
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();
        let body_limit = usize::try_from(limits::MAX_BODY_BYTES_CEILING).unwrap_or(usize::MAX);
        let body = match Limited::new(request.into_body(), body_limit)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(error) => {
                let message = format!("cannot read the body: {error}");
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    error_json("invalid_argument", &message),
                );
            }
        };
        self.publish(body, &headers).await
    }

    async fn publish(&self, body: Vec<u8>, headers: &[(String, String)]) -> Response<Full<Bytes>> {
        let arrival = Arrival {
            body: &body,
            headers,
            file_name: None,
        };
        let properties = match promote(&self.location.promotions, arrival) {
            Ok(properties) => properties,
            Err(reason) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    error_json("invalid_argument", &reason),
                );
            }
        };
        let message_id = headers
            .iter()
            .find(|(name, _)| name == MESSAGE_ID_HEADER)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(new_message_id);
        match publish(
            &self.client,
            &self.location.name,
            &message_id,
            body,
            properties,
        )
        .await
        {
            PublishOutcome::Stored { duplicate } => {
                let json = serde_json::json!({ "message_id": message_id, "duplicate": duplicate });
                answer(StatusCode::ACCEPTED, json)
            }
            PublishOutcome::Refused(error) => refusal(&error),
            PublishOutcome::Unavailable(error) => {
                tracing::warn!(location = %self.location.name, "answering 503: {error}");
                let mut response = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_json(&error.code, &error.message),
                );
                response.headers_mut().insert(
                    RETRY_AFTER,
                    RETRY_AFTER_SECONDS.parse().expect("a header value"),
                );
                response
            }
        }
    }
}

/// The status for a message the message box refused.
fn refusal(error: &ClientError) -> Response<Full<Bytes>> {
    let status = match error.code.as_str() {
        "invalid_argument" => StatusCode::BAD_REQUEST,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    answer(status, error_json(&error.code, &error.message))
}

fn error_json(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

fn answer(status: StatusCode, json: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a header value"),
    );
    response
}
