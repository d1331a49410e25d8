//! `tandem demo`: an integration flow end to end on a local replica set, with a failover
//! in the middle. Order files dropped into an inbox are picked up by a host instance
//! (`tandem host run`, a separate process), routed by a promoted property either to a
//! folder or to a partner's HTTP endpoint (a recording sink in this process), while the
//! active node is killed with `kill -9`. At the end it checks that every file arrived
//! exactly once and says how long each failover took.
//!
//! Everything lives under `--dir` (default `./tandem-demo`, emptied at the start): the
//! nodes' data and logs, the bindings file, the inbox, the archive folder, the host
//! instance's log and what the partner received.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tandem_client::TandemClient;
use tandem_host::Bindings;
use tandem_host::apply;
use tandem_host::recording_sink::RecordingSink;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::commands::cluster::wait_for_active;
use crate::commands::local_replica_set::LocalReplicaSet;
use crate::process_signal;

/// Marks a folder as the demo's, so that it may be emptied by the next run.
const MARKER_FILE: &str = ".tandem-demo";
/// The longest the demo waits for a new active after a kill.
const ELECTION_LIMIT: Duration = Duration::from_secs(30);
/// The longest the demo waits for the deliveries after the last file was dropped.
const DELIVERY_LIMIT: Duration = Duration::from_secs(120);
/// How often progress is checked (and printed, every [`PROGRESS_EVERY`]).
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How long the host instance may take to say it is ready.
const HOST_READY_LIMIT: Duration = Duration::from_secs(30);
/// The host instance's lease: short, so that deliveries interrupted by a failover come
/// back quickly.
const HOST_LEASE: &str = "5s";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps everything (emptied first if a previous demo made it).
    #[arg(long, value_name = "DIR", default_value = "./tandem-demo")]
    dir: PathBuf,
    /// How many order files to drop into the inbox.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    files: u64,
    /// How many times the active node is killed with kill -9 during the run (each killed
    /// node is started again once a new active serves).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=20))]
    kills: u64,
    /// Files dropped per second.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rate: u64,
}

/// One failover the demo caused.
struct Failover {
    killed: u64,
    new_active: u64,
    milliseconds: u128,
}

/// What the demo found at the end.
struct Findings {
    archived: usize,
    archive_expected: usize,
    archive_wrong: Vec<String>,
    partner_orders: usize,
    partner_expected: usize,
    partner_redeliveries: usize,
    partner_wrong: Vec<String>,
    host_exited: Option<String>,
}

impl Findings {
    fn lost(&self) -> usize {
        (self.archive_expected - self.archived.min(self.archive_expected))
            + (self.partner_expected - self.partner_orders.min(self.partner_expected))
    }

    fn all_well(&self) -> bool {
        self.lost() == 0
            && self.archive_wrong.is_empty()
            && self.partner_wrong.is_empty()
            && self.host_exited.is_none()
    }
}

pub async fn run(arguments: DemoArgs, context: &CommandContext) -> Result<(), CommandError> {
    let dir = prepare_dir(&arguments.dir)?;
    say(context, &format!("Tandem demo in {}", dir.display()));
    say(context, "1. Starting a 3-node replica set on 127.0.0.1 ...");
    let mut replica_set =
        LocalReplicaSet::start_in(3, &dir.join("nodes")).map_err(CommandError::new)?;
    let addresses = replica_set.addresses();
    say(
        context,
        &format!(
            "   nodes {addresses}; node {} is active",
            replica_set.active_node
        ),
    );
    let sink = RecordingSink::start().await.map_err(|error| {
        CommandError::new(format!("cannot start the partner endpoint: {error}"))
    })?;
    let bindings_file = write_bindings(&dir, &sink.url("/orders"))?;
    apply_bindings(&addresses, &bindings_file).await?;
    say(
        context,
        &format!(
            "2. Applied {}: files in inbox/ are routed by their \"destination\" field to the \
         folder archive/ or to the partner's HTTP endpoint {}",
            bindings_file.display(),
            sink.url("/orders")
        ),
    );
    let mut host = start_host_instance(&dir, &addresses, &bindings_file)?;
    say(
        context,
        &format!(
            "3. Started a host instance (`tandem host run`, pid {}); its log: {}",
            host.id(),
            dir.join("host-instance.log").display()
        ),
    );
    say(
        context,
        &format!(
            "4. Dropping {} order files at {}/s; the active node is killed {} time(s) meanwhile",
            arguments.files, arguments.rate, arguments.kills
        ),
    );
    let started = Instant::now();
    let failovers = drop_files_with_kills(&arguments, &dir, &mut replica_set, context).await?;
    say(
        context,
        "5. All files dropped; waiting for every delivery ...",
    );
    wait_for_deliveries(&arguments, &dir, &sink, context).await;
    let findings = check(&arguments, &dir, &sink, &mut host);
    let elapsed = started.elapsed();
    stop_host_instance(&mut host);
    report(context, &arguments, &dir, &failovers, &findings, elapsed);
    drop(replica_set);
    if findings.all_well() {
        Ok(())
    } else {
        Err(CommandError::new(
            "the demo found lost, duplicated or wrong deliveries (see above)",
        ))
    }
}

