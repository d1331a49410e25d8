//! `tandem bench`: durable-publish and end-to-end throughput and ack latency, measured against
//! real node processes. Without `--target` it starts a fresh node (or with `--nodes N` a
//! replica set, through `tandem up`) on loopback in a temporary data directory and stops it
//! afterwards; `--failover` kills the active halfway (see `bench_failover`). `--runs N`
//! repeats the whole measurement, each run on a freshly started node, and reports the median
//! of every figure with the spread. A call the active answers `unavailable` is sent again,
//! as the client library does, and counted. Benchmarks print figures; they assert nothing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tandem_client::RetryPolicy;
use tandem_client::retry::Backoff;
use tandem_protocol::v1;
use tandem_protocol::v1::admin_client::AdminClient;
use tandem_protocol::v1::message_box_client::MessageBoxClient;
use tonic::transport::Channel;

use crate::commands::bench_usage::{UsageAccount, UsagePerMessage, median_usage, usage_lines};
use crate::commands::local_replica_set::LocalReplicaSet;

/// How long the started node may take to become ready.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long consumers wait for work per lease call.
const LEASE_WAIT_MS: u64 = 200;
/// Give up on a phase that makes no progress for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a phase still running says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long a call answered `unavailable` is sent again, as the client library's default
/// retry policy does: under a load that starves the machine, the active may refuse writes
/// for a moment while a majority's confirmation of it comes late.
const UNAVAILABLE_RETRY_WINDOW: Duration = Duration::from_secs(5);
/// The pause before a call answered `unavailable` is sent again (jittered down to half).
const UNAVAILABLE_RETRY_PAUSE: Duration = Duration::from_millis(10);

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// gRPC address of a running node to measure; by default a fresh node is started.
    #[arg(long)]
    pub target: Option<String>,
    /// Messages per phase.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Body size of every message, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Messages per publish call and per lease call (1 = one at a time).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Data directory for the started node (default: a temporary directory, removed after).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Start a replica set of this many nodes (1 = a single node) and measure its active.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Kill -9 the active of a replica set (3 nodes unless --nodes says more) halfway through
    /// publishing; report the unavailability window and acknowledged, lost and duplicated
    /// messages.
    #[arg(long)]
    pub failover: bool,
    /// Repeat the whole measurement this many times, each run on a freshly started node or
    /// replica set, and report the median of every figure (this VM's throughput swings by a
    /// fifth from one run to the next).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub runs: u64,
    /// Publish under random, GUID-like message ids (as most publishers send them) instead of
    /// ids in publish order: each new id then lands on a page of its own in the store's id
    /// index.
    #[arg(long)]
    pub random_ids: bool,
}

/// What the benchmark runs against, kept alive for the run and stopped when dropped.
enum Started {
    Nothing,
    Node { _node: StartedNode },
    ReplicaSet { _replica_set: LocalReplicaSet },
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub messages: usize,
    pub clients: usize,
    pub body_bytes: usize,
    pub batch: usize,
    pub random_ids: bool,
    pub publish_messages_per_second: f64,
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    pub end_to_end_messages_per_second: f64,
    /// Calls answered `unavailable` and sent again (of several runs: in all of them).
    pub calls_retried: usize,
    /// CPU time and bytes written per message of each node process started for the run and
    /// of the clients (`bench_usage`); empty for a `--target` node and where it cannot be
    /// read.
    pub usage: Vec<UsagePerMessage>,
}

/// Several runs of one benchmark: every run's figures and their medians (`--runs`).
#[derive(Debug, serde::Serialize)]
struct BenchRuns<'a> {
    runs: &'a [BenchReport],
    median: BenchReport,
}

pub async fn run(args: BenchArgs, json: bool) -> Result<(), String> {
    let args = BenchArgs {
        clients: args.clients.max(1),
        batch: args.batch.clamp(1, 1000),
        ..args
    };
    if args.failover {
        return crate::commands::bench_failover::run(&args, json).await;
    }
    let printers = Printers {
        run: print_run,
        one: print_report,
        many: print_runs,
    };
    let command = "tandem bench";
    measure_runs(
        command,
        args.runs,
        json,
        |run| measure(&args, run),
        printers,
    )
    .await
}

