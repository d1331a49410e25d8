//! Test support: a real `tandem node` process on 127.0.0.1 with free ports, and clients for it.
//! The guard kills the process when dropped, so no test leaves a node behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tonic::transport::Channel;

/// How long a node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn tandem_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
}

pub struct NodeProcess {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl NodeProcess {
    /// Starts `tandem node start` on free loopback ports with `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut child = Command::new(tandem_binary())
            .args([
                "node",
                "start",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--raft-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tandem node");
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
                panic!("tandem node did not print its ready line within {READY_TIMEOUT:?}");
            }
        };
        NodeProcess {
            child,
            grpc: address_after(&ready, "grpc="),
            http: address_after(&ready, "http="),
        }
    }

    /// kill -9: no chance to flush or close anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for an orderly exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_hard();
        panic!("tandem node did not stop within 10 s of SIGTERM");
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
