//! The bindings file: which hosts exist, the receive locations that publish into the
//! message box, and the send ports that deliver out of it (each send port is a
//! subscription of its host's queue).
//!
//! [`Bindings::load`] reads and checks the whole file before anything is used: every
//! problem is reported with its line and column (all of them at once, not just the first),
//! and a file with any problem yields no bindings at all. Relative paths are resolved
//! against the folder of the bindings file.
//!
//! ```toml
//! [[host]]
//! name = "orders"
//!
//! [[receive_location]]
//! name = "orders-inbox"
//! host = "orders"
//! adapter = "file"              # or "http", address "127.0.0.1:8080/orders"
//! address = "inbox"
//! pattern = "*.json"
//! promote = [{ property = "MessageType", from = "json:/type" }]
//!
//! [[send_port]]
//! name = "big-orders"
//! host = "orders"
//! filter = 'MessageType == "Order" and Total > 1000'
//! adapter = "file"
//! address = "out/big"
//! retry_count = 3
//! retry_interval = "5m"
//! backup = { adapter = "http", address = "http://127.0.0.1:9000/orders", retry_count = 1 }
//! ```

mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_core::subscription::RetryPolicy;

use crate::file_name::{FileNameTemplate, Glob};
use crate::promotion::Promotion;

/// A checked bindings file.
#[derive(Clone, Debug, PartialEq)]
pub struct Bindings {
    pub hosts: Vec<String>,
    pub receive_locations: Vec<ReceiveLocation>,
    pub send_ports: Vec<SendPort>,
}

/// An adapter endpoint that publishes what arrives into the message box.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiveLocation {
    pub name: String,
    /// Instances of this host run the location.
    pub host: String,
    pub enabled: bool,
    pub endpoint: ReceiveEndpoint,
    pub promotions: Vec<Promotion>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReceiveEndpoint {
    File(FileReceive),
    Http(HttpReceive),
}

/// A drop folder polled for files whose names match `pattern`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileReceive {
    pub folder: PathBuf,
    pub pattern: Glob,
    /// Where a published file is moved; without one it is deleted.
    pub archive: Option<PathBuf>,
    pub poll_interval: Duration,
}

/// A POST endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpReceive {
    pub listen: SocketAddr,
    pub path: String,
}

/// A subscription of its host's queue and the transports that deliver what it receives.
#[derive(Clone, Debug, PartialEq)]
pub struct SendPort {
    pub name: String,
    pub host: String,
    /// A disabled port has no subscription: nothing is routed to it.
    pub enabled: bool,
    pub filter: String,
    pub priority: u8,
    pub transport: Transport,
    pub retry: RetryPolicy,
    /// Used once the primary transport's retries are exhausted, before suspension.
    pub backup: Option<BackupTransport>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackupTransport {
    pub transport: Transport,
    pub retry: RetryPolicy,
}

/// How a send port delivers one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    /// An atomic write into `folder`.
    File {
        folder: PathBuf,
        file_name: FileNameTemplate,
    },
    /// A POST; any 2xx answer means delivered.
    Http { url: HttpUrl },
}

/// An `http://host:port/path` address (plain HTTP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`, for connecting and for the Host header.
    pub authority: String,
    /// Starts with '/'.
    pub path: String,
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "http://{}{}", self.authority, self.path)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::File { folder, .. } => write!(formatter, "file {}", folder.display()),
            Transport::Http { url } => write!(formatter, "http {url}"),
        }
    }
}

impl Bindings {
    /// Reads and checks the bindings file at `path`.
    pub fn load(path: &Path) -> Result<Bindings, BindingsError> {
        let source = std::fs::read_to_string(path).map_err(|error| BindingsError {
            file: path.display().to_string(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the bindings file: {error}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Bindings::parse(&source, base, &path.display().to_string())
    }

    /// Checks `source`; relative paths are resolved against `base`, and problems name
    /// `file`.
    pub fn parse(source: &str, base: &Path, file: &str) -> Result<Bindings, BindingsError> {
        validate::check(source, base).map_err(|problems| BindingsError {
            file: file.to_string(),
            problems,
        })
    }

    /// The receive locations that instances of `host` run.
    pub fn receive_locations_of<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = &'a ReceiveLocation> + 'a {
        self.receive_locations
            .iter()
            .filter(move |location| location.host == host)
    }

    /// The send ports whose messages instances of `host` deliver.
    pub fn send_ports_of<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a SendPort> + 'a {
        self.send_ports.iter().filter(move |port| port.host == host)
    }
}

/// Everything wrong with a bindings file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingsError {
    pub file: String,
    pub problems: Vec<Problem>,
}

/// One problem, at a 1-based line and column (0 when it concerns the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for BindingsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            match problem.line {
                0 => write!(formatter, "{}: {}", self.file, problem.message)?,
                line => write!(
                    formatter,
                    "{}:{line}:{}: {}",
                    self.file, problem.column, problem.message
                )?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for BindingsError {}