/// How a benchmark prints its figures: each run of several as it finishes (text only), a
/// single run's report, and what several runs come to.
pub struct Printers<Report> {
    pub run: fn(u64, u64, &Report),
    pub one: fn(&Report, bool),
    pub many: fn(&[Report], bool),
}

/// Measures `runs` times (`measure` gets the run's number, from 1) and prints the figures.
pub async fn measure_runs<Report, Measurement>(
    command: &str,
    runs: u64,
    json: bool,
    mut measure: impl FnMut(u64) -> Measurement,
    printers: Printers<Report>,
) -> Result<(), String>
where
    Measurement: std::future::Future<Output = Result<Report, String>>,
{
    let mut reports = Vec::new();
    for run in 1..=runs {
        if runs > 1 {
            eprintln!("{command}: run {run} of {runs}");
        }
        let report = measure(run).await?;
        if runs > 1 && !json {
            (printers.run)(run, runs, &report);
        }
        reports.push(report);
    }
    match reports.as_slice() {
        [only] => (printers.one)(only, json),
        _ => (printers.many)(&reports, json),
    }
    Ok(())
}

/// One run: both phases against the target, or against a node (or replica set) started for
/// it and stopped afterwards.
async fn measure(args: &BenchArgs, run: u64) -> Result<BenchReport, String> {
    let (started, target, usage_account) = match &args.target {
        Some(target) => (Started::Nothing, normalize(target), UsageAccount::nothing()),
        None if args.nodes > 1 => {
            let replica_set = LocalReplicaSet::start(args.nodes)?;
            let target = replica_set.active_target();
            let active = replica_set.active().pid;
            let passives = replica_set.nodes.iter().map(|node| node.pid);
            let usage_account = UsageAccount::new(active, passives.filter(|&pid| pid != active));
            let started = Started::ReplicaSet {
                _replica_set: replica_set,
            };
            (started, target, usage_account)
        }
        None => {
            let node = StartedNode::start(args.data_dir.clone())?;
            let target = format!("http://{}", node.grpc_address);
            let usage_account = UsageAccount::new(node.child.id(), []);
            (Started::Node { _node: node }, target, usage_account)
        }
    };
    // Unique per run, so that runs against one --target declare routes of their own.
    let run_id = format!("{}-{run}", std::process::id());
    declare_routes(&target, &run_id).await?;
    eprintln!(
        "tandem bench: {} messages per phase, {} clients, {}-byte bodies, batch {}, {} ids",
        args.messages,
        args.clients,
        args.body_bytes,
        args.batch,
        if args.random_ids { "random" } else { "ordered" }
    );
    let retried = Arc::new(AtomicUsize::new(0));
    let usage_at_start = usage_account.read();
    let (publish_rate, latencies) = publish_phase(&target, args, &run_id, &retried).await?;
    let usage_after_publish = usage_account.read();
    let end_to_end_rate = end_to_end_phase(&target, args, &run_id, &retried).await?;
    let usage_after_end_to_end = usage_account.read();
    let usage = usage_account.per_message(
        [
            &usage_at_start,
            &usage_after_publish,
            &usage_after_end_to_end,
        ],
        args.messages,
    );
    drop(started);
    Ok(BenchReport {
        messages: args.messages,
        clients: args.clients,
        body_bytes: args.body_bytes,
        batch: args.batch,
        random_ids: args.random_ids,
        publish_messages_per_second: publish_rate,
        ack_latency_p50_ms: percentile_ms(&latencies, 0.50),
        ack_latency_p99_ms: percentile_ms(&latencies, 0.99),
        end_to_end_messages_per_second: end_to_end_rate,
        calls_retried: retried.load(Ordering::Relaxed),
        usage,
    })
}