fn say(context: &CommandContext, line: &str) {
    if !context.output.is_json() {
        println!("{line}");
    }
}

/// Creates `dir` (emptying it when a previous demo made it) with the inbox inside.
fn prepare_dir(dir: &Path) -> Result<PathBuf, CommandError> {
    let failed = |what: &str, error: std::io::Error| {
        CommandError::new(format!("cannot {what} {}: {error}", dir.display()))
    };
    if dir.exists() {
        let ours = dir.join(MARKER_FILE).exists();
        let empty = std::fs::read_dir(dir)
            .map_err(|error| failed("read", error))?
            .next()
            .is_none();
        if !ours && !empty {
            return Err(CommandError::new(format!(
                "{} exists and was not made by `tandem demo`",
                dir.display()
            ))
            .with_hint("choose another folder with --dir"));
        }
        std::fs::remove_dir_all(dir).map_err(|error| failed("empty", error))?;
    }
    std::fs::create_dir_all(dir.join("inbox")).map_err(|error| failed("create", error))?;
    std::fs::write(dir.join(MARKER_FILE), b"").map_err(|error| failed("mark", error))?;
    dir.canonicalize().map_err(|error| failed("resolve", error))
}

fn write_bindings(dir: &Path, partner_url: &str) -> Result<PathBuf, CommandError> {
    let bindings = format!(
        r#"# The demo's integration flow (see `tandem demo --help`).
[[host]]
name = "orders"

[[receive_location]]
name = "order-inbox"
host = "orders"
adapter = "file"
address = "inbox"
pattern = "order-*.json"
poll_interval = "100ms"
promote = [{{ property = "Destination", from = "json:/destination" }}]

[[send_port]]
name = "archive-folder"
host = "orders"
filter = 'Destination == "archive"'
adapter = "file"
address = "archive"
file_name = "{{ReceivedFileName}}"
retry_count = 5
retry_interval = "1s"

[[send_port]]
name = "partner-api"
host = "orders"
filter = 'Destination == "partner"'
adapter = "http"
address = "{partner_url}"
retry_count = 5
retry_interval = "1s"
"#
    );
    let path = dir.join("bindings.toml");
    std::fs::write(&path, bindings)
        .map_err(|error| CommandError::new(format!("cannot write {}: {error}", path.display())))?;
    Ok(path)
}

async fn apply_bindings(addresses: &str, file: &Path) -> Result<(), CommandError> {
    let bindings = Bindings::load(file).map_err(|error| CommandError::new(error.to_string()))?;
    let client = TandemClient::connect(addresses).await?;
    let steps = apply::plan(&client, &bindings).await?;
    apply::execute(&client, &steps, |_| {}).await?;
    Ok(())
}

fn start_host_instance(
    dir: &Path,
    addresses: &str,
    bindings: &Path,
) -> Result<Child, CommandError> {
    let log_path = dir.join("host-instance.log");
    let log = std::fs::File::create(&log_path).map_err(|error| {
        CommandError::new(format!("cannot create {}: {error}", log_path.display()))
    })?;
    let executable = std::env::current_exe()
        .map_err(|error| CommandError::new(format!("cannot find the tandem binary: {error}")))?;
    let mut child = Command::new(executable)
        .args(["--server", addresses, "host", "run", "--host", "orders"])
        .args(["--instance", "orders-demo", "--lease-duration", HOST_LEASE])
        .arg("--bindings")
        .arg(bindings)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|error| CommandError::new(format!("cannot start the host instance: {error}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready, readiness) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("tandem host instance ready") {
                let _ = ready.send(());
            }
        }
    });
    if readiness.recv_timeout(HOST_READY_LIMIT).is_err() {
        stop_host_instance(&mut child);
        return Err(CommandError::new(format!(
            "the host instance did not start; see {}",
            log_path.display()
        )));
    }
    Ok(child)
}

