//! Host instances (`tandem host run`) against a real 3-node replica set: an integration
//! flow keeps delivering every input exactly once (after de-duplication by message id)
//! while the active is killed again and again; a crashed instance's leased messages are
//! taken over by another instance; a bad bindings file is refused whole, with lines.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::NodeProcess;
use support::command::run_tandem;
use support::host_instance::HostInstanceProcess;
use support::replica_set::{ReplicaSet, ReplicaSetOptions};
use tandem_client::{TandemClient, v1};
use tandem_host::recording_sink::RecordingSink;

/// Kills of the active during the flow.
const KILL_ROUNDS: usize = 5;
/// Load before the first kill and between kills.
const LOAD_BETWEEN_KILLS: Duration = Duration::from_millis(1_200);
/// One input file this often.
const DROP_INTERVAL: Duration = Duration::from_millis(25);
/// The most input files one test drops.
const MAX_INPUTS: u64 = 2_000;
/// How long the deliveries may take after the last input.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
const ACTIVE_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

fn servers(set: &ReplicaSet) -> String {
    set.node_ids()
        .iter()
        .map(|&node_id| set.grpc_url(node_id))
        .collect::<Vec<_>>()
        .join(",")
}

fn flow_bindings(partner_url: &str) -> String {
    format!(
        r#"[[host]]
name = "flow"

[[receive_location]]
name = "flow-inbox"
host = "flow"
adapter = "file"
address = "inbox"
pattern = "order-*.json"
poll_interval = "50ms"
promote = [{{ property = "Destination", from = "json:/destination" }}]

[[send_port]]
name = "flow-folder"
host = "flow"
filter = 'Destination == "folder"'
adapter = "file"
address = "out"
file_name = "{{ReceivedFileName}}"
retry_count = 20
retry_interval = "300ms"

[[send_port]]
name = "flow-partner"
host = "flow"
filter = 'Destination == "partner"'
adapter = "http"
address = "{partner_url}"
retry_count = 20
retry_interval = "300ms"
"#
    )
}

fn destination(order: u64) -> &'static str {
    if order.is_multiple_of(2) {
        "folder"
    } else {
        "partner"
    }
}

fn order_name(order: u64) -> String {
    format!("order-{order:05}.json")
}

fn order_body(order: u64) -> String {
    format!(
        r#"{{"order":{order},"destination":"{}"}}"#,
        destination(order)
    )
}

/// Drops order files into `inbox` (written aside, renamed in) until `stop`; returns how
/// many.
async fn drop_orders(inbox: std::path::PathBuf, stop: Arc<AtomicBool>, dropped: Arc<AtomicU64>) {
    for order in 0..MAX_INPUTS {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let hidden = inbox.join(format!(".{}.part", order_name(order)));
        std::fs::write(&hidden, order_body(order)).expect("write an order");
        std::fs::rename(&hidden, inbox.join(order_name(order))).expect("drop an order");
        dropped.store(order + 1, Ordering::SeqCst);
        tokio::time::sleep(DROP_INTERVAL).await;
    }
}

/// The partner's deliveries: for each order, the message ids it arrived with.
fn partner_orders(sink: &RecordingSink) -> BTreeMap<u64, Vec<String>> {
    let mut orders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for received in sink.received() {
        let body: serde_json::Value =
            serde_json::from_slice(&received.body).expect("the partner got a JSON order");
        let order = body["order"].as_u64().expect("an order number");
        orders.entry(order).or_default().push(received.message_id);
    }
    orders
}

