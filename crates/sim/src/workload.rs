//! The simulated clients: publishers with unique message ids and consumers that lease and
//! complete, each recording what it saw in the shared [`History`], like `tandem chaos`'s
//! workload does against real processes. A publish is retried under the same ids until it
//! is acknowledged (a publish is idempotent by id), moving round the nodes on any refusal.
//! A consumer completes a lease's messages concurrently.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tandem_chaos::history::{History, PublishOutcome};
use tandem_cluster::codec::{read_frame, write_frame};
use tandem_core::error::{Error, ErrorCode};
use tandem_core::message::NewMessage;
use tandem_core::subscription::RetryPolicy;
use tandem_core::{Command, MessageId, Outcome, Property, Value};
use turmoil::net::TcpStream;

use crate::wire::{CLIENT_PORT, Executed, Inventory, Request, Response, node_name};

/// The host the consumers serve.
pub const HOST: &str = "orders";
/// A host nobody consumes: its messages stay stored, so that at the end the replicas have
/// thousands of messages to agree on.
pub const KEPT_HOST: &str = "audit";
/// One message in this many goes to [`KEPT_HOST`].
const KEPT_EVERY: usize = 4;
/// A call with no answer within this is given up: its outcome is unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before trying again after a refusal or a failed call.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The pause between a publisher's batches: the load stays below what consumers drain.
const PUBLISH_PAUSE: Duration = Duration::from_millis(20);
/// The pause after a lease that found nothing.
const IDLE_PAUSE: Duration = Duration::from_millis(20);
const LEASE_DURATION_MS: u64 = 2_000;
const LEASE_BATCH: u32 = 16;
/// At the end, the nodes are asked for their inventories until they agree, for at most this
/// long: longer than the replication's longest timeout (a snapshot transfer whose answer was
/// lost holds its follower back until it times out), so that only a replica that never
/// catches up counts as diverged.
const CONVERGENCE_LIMIT: Duration =
    Duration::from_millis(tandem_cluster::settings::SNAPSHOT_TRANSFER_TIMEOUT_MS + 30_000);
const CONVERGENCE_PAUSE: Duration = Duration::from_millis(100);

/// What the clients share with the simulation's driver.
#[derive(Clone)]
pub struct Shared {
    pub history: Arc<History>,
    /// Set by the driver: publishers stop after their current batch.
    pub stop_publishing: Rc<Cell<bool>>,
    /// Set by the driver: consumers stop after their current lease.
    pub stop_consuming: Rc<Cell<bool>>,
    pub node_count: u64,
}

