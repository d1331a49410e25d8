//! Test support: start a node in a temporary directory, gRPC clients, a raw HTTP client.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tandem_protocol::v1;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tandem_server::{Node, NodeConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// No test may run longer than this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Ticks run fast in tests so that expired leases come back quickly.
pub const TEST_TICK_INTERVAL_MS: u64 = 50;

pub struct TestNode {
    pub node: Node,
    pub data_dir: TempDir,
}

impl TestNode {
    pub async fn start(customize: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let any_port = "127.0.0.1:0".parse().expect("address");
        let mut config = NodeConfig {
            data_dir: data_dir.path().to_path_buf(),
            grpc_listen: any_port,
            http_listen: any_port,
            raft_listen: any_port,
            tick_interval_ms: TEST_TICK_INTERVAL_MS,
            ..NodeConfig::default()
        };
        customize(&mut config);
        let node = Node::start(config).await.expect("node starts");
        TestNode { node, data_dir }
    }

    /// Stops the node and starts it again on its ports and data, with `customize` applied to
    /// the test configuration.
    pub async fn restart(self, customize: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let TestNode { node, data_dir } = self;
        let mut config = NodeConfig {
            data_dir: data_dir.path().to_path_buf(),
            grpc_listen: node.grpc_address(),
            http_listen: node.http_address(),
            raft_listen: node.raft_address(),
            tick_interval_ms: TEST_TICK_INTERVAL_MS,
            ..NodeConfig::default()
        };
        customize(&mut config);
        node.shutdown().await;
        let node = Node::start(config).await.expect("node starts again");
        TestNode { node, data_dir }
    }

    pub async fn message_box(&self) -> MessageBoxClient<Channel> {
        MessageBoxClient::connect(format!("http://{}", self.node.grpc_address()))
            .await
            .expect("gRPC connection")
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(format!("http://{}", self.node.grpc_address()))
            .await
            .expect("gRPC connection")
    }

    pub fn http(&self) -> SocketAddr {
        self.node.http_address()
    }

    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }
}

/// Runs a test body within [`TEST_TIMEOUT`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish in time")
}

/// Creates a host and a subscription on it with the given filter.
pub async fn host_with_subscription(node: &TestNode, host: &str, filter: &str) {
    let mut admin = node.admin().await;
    admin
        .create_host(v1::CreateHostRequest { name: host.into() })
        .await
        .expect("host created");
    admin
        .create_subscription(v1::CreateSubscriptionRequest {
            host: host.into(),
            filter: filter.into(),
            ..Default::default()
        })
        .await
        .expect("subscription created");
}

pub fn string_property(name: &str, value: &str) -> v1::Property {
    v1::Property {
        name: name.as_bytes().to_vec(),
        value: Some(v1::property::Value::StringValue(value.into())),
        written: false,
    }
}

pub fn order_message(message_id: &str, body: &[u8]) -> v1::PublishMessage {
    v1::PublishMessage {
        message_id: message_id.into(),
        body: body.to_vec(),
        properties: vec![string_property("MessageType", "Order")],
    }
}

pub async fn publish(node: &TestNode, messages: Vec<v1::PublishMessage>) -> Vec<v1::PublishResult> {
    node.message_box()
        .await
        .publish(v1::PublishRequest {
            publisher: "tests".into(),
            messages,
        })
        .await
        .expect("publish call succeeds")
        .into_inner()
        .results
}

pub async fn status(node: &TestNode) -> v1::StatusResponse {
    node.admin()
        .await
        .status(v1::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// The stable error code a failed gRPC call carries.
pub fn error_code(status: &tonic::Status) -> String {
    status
        .metadata()
        .get(tandem_protocol::ERROR_CODE_METADATA)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A JSON request (`body` may be empty for none).
pub async fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> HttpResponse {
    let content_type = (!body.is_empty()).then_some("application/json");
    http_raw(address, method, path, content_type, body.as_bytes()).await
}

/// Any request: explicit content type (or none) and raw body bytes.
pub async fn http_raw(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(address).await.expect("HTTP connection");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write head");
    // The server may answer (e.g. 413) and close before reading a large body.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    parse_response(&answer)
}

fn parse_response(answer: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut text: &str) -> String {
    let mut body = String::new();
    while let Some((size_line, rest)) = text.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        body.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    body
}