fn normalize(target: &str) -> String {
    if target.contains("://") {
        target.to_string()
    } else {
        format!("http://{target}")
    }
}

async fn declare_routes(target: &str, run_id: &str) -> Result<(), String> {
    let mut admin = AdminClient::connect(target.to_string())
        .await
        .map_err(connect_error)?;
    for phase in ["publish", "e2e"] {
        let host = format!("bench-{phase}-{run_id}");
        admin
            .create_host(v1::CreateHostRequest { name: host.clone() })
            .await
            .map_err(status_error)?;
        let filter = format!("BenchRun == \"{run_id}\" and BenchPhase == \"{phase}\"");
        let subscription = v1::CreateSubscriptionRequest {
            name: host.clone(),
            host,
            filter,
            ..Default::default()
        };
        admin
            .create_subscription(subscription)
            .await
            .map_err(status_error)?;
    }
    Ok(())
}

/// Publishes `messages` from `clients` concurrent connections; returns msgs/s and call latencies.
async fn publish_phase(
    target: &str,
    args: &BenchArgs,
    run_id: &str,
    retried: &Arc<AtomicUsize>,
) -> Result<(f64, Vec<Duration>), String> {
    eprintln!("  durable publish ...");
    let started = Instant::now();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let _progress = ProgressReport::start("acknowledged", acknowledged.clone(), args.messages);
    let plan = PublishPlan::new(args, run_id, "publish", acknowledged, retried);
    let latencies = publish_all(target, plan, args.clients).await?;
    Ok((
        args.messages as f64 / started.elapsed().as_secs_f64(),
        latencies,
    ))
}

/// Publishers and consumers at once: publish → route → lease → complete for every message
/// (each leased batch completed with one `Settle` call).
async fn end_to_end_phase(
    target: &str,
    args: &BenchArgs,
    run_id: &str,
    retried: &Arc<AtomicUsize>,
) -> Result<f64, String> {
    eprintln!("  end to end (publish -> lease -> complete) ...");
    let consumers = args.clients.div_ceil(2);
    let publishers = (args.clients - consumers).max(1);
    let completed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let _progress = ProgressReport::start("completed", completed.clone(), args.messages);
    let mut consumer_tasks = tokio::task::JoinSet::new();
    for consumer in 0..consumers {
        let client = MessageBoxClient::connect(target.to_string())
            .await
            .map_err(connect_error)?;
        let host = format!("bench-e2e-{run_id}");
        let consumer = Consumer {
            host,
            holder: format!("bench-{consumer}"),
            batch: args.batch,
            completed: completed.clone(),
            total: args.messages,
            retried: retried.clone(),
        };
        consumer_tasks.spawn(consumer.run(client));
    }
    let plan = PublishPlan::new(args, run_id, "e2e", Arc::new(AtomicUsize::new(0)), retried);
    publish_all(target, plan, publishers).await?;
    while let Some(result) = consumer_tasks.join_next().await {
        result.map_err(|error| format!("consumer task failed: {error}"))??;
    }
    Ok(args.messages as f64 / started.elapsed().as_secs_f64())
}

/// Publishes the plan's messages from `clients` connections; returns the calls' latencies.
async fn publish_all(
    target: &str,
    plan: PublishPlan,
    clients: usize,
) -> Result<Vec<Duration>, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let client = MessageBoxClient::connect(target.to_string())
            .await
            .map_err(connect_error)?;
        tasks.spawn(publish_worker(client, plan.clone()));
    }
    let mut latencies = Vec::with_capacity(plan.total / plan.batch + 1);
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result.map_err(|error| format!("publisher task failed: {error}"))??);
    }
    Ok(latencies)
}

/// What the publishers of one phase share: the next message to claim and the count
/// acknowledged.
#[derive(Clone)]
struct PublishPlan {
    next: Arc<AtomicUsize>,
    acknowledged: Arc<AtomicUsize>,
    retried: Arc<AtomicUsize>,
    total: usize,
    batch: usize,
    body: Arc<Vec<u8>>,
    run_id: String,
    phase: String,
    random_ids: bool,
}

