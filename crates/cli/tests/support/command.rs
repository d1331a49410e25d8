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
    run_tandem_reading_output(arguments, true)
}

/// [`run_tandem`] with its standard output closed before it prints anything, as a reader
/// that went away (`tandem … | head -0`) leaves it; `stdout` is empty.
pub fn run_tandem_with_closed_output(arguments: &[&str]) -> Finished {
    run_tandem_reading_output(arguments, false)
}

fn run_tandem_reading_output(arguments: &[&str], read_output: bool) -> Finished {
    let mut child = Command::new(tandem_binary())
        .args(arguments)
        .env_remove("TANDEM_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tandem");
    let stdout = child.stdout.take().expect("stdout");
    let stdout = read_output.then(|| read_in_background(stdout));
    let stderr = read_in_background(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tandem") {
            break status;
        }
        if Instant::now() > deadline {
            kill_with_descendants(child.id());
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
        stdout: stdout
            .map(|reader| reader.join().expect("stdout reader"))
            .unwrap_or_default(),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Kills a process with SIGKILL and every process it started, and theirs (the nodes a
/// `tandem bench` or `tandem demo` runs), so that a command that hangs leaves nothing running
/// after the test. The family is listed before anything is killed: an orphan's parent
/// becomes init, and it could no longer be found. (Without `/proc`, only the process.)
fn kill_with_descendants(pid: u32) {
    let parents = parent_of_every_process();
    let mut family = vec![pid];
    let mut next = 0;
    while next < family.len() {
        let parent = family[next];
        family.extend(
            parents
                .iter()
                .filter(|(_, of)| *of == parent)
                .map(|(child, _)| *child),
        );
        next += 1;
    }
    for member in family {
        let _ = Command::new("kill")
            .args(["-KILL", &member.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// (pid, parent pid) of every process, from `/proc/PID/stat`.
fn parent_of_every_process() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "PID (COMMAND) STATE PPID …": the command may hold spaces and parentheses.
            let after_command = &stat[stat.rfind(')')? + 1..];
            let parent = after_command.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, parent))
        })
        .collect()
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