fn folder_orders(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The integration flow under test: bindings applied, an inbox, a partner sink, and a
/// feeder dropping order files until stopped.
struct Flow {
    servers: String,
    work: tempfile::TempDir,
    sink: RecordingSink,
    bindings: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    feeder: Option<tokio::task::JoinHandle<()>>,
}

impl Flow {
    async fn start(set: &ReplicaSet) -> Flow {
        let servers = servers(set);
        let work = tempfile::tempdir().expect("work dir");
        std::fs::create_dir_all(work.path().join("inbox")).expect("inbox");
        let sink = RecordingSink::start().await.expect("partner sink");
        let bindings = work.path().join("bindings.toml");
        std::fs::write(&bindings, flow_bindings(&sink.url("/orders"))).expect("bindings");
        let bindings_text = bindings.to_str().expect("utf-8 path");
        run_tandem(&["--server", &servers, "bindings", "apply", bindings_text]).expect_success();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let feeder = tokio::spawn(drop_orders(
            work.path().join("inbox"),
            stop.clone(),
            dropped.clone(),
        ));
        Flow {
            servers,
            work,
            sink,
            bindings,
            stop,
            dropped,
            feeder: Some(feeder),
        }
    }

    fn start_instance(&self, name: &str) -> HostInstanceProcess {
        let log = self.work.path().join(format!("{name}.log"));
        HostInstanceProcess::start(&self.servers, "flow", name, &self.bindings, "3s", &log)
    }

    /// Stops the feeder; how many orders it dropped.
    async fn stop_feeding(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(feeder) = self.feeder.take() {
            feeder.await.expect("the feeder ran");
        }
        let inputs = self.dropped.load(Ordering::SeqCst);
        assert!(
            inputs >= 100,
            "only {inputs} inputs: the load proves nothing"
        );
        inputs
    }

    /// Waits for every delivery, then checks that each of the `inputs` orders reached its
    /// destination exactly once (the partner: under one message id), and nothing else did.
    async fn check_exactly_once(&self, inputs: u64) {
        let out = self.work.path().join("out");
        let expected_folder: BTreeSet<String> = (0..inputs)
            .filter(|order| destination(*order) == "folder")
            .map(order_name)
            .collect();
        let expected_partner: BTreeSet<u64> = (0..inputs)
            .filter(|order| destination(*order) == "partner")
            .collect();
        let partner_keys = || -> BTreeSet<u64> { partner_orders(&self.sink).into_keys().collect() };
        wait_for(|| folder_orders(&out) == expected_folder && partner_keys() == expected_partner)
            .await;

        let folder = folder_orders(&out);
        let missing: Vec<&String> = expected_folder.difference(&folder).collect();
        let unexpected: Vec<&String> = folder.difference(&expected_folder).collect();
        assert!(
            missing.is_empty(),
            "lost on the way to the folder: {missing:?}"
        );
        assert!(
            unexpected.is_empty(),
            "unexpected files in the folder: {unexpected:?}"
        );
        for name in &folder {
            let order: u64 = name[6..11].parse().expect("an order number");
            let body = std::fs::read_to_string(out.join(name)).expect("read a delivered file");
            assert_eq!(body, order_body(order), "{name} has the wrong content");
        }
        let partner = partner_orders(&self.sink);
        let arrived = partner_keys();
        let lost: Vec<&u64> = expected_partner.difference(&arrived).collect();
        assert!(lost.is_empty(), "lost on the way to the partner: {lost:?}");
        assert_eq!(
            arrived, expected_partner,
            "unexpected orders at the partner"
        );
        let mut redeliveries = 0;
        for (order, ids) in &partner {
            let distinct: BTreeSet<&String> = ids.iter().collect();
            assert_eq!(
                distinct.len(),
                1,
                "order {order} reached the partner under several message ids: {ids:?}"
            );
            redeliveries += ids.len() - 1;
        }
        let leftovers: Vec<_> = std::fs::read_dir(self.work.path().join("inbox"))
            .expect("inbox")
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        assert!(
            leftovers.is_empty(),
            "files left in the inbox: {leftovers:?}"
        );
        eprintln!(
            "{inputs} inputs: {} to the folder, {} to the partner ({redeliveries} redeliveries \
             dropped by message id)",
            folder.len(),
            partner.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_delivers_every_input_exactly_once_through_five_kills_of_the_active() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    let mut flow = Flow::start(&set).await;
    // Two instances of the host share the inbox and the queue.
    let mut instances = [flow.start_instance("flow-a"), flow.start_instance("flow-b")];
    let mut term = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await.term;
    for round in 1..=KILL_ROUNDS {
        tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
        let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await;
        term = term.max(active.term);
        set.kill(active.node_id);
        let killed_at = Instant::now();
        let next = set.wait_for_active_after(term, ACTIVE_WAIT_TIMEOUT).await;
        eprintln!(
            "round {round}: killed node {}, node {} active after {} ms",
            active.node_id,
            next.node_id,
            killed_at.elapsed().as_millis()
        );
        term = next.term;
        set.restart(active.node_id);
    }
    tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
    let inputs = flow.stop_feeding().await;
    flow.check_exactly_once(inputs).await;
    for instance in &mut instances {
        assert!(
            instance.is_running(),
            "host instance {} exited; see its log in {}",
            instance.instance,
            flow.work.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_is_lost_or_doubled_when_the_host_instance_is_killed_again_and_again() {
    let set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    let mut flow = Flow::start(&set).await;
    let mut instance = flow.start_instance("flow-crash-0");
    for round in 1..=KILL_ROUNDS {
        tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
        instance.kill_hard();
        instance = flow.start_instance(&format!("flow-crash-{round}"));
    }
    tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
    let inputs = flow.stop_feeding().await;
    flow.check_exactly_once(inputs).await;
    assert!(instance.is_running(), "the last host instance exited");
}

/// A host (named `kind`) with one HTTP send port to a recording sink, for messages whose
/// `Kind` property is `kind`; the bindings applied.
struct SinkPort {
    servers: String,
    work: tempfile::TempDir,
    sink: RecordingSink,
    bindings: std::path::PathBuf,
}

impl SinkPort {
    async fn apply(set: &ReplicaSet, kind: &str) -> SinkPort {
        let servers = servers(set);
        let work = tempfile::tempdir().expect("work dir");
        let sink = RecordingSink::start().await.expect("partner sink");
        let bindings = work.path().join("bindings.toml");
        let text = format!(
            "[[host]]\nname = \"{kind}\"\n\n[[send_port]]\nname = \"{kind}-partner\"\n\
             host = \"{kind}\"\nfilter = 'Kind == \"{kind}\"'\nadapter = \"http\"\n\
             address = \"{}\"\n",
            sink.url("/in")
        );
        std::fs::write(&bindings, text).expect("bindings");
        let path = bindings.to_str().expect("utf-8 path");
        run_tandem(&["--server", &servers, "bindings", "apply", path]).expect_success();
        SinkPort {
            servers,
            work,
            sink,
            bindings,
        }
    }
}

/// Publishes one message whose `Kind` is `kind`; its id.
async fn publish_kind(client: &TandemClient, kind: &str) -> String {
    let property = tandem_core::Property {
        name: "Kind".into(),
        value: tandem_core::Value::String(kind.into()),
        promoted: true,
    };
    client
        .publish_one(
            tandem_client::new_message_id(),
            b"work".to_vec(),
            vec![property],
        )
        .await
        .expect("publish")
        .message_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_the_leased_messages_of_one_that_crashed() {
    let set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    let SinkPort {
        servers,
        work,
        sink,
        bindings,
    } = SinkPort::apply(&set, "crash").await;

    // The partner hangs: the first instance leases everything and holds it.
    sink.hold_answers(true);
    let log_a = work.path().join("crash-a.log");
    let mut first =
        HostInstanceProcess::start(&servers, "crash", "crash-a", &bindings, "2s", &log_a);
    let client = TandemClient::connect(&servers).await.expect("client");
    let mut ids = BTreeSet::new();
    for _ in 0..10 {
        ids.insert(publish_kind(&client, "crash").await);
    }
    let leased_by_first = wait_for(|| sink.received().len() >= ids.len()).await;
    assert!(
        leased_by_first,
        "the first instance never tried to deliver everything"
    );

    first.kill_hard();
    sink.hold_answers(false);
    let log_b = work.path().join("crash-b.log");
    let mut second =
        HostInstanceProcess::start(&servers, "crash", "crash-b", &bindings, "2s", &log_b);
    let queue_empty = wait_for_async(|| queue_depth(&client, "crash")).await;
    assert!(
        queue_empty,
        "the second instance did not finish the first one's messages"
    );
    assert!(second.is_running(), "the second instance exited");
    for id in &ids {
        let history = client
            .message_history(v1::MessageHistoryRequest {
                message_id: id.clone(),
            })
            .await
            .expect("history");
        let details: Vec<&str> = history
            .events
            .iter()
            .map(|event| event.detail.as_str())
            .collect();
        assert!(
            details
                .iter()
                .any(|detail| detail.contains("leased by 'crash-a'")),
            "{id} was never leased by the crashed instance: {details:?}"
        );
        assert!(
            details
                .iter()
                .any(|detail| detail.contains("completed by 'crash-b'")),
            "{id} was not completed by the second instance: {details:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_bindings_file_is_refused_with_its_lines_and_nothing_is_applied() {
    let work = tempfile::tempdir().expect("work dir");
    let node = NodeProcess::start(&work.path().join("node"), &[]);
    let server = node.grpc_url();
    let bindings = work.path().join("bad.toml");
    std::fs::write(
        &bindings,
        "[[host]]\nname = \"good-host\"\n\n[[send_port]]\nname = \"p\"\nhost = \"good-host\"\n\
         filter = 'Total > '\nadapter = \"file\"\naddress = \"out\"\nretry_count = -1\n",
    )
    .expect("bindings");
    let path = bindings.to_str().expect("utf-8 path");
    let finished =
        run_tandem(&["--server", &server, "bindings", "apply", path]).expect_exit_code(1);
    assert!(
        finished.stderr.contains("2 problems; nothing was applied"),
        "{}",
        finished.describe()
    );
    assert!(
        finished
            .stderr
            .contains("bad.toml:7:10: the filter does not parse"),
        "{}",
        finished.describe()
    );
    assert!(
        finished
            .stderr
            .contains("bad.toml:10:15: retry_count -1 is out of range"),
        "{}",
        finished.describe()
    );
    let hosts = run_tandem(&["--server", &server, "--json", "host", "list"]).expect_success();
    assert!(
        !hosts.stdout.contains("good-host"),
        "a host was applied: {}",
        hosts.stdout
    );

    let check = run_tandem(&["bindings", "check", path]).expect_exit_code(1);
    assert!(
        check.stderr.contains("bad.toml:7:10"),
        "{}",
        check.describe()
    );
}

/// Whether `condition` holds within the delivery timeout.
async fn wait_for(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    false
}

async fn wait_for_async<F: std::future::Future<Output = bool>>(condition: impl Fn() -> F) -> bool {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    false
}

/// Whether the host's queue holds nothing (ready, leased or delayed).
async fn queue_depth(client: &TandemClient, host: &str) -> bool {
    let Ok(hosts) = client.list_hosts().await else {
        return false;
    };
    hosts
        .hosts
        .iter()
        .find(|candidate| candidate.name == host)
        .and_then(|found| found.depth)
        .is_some_and(|depth| depth.ready + depth.leased + depth.delayed + depth.suspended == 0)
}

/// POSTs `body` to `http://address/path` with `headers` (HTTP/1.1, one request per
/// connection); the status code and the body of the answer.
fn post(address: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(address).expect("connect to the receive location");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `N` loopback addresses free right now and different from each other: every port is held
/// until all are chosen (a port released at once can be handed out again by the next bind).
fn free_loopback_addresses<const N: usize>() -> [String; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    std::array::from_fn(|index| listeners[index].local_addr().expect("address").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receive_acknowledges_durably_and_a_failing_port_falls_back_to_its_backup() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    let servers = servers(&set);
    let work = tempfile::tempdir().expect("work dir");
    let [listen, nobody] = free_loopback_addresses();
    let bindings = work.path().join("bindings.toml");
    let text = format!(
        r#"[[host]]
name = "web"

[[receive_location]]
name = "web-api"
host = "web"
adapter = "http"
address = "{listen}/orders"
promote = [{{ property = "Kind", from = "header:X-Kind" }}]

[[send_port]]
name = "web-out"
host = "web"
filter = 'Kind == "order"'
adapter = "http"
address = "http://{nobody}/down"
retry_count = 1
retry_interval = "100ms"
backup = {{ adapter = "file", address = "backup", retry_count = 0 }}
"#
    );
    std::fs::write(&bindings, text).expect("bindings");
    run_tandem(&[
        "--server",
        &servers,
        "bindings",
        "apply",
        bindings.to_str().unwrap(),
    ])
    .expect_success();
    let log = work.path().join("web.log");
    let mut instance = HostInstanceProcess::start(&servers, "web", "web-1", &bindings, "5s", &log);

    let order = [("x-kind", "order"), ("x-tandem-message-id", "web-order-1")];
    let (status, body) = post(&listen, "/orders", &order, "{}");
    assert_eq!(status, 202, "{body}");
    assert!(
        body.contains("\"message_id\":\"web-order-1\"") && body.contains("\"duplicate\":false"),
        "{body}"
    );
    let (status, body) = post(&listen, "/orders", &order, "{}");
    assert_eq!(status, 202, "{body}");
    assert!(
        body.contains("\"duplicate\":true"),
        "a resent message is stored once: {body}"
    );
    let (status, body) = post(&listen, "/orders", &[("x-kind", "unrouted")], "{}");
    assert_eq!(status, 422, "no subscription matches: {body}");
    assert!(body.contains("no_route"), "{body}");
    let (status, _) = post(&listen, "/elsewhere", &order, "{}");
    assert_eq!(status, 404);

    // The primary (nobody listens) fails twice, then the backup folder gets the message.
    let delivered = work.path().join("backup").join("web-order-1");
    assert!(
        wait_for(|| delivered.exists()).await,
        "the backup transport never delivered"
    );
    let client = TandemClient::connect(&servers).await.expect("client");
    let history = client
        .message_history(v1::MessageHistoryRequest {
            message_id: "web-order-1".into(),
        })
        .await
        .expect("history");
    let details: Vec<&str> = history
        .events
        .iter()
        .map(|event| event.detail.as_str())
        .collect();
    let failures = details
        .iter()
        .filter(|detail| detail.contains("cannot connect"))
        .count();
    assert_eq!(
        failures, 2,
        "two failed attempts on the primary, with the reason: {details:?}"
    );
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("backup transport")),
        "{details:?}"
    );

    // Without a majority nothing can be stored: 503 with Retry-After, and no exit.
    let active = set.wait_for_active(ACTIVE_WAIT_TIMEOUT).await.node_id;
    for node_id in set.others(active) {
        set.kill(node_id);
    }
    let lone = [("x-kind", "order"), ("x-tandem-message-id", "web-order-2")];
    let (status, body) = post(&listen, "/orders", &lone, "{}");
    assert_eq!(status, 503, "{body}");
    assert!(
        instance.is_running(),
        "the host instance exited during the outage"
    );
    for node_id in set.others(active) {
        set.restart(node_id);
    }
    let accepted = wait_for(|| post(&listen, "/orders", &lone, "{}").0 == 202).await;
    assert!(
        accepted,
        "the receive location did not resume after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_instance_stopped_during_an_outage_exits_after_its_grace() {
    let mut set = ReplicaSet::start(ReplicaSetOptions::default()).await;
    let SinkPort {
        servers,
        work,
        sink,
        bindings,
    } = SinkPort::apply(&set, "stop").await;
    sink.hold_answers(true);
    let log = work.path().join("stop.log");
    let mut instance =
        HostInstanceProcess::start(&servers, "stop", "stop-1", &bindings, "30s", &log);
    let client = TandemClient::connect(&servers).await.expect("client");
    publish_kind(&client, "stop").await;
    assert!(
        wait_for(|| !sink.received().is_empty()).await,
        "nothing was delivered"
    );
    // The delivery is under way; the whole replica set goes away before it can be settled.
    for node_id in set.node_ids() {
        set.kill(node_id);
    }
    sink.hold_answers(false);
    let stopped = tokio::task::block_in_place(|| instance.stop_within(Duration::from_secs(25)));
    assert!(
        stopped,
        "the host instance did not stop within its grace during an outage"
    );
}
