//! Differential test: the same random command sequences applied to the reference
//! (`MessageBox::apply` on `MemoryTables`) and to a real store (`StoreHandle::execute` on
//! SQLite, with group commit, closed and reopened midway) give the same outcomes, the same
//! catalog and the same rows (dedupe entries of deleted messages included).
//!
//! Outcomes must not depend on the store's wall clock: leases last an hour, there are no
//! ticks, and times are blanked before comparing.

mod common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;

use proptest::prelude::*;
use tandem_core::command::Command;
use tandem_core::error::Result;
use tandem_core::host::Host;
use tandem_core::instance::{Instance, InstanceState};
use tandem_core::machine::MachineState;
use tandem_core::outcome::Outcome;
use tandem_core::subscription::Subscription;
use tandem_core::{MemoryTables, MessageBox};
use tandem_store::{Store, StoreHandle, integrity};

use common::{HOSTS, catalog_commands, open, timeless, timeless_instance};

#[derive(Clone, Debug)]
enum Op {
    /// Ids from a small pool so duplicates happen; kind 2 ("c") matches nothing.
    Publish {
        id: u8,
        kind: u8,
    },
    /// Host 2 does not exist.
    Lease {
        host: usize,
        max_messages: u32,
    },
    Complete(usize, bool),
    Abandon(usize, bool),
    Fail(usize, bool),
    Renew(usize, bool),
    Resume(usize),
    Terminate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let target = || {
        (
            any::<usize>(),
            prop_oneof![4 => Just(true), 1 => Just(false)],
        )
    };
    prop_oneof![
        5 => (0..8_u8, 0..3_u8).prop_map(|(id, kind)| Op::Publish { id, kind }),
        4 => (prop_oneof![6 => 0..2_usize, 1 => Just(2_usize)], 1..=3_u32)
            .prop_map(|(host, max_messages)| Op::Lease { host, max_messages }),
        3 => target().prop_map(|(pick, current)| Op::Complete(pick, current)),
        1 => target().prop_map(|(pick, current)| Op::Abandon(pick, current)),
        3 => target().prop_map(|(pick, current)| Op::Fail(pick, current)),
        1 => target().prop_map(|(pick, current)| Op::Renew(pick, current)),
        1 => any::<usize>().prop_map(Op::Resume),
        1 => any::<usize>().prop_map(Op::Terminate),
    ]
}

/// The reference: the machine on in-memory tables, at a fixed time.
struct Reference {
    machine: MessageBox,
    tables: MemoryTables,
}

impl Reference {
    fn new() -> Reference {
        Reference {
            machine: MessageBox::new(),
            tables: MemoryTables::default(),
        }
    }

    fn apply(&mut self, command: Command) -> Result<Outcome> {
        let outcome = self.machine.apply(&mut self.tables, command, 0);
        self.machine.flush(&mut self.tables);
        outcome
    }

    /// An instance in `state` if there is one, else any instance (or a missing id).
    fn pick(&self, state: InstanceState, index: usize) -> Option<&Instance> {
        let preferred: Vec<&Instance> = self
            .tables
            .instances
            .values()
            .filter(|instance| instance.state == state)
            .collect();
        if !preferred.is_empty() {
            return Some(preferred[index % preferred.len()]);
        }
        let all: Vec<&Instance> = self.tables.instances.values().collect();
        all.get(index % (all.len() + 1)).copied()
    }

    /// (instance, token) for a verdict; a stale token is one below the current one.
    fn target(&self, index: usize, current: bool) -> (u64, u64) {
        match self.pick(InstanceState::Leased, index) {
            Some(instance) if current => (instance.id, instance.lease_token),
            Some(instance) => (instance.id, instance.lease_token.saturating_sub(1)),
            None => (999_999, 1),
        }
    }

