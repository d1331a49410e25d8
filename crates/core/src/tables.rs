//! The storage interface `apply` works through: the large tables (messages, instances,
//! dedupe, tracking) live on disk in the store; core only describes the operations.
//!
//! Implementations must be deterministic: the same calls in the same order give the same
//! answers. Orders are spelled out on each method. A storage failure is the
//! implementation's to remember: it returns empty answers, and the caller rolls the whole
//! batch back and reloads (see the store's committer).

use crate::host::Host;
use crate::ids::{HostId, InstanceId, MessageId, MessageSeq, SubscriptionId};
use crate::instance::Instance;
use crate::machine::MachineState;
use crate::message::StoredMessage;
use crate::subscription::Subscription;
use crate::tracking::TrackingEvent;

pub trait Tables {
    fn save_machine_state(&mut self, state: &MachineState);
    fn save_host(&mut self, host: &Host);
    fn save_subscription(&mut self, subscription: &Subscription);
    fn delete_subscription(&mut self, id: SubscriptionId);

    /// When a message with this id was last published: the latest of the stored messages
    /// with this id and the entries their deletions left behind, if any.
    fn find_dedupe(&mut self, message_id: &MessageId) -> Option<i64>;
    /// Forget up to `limit` entries of messages deleted before `before_ms`, oldest first (by
    /// deletion time, then message seq).
    fn forget_deleted_messages_before(&mut self, before_ms: i64, limit: usize) -> u64;

    fn insert_message(&mut self, message: &StoredMessage);
    fn load_message(&mut self, seq: MessageSeq) -> Option<StoredMessage>;
    /// Deletes a message at `deleted_at_ms`, leaving an entry (its seq, id, publish time and
    /// deletion time) so that a retried publish is still recognised and the message's
    /// history is still found by its id. Each deleted message leaves its own entry, even when
    /// an earlier one with the same id is not forgotten yet.
    fn delete_message(&mut self, seq: MessageSeq, deleted_at_ms: i64);

    fn insert_instance(&mut self, instance: &Instance);
    /// Writes an instance's delivery state (state, attempts, visibility, lease, last error,
    /// enqueue time). Where it belongs (its message, subscription, host and priority) is fixed
    /// when it is inserted and never updated.
    fn update_instance(&mut self, instance: &Instance);
    fn delete_instance(&mut self, id: InstanceId);
    fn load_instance(&mut self, id: InstanceId) -> Option<Instance>;
    /// Ready instances of one host, by priority (1 first) then id.
    fn ready_instances(&mut self, host: HostId, limit: usize) -> Vec<Instance>;
    /// Leased instances whose lease expired at or before `now_ms`, by expiry then id.
    fn expired_leases(&mut self, now_ms: i64, limit: usize) -> Vec<Instance>;
    /// Delayed instances visible at or before `now_ms`, by visibility time then id.
    fn due_retries(&mut self, now_ms: i64, limit: usize) -> Vec<Instance>;
    fn count_instances_of_message(&mut self, seq: MessageSeq) -> u64;

    /// Records an event of the message `message_seq` (the store finds a message's events by
    /// its seq: seqs grow, where message ids are often random).
    fn append_tracking(&mut self, message_seq: MessageSeq, event: &TrackingEvent);
    /// Remove up to `limit` events recorded before `before_ms`, oldest first.
    fn purge_tracking_before(&mut self, before_ms: i64, limit: usize) -> u64;
    /// When the oldest event still kept was recorded.
    fn oldest_tracking_at(&mut self) -> Option<i64>;
}
