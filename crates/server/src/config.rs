//! [`NodeConfig`]: everything a node needs to start, loaded from a TOML file. Every field
//! has a default, so an empty file (or no file) gives a working node on localhost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tandem_core::limits;
use tandem_core::settings::Settings;

use crate::ServerError;

/// Where a node keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./tandem-data";
/// The gRPC data plane's default address.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7400";
/// The HTTP/JSON API's default address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7401";
/// How often the node applies `Command::Tick` by default.
pub const DEFAULT_TICK_INTERVAL_MS: u64 = 200;
/// The slowest tick allowed: leases must expire within a reasonable delay.

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub dedupe_window_ms: u64,
    pub throttle_message_count: u64,
    pub routing_failure_queue: bool,
    pub tracking: bool,
    /// Tracking events older than this are purged automatically; 0 keeps them.
    pub tracking_retention_ms: u64,
    /// How often the node applies `Command::Tick` (lease expiry, due retries).
    pub tick_interval_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            grpc_listen: default_address(DEFAULT_GRPC_LISTEN, 7400),
            http_listen: default_address(DEFAULT_HTTP_LISTEN, 7401),
            max_body_bytes: limits::DEFAULT_MAX_BODY_BYTES,
            dedupe_window_ms: limits::DEFAULT_DEDUPE_WINDOW_MS,
            throttle_message_count: limits::DEFAULT_THROTTLE_MESSAGE_COUNT,
            routing_failure_queue: false,
            tracking: true,
            tracking_retention_ms: limits::DEFAULT_TRACKING_RETENTION_MS,
            tick_interval_ms: DEFAULT_TICK_INTERVAL_MS,
        }
    }
}

fn default_address(text: &str, port: u16) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], port)))
}

impl NodeConfig {
    /// Reads a TOML file; errors name the file, and for syntax errors the line and column.
    pub fn load(path: &Path) -> Result<NodeConfig, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let config: NodeConfig =
            toml::from_str(&text).map_err(|error| ServerError::ConfigParse {
                path: path.to_path_buf(),
                message: error.to_string().trim_end().to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The replicated settings this configuration asks for.
    pub fn settings(&self) -> Settings {
        Settings {
            max_body_bytes: self.max_body_bytes,
            dedupe_window_ms: self.dedupe_window_ms,
            throttle_message_count: self.throttle_message_count,
            routing_failure_queue: self.routing_failure_queue,
            tracking: self.tracking,
            tracking_retention_ms: self.tracking_retention_ms,
        }
    }

    /// Checks what the store does not: the node's own values.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.tick_interval_ms == 0 || self.tick_interval_ms > limits::MAX_TICK_INTERVAL_MS {
            return Err(ServerError::InvalidConfig(format!(
                "tick_interval_ms is {}; it must be between 1 and {}",
                self.tick_interval_ms,
                limits::MAX_TICK_INTERVAL_MS
            )));
        }
        tandem_core::validate::settings(&self.settings())
            .map_err(|error| ServerError::InvalidConfig(error.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<NodeConfig, ServerError> {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("tandem.toml");
        std::fs::write(&path, text).expect("write config");
        NodeConfig::load(&path)
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(load_text("").expect("config"), NodeConfig::default());
        assert_eq!(
            NodeConfig::default().grpc_listen.to_string(),
            DEFAULT_GRPC_LISTEN
        );
    }

    #[test]
    fn values_override_defaults() {
        let config =
            load_text("max_body_bytes = 1024\ngrpc_listen = \"127.0.0.1:0\"\n").expect("config");
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.grpc_listen.port(), 0);
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let error = load_text("tracking = true\nmax_body_bytes = \"big\"\n")
            .expect_err("wrong type")
            .to_string();
        assert!(error.contains("tandem.toml"), "{error}");
        assert!(error.contains("line 2, column"), "{error}");
    }

    #[test]
    fn unknown_settings_are_refused() {
        let error = load_text("trackign = true\n")
            .expect_err("typo")
            .to_string();
        assert!(error.contains("trackign"), "{error}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let error = load_text("tick_interval_ms = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(error.contains("tick_interval_ms"), "{error}");
    }
}