    fn command(&self, op: &Op) -> Command {
        match op {
            Op::Publish { id, kind } => {
                common::publish(&format!("m{id}"), ["a", "b", "c"][*kind as usize])
            }
            Op::Lease { host, max_messages } => {
                common::lease(HOSTS.get(*host).unwrap_or(&"nowhere"), *max_messages)
            }
            Op::Complete(index, current) => {
                let (instance, token) = self.target(*index, *current);
                Command::Complete { instance, token }
            }
            Op::Abandon(index, current) => {
                let (instance, token) = self.target(*index, *current);
                Command::Abandon { instance, token }
            }
            Op::Fail(index, current) => {
                let (instance, token) = self.target(*index, *current);
                Command::Fail {
                    instance,
                    token,
                    reason: "refused".to_string(),
                }
            }
            Op::Renew(index, current) => {
                let (instance, token) = self.target(*index, *current);
                Command::RenewLease {
                    instance,
                    token,
                    lease_duration_ms: 3_600_000,
                }
            }
            Op::Resume(index) => Command::Resume {
                instance: self
                    .pick(InstanceState::Suspended, *index)
                    .map_or(999_999, |instance| instance.id),
            },
            Op::Terminate(index) => Command::Terminate {
                instance: self
                    .pick(InstanceState::Ready, *index)
                    .map_or(999_999, |instance| instance.id),
                reason: "operator".to_string(),
            },
        }
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Outcome>> + Send + 'a>>;

/// Sends every command before awaiting any (in order, so they may share one commit), and
/// answers in command order.
async fn execute_together(handle: &StoreHandle, commands: Vec<Command>) -> Vec<Result<Outcome>> {
    let mut pending: Vec<Pending<'_>> = commands
        .into_iter()
        .map(|command| Box::pin(handle.execute(command)) as Pending<'_>)
        .collect();
    let mut answers: Vec<Option<Result<Outcome>>> = vec![None; pending.len()];
    std::future::poll_fn(|context| {
        for (future, answer) in pending.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none()
                && let Poll::Ready(outcome) = future.as_mut().poll(context)
            {
                *answer = Some(outcome);
            }
        }
        if answers.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    answers.into_iter().map(Option::unwrap).collect()
}

fn timeless_hosts(hosts: impl Iterator<Item = Host>) -> Vec<Host> {
    hosts
        .map(|mut host| {
            host.created_at_ms = 0;
            host
        })
        .collect()
}

fn timeless_subscriptions(subscriptions: impl Iterator<Item = Subscription>) -> Vec<Subscription> {
    subscriptions
        .map(|mut subscription| {
            subscription.created_at_ms = 0;
            subscription
        })
        .collect()
}

fn timeless_state(mut state: MachineState) -> MachineState {
    state.last_timestamp_ms = 0;
    state
}

/// The store's catalog equals the reference machine's, times aside.
fn assert_same_catalog(store: &Store, reference: &Reference, when: &str) {
    let catalog = store.handle().catalog();
    assert_eq!(
        timeless_hosts(catalog.hosts.iter().cloned()),
        timeless_hosts(reference.machine.hosts().cloned()),
        "hosts and depths {when}: store (left) vs reference (right)"
    );
    assert_eq!(
        timeless_subscriptions(catalog.subscriptions.iter().cloned()),
        timeless_subscriptions(reference.machine.subscriptions().cloned()),
        "subscriptions {when}"
    );
    assert_eq!(
        timeless_state(catalog.state.clone()),
        timeless_state(reference.machine.state().clone()),
        "machine state {when}: store (left) vs reference (right)"
    );
}

/// The closed store's rows equal the reference tables, times aside.
fn assert_same_rows(dir: &Path, reference: &Reference) {
    let stored: Vec<Instance> = common::stored_instances(dir)
        .into_iter()
        .map(timeless_instance)
        .collect();
    let expected: Vec<Instance> = reference
        .tables
        .instances
        .values()
        .cloned()
        .map(timeless_instance)
        .collect();
    assert_eq!(
        stored, expected,
        "instances: store (left) vs reference (right)"
    );
    let connection = common::database(dir);
    let mut statement = connection
        .prepare(
            "SELECT m.seq, m.message_id, p.body FROM messages AS m \
             JOIN message_payloads AS p ON p.seq = m.seq WHERE m.removed = 0 ORDER BY m.seq",
        )
        .expect("prepare");
    let messages: Vec<(u64, String, Vec<u8>)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("read messages");
    let expected: Vec<(u64, String, Vec<u8>)> = reference
        .tables
        .messages
        .values()
        .map(|message| {
            (
                message.seq,
                message.message_id.0.clone(),
                message.body.clone(),
            )
        })
        .collect();
    assert_eq!(
        messages, expected,
        "messages: store (left) vs reference (right)"
    );
    let mut statement = connection
        .prepare("SELECT seq, message_id FROM messages WHERE removed = 1 ORDER BY seq")
        .expect("prepare");
    let entries: Vec<(u64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("read dedupe entries");
    let mut expected: Vec<(u64, String)> = reference
        .tables
        .dedupe
        .iter()
        .map(|((_, seq), id)| (*seq, id.0.clone()))
        .collect();
    expected.sort();
    assert_eq!(
        entries, expected,
        "dedupe entries of deleted messages: store (left) vs reference (right)"
    );
}

fn run_case(groups: &[Vec<Op>], reopen_after: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = common::runtime();
    let mut reference = Reference::new();
    let mut store = open(dir.path());
    let catalog = catalog_commands();
    let answers = runtime.block_on(execute_together(&store.handle(), catalog.clone()));
    for (command, answer) in catalog.into_iter().zip(answers) {
        assert_eq!(timeless(answer), timeless(reference.apply(command)));
    }
    let mut history = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        if index == reopen_after {
            assert_same_catalog(&store, &reference, "before closing");
            store.close();
            store = open(dir.path());
            assert_same_catalog(&store, &reference, "after reopening");
            history.push("-- reopened".to_string());
        }
        let commands: Vec<Command> = group.iter().map(|op| reference.command(op)).collect();
        let answers = runtime.block_on(execute_together(&store.handle(), commands.clone()));
        for (command, answer) in commands.into_iter().zip(answers) {
            history.push(format!("{command:?}"));
            let expected = timeless(reference.apply(command));
            let actual = timeless(answer);
            assert_eq!(
                actual,
                expected,
                "store (left) and reference (right) disagree; history:\n{}",
                history.join("\n")
            );
        }
    }
    assert_same_catalog(&store, &reference, "at the end");
    store.close();
    assert_same_rows(dir.path(), &reference);
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(
        report.is_healthy(),
        "integrity problems: {:?}",
        report.problems
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_agrees_with_the_in_memory_reference(
        groups in prop::collection::vec(prop::collection::vec(op(), 1..=3), 1..=24),
        reopen_after in 0..24_usize,
    ) {
        run_case(&groups, reopen_after);
    }
}