impl PublishPlan {
    fn new(
        args: &BenchArgs,
        run_id: &str,
        phase: &str,
        acknowledged: Arc<AtomicUsize>,
        retried: &Arc<AtomicUsize>,
    ) -> PublishPlan {
        PublishPlan {
            next: Arc::new(AtomicUsize::new(0)),
            acknowledged,
            retried: retried.clone(),
            total: args.messages,
            batch: args.batch,
            body: Arc::new(vec![b'x'; args.body_bytes]),
            run_id: run_id.to_string(),
            phase: phase.to_string(),
            random_ids: args.random_ids,
        }
    }
}

/// Prints every [`PROGRESS_EVERY`] how many of a phase's messages are done, until dropped.
struct ProgressReport(tokio::task::JoinHandle<()>);

impl ProgressReport {
    fn start(done_what: &'static str, done: Arc<AtomicUsize>, total: usize) -> ProgressReport {
        let started = tokio::time::Instant::now();
        ProgressReport(tokio::spawn(async move {
            let mut every = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
            loop {
                every.tick().await;
                let done = done.load(Ordering::Relaxed);
                let rate = done as f64 / started.elapsed().as_secs_f64();
                eprintln!("    {done} of {total} messages {done_what} ({rate:.0} msgs/s so far)");
            }
        }))
    }
}

