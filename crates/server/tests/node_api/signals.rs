//! `run_until_signal` in a child process (this test binary, re-run): it prints the ready
//! line, serves, and on SIGTERM shuts down and prints `tandem node stopped`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tandem_server::{NodeConfig, run_until_signal};

/// Set in the child: the data directory it runs its node on.
const CHILD_DATA_DIR: &str = "TANDEM_SERVER_TEST_CHILD_DATA_DIR";
const THIS_TEST: &str = "signals::run_until_signal_reports_ready_and_stops_on_sigterm";
/// How long the child may take to print each expected line.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn run_until_signal_reports_ready_and_stops_on_sigterm() {
    if let Ok(data_dir) = std::env::var(CHILD_DATA_DIR) {
        run_child_node(data_dir);
        return;
    }
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", THIS_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DATA_DIR, data_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let lines = read_lines_in_background(child.stdout.take().expect("stdout"));
    let ready = wait_for_line(&lines, "tandem node ready: ");
    let http_address = ready
        .split(' ')
        .find_map(|field| field.strip_prefix("http="))
        .expect("http address in the ready line");
    assert!(ready.contains("grpc=127.0.0.1:"), "{ready}");
    assert!(
        ready.ends_with(&format!("data_dir={}", data_dir.path().display())),
        "{ready}"
    );
    std::net::TcpStream::connect(http_address).expect("the node listens");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    wait_for_line(&lines, "tandem node stopped");
    assert!(child.wait().expect("child exits").success());
}

fn run_child_node(data_dir: String) {
    let config = NodeConfig {
        data_dir: data_dir.into(),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        raft_listen: "127.0.0.1:0".parse().expect("address"),
        ..NodeConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(run_until_signal(config))
        .expect("the node runs until the signal");
}

fn read_lines_in_background(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The text from `start` to the end of the first line containing it (the test harness
/// may print its own words before it on the same line).
fn wait_for_line(lines: &mpsc::Receiver<String>, start: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|_| panic!("no line containing {start:?}"));
        if let Some(position) = line.find(start) {
            return line[position..].to_string();
        }
    }
}
