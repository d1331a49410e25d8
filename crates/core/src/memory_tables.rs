//! An in-memory [`Tables`]: the reference implementation for tests and models. The store's
//! SQLite tables must behave the same way (the store's tests compare them).

use std::collections::BTreeMap;

use crate::host::Host;
use crate::ids::{HostId, InstanceId, MessageId, MessageSeq, SubscriptionId};
use crate::instance::{Instance, InstanceState};
use crate::machine::MachineState;
use crate::message::StoredMessage;
use crate::subscription::Subscription;
use crate::tables::Tables;
use crate::tracking::TrackingEvent;

#[derive(Clone, Debug, Default)]
pub struct MemoryTables {
    pub machine_state: Option<MachineState>,
    pub hosts: BTreeMap<HostId, Host>,
    pub subscriptions: BTreeMap<SubscriptionId, Subscription>,
    /// The entries deleted messages left, by deletion time and seq: the id and publish time.
    pub dedupe: BTreeMap<(i64, MessageSeq), (MessageId, i64)>,
    pub messages: BTreeMap<MessageSeq, StoredMessage>,
    pub instances: BTreeMap<InstanceId, Instance>,
    /// Every event, oldest first, with the seq of its message.
    pub tracking: Vec<(MessageSeq, TrackingEvent)>,
}

impl MemoryTables {
    fn instances_where(
        &self,
        state: InstanceState,
        due: impl Fn(&Instance) -> bool,
        order: impl Fn(&Instance) -> (i64, InstanceId),
        limit: usize,
    ) -> Vec<Instance> {
        let mut found: Vec<&Instance> = self
            .instances
            .values()
            .filter(|i| i.state == state && due(i))
            .collect();
        found.sort_by_key(|instance| order(instance));
        found.into_iter().take(limit).cloned().collect()
    }
}

impl Tables for MemoryTables {
    fn save_machine_state(&mut self, state: &MachineState) {
        self.machine_state = Some(state.clone());
    }

    fn save_host(&mut self, host: &Host) {
        self.hosts.insert(host.id, host.clone());
    }

    fn save_subscription(&mut self, subscription: &Subscription) {
        self.subscriptions
            .insert(subscription.id, subscription.clone());
    }

    fn delete_subscription(&mut self, id: SubscriptionId) {
        self.subscriptions.remove(&id);
    }

    fn find_dedupe(&mut self, message_id: &MessageId) -> Option<i64> {
        let stored = self
            .messages
            .values()
            .filter(|message| &message.message_id == message_id);
        let entries = self
            .dedupe
            .iter()
            .filter(|(_, (id, _))| id == message_id)
            .map(|(_, (_, published_at_ms))| *published_at_ms);
        stored
            .map(|message| message.received_at_ms)
            .chain(entries)
            .max()
    }

    fn forget_deleted_messages_before(&mut self, before_ms: i64, limit: usize) -> u64 {
        let old: Vec<(i64, MessageSeq)> = self
            .dedupe
            .keys()
            .take_while(|(at, _)| *at < before_ms)
            .take(limit)
            .copied()
            .collect();
        for key in &old {
            self.dedupe.remove(key);
        }
        old.len() as u64
    }

    fn insert_message(&mut self, message: &StoredMessage) {
        self.messages.insert(message.seq, message.clone());
    }

    fn load_message(&mut self, seq: MessageSeq) -> Option<StoredMessage> {
        self.messages.get(&seq).cloned()
    }

    fn delete_message(&mut self, seq: MessageSeq, deleted_at_ms: i64) {
        if let Some(message) = self.messages.remove(&seq) {
            self.dedupe.insert(
                (deleted_at_ms, seq),
                (message.message_id, message.received_at_ms),
            );
        }
    }

    fn insert_instance(&mut self, instance: &Instance) {
        self.instances.insert(instance.id, instance.clone());
    }

    fn update_instance(&mut self, instance: &Instance) {
        if let Some(stored) = self.instances.get(&instance.id) {
            assert_eq!(
                placement(stored),
                placement(instance),
                "an update changed where instance {} belongs",
                instance.id
            );
        }
        self.instances.insert(instance.id, instance.clone());
    }

    fn delete_instance(&mut self, id: InstanceId) {
        self.instances.remove(&id);
    }

    fn load_instance(&mut self, id: InstanceId) -> Option<Instance> {
        self.instances.get(&id).cloned()
    }

    fn ready_instances(&mut self, host: HostId, limit: usize) -> Vec<Instance> {
        self.instances_where(
            InstanceState::Ready,
            |instance| instance.host == Some(host),
            |instance| (i64::from(instance.priority), instance.id),
            limit,
        )
    }

    fn expired_leases(&mut self, now_ms: i64, limit: usize) -> Vec<Instance> {
        self.instances_where(
            InstanceState::Leased,
            |instance| instance.lease_expires_at_ms <= now_ms,
            |instance| (instance.lease_expires_at_ms, instance.id),
            limit,
        )
    }

    fn due_retries(&mut self, now_ms: i64, limit: usize) -> Vec<Instance> {
        self.instances_where(
            InstanceState::Delayed,
            |instance| instance.visible_at_ms <= now_ms,
            |instance| (instance.visible_at_ms, instance.id),
            limit,
        )
    }

    fn count_instances_of_message(&mut self, seq: MessageSeq) -> u64 {
        self.instances
            .values()
            .filter(|instance| instance.message_seq == seq)
            .count() as u64
    }

    fn append_tracking(&mut self, message_seq: MessageSeq, event: &TrackingEvent) {
        self.tracking.push((message_seq, event.clone()));
    }

    fn purge_tracking_before(&mut self, before_ms: i64, limit: usize) -> u64 {
        // Events are appended in time order, so the oldest come first.
        let purge = self
            .tracking
            .iter()
            .take_while(|(_, event)| event.at_ms < before_ms)
            .count()
            .min(limit);
        self.tracking.drain(..purge);
        purge as u64
    }

    fn oldest_tracking_at(&mut self) -> Option<i64> {
        self.tracking.first().map(|(_, event)| event.at_ms)
    }
}

/// What [`Tables::update_instance`] never changes: the instance's message, subscription, host
/// and priority.
fn placement(
    instance: &Instance,
) -> (MessageSeq, &str, Option<SubscriptionId>, Option<HostId>, u8) {
    (
        instance.message_seq,
        instance.message_id.as_str(),
        instance.subscription,
        instance.host,
        instance.priority,
    )
}