fn stop_host_instance(host: &mut Child) {
    process_signal::terminate(host.id());
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if matches!(host.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = host.kill();
    let _ = host.wait();
}

/// Order `index` goes to the archive folder when even, to the partner when odd.
fn destination(index: u64) -> &'static str {
    if index.is_multiple_of(2) {
        "archive"
    } else {
        "partner"
    }
}

fn order_file_name(index: u64) -> String {
    format!("order-{index:06}.json")
}

fn order_body(index: u64) -> String {
    json!({ "order": index, "destination": destination(index), "total": 100 + index }).to_string()
}

/// Drops the files at the rate asked for, and kills the active at evenly spaced points.
async fn drop_files_with_kills(
    arguments: &DemoArgs,
    dir: &Path,
    replica_set: &mut LocalReplicaSet,
    context: &CommandContext,
) -> Result<Vec<Failover>, CommandError> {
    let inbox = dir.join("inbox");
    let pause = Duration::from_micros(1_000_000 / arguments.rate);
    let kill_points: Vec<u64> = (1..=arguments.kills)
        .map(|kill| kill * arguments.files / (arguments.kills + 1))
        .collect();
    let mut failovers = Vec::new();
    for index in 0..arguments.files {
        if kill_points.contains(&index) {
            failovers.push(kill_active(replica_set, context).await?);
        }
        drop_file(&inbox, index)?;
        tokio::time::sleep(pause).await;
    }
    Ok(failovers)
}

/// Writes an order file under a hidden name and renames it in, as producers should: the
/// receive location never sees half a file.
fn drop_file(inbox: &Path, index: u64) -> Result<(), CommandError> {
    let name = order_file_name(index);
    let hidden = inbox.join(format!(".{name}.part"));
    std::fs::write(&hidden, order_body(index))
        .and_then(|()| std::fs::rename(&hidden, inbox.join(&name)))
        .map_err(|error| CommandError::new(format!("cannot drop {name}: {error}")))
}

/// Kills the active with SIGKILL, waits for a new active, and starts the killed node again.
async fn kill_active(
    replica_set: &mut LocalReplicaSet,
    context: &CommandContext,
) -> Result<Failover, CommandError> {
    let all: Vec<String> = replica_set
        .nodes
        .iter()
        .map(|node| node.grpc_address.clone())
        .collect();
    let active = wait_for_active(&all, ELECTION_LIMIT).await?;
    let killed = active.node.as_ref().map_or(0, |member| member.node_id);
    let pid = replica_set
        .nodes
        .iter()
        .find(|node| node.node_id == killed)
        .map(|node| node.pid)
        .ok_or_else(|| CommandError::new(format!("node {killed} is not one of the demo's")))?;
    let killed_at = Instant::now();
    process_signal::kill(pid);
    say(
        context,
        &format!("   kill -9 of node {killed}, the active (pid {pid})"),
    );
    let others: Vec<String> = replica_set
        .nodes
        .iter()
        .filter(|node| node.node_id != killed)
        .map(|node| node.grpc_address.clone())
        .collect();
    let new_active = wait_for_active(&others, ELECTION_LIMIT).await?;
    let milliseconds = killed_at.elapsed().as_millis();
    let new_active = new_active.node.map_or(0, |member| member.node_id);
    say(
        context,
        &format!("   node {new_active} is active {milliseconds} ms after the kill"),
    );
    replica_set.restart(killed).map_err(CommandError::new)?;
    say(
        context,
        &format!("   node {killed} restarted; it rejoins as a passive"),
    );
    Ok(Failover {
        killed,
        new_active,
        milliseconds,
    })
}

