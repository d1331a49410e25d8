//! HTTP send: POSTs a message's body to a URL with its id in `x-tandem-message-id`, so a
//! receiver can drop a redelivery it has already seen. Any 2xx answer means delivered;
//! anything else, or no answer within [`limits::HTTP_SEND_TIMEOUT_MS`], is a failed
//! attempt whose reason is recorded in the message's tracking history.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tandem_core::limits;
use tokio::net::TcpStream;

use crate::bindings::HttpUrl;
use crate::send::Delivery;

/// The header carrying the message id.
pub const MESSAGE_ID_HEADER: &str = "x-tandem-message-id";
/// The header carrying the delivery attempt (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-tandem-attempt";
/// Bytes of an error answer's body quoted in the failure reason.
const QUOTED_ANSWER_BYTES: usize = 200;

pub async fn deliver(url: &HttpUrl, delivery: &Delivery) -> Result<(), String> {
    let timeout = Duration::from_millis(limits::HTTP_SEND_TIMEOUT_MS);
    match tokio::time::timeout(timeout, post(url, delivery)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(format!(
            "POST {url}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn post(url: &HttpUrl, delivery: &Delivery) -> Result<(), String> {
    let stream = TcpStream::connect(&url.authority)
        .await
        .map_err(|error| format!("POST {url}: cannot connect: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("POST {url}: {error}"))?;
    tokio::spawn(connection);
    let request = Request::post(url.path.as_str())
        .header(HOST, url.authority.as_str())
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, delivery.body.len())
        .header(MESSAGE_ID_HEADER, delivery.message_id.as_str())
        .header(ATTEMPT_HEADER, delivery.attempt)
        .body(Full::new(Bytes::from(delivery.body.clone())))
        .map_err(|error| format!("POST {url}: {error}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("POST {url}: {error}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer = response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let quoted = String::from_utf8_lossy(&answer[..answer.len().min(QUOTED_ANSWER_BYTES)]);
    Err(format!("POST {url}: answered {status}: {}", quoted.trim()))
}
