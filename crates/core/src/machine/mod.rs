//! The MessageBox state machine: the in-memory catalog (hosts, subscriptions, routing
//! index, counters, settings) and `apply`, the one place where state changes.
//!
//! Handlers live beside this file, one concern each: `catalog` (settings, hosts,
//! subscriptions), `publish`, `delivery` (lease, renew, complete, abandon, fail) and
//! `operations` (resume, terminate, tick, tracking purge).

mod catalog;
mod delivery;
mod operations;
mod publish;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::error::{Error, Result};
use crate::filter::{Filter, RoutingIndex};
use crate::host::Host;
use crate::ids::{HostId, InstanceId, LeaseToken, MessageSeq, SubscriptionId};
use crate::instance::{Instance, InstanceState};
use crate::outcome::Outcome;
use crate::settings::Settings;
use crate::subscription::{DeliveryPolicy, Subscription, SubscriptionDefinition};
use crate::tables::Tables;
use crate::tracking::{TrackingEvent, TrackingKind};

/// The small, always-loaded part of the state: counters and settings. Persisted by
/// [`MessageBox::flush`] in the same transaction as the commands that changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub next_message_seq: MessageSeq,
    pub next_instance_id: InstanceId,
    pub next_lease_token: LeaseToken,
    pub next_host_id: HostId,
    pub next_subscription_id: SubscriptionId,
    /// Messages stored (with at least one live instance).
    pub message_count: u64,
    /// Messages kept in the routing-failure queue.
    pub routing_failures: u64,
    /// The latest timestamp applied: time never runs backwards inside the machine.
    pub last_timestamp_ms: i64,
    pub settings: Settings,
}

impl Default for MachineState {
    fn default() -> MachineState {
        MachineState {
            next_message_seq: 1,
            next_instance_id: 1,
            next_lease_token: 1,
            next_host_id: 1,
            next_subscription_id: 1,
            message_count: 0,
            routing_failures: 0,
            last_timestamp_ms: 0,
            settings: Settings::default(),
        }
    }
}

/// A MessageBox: apply commands to it; read its catalog directly.
#[derive(Clone, Debug, Default)]
pub struct MessageBox {
    state: MachineState,
    hosts: BTreeMap<HostId, Host>,
    host_ids_by_name: BTreeMap<String, HostId>,
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    subscription_ids_by_name: BTreeMap<String, SubscriptionId>,
    routing: RoutingIndex,
    dirty_hosts: BTreeSet<HostId>,
    /// Counters, settings or the clock floor changed and must be saved with this batch.
    state_dirty: bool,
}

impl MessageBox {
    /// An empty MessageBox with default settings.
    pub fn new() -> MessageBox {
        MessageBox {
            state_dirty: true,
            ..MessageBox::default()
        }
    }

    /// Rebuilds a MessageBox from what the store persisted.
    pub fn load(
        state: MachineState,
        hosts: Vec<Host>,
        subscriptions: Vec<Subscription>,
    ) -> std::result::Result<MessageBox, String> {
        let mut machine = MessageBox {
            state,
            ..MessageBox::default()
        };
        for host in hosts {
            machine.host_ids_by_name.insert(host.name.clone(), host.id);
            machine.hosts.insert(host.id, host);
        }
        for subscription in subscriptions {
            let filter = Filter::parse(&subscription.filter).map_err(|error| {
                format!(
                    "stored subscription '{}' has a bad filter: {error}",
                    subscription.name
                )
            })?;
            machine.add_subscription(subscription, filter);
        }
        Ok(machine)
    }

    /// Applies one command at `timestamp_ms` (stamped by the active). Deterministic: the
    /// same state, tables and commands give the same outcomes and the same writes.
    pub fn apply(
        &mut self,
        tables: &mut impl Tables,
        command: Command,
        timestamp_ms: i64,
    ) -> Result<Outcome> {
        // The clock floor is saved whenever it moves, so that a replica that reloads from
        // disk stamps the next command exactly as one that never stopped.
        let now_ms = timestamp_ms.max(self.state.last_timestamp_ms);
        if now_ms != self.state.last_timestamp_ms {
            self.state.last_timestamp_ms = now_ms;
            self.state_dirty = true;
        }
        match command {
            Command::Configure(settings) => self.configure(settings),
            Command::CreateHost { name } => self.create_host(tables, name, now_ms),
            Command::CreateSubscription {
                name,
                host,
                filter,
                priority,
                retry,
                backup,
            } => {
                let definition = SubscriptionDefinition {
                    name,
                    host,
                    filter,
                    priority,
                    retry,
                    backup,
                };
                self.create_subscription(tables, definition, now_ms)
            }
            Command::DeleteSubscription { id } => self.delete_subscription(tables, id),
            Command::Publish {
                publisher,
                messages,
            } => self.publish(tables, &publisher, messages, now_ms),
            Command::Lease {
                host,
                holder,
                max_messages,
                lease_duration_ms,
            } => self.lease(
                tables,
                &host,
                &holder,
                max_messages,
                lease_duration_ms,
                now_ms,
            ),
            Command::RenewLease {
                instance,
                token,
                lease_duration_ms,
            } => self.renew_lease(tables, instance, token, lease_duration_ms, now_ms),
            Command::Complete { instance, token } => self.complete(tables, instance, token, now_ms),
            Command::Abandon { instance, token } => self.abandon(tables, instance, token, now_ms),
            Command::Fail {
                instance,
                token,
                reason,
            } => self.fail(tables, instance, token, reason, now_ms),
            Command::Resume { instance } => self.resume(tables, instance, now_ms),
            Command::Terminate { instance, reason } => {
                self.terminate(tables, instance, reason, now_ms)
            }
            Command::Tick => Ok(self.tick(tables, now_ms)),
            Command::PurgeTracking { before_ms } => Ok(self.purge_tracking(tables, before_ms)),
            Command::ReplaceSubscription { id, definition } => {
                self.replace_subscription(tables, id, definition)
            }
        }
    }

