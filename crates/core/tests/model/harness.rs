//! Drives the real machine and the reference model side by side and compares them after
//! every step.

use std::collections::{BTreeMap, BTreeSet};

use tandem_core::command::Command;
use tandem_core::error::Result;
use tandem_core::instance::{Instance, InstanceState};
use tandem_core::outcome::Outcome;
use tandem_core::settings::Settings;
use tandem_core::subscription::RetryPolicy;
use tandem_core::{MemoryTables, MessageBox};

use super::generate::{Op, Step, advance, resolve};
use super::reference::{Fate, HOSTS, Lease, Model, Observed, Receipt, RetrySpec, Setup, State};

/// The commands that build the setup: settings, two hosts, the subscriptions.
pub fn setup_commands(setup: &Setup) -> Vec<Command> {
    let mut commands = vec![Command::Configure(Settings {
        max_body_bytes: setup.max_body_bytes,
        dedupe_window_ms: setup.dedupe_window_ms,
        throttle_message_count: setup.throttle_message_count,
        // The model knows no history: without tracking events, a deleted message's entry
        // goes once the dedupe window has passed since its deletion.
        tracking: false,
        ..Settings::default()
    })];
    commands.extend(HOSTS.iter().map(|name| Command::CreateHost {
        name: name.to_string(),
    }));
    for (index, spec) in setup.subscriptions.iter().enumerate() {
        commands.push(Command::CreateSubscription {
            name: format!("s{index}"),
            host: HOSTS[spec.host].to_string(),
            filter: spec.filter(),
            priority: spec.priority,
            retry: retry_policy(&spec.retry),
            backup: spec.backup.as_ref().map(retry_policy),
        });
    }
    commands
}

fn retry_policy(spec: &RetrySpec) -> RetryPolicy {
    RetryPolicy {
        retry_count: spec.retry_count,
        retry_interval_ms: spec.retry_interval_ms,
        exponential_backoff: spec.exponential_backoff,
    }
}

/// Maps a machine outcome to what the model can predict.
pub fn observe(result: &Result<Outcome>) -> Observed {
    let outcome = match result {
        Err(error) => return Observed::Error(error.code, error.retry_after_ms),
        Ok(outcome) => outcome,
    };
    match outcome {
        Outcome::Published(receipts) => Observed::Published(
            receipts
                .iter()
                .map(|receipt| match receipt {
                    Err(error) => Err((error.code, error.retry_after_ms)),
                    Ok(receipt) => {
                        assert!(!receipt.routing_failure, "routing-failure queue is off");
                        Ok(Receipt {
                            message_id: receipt.message_id.0.clone(),
                            duplicate: receipt.duplicate,
                            instances: receipt.instances.clone(),
                        })
                    }
                })
                .collect(),
        ),
        Outcome::Leased(leases) => Observed::Leased(
            leases
                .iter()
                .map(|lease| Lease {
                    instance: lease.instance,
                    message_id: lease.message_id.0.clone(),
                    token: lease.token,
                    attempt: lease.attempt,
                    expires_at_ms: lease.expires_at_ms,
                    subscription: lease.subscription,
                    priority: lease.priority,
                    body: lease.body.clone(),
                    backup_transport: lease.backup_transport,
                })
                .collect(),
        ),
        Outcome::LeaseRenewed { expires_at_ms } => Observed::Renewed {
            expires_at_ms: *expires_at_ms,
        },
        Outcome::Completed => Observed::Completed,
        Outcome::Abandoned => Observed::Abandoned,
        Outcome::Failed { suspended } => Observed::Failed {
            suspended: *suspended,
        },
        Outcome::Resumed => Observed::Resumed,
        Outcome::Terminated => Observed::Terminated,
        Outcome::Ticked(report) => Observed::Ticked(*report),
        other => Observed::Other(format!("{other:?}")),
    }
}

fn model_state(state: InstanceState) -> State {
    match state {
        InstanceState::Ready => State::Ready,
        InstanceState::Delayed => State::Delayed,
        InstanceState::Leased => State::Leased,
        InstanceState::Suspended => State::Suspended,
    }
}

pub struct Harness {
    pub machine: MessageBox,
    pub tables: MemoryTables,
    pub model: Model,
    pub clock_ms: i64,
    highest_token: u64,
    /// What happened so far, printed with every failure.
    pub log: Vec<String>,
}

