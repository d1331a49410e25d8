//! [`RecordingSink`]: an HTTP endpoint that accepts every POST and records it, standing in
//! for a partner system in `tandem demo` and in tests. It keeps each delivery (message id
//! from `x-tandem-message-id`, body) as it arrives and answers 200, so that a caller can
//! check that every message arrived and count the redeliveries an idempotent receiver
//! drops. While [`RecordingSink::hold_answers`] is on, it records but answers nothing,
//! like a partner that hangs.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::send::http::MESSAGE_ID_HEADER;

/// One POST the sink received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub body: Vec<u8>,
}

/// A running sink; stops serving when dropped.
pub struct RecordingSink {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    holding: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// What every connection of the sink shares.
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    holding: watch::Receiver<bool>,
}

impl RecordingSink {
    /// Serves on a free port of 127.0.0.1.
    pub async fn start() -> io::Result<RecordingSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let (holding, hold_watch) = watch::channel(false);
        let shared = Arc::new(Shared {
            received: Arc::clone(&received),
            holding: hold_watch,
        });
        let server = tokio::spawn(serve(listener, shared));
        Ok(RecordingSink {
            address,
            received,
            holding,
            server,
        })
    }

    /// While on, deliveries are recorded but not answered (the sender waits); turning it
    /// off answers every waiting one.
    pub fn hold_answers(&self, hold: bool) {
        self.holding.send_replace(hold);
    }

    /// `http://127.0.0.1:PORT/path`, for a send port's address.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for RecordingSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _peer)) = listener.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(record(request, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn record(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let message_id = request
        .headers()
        .get(MESSAGE_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"body not read")));
            *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return response;
        }
    };
    shared
        .received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Received { message_id, body });
    let mut holding = shared.holding.clone();
    let _ = holding.wait_for(|hold| !*hold).await;
    Response::new(Full::new(Bytes::from_static(b"ok")))
}
