//! Differential test: the same random command sequences applied to the reference
//! (`MessageBox::apply` on `MemoryTables`) and to a real store (on SQLite, with group
//! commit, closed and reopened midway) give the same outcomes, the same catalog and the
//! same rows (dedupe entries of deleted messages included). The store gets each command
//! either from outside any log (`StoreHandle::execute`, at the store's wall clock) or in
//! replicated batches stamped with the test's clock, which also ticks: leases expire,
//! retries fall due, dedupe entries are forgotten and tracking is purged.
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
use tandem_store::{Batch, Store, StoreHandle, integrity};

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
    /// Replicated feed only (the local feed runs on the store's wall clock).
    Tick,
    PurgeTracking,
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

/// [`op`], and the sweeps, whose outcomes depend on the time: for the replicated feed, which
/// stamps every batch with the test's clock.
fn timed_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => op(),
        2 => Just(Op::Tick),
        1 => Just(Op::PurgeTracking),
    ]
}

/// How far the test's clock moves before a group: not at all, past the dedupe window and the
/// retry interval, or past the leases (an hour).
fn clock_step() -> impl Strategy<Value = i64> {
    prop_oneof![3 => Just(0_i64), 1 => Just(20 * 60_000_i64), 1 => Just(2 * 3_600_000_i64)]
}

/// The reference: the machine on in-memory tables.
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

    fn apply(&mut self, command: Command, now_ms: i64) -> Result<Outcome> {
        let outcome = self.machine.apply(&mut self.tables, command, now_ms);
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

    fn command(&self, op: &Op, now_ms: i64) -> Command {
        match op {
            Op::Tick => Command::Tick,
            Op::PurgeTracking => Command::PurgeTracking {
                before_ms: now_ms - 60_000,
            },
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

/// How the store is given the commands.
#[derive(Clone, Copy, Debug)]
enum Feed {
    /// `StoreHandle::execute` at the store's wall clock (the reference's is 0).
    Local,
    /// Replicated batches at the test's clock: a batch per command, or per group
    /// (`whole_groups`, so that a sweep shares its batch with other commands).
    Replicated { whole_groups: bool },
}

/// Submits the commands as replicated batches (in order, so they may share a round), then
/// awaits the answers in order.
async fn apply_replicated(
    handle: &StoreHandle,
    commands: Vec<Command>,
    whole_group: bool,
    now_ms: i64,
    position: &mut u64,
) -> Vec<Result<Outcome>> {
    let batches: Vec<Vec<Command>> = if whole_group {
        vec![commands]
    } else {
        commands.into_iter().map(|command| vec![command]).collect()
    };
    let mut answers = Vec::new();
    for commands in batches {
        *position += 1;
        let batch = Batch {
            timestamp_ms: now_ms,
            commands,
            event: None,
            position: Some(position.to_be_bytes().to_vec()),
        };
        answers.push(
            handle
                .submit(batch)
                .await
                .expect("the store takes the batch"),
        );
    }
    let mut outcomes = Vec::new();
    for answer in answers {
        outcomes.extend(answer.await.expect("the batch applies"));
    }
    outcomes
}

async fn apply(
    handle: &StoreHandle,
    feed: Feed,
    commands: Vec<Command>,
    now_ms: i64,
    position: &mut u64,
) -> Vec<Result<Outcome>> {
    match feed {
        Feed::Local => execute_together(handle, commands).await,
        Feed::Replicated { whole_groups, .. } => {
            apply_replicated(handle, commands, whole_groups, now_ms, position).await
        }
    }
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
        .map(|((_, seq), (id, _))| (*seq, id.0.clone()))
        .collect();
    expected.sort();
    assert_eq!(
        entries, expected,
        "dedupe entries of deleted messages: store (left) vs reference (right)"
    );
    assert_same_tracking(&connection, reference);
}

/// The tracking events, each with its message's seq (how the store finds a history).
fn assert_same_tracking(connection: &rusqlite::Connection, reference: &Reference) {
    type Event = (Option<u64>, String, Option<u64>, String);
    let mut statement = connection
        .prepare("SELECT message_seq, message_id, instance_id, kind FROM tracking ORDER BY id")
        .expect("prepare");
    let events: Vec<Event> = statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("read tracking events");
    let expected: Vec<Event> = reference
        .tables
        .tracking
        .iter()
        .map(|(seq, event)| {
            (
                Some(*seq),
                event.message_id.0.clone(),
                event.instance,
                event.kind.as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events, expected,
        "tracking events: store (left) vs reference (right)"
    );
}

/// Applies `groups` (each after its clock step) to the reference and to a store fed by
/// `feed`, closing and reopening the store before group `reopen_after`.
fn run_case(groups: &[(i64, Vec<Op>)], reopen_after: usize, feed: Feed) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = common::runtime();
    let mut reference = Reference::new();
    let mut store = open(dir.path());
    let mut position = 0;
    let mut now_ms = START_MS;
    let reference_time = |now_ms: i64| match feed {
        Feed::Local => 0,
        Feed::Replicated { .. } => now_ms,
    };
    let catalog = catalog_commands();
    let answers = runtime.block_on(apply(
        &store.handle(),
        feed,
        catalog.clone(),
        now_ms,
        &mut position,
    ));
    for (command, answer) in catalog.into_iter().zip(answers) {
        let expected = reference.apply(command, reference_time(now_ms));
        assert_eq!(timeless(answer), timeless(expected));
    }
    let mut history = Vec::new();
    for (index, (clock_step, group)) in groups.iter().enumerate() {
        if index == reopen_after {
            assert_same_catalog(&store, &reference, "before closing");
            store.close();
            store = open(dir.path());
            assert_same_catalog(&store, &reference, "after reopening");
            history.push("-- reopened".to_string());
        }
        now_ms += clock_step;
        let commands: Vec<Command> = group
            .iter()
            .map(|op| reference.command(op, now_ms))
            .collect();
        let handle = store.handle();
        let answers = runtime.block_on(apply(
            &handle,
            feed,
            commands.clone(),
            now_ms,
            &mut position,
        ));
        for (command, answer) in commands.into_iter().zip(answers) {
            history.push(format!("{command:?}"));
            let expected = timeless(reference.apply(command, reference_time(now_ms)));
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

/// The replicated feed's clock at the start (any time will do; the local feed's reference
/// runs at 0).
const START_MS: i64 = 1_700_000_000_000;

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
        let groups: Vec<(i64, Vec<Op>)> = groups.into_iter().map(|group| (0, group)).collect();
        run_case(&groups, reopen_after, Feed::Local);
    }

    #[test]
    fn a_replicated_store_agrees_with_the_in_memory_reference_as_time_passes(
        groups in prop::collection::vec(
            (clock_step(), prop::collection::vec(timed_op(), 1..=4)),
            1..=24,
        ),
        reopen_after in 0..24_usize,
        whole_groups in any::<bool>(),
    ) {
        run_case(&groups, reopen_after, Feed::Replicated { whole_groups });
    }
}