impl Drop for ProgressReport {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn publish_worker(
    mut client: MessageBoxClient<Channel>,
    plan: PublishPlan,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::new();
    loop {
        let first = plan.next.fetch_add(plan.batch, Ordering::Relaxed);
        if first >= plan.total {
            return Ok(latencies);
        }
        let indexes = first..(first + plan.batch).min(plan.total);
        let build_request = || v1::PublishRequest {
            publisher: "bench".into(),
            messages: indexes
                .clone()
                .map(|index| bench_message(&plan, index))
                .collect(),
        };
        let mut request = build_request();
        let started = Instant::now();
        let mut refusals = Refusals::new(&plan.retried);
        let response = loop {
            match client.publish(request).await {
                Ok(response) => break response.into_inner(),
                Err(status) => refusals.wait_to_retry(status).await?,
            }
            request = build_request();
        };
        latencies.push(started.elapsed());
        if let Some(error) = response
            .results
            .iter()
            .find_map(|result| result.error.as_ref())
        {
            return Err(format!(
                "publish refused: {}: {}",
                error.code, error.message
            ));
        }
        plan.acknowledged
            .fetch_add(response.results.len(), Ordering::Relaxed);
    }
}

fn bench_message(plan: &PublishPlan, index: usize) -> v1::PublishMessage {
    let message_id = if plan.random_ids {
        random_message_id(&plan.run_id, &plan.phase, index)
    } else {
        format!("bench-{}-{}-{index}", plan.run_id, plan.phase)
    };
    v1::PublishMessage {
        message_id,
        body: plan.body.to_vec(),
        properties: vec![
            bench_property("BenchRun", &plan.run_id),
            bench_property("BenchPhase", &plan.phase),
        ],
    }
}

/// A GUID-like id in no particular order, distinct for every index of a run's phase: the
/// index goes through bijections of 64-bit numbers (an odd multiplier, an offset, the
/// SplitMix64 finalizer), so no two indexes meet.
fn random_message_id(run_id: &str, phase: &str, index: usize) -> String {
    let seed = run_id
        .bytes()
        .chain(phase.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let high = mix64(seed.wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    tandem_protocol::message_id::uuid_text(high, mix64(high ^ seed))
}

/// SplitMix64's finalizer: a bijection that scatters neighbouring numbers.
fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A string context property the benchmark routes on.
pub fn bench_property(name: &str, value: &str) -> v1::Property {
    v1::Property {
        name: name.as_bytes().to_vec(),
        value: Some(v1::property::Value::StringValue(value.to_string())),
        written: false,
    }
}

/// A consumer of the end-to-end phase: leases up to `batch` messages of `host` at a time and
/// completes them, until `total` messages are completed in all.
struct Consumer {
    host: String,
    holder: String,
    batch: usize,
    completed: Arc<AtomicUsize>,
    total: usize,
    retried: Arc<AtomicUsize>,
}

impl Consumer {
    async fn run(self, mut client: MessageBoxClient<Channel>) -> Result<(), String> {
        let mut last_progress = Instant::now();
        while self.completed.load(Ordering::Relaxed) < self.total {
            if last_progress.elapsed() > STALL_TIMEOUT {
                return Err(format!(
                    "no message completed for {STALL_TIMEOUT:?}; giving up"
                ));
            }
            let leased = self.lease(&mut client).await?;
            if leased.is_empty() {
                continue;
            }
            let count = leased.len();
            self.settle_all(&mut client, leased).await?;
            self.completed.fetch_add(count, Ordering::Relaxed);
            last_progress = Instant::now();
        }
        Ok(())
    }

    async fn lease(
        &self,
        client: &mut MessageBoxClient<Channel>,
    ) -> Result<Vec<v1::LeasedMessage>, String> {
        let build_request = || v1::LeaseRequest {
            host: self.host.clone(),
            holder: self.holder.clone(),
            max_messages: self.batch as u32,
            lease_duration_ms: 30_000,
            wait_ms: LEASE_WAIT_MS,
        };
        let mut refusals = Refusals::new(&self.retried);
        loop {
            match client.lease(build_request()).await {
                Ok(response) => return Ok(response.into_inner().messages),
                Err(status) => refusals.wait_to_retry(status).await?,
            }
        }
    }

    /// Completes a leased batch with one `Settle` call; any refused settlement fails the run.
    async fn settle_all(
        &self,
        client: &mut MessageBoxClient<Channel>,
        leased: Vec<v1::LeasedMessage>,
    ) -> Result<(), String> {
        let count = leased.len();
        let build_request = || v1::SettleBatchRequest {
            settlements: completions(&leased),
        };
        let mut refusals = Refusals::new(&self.retried);
        let response = loop {
            match client.settle(build_request()).await {
                Ok(response) => break response.into_inner(),
                Err(status) => refusals.wait_to_retry(status).await?,
            }
        };
        check_settled(&response, count)
    }
}

/// Fails the run unless every one of `count` settlements was accepted.
fn check_settled(response: &v1::SettleBatchResponse, count: usize) -> Result<(), String> {
    if response.results.len() != count {
        return Err(format!(
            "settle answered {} results for {count} settlements",
            response.results.len()
        ));
    }
    match response
        .results
        .iter()
        .find_map(|result| result.error.as_ref().map(|error| (result.instance, error)))
    {
        Some((instance, error)) => Err(format!(
            "settle refused for instance {instance}: {}: {}",
            error.code, error.message
        )),
        None => Ok(()),
    }
}

/// The `unavailable` answers to one call: each is counted in `retried` and waited out with
/// the client library's [`Backoff`], for up to [`UNAVAILABLE_RETRY_WINDOW`] from the first;
/// any other failure ends the run.
struct Refusals<'a> {
    retried: &'a AtomicUsize,
    backoff: Backoff,
}

impl Refusals<'_> {
    fn new(retried: &AtomicUsize) -> Refusals<'_> {
        Refusals::within(retried, UNAVAILABLE_RETRY_WINDOW)
    }