/// Creates both hosts and their subscriptions, trying every node until the active takes them.
pub async fn declare_route(shared: Shared) -> turmoil::Result {
    let retry = RetryPolicy {
        retry_count: 1_000,
        retry_interval_ms: 200,
        exponential_backoff: false,
    };
    let subscription = |host: &str, kind: &str| Command::CreateSubscription {
        name: format!("{host}-{kind}"),
        host: host.into(),
        filter: format!(r#"MessageType == "{kind}""#),
        priority: 5,
        retry,
        backup: None,
    };
    let commands = [
        Command::CreateHost { name: HOST.into() },
        Command::CreateHost {
            name: KEPT_HOST.into(),
        },
        subscription(HOST, "Order"),
        subscription(KEPT_HOST, "Audit"),
    ];
    let mut node = 1;
    for command in commands {
        loop {
            match execute(node, command.clone()).await {
                Ok(_) => break,
                Err(Failure::Answered(error)) if error.code == ErrorCode::AlreadyExists => break,
                Err(_) => {
                    node = next_node(node, shared.node_count);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
    Ok(())
}

/// Publishes batches of `batch_size` messages with ids `{prefix}-{n}` until told to stop.
pub async fn publish(shared: Shared, prefix: String, batch_size: usize) -> turmoil::Result {
    let mut node = 1;
    let mut next_id = 0;
    while !shared.stop_publishing.get() {
        let ids: Vec<String> = (next_id..next_id + batch_size)
            .map(|n| format!("{prefix}-{n}"))
            .collect();
        next_id += batch_size;
        while !shared.stop_publishing.get() {
            let invocation = shared.history.invoke_publish(node, &ids);
            let answer = execute(node, publish_command(&prefix, &ids)).await;
            let outcomes = publish_outcomes(answer, ids.len());
            let all_acknowledged = outcomes
                .iter()
                .all(|outcome| matches!(outcome, PublishOutcome::Acknowledged { .. }));
            shared.history.resolve_publish(invocation, outcomes);
            if all_acknowledged {
                tokio::time::sleep(PUBLISH_PAUSE).await;
                break;
            }
            node = next_node(node, shared.node_count);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(())
}

/// Leases and completes messages as `holder` until told to stop.
pub async fn consume(shared: Shared, holder: String) -> turmoil::Result {
    let mut node = 1;
    while !shared.stop_consuming.get() {
        let lease = Command::Lease {
            host: HOST.into(),
            holder: holder.clone(),
            max_messages: LEASE_BATCH,
            lease_duration_ms: LEASE_DURATION_MS,
        };
        let leased = match execute(node, lease).await {
            Ok(Executed {
                outcome: Outcome::Leased(leased),
                ..
            }) => leased,
            _ => {
                node = next_node(node, shared.node_count);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        if leased.is_empty() {
            tokio::time::sleep(IDLE_PAUSE).await;
            continue;
        }
        shared.history.record_deliveries(
            node,
            leased.iter().map(|message| message.message_id.0.clone()),
        );
        let completions = leased.into_iter().map(|message| async move {
            let complete = Command::Complete {
                instance: message.instance,
                token: message.token,
            };
            execute(node, complete)
                .await
                .ok()
                .map(|_| message.message_id.0)
        });
        let completed = join_all(completions).await.into_iter().flatten();
        shared.history.record_completions(node, completed);
    }
    Ok(())
}

/// Every node's inventory, once one node answers as the active and every node stores the
/// same messages; the last answers, not agreeing, after [`CONVERGENCE_LIMIT`].
pub async fn take_inventories(node_count: u64) -> Inventories {
    let started = tokio::time::Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < CONVERGENCE_LIMIT {
        answers.clear();
        for node in 1..=node_count {
            if let Ok(Response::Inventory(Ok(inventory))) = call(node, &Request::Inventory).await {
                answers.push(inventory);
            }
        }
        let agreed = answers.len() as u64 == node_count
            && answers.iter().any(|answer| answer.active)
            && answers
                .iter()
                .all(|answer| same_messages(answer, &answers[0]));
        if agreed {
            return Inventories {
                answers,
                agreed_after: Some(started.elapsed()),
            };
        }
        tokio::time::sleep(CONVERGENCE_PAUSE).await;
    }
    Inventories {
        answers,
        agreed_after: None,
    }
}

/// What the nodes answered at the end.
#[derive(Clone, Debug)]
pub struct Inventories {
    pub answers: Vec<Inventory>,
    /// How long after the drain one node was the active and every node stored the same
    /// messages; `None` if that never happened.
    pub agreed_after: Option<Duration>,
}

impl Inventories {
    pub fn active(&self) -> Option<&Inventory> {
        self.answers.iter().find(|answer| answer.active)
    }
}

fn same_messages(a: &Inventory, b: &Inventory) -> bool {
    let sorted = |inventory: &Inventory| {
        let mut ids = inventory.message_ids.clone();
        ids.sort();
        ids
    };
    sorted(a) == sorted(b)
}

fn publish_command(prefix: &str, ids: &[String]) -> Command {
    Command::Publish {
        publisher: prefix.into(),
        messages: ids
            .iter()
            .enumerate()
            .map(|(position, id)| NewMessage {
                message_id: MessageId(id.clone()),
                body: format!("body of {id}").into_bytes(),
                properties: vec![Property {
                    name: "MessageType".into(),
                    value: Value::String(message_type(position).into()),
                    promoted: true,
                }],
            })
            .collect(),
    }
}

/// The type of a batch's `position`th message: every [`KEPT_EVERY`]th is routed to
/// [`KEPT_HOST`], the others to [`HOST`].
fn message_type(position: usize) -> &'static str {
    if position % KEPT_EVERY == KEPT_EVERY - 1 {
        "Audit"
    } else {
        "Order"
    }
}

/// One outcome per message, classified as the chaos workload classifies a gRPC answer.
fn publish_outcomes(answer: Result<Executed, Failure>, count: usize) -> Vec<PublishOutcome> {
    match answer {
        Ok(Executed {
            outcome: Outcome::Published(results),
            term,
            log_index,
            node_id,
        }) if results.len() == count => results
            .into_iter()
            .map(|result| match result {
                Ok(_) => PublishOutcome::Acknowledged {
                    term,
                    log_index,
                    node_id,
                },
                Err(error) => PublishOutcome::Failed(error.code.as_str().into()),
            })
            .collect(),
        Ok(other) => vec![PublishOutcome::Unknown(format!("unexpected answer {other:?}")); count],
        Err(Failure::Answered(error)) => {
            let outcome = match error.code {
                ErrorCode::NoQuorum | ErrorCode::Unavailable => {
                    PublishOutcome::Unknown(error.code.as_str().into())
                }
                code => PublishOutcome::Failed(code.as_str().into()),
            };
            vec![outcome; count]
        }
        Err(Failure::Call(reason)) => vec![PublishOutcome::Unknown(reason); count],
    }
}

/// Why a call did not succeed.
#[derive(Debug)]
enum Failure {
    /// The node answered with an error.
    Answered(Error),
    /// No answer: refused, cut, closed or timed out.
    Call(String),
}

async fn execute(node: u64, command: Command) -> Result<Executed, Failure> {
    match call(node, &Request::Execute(command)).await {
        Ok(Response::Executed(Ok(executed))) => Ok(executed),
        Ok(Response::Executed(Err(error))) => Err(Failure::Answered(error)),
        Ok(other) => Err(Failure::Call(format!("unexpected response {other:?}"))),
        Err(reason) => Err(Failure::Call(reason)),
    }
}

/// One request on a fresh connection, within [`CALL_TIMEOUT`].
async fn call(node: u64, request: &Request) -> Result<Response, String> {
    let exchange = async {
        let mut stream = TcpStream::connect((node_name(node), CLIENT_PORT)).await?;
        write_frame(&mut stream, request).await?;
        read_frame::<_, Response>(&mut stream).await
    };
    match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
        Ok(Ok(Some(response))) => Ok(response),
        Ok(Ok(None)) => Err("closed before answering".into()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_elapsed) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

fn next_node(node: u64, node_count: u64) -> u64 {
    node % node_count + 1
}