    /// Writes the catalog changes made since the last flush (host depths, counters).
    /// The store calls this once per batch, inside the batch's transaction.
    pub fn flush(&mut self, tables: &mut impl Tables) {
        for host_id in std::mem::take(&mut self.dirty_hosts) {
            if let Some(host) = self.hosts.get(&host_id) {
                tables.save_host(host);
            }
        }
        if std::mem::take(&mut self.state_dirty) {
            tables.save_machine_state(&self.state);
        }
    }

    pub fn state(&self) -> &MachineState {
        &self.state
    }

    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    pub fn host(&self, id: HostId) -> Option<&Host> {
        self.hosts.get(&id)
    }

    pub fn host_by_name(&self, name: &str) -> Option<&Host> {
        self.host_ids_by_name
            .get(name)
            .and_then(|id| self.hosts.get(id))
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.values()
    }

    pub fn subscription(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.subscriptions.get(&id)
    }

    /// Whether publish is refused right now because the store is full.
    pub fn throttled(&self) -> bool {
        self.state.message_count >= self.state.settings.throttle_message_count
    }

    fn add_subscription(&mut self, subscription: Subscription, filter: Filter) {
        self.routing.insert(subscription.id, &filter);
        self.subscription_ids_by_name
            .insert(subscription.name.clone(), subscription.id);
        self.subscriptions.insert(subscription.id, subscription);
    }

    fn existing_host(&self, name: &str) -> Result<&Host> {
        self.host_by_name(name)
            .ok_or_else(|| Error::not_found(format!("host '{name}' does not exist")))
    }

    /// The instance's subscription's delivery policy; the default (primary retries only)
    /// once the subscription is deleted.
    fn delivery_policy(&self, instance: &Instance) -> DeliveryPolicy {
        instance
            .subscription
            .and_then(|id| self.subscription(id))
            .map(Subscription::delivery_policy)
            .unwrap_or_default()
    }

    fn take_counter(counter: &mut u64) -> u64 {
        let value = *counter;
        *counter += 1;
        value
    }

    /// Moves an instance between states, keeping its host's depth counters right.
    fn set_state(&mut self, instance: &mut Instance, state: InstanceState) {
        self.count_out(instance);
        instance.state = state;
        self.count_in(instance);
    }

    fn count_in(&mut self, instance: &Instance) {
        self.adjust_depth(instance, 1);
    }

    fn count_out(&mut self, instance: &Instance) {
        self.adjust_depth(instance, -1);
    }

    fn adjust_depth(&mut self, instance: &Instance, delta: i64) {
        let Some(host_id) = instance.host else {
            self.state.routing_failures = self.state.routing_failures.saturating_add_signed(delta);
            self.state_dirty = true;
            return;
        };
        let Some(host) = self.hosts.get_mut(&host_id) else {
            return;
        };
        let counter = match instance.state {
            InstanceState::Ready => &mut host.depth.ready,
            InstanceState::Delayed => &mut host.depth.delayed,
            InstanceState::Leased => &mut host.depth.leased,
            InstanceState::Suspended => &mut host.depth.suspended,
        };
        *counter = counter.saturating_add_signed(delta);
        self.dirty_hosts.insert(host_id);
    }

    fn track(
        &self,
        tables: &mut impl Tables,
        instance: &Instance,
        kind: TrackingKind,
        detail: String,
        now_ms: i64,
    ) {
        if !self.state.settings.tracking {
            return;
        }
        tables.append_tracking(
            instance.message_seq,
            &TrackingEvent {
                message_id: instance.message_id.clone(),
                instance: Some(instance.id),
                at_ms: now_ms,
                kind,
                detail,
            },
        );
    }

    /// Removes an instance for good; the message goes with its last instance.
    fn remove_instance(&mut self, tables: &mut impl Tables, instance: &Instance, now_ms: i64) {
        self.count_out(instance);
        tables.delete_instance(instance.id);
        if tables.count_instances_of_message(instance.message_seq) == 0 {
            tables.delete_message(instance.message_seq, now_ms);
            self.state.message_count = self.state.message_count.saturating_sub(1);
            self.state_dirty = true;
        }
    }
}
