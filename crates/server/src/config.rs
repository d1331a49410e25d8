//! [`NodeConfig`]: everything a node needs to start, loaded from a TOML file. Every field
//! has a default, so an empty file (or no file) gives a working node on localhost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tandem_cluster::settings::{self, ReplicaSettings};
use tandem_cluster::{Member, NodeId};
use tandem_core::limits;
use tandem_core::settings::Settings;

use crate::ServerError;

/// Where a node keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./tandem-data";
/// The gRPC data plane's default address.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7400";
/// The HTTP/JSON API's default address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7401";
/// The default address replication between members listens on.
pub const DEFAULT_RAFT_LISTEN: &str = "127.0.0.1:7402";
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
    /// While the room left under `data_dir` (free disk space less what the next snapshot of
    /// the store will write) is below this, the active refuses publishes as throttled; 0
    /// turns it off.
    pub min_free_disk_bytes: u64,
    pub routing_failure_queue: bool,
    pub tracking: bool,
    /// Tracking events older than this are purged automatically; 0 keeps them.
    pub tracking_retention_ms: u64,
    /// How often the node applies `Command::Tick` (lease expiry, due retries).
    pub tick_interval_ms: u64,
    /// This node's id in its replica set: unique, and never reused after a removal.
    pub node_id: u64,
    /// Where replication between members listens.
    pub raft_listen: SocketAddr,
    /// The host other members and clients use to reach this node; by default the host of
    /// each listen address (set it when listening on 0.0.0.0).
    pub advertise_host: Option<String>,
    /// On first start, with nothing in its log, form a one-node replica set. Turn it off on
    /// nodes that `tandem cluster init` forms together or that join an existing set.
    pub bootstrap: bool,
    /// Replication timings (see `tandem node start --help`).
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A write that has not reached a majority after this long answers `no_quorum`.
    pub write_timeout_ms: u64,
    /// An active whose writes no majority confirmed in time for this long hands its role
    /// over by itself; 0 never does.
    pub hand_over_after_ms: u64,
    /// A snapshot is taken (and the log before it purged) after at least this many log
    /// entries ...
    pub snapshot_every_entries: u64,
    /// ... and once the log has written at least this percentage of the store's size since
    /// the last snapshot (0: count entries only).
    pub snapshot_min_log_percent: u64,
    /// Peers this node dials at another replication address than the one they advertise,
    /// by node id (`[peer_routes]` table: `2 = "10.0.0.7:7402"`): for tunnels and NATs, and
    /// for the fault-injecting proxies of the partition tests.
    pub peer_routes: BTreeMap<String, String>,
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
            min_free_disk_bytes: limits::DEFAULT_MIN_FREE_DISK_BYTES,
            routing_failure_queue: false,
            tracking: true,
            tracking_retention_ms: limits::DEFAULT_TRACKING_RETENTION_MS,
            tick_interval_ms: DEFAULT_TICK_INTERVAL_MS,
            node_id: 1,
            raft_listen: default_address(DEFAULT_RAFT_LISTEN, 7402),
            advertise_host: None,
            bootstrap: true,
            heartbeat_interval_ms: settings::DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: settings::DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: settings::DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            write_timeout_ms: settings::DEFAULT_WRITE_TIMEOUT_MS,
            hand_over_after_ms: settings::DEFAULT_HAND_OVER_AFTER_MS,
            snapshot_every_entries: settings::DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            snapshot_min_log_percent: settings::DEFAULT_SNAPSHOT_MIN_LOG_PERCENT,
            peer_routes: BTreeMap::new(),
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

    /// Who this node is in its replica set, given the addresses it actually listens on.
    pub fn replica_settings(
        &self,
        grpc: SocketAddr,
        http: SocketAddr,
        raft: SocketAddr,
    ) -> ReplicaSettings {
        let advertised = |address: SocketAddr| match &self.advertise_host {
            Some(host) => format!("{host}:{}", address.port()),
            None => address.to_string(),
        };
        let member = Member {
            raft_address: advertised(raft),
            grpc_address: advertised(grpc),
            http_address: advertised(http),
        };
        ReplicaSettings {
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            write_timeout_ms: self.write_timeout_ms,
            hand_over_after_ms: self.hand_over_after_ms,
            snapshot_every_entries: self.snapshot_every_entries,
            snapshot_min_log_percent: self.snapshot_min_log_percent,
            peer_routes: self
                .peer_routes
                .iter()
                .filter_map(|(node, address)| Some((node.parse().ok()?, address.clone())))
                .collect(),
            ..ReplicaSettings::new(self.node_id as NodeId, member)
        }
    }

    /// Checks what the store does not: the node's own values.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.node_id == 0 {
            return Err(ServerError::InvalidConfig(
                "node_id must be at least 1".into(),
            ));
        }
        if let Some(node) = self
            .peer_routes
            .keys()
            .find(|node| node.parse::<u64>().is_err())
        {
            return Err(ServerError::InvalidConfig(format!(
                "peer_routes: '{node}' is not a node id (a number)"
            )));
        }
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        self.replica_settings(unbound, unbound, unbound)
            .raft_config()
            .map_err(|error| ServerError::InvalidConfig(error.to_string()))?;
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
    fn the_hand_over_delay_reaches_the_replica_settings() {
        let address: SocketAddr = "127.0.0.1:7400".parse().expect("address");
        let default = NodeConfig::default().replica_settings(address, address, address);
        assert_eq!(
            default.hand_over_after_ms,
            settings::DEFAULT_HAND_OVER_AFTER_MS
        );
        let never = load_text("hand_over_after_ms = 0\n").expect("config");
        let settings = never.replica_settings(address, address, address);
        assert_eq!(settings.hand_over_after_ms, 0);
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
