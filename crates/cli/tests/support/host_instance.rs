//! [`HostInstanceProcess`]: one `tandem host run` process, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::tandem_binary;

/// How long a host instance may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct HostInstanceProcess {
    child: Child,
    pub instance: String,
}

impl HostInstanceProcess {
    /// Starts `tandem host run` for `host` against the nodes at `servers` (comma-separated),
    /// its log going to `log`, and waits for its ready line.
    pub fn start(
        servers: &str,
        host: &str,
        instance: &str,
        bindings: &Path,
        lease_duration: &str,
        log: &Path,
    ) -> HostInstanceProcess {
        let log_file = std::fs::File::create(log).expect("create the host instance's log");
        let mut child = Command::new(tandem_binary())
            .args(["--server", servers, "host", "run", "--host", host])
            .args(["--instance", instance, "--lease-duration", lease_duration])
            .arg("--bindings")
            .arg(bindings)
            .env_remove("TANDEM_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn tandem host run");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("tandem host instance ready") {
                    let _ = sender.send(line);
                }
            }
        });
        if ready.recv_timeout(READY_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("host instance {instance} printed no ready line; its log:\n{log}");
        }
        HostInstanceProcess {
            child,
            instance: instance.to_string(),
        }
    }

    /// Whether the process still runs (it must never exit on its own).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `limit` for the exit; whether it exited.
    pub fn stop_within(&mut self, limit: Duration) -> bool {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) sends SIGTERM to the process this guard started.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// kill -9.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostInstanceProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
