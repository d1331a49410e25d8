//! Running the `tandem` command itself: [`run_tandem`] and what it answered ([`Finished`]).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::tandem_binary;

/// A command that runs longer than this is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A finished `tandem` command.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }

    pub fn expect_success(self) -> Finished {
        assert!(
            self.status.success(),
            "command failed:\n{}",
            self.describe()
        );
        self
    }

    pub fn expect_exit_code(self, code: i32) -> Finished {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit:\n{}",
            self.describe()
        );
        self
    }

    pub fn json(&self) -> Json {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", self.describe()))
    }
}

/// Runs `tandem` with the arguments (without `TANDEM_SERVER` from the environment), killing
/// it if it outlives [`COMMAND_TIMEOUT`].
pub fn run_tandem(arguments: &[&str]) -> Finished {
    let mut child = Command::new(tandem_binary())
        .args(arguments)
        .env_remove("TANDEM_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tandem");
    let stdout = read_in_background(child.stdout.take().expect("stdout"));
    let stderr = read_in_background(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tandem") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`tandem {}` ran longer than {COMMAND_TIMEOUT:?}",
                arguments.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a child's output to the end on its own thread, so a full pipe never blocks it.
pub fn read_in_background(
    mut stream: impl Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}