impl Harness {
    pub fn new(setup: Setup) -> Harness {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        for command in setup_commands(&setup) {
            let description = format!("{command:?}");
            let outcome = machine.apply(&mut tables, command, 0);
            assert!(outcome.is_ok(), "setup {description} failed: {outcome:?}");
        }
        machine.flush(&mut tables);
        Harness {
            machine,
            tables,
            model: Model::new(setup),
            clock_ms: 0,
            highest_token: 0,
            log: Vec::new(),
        }
    }

    fn history(&self) -> String {
        self.log.join("\n")
    }

    pub fn step(&mut self, step: &Step) {
        let stamp = advance(step.clock, &mut self.clock_ms, &self.model);
        match resolve(&self.model, &step.op) {
            Some(command) => {
                self.execute(command, stamp);
            }
            None => {
                debug_assert!(matches!(step.op, Op::Reload));
                self.reload();
            }
        }
    }

    /// Applies one command to both sides, compares, and checks every invariant.
    pub fn execute(&mut self, command: Command, stamp: i64) -> Observed {
        self.log.push(format!("@{stamp} {command:?}"));
        let expected = self.model.apply(&command, stamp);
        let actual = observe(&self.machine.apply(&mut self.tables, command, stamp));
        self.machine.flush(&mut self.tables);
        self.log.push(format!("   -> {actual:?}"));
        assert_eq!(
            actual,
            expected,
            "machine (left) and model (right) disagree; history:\n{}",
            self.history()
        );
        if let Observed::Leased(leases) = &actual {
            for lease in leases {
                assert!(
                    lease.token > self.highest_token,
                    "lease token {} is not above the previous {}; history:\n{}",
                    lease.token,
                    self.highest_token,
                    self.history()
                );
                self.highest_token = lease.token;
            }
        }
        self.check();
        actual
    }

    /// Rebuilds the machine from its flushed tables, as the store's loader does.
    fn reload(&mut self) {
        self.log.push("reload".to_string());
        let persisted = self
            .tables
            .machine_state
            .clone()
            .expect("the setup flushed the machine state");
        let expected = self.machine.state().clone();
        assert_eq!(
            persisted,
            expected,
            "flushed machine state (left) lags the machine (right); history:\n{}",
            self.history()
        );
        self.machine = MessageBox::load(
            persisted,
            self.tables.hosts.values().cloned().collect(),
            self.tables.subscriptions.values().cloned().collect(),
        )
        .expect("flushed catalog loads");
        self.check();
    }

    /// Every invariant between machine, tables and model.
    pub fn check(&self) {
        let history = || self.history();
        let model = &self.model;
        let real: &BTreeMap<u64, Instance> = &self.tables.instances;
        let real_ids: BTreeSet<u64> = real.keys().copied().collect();
        let model_ids: BTreeSet<u64> = model.instances.keys().copied().collect();
        assert_eq!(
            real_ids,
            model_ids,
            "instance ids: machine (left) vs model (right); history:\n{}",
            history()
        );
        for (id, expected) in &model.instances {
            let actual = &real[id];
            let mut differences = Vec::new();
            let mut differ = |what: &str, equal: bool| {
                if !equal {
                    differences.push(what.to_string());
                }
            };
            differ("state", model_state(actual.state) == expected.state);
            differ("attempts", actual.attempts == expected.attempts);
            differ("lease token", actual.lease_token == expected.lease_token);
            differ("message seq", actual.message_seq == expected.message_seq);
            differ("message id", actual.message_id.0 == expected.message_id);
            differ(
                "subscription",
                actual.subscription == Some(expected.subscription as u64 + 1),
            );
            differ("host", actual.host == Some(expected.host as u64 + 1));
            differ("priority", actual.priority == expected.priority);
            if expected.state == State::Leased {
                differ(
                    "lease expiry",
                    actual.lease_expires_at_ms == expected.lease_expires_at_ms,
                );
            }
            if expected.state == State::Delayed {
                differ("visible at", actual.visible_at_ms == expected.visible_at_ms);
            }
            assert!(
                differences.is_empty(),
                "instance {id} differs in {differences:?}: machine {actual:?} vs model \
                 {expected:?}; history:\n{}",
                history()
            );
        }
        self.check_messages(&history);
        self.check_counters(&history);
        self.check_fates(&history);
    }