    fn within(retried: &AtomicUsize, window: Duration) -> Refusals<'_> {
        let policy = RetryPolicy::until(window)
            .with_pauses(UNAVAILABLE_RETRY_PAUSE, UNAVAILABLE_RETRY_PAUSE);
        Refusals {
            retried,
            backoff: Backoff::new(&policy),
        }
    }

    /// Waits before the call is sent again, or fails with `status`.
    async fn wait_to_retry(&mut self, status: tonic::Status) -> Result<(), String> {
        if status.code() != tonic::Code::Unavailable || !self.backoff.pause().await {
            return Err(status_error(status));
        }
        self.retried.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A `complete` verdict for every leased message.
pub fn completions(leased: &[v1::LeasedMessage]) -> Vec<v1::Settlement> {
    leased
        .iter()
        .map(|message| v1::Settlement {
            instance: message.instance,
            token: message.token,
            verdict: v1::Verdict::Complete as i32,
            reason: String::new(),
        })
        .collect()
}

fn percentile_ms(latencies: &[Duration], quantile: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let index = ((sorted.len() - 1) as f64 * quantile).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// A report as pretty JSON (`--json`).
pub fn print_json(report: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(report).unwrap_or_default()
    );
}

fn print_report(report: &BenchReport, json: bool) {
    if json {
        print_json(report);
        return;
    }
    println!(
        "durable publish : {:>10.0} msgs/s   ack latency p50 {:.2} ms, p99 {:.2} ms (per call of {})",
        report.publish_messages_per_second,
        report.ack_latency_p50_ms,
        report.ack_latency_p99_ms,
        report.batch
    );
    println!(
        "end to end      : {:>10.0} msgs/s   publish -> route -> lease -> complete",
        report.end_to_end_messages_per_second
    );
    for line in usage_lines(&report.usage) {
        println!("{line}");
    }
    if report.calls_retried > 0 {
        println!(
            "calls retried   : {} answered `unavailable` and were sent again (as the client \
             library does)",
            report.calls_retried
        );
    }
}

/// One line for each run of several, as it finishes.
fn print_run(run: u64, runs: u64, report: &BenchReport) {
    println!(
        "run {run} of {runs}: durable publish {:.0} msgs/s (ack p50 {:.2} ms, p99 {:.2} ms), \
         end to end {:.0} msgs/s",
        report.publish_messages_per_second,
        report.ack_latency_p50_ms,
        report.ack_latency_p99_ms,
        report.end_to_end_messages_per_second
    );
}

/// The medians of several runs, with the lowest and highest throughput of each phase.
fn print_runs(reports: &[BenchReport], json: bool) {
    let median = median_report(reports);
    if json {
        print_json(&BenchRuns {
            runs: reports,
            median,
        });
        return;
    }
    println!("median of {} runs:", reports.len());
    print_report(&median, false);
    let (publish_low, publish_high) = spread(reports, |report| report.publish_messages_per_second);
    let (e2e_low, e2e_high) = spread(reports, |report| report.end_to_end_messages_per_second);
    println!(
        "spread          : durable publish {publish_low:.0} to {publish_high:.0} msgs/s, end to \
         end {e2e_low:.0} to {e2e_high:.0} msgs/s"
    );
}

fn median_report(reports: &[BenchReport]) -> BenchReport {
    let figure = |field: fn(&BenchReport) -> f64| median(reports.iter().map(field).collect());
    BenchReport {
        messages: reports[0].messages,
        clients: reports[0].clients,
        body_bytes: reports[0].body_bytes,
        batch: reports[0].batch,
        random_ids: reports[0].random_ids,
        publish_messages_per_second: figure(|report| report.publish_messages_per_second),
        ack_latency_p50_ms: figure(|report| report.ack_latency_p50_ms),
        ack_latency_p99_ms: figure(|report| report.ack_latency_p99_ms),
        end_to_end_messages_per_second: figure(|report| report.end_to_end_messages_per_second),
        calls_retried: reports.iter().map(|report| report.calls_retried).sum(),
        usage: median_usage(
            &reports
                .iter()
                .map(|report| report.usage.as_slice())
                .collect::<Vec<_>>(),
        ),
    }
}

fn spread(reports: &[BenchReport], field: fn(&BenchReport) -> f64) -> (f64, f64) {
    let mut values: Vec<f64> = reports.iter().map(field).collect();
    values.sort_by(f64::total_cmp);
    (values[0], values[values.len() - 1])
}

/// The median of some figures (the mean of the middle two of an even count); NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        count if count % 2 == 1 => values[count / 2],
        count => (values[count / 2 - 1] + values[count / 2]) / 2.0,
    }
}

