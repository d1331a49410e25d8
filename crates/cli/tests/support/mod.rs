//! Test support: real `tandem node` processes on 127.0.0.1, and clients for them. Every
//! process guard kills its process when dropped, so no test leaves a node behind.
//!
//! # Layout
//!
//! - [`NodeProcess`] (here): one node process and its signals.
//! - [`command`]: running the `tandem` command and reading what it answered.
//! - [`replica_set`]: [`replica_set::ReplicaSet`], three (or N) nodes on fixed free ports
//!   formed into one replica set, with kill -9, pause, stop, restart and wipe.
//! - [`proxy`] (from `tandem-chaos`): [`proxy::FaultProxy`], a TCP proxy that can cut
//!   (blackhole) and heal a link.
//! - [`workload`] (from `tandem-chaos`): concurrent publishers and consumers that follow the
//!   active.
//! - [`history`] (from `tandem-chaos`): what the clients saw, and the checker for lost,
//!   unexpected and stale acknowledgements.
//! - [`host_instance`]: [`host_instance::HostInstanceProcess`], one `tandem host run`.

#![allow(dead_code)]

pub mod command;
// Each test binary uses its own part of the support.
#[allow(unused_imports)]
pub use tandem_chaos::{history, proxy, workload};
pub mod host_instance;
pub mod replica_set;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tonic::transport::Channel;

/// How long a node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an exiting process is looked at.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A two-worker tokio runtime for tests that drive nodes through gRPC clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub fn tandem_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
}

pub struct NodeProcess {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub raft: SocketAddr,
}

/// `tandem node start` flags: every listener on a free loopback port.
pub const FREE_LOOPBACK_PORTS: [&str; 6] = [
    "--grpc-listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
    "--raft-listen",
    "127.0.0.1:0",
];

impl NodeProcess {
    /// Starts `tandem node start` on free loopback ports with `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut arguments = FREE_LOOPBACK_PORTS.to_vec();
        arguments.extend_from_slice(extra);
        NodeProcess::launch(data_dir, &arguments, Stdio::inherit())
    }

    /// Starts `tandem node start --data-dir DIR` followed by exactly `arguments`, with the
    /// node's stderr (its log) going to `log`, and waits for its ready line.
    pub fn launch(data_dir: &Path, arguments: &[&str], log: Stdio) -> NodeProcess {
        NodeProcess::launch_with_file_size_limit(data_dir, arguments, log, None)
    }

    /// [`NodeProcess::launch`], where with `Some(bytes)` no file of the node may grow past
    /// `bytes`: a write beyond fails as on a full disk (RLIMIT_FSIZE, with SIGXFSZ ignored so
    /// that the write returns EFBIG instead of killing the process).
    pub fn launch_with_file_size_limit(
        data_dir: &Path,
        arguments: &[&str],
        log: Stdio,
        file_size_limit: Option<u64>,
    ) -> NodeProcess {
        let mut command = Command::new(tandem_binary());
        command
            .args(["node", "start", "--data-dir"])
            .arg(data_dir)
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(bytes) = file_size_limit {
            limit_file_size(&mut command, bytes);
        }
        let mut child = command.spawn().expect("spawn tandem node");
        let stdout = child.stdout.take().expect("node stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("tandem node ready:") {
                    let _ = sender.send(line);
                }
            }
        });
        let ready = match receiver.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "tandem node ({}) printed no ready line within {READY_TIMEOUT:?}; \
                     it exited with {status:?}",
                    data_dir.display()
                );
            }
        };
        NodeProcess {
            child,
            grpc: address_after(&ready, "grpc="),
            http: address_after(&ready, "http="),
            raft: address_after(&ready, "raft="),
        }
    }

    /// How the process exited, if it has (without waiting).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// kill -9: no chance to flush or close anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes with its sockets open, as a long GC pause or a
    /// hung machine would.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`NodeProcess::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM, then wait (bounded) for an orderly exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_for_exit()
    }

    /// Waits (bounded) for the process to exit (after a signal, or on its own); kills it if
    /// it does not.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let attempts = STOP_TIMEOUT.as_millis() / EXIT_POLL_INTERVAL.as_millis();
        for _ in 0..attempts {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(EXIT_POLL_INTERVAL);
        }
        self.kill_hard();
        panic!("tandem node did not exit within {STOP_TIMEOUT:?}");
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, ...) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn message_box(&self) -> MessageBoxClient<Channel> {
        MessageBoxClient::connect(self.grpc_url())
            .await
            .expect("connect message box")
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(self.grpc_url())
            .await
            .expect("connect admin")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_hard();
        }
    }
}

fn address_after(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key))
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no {key} address in ready line {line:?}"))
}

/// Runs `tandem node check` on a data directory and returns (success, output).
pub fn check_data_dir(data_dir: &Path) -> (bool, String) {
    let output = Command::new(tandem_binary())
        .args(["node", "check", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run tandem node check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A `complete` settlement (the default verdict) for every leased message.
pub fn completions(
    leased: &[tandem_protocol::v1::LeasedMessage],
) -> Vec<tandem_protocol::v1::Settlement> {
    leased
        .iter()
        .map(|message| tandem_protocol::v1::Settlement {
            instance: message.instance,
            token: message.token,
            ..Default::default()
        })
        .collect()
}

/// Test nodes listen on ports below the kernel's ephemeral range (32768 and up), so no
/// outgoing connection can take one as its source port while the node owning it restarts.
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// `count` distinct free loopback ports from [`NODE_PORTS`], each held by a listener until
/// the caller drops it (then a node binds it). The search starts at a random place, so tests
/// running at the same time rarely want the same ports.
pub fn reserve_node_ports(count: usize) -> Vec<std::net::TcpListener> {
    let span = u64::from(NODE_PORTS.end - NODE_PORTS.start);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos() as u64)
        .wrapping_add(u64::from(std::process::id()) * 7919);
    let listeners: Vec<std::net::TcpListener> = (0..span)
        .map(|step| NODE_PORTS.start + ((seed + step) % span) as u16)
        .filter_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .take(count)
        .collect();
    assert_eq!(listeners.len(), count, "not enough free loopback ports");
    listeners
}

/// Makes the process `command` starts unable to grow a file past `bytes`.
fn limit_file_size(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: between fork and exec the closure only makes two async-signal-safe calls,
    // setrlimit(2) and signal(2), on values it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}