    fn check_messages(&self, history: &dyn Fn() -> String) {
        let real: BTreeSet<u64> = self.tables.messages.keys().copied().collect();
        let model: BTreeSet<u64> = self.model.messages.keys().copied().collect();
        assert_eq!(
            real,
            model,
            "stored messages: machine (left) vs model (right); history:\n{}",
            history()
        );
        for (seq, expected) in &self.model.messages {
            let actual = &self.tables.messages[seq];
            assert!(
                actual.message_id.0 == expected.message_id && actual.body == expected.body,
                "message {seq}: machine {actual:?} vs model {expected:?}; history:\n{}",
                history()
            );
        }
        let with_instances: BTreeSet<u64> = self
            .tables
            .instances
            .values()
            .map(|instance| instance.message_seq)
            .collect();
        assert_eq!(
            real,
            with_instances,
            "every stored message (left) must have an instance and every instance a message \
             (right); history:\n{}",
            history()
        );
        assert_eq!(
            self.machine.state().message_count,
            real.len() as u64,
            "message_count vs stored messages; history:\n{}",
            history()
        );
        let dedupe: BTreeMap<(i64, u64), String> = self
            .tables
            .dedupe
            .iter()
            .map(|(key, (id, _))| (*key, id.0.clone()))
            .collect();
        assert_eq!(
            dedupe,
            self.model.tombstones,
            "dedupe entries of deleted messages: machine (left) vs model (right); history:\n{}",
            history()
        );
    }

    fn check_counters(&self, history: &dyn Fn() -> String) {
        let state = self.machine.state();
        let counters = (
            state.next_message_seq,
            state.next_instance_id,
            state.next_lease_token,
        );
        let model = &self.model;
        let expected = (
            model.next_message_seq,
            model.next_instance_id,
            model.next_lease_token,
        );
        assert_eq!(
            counters,
            expected,
            "next (seq, instance, token): machine vs model; history:\n{}",
            history()
        );
        for (index, name) in HOSTS.iter().enumerate() {
            let host = self.machine.host_by_name(name).expect("host exists");
            let depth = [
                host.depth.ready,
                host.depth.delayed,
                host.depth.leased,
                host.depth.suspended,
            ];
            let mut counted = [0_u64; 4];
            for instance in self.tables.instances.values() {
                if instance.host == Some(host.id) {
                    counted[model_state(instance.state) as usize] += 1;
                }
            }
            assert_eq!(
                depth,
                counted,
                "host {name} depth counters (left) vs its instances (right), as \
                 [ready, delayed, leased, suspended]; history:\n{}",
                history()
            );
            assert_eq!(depth, model.depth(index), "host {name} depth vs model");
            assert_eq!(
                self.tables.hosts.get(&host.id),
                Some(host),
                "flushed host {name} (left) vs machine (right); history:\n{}",
                history()
            );
        }
    }

    fn check_fates(&self, history: &dyn Fn() -> String) {
        let model = &self.model;
        for (id, fate) in &model.fates {
            let present = model.instances.contains_key(id);
            assert_eq!(
                *fate == Fate::Present,
                present,
                "instance {id} is {fate:?} but present = {present}; history:\n{}",
                history()
            );
            if let Fate::Completed { token } = fate {
                assert_eq!(
                    *token,
                    model.current_token(*id),
                    "instance {id} was completed by a token that was not its latest lease"
                );
            }
        }
        assert_eq!(
            model.fates.len() as u64,
            model.next_instance_id - 1,
            "every instance ever created has a fate"
        );
    }

    /// Runs the clock far ahead and works everything off: tick, resume the suspended, lease
    /// and complete. Every instance must end completed or terminated, none lost or stuck.
    pub fn drain(&mut self) {
        for _ in 0..200 {
            if self.model.instances.is_empty() {
                break;
            }
            self.clock_ms += 100_000;
            let now = self.clock_ms;
            self.execute(Command::Tick, now);
            for instance in self.model.ids_in(State::Suspended) {
                self.execute(Command::Resume { instance }, now);
            }
            for host in HOSTS {
                let command = Command::Lease {
                    host: host.to_string(),
                    holder: "drainer".to_string(),
                    max_messages: 3,
                    lease_duration_ms: 1_000,
                };
                let Observed::Leased(leases) = self.execute(command, now) else {
                    panic!("lease during drain failed; history:\n{}", self.history());
                };
                for lease in leases {
                    let completed = self.execute(
                        Command::Complete {
                            instance: lease.instance,
                            token: lease.token,
                        },
                        now,
                    );
                    assert_eq!(completed, Observed::Completed);
                }
            }
        }
        assert!(
            self.tables.instances.is_empty() && self.tables.messages.is_empty(),
            "drain left instances behind; history:\n{}",
            self.history()
        );
        assert_eq!(self.machine.state().message_count, 0);
        for name in HOSTS {
            let depth = self.machine.host_by_name(name).expect("host exists").depth;
            assert_eq!(depth.total(), 0, "host {name} depth after drain");
        }
    }
}