fn connect_error(error: tonic::transport::Error) -> String {
    format!("cannot connect to the node: {error}")
}

fn status_error(status: tonic::Status) -> String {
    format!("{}: {}", status.code(), status.message())
}

/// A node process started for the benchmark; killed and its temporary data removed on drop.
struct StartedNode {
    child: Child,
    grpc_address: String,
    _temporary: Option<tempfile::TempDir>,
}

impl StartedNode {
    fn start(data_dir: Option<PathBuf>) -> Result<StartedNode, String> {
        let temporary = match data_dir {
            Some(_) => None,
            None => Some(
                tempfile::tempdir()
                    .map_err(|error| format!("cannot create a temp dir: {error}"))?,
            ),
        };
        let data_dir = data_dir.unwrap_or_else(|| {
            temporary
                .as_ref()
                .map(|dir| dir.path().to_path_buf())
                .unwrap_or_default()
        });
        let executable = std::env::current_exe()
            .map_err(|error| format!("cannot find the tandem binary: {error}"))?;
        let mut child = Command::new(executable)
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
            .arg(&data_dir)
            .args(["--throttle-message-count", "1000000000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start a node: {error}"))?;
        let grpc_address = read_ready_line(&mut child)?;
        eprintln!(
            "tandem bench: started a node at {grpc_address} with data in {}",
            data_dir.display()
        );
        Ok(StartedNode {
            child,
            grpc_address,
            _temporary: temporary,
        })
    }
}

fn read_ready_line(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("the node has no stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("grpc="))
            {
                let _ = sender.send(address.to_string());
            }
        }
    });
    receiver.recv_timeout(NODE_READY_TIMEOUT).map_err(|_| {
        let _ = child.kill();
        format!("the node did not become ready within {NODE_READY_TIMEOUT:?}")
    })
}

impl Drop for StartedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{Refusals, random_message_id};

    #[tokio::test]
    async fn an_unavailable_answer_is_counted_and_retried_until_the_window_closes() {
        let retried = AtomicUsize::new(0);
        let mut refusals = Refusals::new(&retried);
        let refused = || tonic::Status::unavailable("no majority has confirmed the active");
        assert_eq!(refusals.wait_to_retry(refused()).await, Ok(()));
        assert_eq!(refusals.wait_to_retry(refused()).await, Ok(()));
        assert_eq!(retried.load(Ordering::Relaxed), 2);
        let mut closed = Refusals::within(&retried, Duration::ZERO);
        let error = closed.wait_to_retry(refused()).await.unwrap_err();
        assert!(error.contains("no majority has confirmed"), "{error}");
        assert_eq!(
            retried.load(Ordering::Relaxed),
            2,
            "a refusal past the window is not retried"
        );
    }

    #[tokio::test]
    async fn any_other_failure_ends_the_run_at_once() {
        let retried = AtomicUsize::new(0);
        let mut refusals = Refusals::new(&retried);
        let error = refusals
            .wait_to_retry(tonic::Status::failed_precondition("lease expired"))
            .await
            .unwrap_err();
        assert!(error.contains("lease expired"), "{error}");
        assert_eq!(retried.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn random_ids_are_guid_shaped_distinct_and_unordered() {
        let ids: Vec<String> = (0..100_000)
            .map(|index| random_message_id("4242-1", "e2e", index))
            .collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == 36 && id.matches('-').count() == 4)
        );
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let ascending = ids.windows(2).filter(|pair| pair[0] < pair[1]).count();
        assert!(
            (40_000..60_000).contains(&ascending),
            "about half of neighbouring ids ascend: {ascending}"
        );
        assert_ne!(
            random_message_id("4242-1", "e2e", 7),
            random_message_id("4242-1", "publish", 7),
            "phases publish distinct ids"
        );
    }
}
