//! [`ServerError`]: why a node could not start, or stopped abnormally, in words an operator
//! can act on.

use std::net::SocketAddr;
use std::path::PathBuf;

use tandem_store::StoreError;

#[derive(Debug)]
pub enum ServerError {
    /// The configuration file could not be read.
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or names unknown settings; the message
    /// names the line and column.
    ConfigParse { path: PathBuf, message: String },
    /// A configuration value is out of range.
    InvalidConfig(String),
    /// A listener could not be bound.
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The store in the data directory could not be opened.
    Store {
        data_dir: PathBuf,
        source: StoreError,
    },
    /// Replication could not start.
    Replication(String),
    /// Replication stopped while the node ran (its store failed): the node must restart.
    ReplicationStopped(String),
    /// Waiting for SIGINT or SIGTERM failed.
    Signal(std::io::Error),
    /// A task the node needs could not run.
    Internal(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::ConfigRead { path, source } => {
                write!(
                    formatter,
                    "cannot read config file {}: {source}",
                    path.display()
                )
            }
            ServerError::ConfigParse { path, message } => {
                write!(
                    formatter,
                    "invalid config file {}: {message}",
                    path.display()
                )
            }
            ServerError::InvalidConfig(message) => write!(formatter, "invalid config: {message}"),
            ServerError::Listen { address, source } => {
                write!(
                    formatter,
                    "cannot listen on {address}: {}",
                    listen_reason(source)
                )
            }
            ServerError::Store { data_dir, source } => write!(
                formatter,
                "cannot open the store in {}: {source}",
                data_dir.display()
            ),
            ServerError::Replication(message) => write!(formatter, "replication: {message}"),
            ServerError::ReplicationStopped(reason) => write!(
                formatter,
                "replication stopped on this node ({reason}); the node exits so that it can be \
                 restarted: it then replays its log from the last position its store committed"
            ),
            ServerError::Signal(source) => {
                write!(formatter, "cannot wait for shutdown signals: {source}")
            }
            ServerError::Internal(message) => write!(formatter, "internal error: {message}"),
        }
    }
}

fn listen_reason(source: &std::io::Error) -> String {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => "address in use".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => source.to_string(),
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::ConfigRead { source, .. }
            | ServerError::Listen { source, .. }
            | ServerError::Signal(source) => Some(source),
            ServerError::Store { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_in_use_reads_plainly() {
        let error = ServerError::Listen {
            address: "127.0.0.1:7400".parse().expect("address"),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            error.to_string(),
            "cannot listen on 127.0.0.1:7400: address in use"
        );
    }
}