/// Waits until every file has been delivered (or the limit passes), printing progress.
async fn wait_for_deliveries(
    arguments: &DemoArgs,
    dir: &Path,
    sink: &RecordingSink,
    context: &CommandContext,
) {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let mut last_progress = Instant::now();
    while Instant::now() < deadline {
        let archived = archived_files(dir).len() as u64;
        let partner = partner_orders(sink).len() as u64;
        if archived + partner >= arguments.files {
            return;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            say(
                context,
                &format!(
                    "   delivered {}/{} so far",
                    archived + partner,
                    arguments.files
                ),
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The archive folder's files (hidden temporaries excluded).
fn archived_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("archive")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect()
}

/// The partner's deliveries by order number: the message ids each came with.
fn partner_orders(sink: &RecordingSink) -> BTreeMap<u64, Vec<String>> {
    let mut orders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for received in sink.received() {
        let order = serde_json::from_slice::<serde_json::Value>(&received.body)
            .ok()
            .and_then(|body| body["order"].as_u64())
            .unwrap_or(u64::MAX);
        orders.entry(order).or_default().push(received.message_id);
    }
    orders
}

fn check(arguments: &DemoArgs, dir: &Path, sink: &RecordingSink, host: &mut Child) -> Findings {
    let files = arguments.files;
    let expected =
        move |wanted: &'static str| (0..files).filter(move |index| destination(*index) == wanted);
    let archive: Vec<String> = archived_files(dir);
    let mut archive_wrong: Vec<String> = archive
        .iter()
        .filter(|name| !expected("archive").any(|index| order_file_name(index) == **name))
        .map(|name| format!("archive/{name} was not expected"))
        .collect();
    for index in expected("archive") {
        let path = dir.join("archive").join(order_file_name(index));
        if let Ok(body) = std::fs::read_to_string(&path)
            && body != order_body(index)
        {
            archive_wrong.push(format!(
                "archive/{} has the wrong content",
                order_file_name(index)
            ));
        }
    }
    let orders = partner_orders(sink);
    let mut partner_wrong = Vec::new();
    let mut redeliveries = 0;
    for (order, ids) in &orders {
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        redeliveries += ids.len() - distinct.len();
        if distinct.len() > 1 {
            partner_wrong.push(format!(
                "order {order} reached the partner under {} message ids",
                distinct.len()
            ));
        }
        if destination(*order) != "partner" {
            partner_wrong.push(format!("order {order} should not have reached the partner"));
        }
    }
    let host_exited = match host.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        _ => None,
    };
    Findings {
        archived: archive
            .iter()
            .filter(|name| name.starts_with("order-"))
            .count(),
        archive_expected: expected("archive").count(),
        archive_wrong,
        partner_orders: orders.len(),
        partner_expected: expected("partner").count(),
        partner_redeliveries: redeliveries,
        partner_wrong,
        host_exited,
    }
}

fn report(
    context: &CommandContext,
    arguments: &DemoArgs,
    dir: &Path,
    failovers: &[Failover],
    findings: &Findings,
    elapsed: Duration,
) {
    if context.output.is_json() {
        let failovers: Vec<_> = failovers
            .iter()
            .map(|failover| json!({ "killed": failover.killed, "new_active": failover.new_active, "milliseconds": failover.milliseconds }))
            .collect();
        context.output.print_json(&json!({
            "dir": dir.display().to_string(),
            "files": arguments.files,
            "archived": findings.archived,
            "archive_expected": findings.archive_expected,
            "partner_orders": findings.partner_orders,
            "partner_expected": findings.partner_expected,
            "partner_redeliveries": findings.partner_redeliveries,
            "lost": findings.lost(),
            "problems": findings.archive_wrong.iter().chain(&findings.partner_wrong).collect::<Vec<_>>(),
            "host_instance_exited": findings.host_exited,
            "failovers": failovers,
            "seconds": elapsed.as_secs_f64(),
            "ok": findings.all_well(),
        }));
        return;
    }
    let yes_no = |ok: bool| if ok { "yes" } else { "NO" };
    println!();
    println!("Result after {:.1} s", elapsed.as_secs_f64());
    println!("  files dropped into inbox/       {}", arguments.files);
    println!(
        "  archive/ (FILE send port)       {} of {}; each exactly once: {}",
        findings.archived,
        findings.archive_expected,
        yes_no(findings.archived == findings.archive_expected && findings.archive_wrong.is_empty())
    );
    println!(
        "  partner (HTTP send port)        {} of {}; each exactly once after de-duplication by \
         message id: {} ({} redeliveries dropped by id)",
        findings.partner_orders,
        findings.partner_expected,
        yes_no(
            findings.partner_orders == findings.partner_expected
                && findings.partner_wrong.is_empty()
        ),
        findings.partner_redeliveries
    );
    println!("  lost                            {}", findings.lost());
    for failover in failovers {
        println!(
            "  failover                        node {} killed -> node {} active in {} ms",
            failover.killed, failover.new_active, failover.milliseconds
        );
    }
    match &findings.host_exited {
        None => println!("  host instance                   kept running through every failover"),
        Some(status) => println!("  host instance                   EXITED ({status})"),
    }
    for problem in findings.archive_wrong.iter().chain(&findings.partner_wrong) {
        println!("  problem: {problem}");
    }
    println!();
    println!(
        "Look around: ls {0}/archive; less {0}/host-instance.log",
        dir.display()
    );
}
