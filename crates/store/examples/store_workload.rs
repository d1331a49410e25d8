//! A fixed delivery workload on one store, for measuring a storage change without the noise
//! of a whole node: every round publishes 1,000 messages of 1 KiB (ten batches of 100 sharing
//! a transaction), leases them 100 at a time and completes them in one transaction, all
//! inline on one thread (`Execution::Inline`).
//!
//! ```sh
//! cargo build --release -p tandem-store --example store_workload
//! ./target/release/examples/store_workload 100        # rounds; prints time and bytes written
//! ./target/release/examples/store_workload 100 --random-ids   # GUID-like message ids
//! valgrind --tool=callgrind ./target/release/examples/store_workload 20
//! ```
//!
//! The instruction count callgrind reports is the same from run to run, where throughput on
//! a shared VM swings by a fifth: compare two builds by it, and by the bytes written (which
//! the instruction count does not see).

use std::time::Instant;

use tandem_core::Command;
use tandem_core::context::Property;
use tandem_core::ids::MessageId;
use tandem_core::message::NewMessage;
use tandem_core::outcome::Outcome;
use tandem_core::subscription::RetryPolicy;
use tandem_core::value::Value;
use tandem_store::{Batch, Execution, Store, StoreHandle};

const BATCHES_PER_ROUND: usize = 10;
const MESSAGES_PER_BATCH: usize = 100;
const BODY_BYTES: usize = 1024;
const HOST: &str = "workload";

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let random_ids = arguments.iter().any(|argument| argument == "--random-ids");
    let rounds: usize = match arguments
        .iter()
        .find(|argument| !argument.starts_with("--"))
    {
        None => 20,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("usage: store_workload [ROUNDS] [--random-ids]");
            std::process::exit(2);
        }),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let store = Store::open_with(dir.path(), Execution::Inline).expect("open the store");
        let mut workload = Workload {
            handle: store.handle(),
            now_ms: 1_700_000_000_000,
            published: 0,
            random_ids,
        };
        workload
            .apply(vec![declare_host(), declare_subscription()])
            .await;
        for _ in 0..rounds {
            workload.publish_round().await;
            workload.deliver_round().await;
        }
        store.shutdown().await;
    });
    let seconds = started.elapsed().as_secs_f64();
    let messages = rounds * BATCHES_PER_ROUND * MESSAGES_PER_BATCH;
    println!(
        "{messages} messages published, leased and completed in {seconds:.2} s \
         ({:.0} msgs/s); {}",
        messages as f64 / seconds,
        bytes_written()
    );
}

struct Workload {
    handle: StoreHandle,
    now_ms: i64,
    published: u64,
    random_ids: bool,
}

impl Workload {
    /// Queues one batch, 5 ms after the previous one; the answer comes once its
    /// transaction committed (batches queued together share one).
    async fn submit(
        &mut self,
        commands: Vec<Command>,
    ) -> impl Future<Output = Vec<Outcome>> + use<> {
        self.now_ms += 5;
        let batch = Batch {
            timestamp_ms: self.now_ms,
            commands,
            event: None,
            position: Some(self.now_ms.to_be_bytes().to_vec()),
        };
        let answer = self.handle.submit(batch).await.expect("the store is open");
        async move {
            answer
                .await
                .expect("the batch commits")
                .into_iter()
                .map(|outcome| outcome.expect("every command succeeds"))
                .collect()
        }
    }

    async fn apply(&mut self, commands: Vec<Command>) -> Vec<Outcome> {
        self.submit(commands).await.await
    }

    async fn publish_round(&mut self) {
        let mut answers = Vec::new();
        for _ in 0..BATCHES_PER_ROUND {
            let messages = (0..MESSAGES_PER_BATCH)
                .map(|_| {
                    self.published += 1;
                    message(self.published, self.random_ids)
                })
                .collect();
            let publish = Command::Publish {
                publisher: "workload".into(),
                messages,
            };
            answers.push(self.submit(vec![publish]).await);
        }
        for answer in answers {
            answer.await;
        }
    }

    async fn deliver_round(&mut self) {
        let mut answers = Vec::new();
        for _ in 0..BATCHES_PER_ROUND {
            let lease = Command::Lease {
                host: HOST.into(),
                holder: "workload".into(),
                max_messages: MESSAGES_PER_BATCH as u32,
                lease_duration_ms: 30_000,
            };
            answers.push(self.submit(vec![lease]).await);
        }
        let mut completions = Vec::new();
        for answer in answers {
            for outcome in answer.await {
                let Outcome::Leased(leased) = outcome else {
                    panic!("a lease answered {outcome:?}");
                };
                completions.extend(leased.into_iter().map(|lease| Command::Complete {
                    instance: lease.instance,
                    token: lease.token,
                }));
            }
        }
        assert_eq!(completions.len(), BATCHES_PER_ROUND * MESSAGES_PER_BATCH);
        self.apply(completions).await;
    }
}

fn declare_host() -> Command {
    Command::CreateHost { name: HOST.into() }
}

fn declare_subscription() -> Command {
    Command::CreateSubscription {
        name: HOST.into(),
        host: HOST.into(),
        filter: "Run == \"workload\" and Phase == \"deliver\"".into(),
        priority: 5,
        retry: RetryPolicy::default(),
        backup: None,
    }
}

/// A message like `tandem bench` publishes: 1 KiB, two routed properties, and a time-prefixed
/// id, or a GUID-like one in no order (`--random-ids`; distinct, the number going through
/// bijections of 64-bit numbers).
fn message(number: u64, random_id: bool) -> NewMessage {
    let property = |name: &str, value: &str| Property {
        name: name.into(),
        value: Value::String(value.into()),
        promoted: true,
    };
    NewMessage {
        message_id: MessageId(if random_id {
            let scattered = number.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
            format!(
                "{scattered:016x}-{:016x}",
                scattered.wrapping_mul(0xbf58_476d_1ce4_e5b9)
            )
        } else {
            format!("{:016x}-workload-{number:08}", 1_700_000_000_000 + number)
        }),
        body: vec![b'x'; BODY_BYTES],
        properties: vec![property("Run", "workload"), property("Phase", "deliver")],
    }
}

/// What the process wrote (the WAL, checkpoints, the log position), as Linux counts it.
fn bytes_written() -> String {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .map_or("bytes written unknown (no /proc/self/io)".into(), |bytes| {
            format!("{bytes} bytes written")
        })
}
