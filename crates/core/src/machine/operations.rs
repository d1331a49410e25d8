//! Operator and maintenance commands: resume, terminate, the periodic tick, tracking purge.

use super::MessageBox;
use super::delivery::next_delivery_detail;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::InstanceId;
use crate::instance::{Instance, InstanceState};
use crate::limits;
use crate::outcome::{Outcome, TickReport};
use crate::subscription::NextDelivery;
use crate::tables::Tables;
use crate::tracking::TrackingKind;
use crate::validate;

impl MessageBox {
    /// Puts a suspended instance back in its host queue with a fresh retry budget: its next
    /// delivery is the primary transport's first again. A routing failure is routed again
    /// instead, and refused if it still matches nothing.
    pub(super) fn resume(
        &mut self,
        tables: &mut impl Tables,
        id: InstanceId,
        now_ms: i64,
    ) -> Result<Outcome> {
        let mut instance = existing_instance(tables, id)?;
        if instance.state != InstanceState::Suspended {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "message instance {id} is {}, not suspended; only suspended instances resume",
                    instance.state.as_str()
                ),
            ));
        }
        if instance.host.is_none() {
            return self.reroute(tables, instance, now_ms);
        }
        instance.attempts = 0;
        instance.last_error = None;
        self.set_state(&mut instance, InstanceState::Ready);
        tables.update_instance(&instance);
        self.track(
            tables,
            &instance,
            TrackingKind::Resumed,
            "resumed by an operator".into(),
            now_ms,
        );
        Ok(Outcome::Resumed)
    }

    fn reroute(
        &mut self,
        tables: &mut impl Tables,
        instance: Instance,
        now_ms: i64,
    ) -> Result<Outcome> {
        let Some(message) = tables.load_message(instance.message_seq) else {
            return Err(Error::not_found(format!(
                "message of instance {} is gone",
                instance.id
            )));
        };
        let matches = self.routing.route(&message.context);
        if matches.is_empty() {
            return Err(Error::new(
                ErrorCode::NoRoute,
                format!(
                    "message '{}' still matches no subscription; create one, then resume again",
                    message.message_id
                ),
            ));
        }
        self.track(
            tables,
            &instance,
            TrackingKind::Resumed,
            "routing failure resumed by an operator".into(),
            now_ms,
        );
        self.create_instances(tables, &message, &matches, now_ms);
        self.count_out(&instance);
        tables.delete_instance(instance.id);
        Ok(Outcome::Resumed)
    }

    /// Removes an instance in any state for good, recording why.
    pub(super) fn terminate(
        &mut self,
        tables: &mut impl Tables,
        id: InstanceId,
        reason: String,
        now_ms: i64,
    ) -> Result<Outcome> {
        validate::reason(&reason)?;
        let instance = existing_instance(tables, id)?;
        let detail = format!("terminated while {}: {reason}", instance.state.as_str());
        self.track(tables, &instance, TrackingKind::Terminated, detail, now_ms);
        self.remove_instance(tables, &instance, now_ms);
        Ok(Outcome::Terminated)
    }

    /// Expires leases, releases due retries, purges tracking events past their retention and
    /// forgets the entries of deleted messages that neither dedupe nor history needs, each
    /// bounded.
    pub(super) fn tick(&mut self, tables: &mut impl Tables, now_ms: i64) -> Outcome {
        let mut report = TickReport::default();
        for mut instance in tables.expired_leases(now_ms, limits::MAX_SWEEP_PER_TICK) {
            // An expired lease is offered again at once, through whichever transport its
            // next delivery uses; only exhaustion suspends it.
            let next = self
                .delivery_policy(&instance)
                .after_failed(instance.attempts);
            let detail = format!(
                "lease of '{}' expired; {}",
                instance.lease_holder,
                next_delivery_detail(next, "now")
            );
            self.track(
                tables,
                &instance,
                TrackingKind::LeaseExpired,
                detail,
                now_ms,
            );
            instance.last_error =
                Some(format!("lease expired after attempt {}", instance.attempts));
            if next == NextDelivery::Suspend {
                self.suspend(tables, &mut instance, now_ms);
                report.suspended += 1;
            } else {
                self.set_state(&mut instance, InstanceState::Ready);
                tables.update_instance(&instance);
            }
            report.leases_expired += 1;
        }
        for mut instance in tables.due_retries(now_ms, limits::MAX_SWEEP_PER_TICK) {
            self.set_state(&mut instance, InstanceState::Ready);
            tables.update_instance(&instance);
            report.retries_released += 1;
        }
        let retention_ms = self.state.settings.tracking_retention_ms as i64;
        if retention_ms > 0 {
            report.tracking_events_purged = tables.purge_tracking_before(
                now_ms.saturating_sub(retention_ms),
                limits::MAX_SWEEP_PER_TICK,
            );
        }
        let forget_before = self.forget_deleted_before(tables, now_ms);
        report.dedupe_entries_forgotten =
            tables.forget_deleted_messages_before(forget_before, limits::MAX_SWEEP_PER_TICK);
        Outcome::Ticked(report)
    }

    /// Before when a deleted message's entry may go: once a retried publish would no longer
    /// be a duplicate (the dedupe window, counted here from the deletion, which comes after
    /// the publish), and once its history is purged. Every event of a message precedes its
    /// deletion, so the entry of a message deleted before the oldest event still kept leads
    /// to no event (by its id, its history is found).
    fn forget_deleted_before(&self, tables: &mut impl Tables, now_ms: i64) -> i64 {
        let window_ms = self.state.settings.dedupe_window_ms as i64;
        let past_window = now_ms.saturating_sub(window_ms);
        match tables.oldest_tracking_at() {
            Some(oldest_event_ms) => past_window.min(oldest_event_ms),
            None => past_window,
        }
    }

    pub(super) fn purge_tracking(&mut self, tables: &mut impl Tables, before_ms: i64) -> Outcome {
        let events =
            tables.purge_tracking_before(before_ms, limits::MAX_TRACKING_PURGE_PER_COMMAND);
        Outcome::TrackingPurged { events }
    }
}

fn existing_instance(tables: &mut impl Tables, id: InstanceId) -> Result<Instance> {
    tables.load_instance(id).ok_or_else(|| {
        Error::not_found(format!(
            "message instance {id} does not exist (completed, terminated or never created)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use crate::MessageBox;
    use crate::command::Command;
    use crate::context::Property;
    use crate::ids::MessageId;
    use crate::limits;
    use crate::memory_tables::MemoryTables;
    use crate::message::NewMessage;
    use crate::outcome::{Outcome, TickReport};
    use crate::subscription::RetryPolicy;
    use crate::value::Value;

    fn tick(machine: &mut MessageBox, tables: &mut MemoryTables, now_ms: i64) -> TickReport {
        match machine.apply(tables, Command::Tick, now_ms) {
            Ok(Outcome::Ticked(report)) => report,
            other => panic!("tick failed: {other:?}"),
        }
    }

    /// Leases `count` messages for 100 ms at time 1.
    fn lease_messages(machine: &mut MessageBox, tables: &mut MemoryTables, count: usize) {
        let setup = [
            Command::CreateHost { name: "h".into() },
            Command::CreateSubscription {
                name: "s".into(),
                host: "h".into(),
                filter: "Kind == \"order\"".into(),
                priority: 5,
                retry: RetryPolicy::default(),
                backup: None,
            },
        ];
        for command in setup {
            machine.apply(tables, command, 1).expect("setup");
        }
        let messages: Vec<NewMessage> = (0..count)
            .map(|index| NewMessage {
                message_id: MessageId(format!("m{index}")),
                body: Vec::new(),
                properties: vec![Property {
                    name: "Kind".into(),
                    value: Value::String("order".into()),
                    promoted: true,
                }],
            })
            .collect();
        for batch in messages.chunks(limits::MAX_PUBLISH_BATCH) {
            let publish = Command::Publish {
                publisher: "test".into(),
                messages: batch.to_vec(),
            };
            machine.apply(tables, publish, 1).expect("publish");
        }
        let mut leased = 0;
        while leased < count {
            let lease = Command::Lease {
                host: "h".into(),
                holder: "worker".into(),
                max_messages: limits::MAX_LEASE_BATCH,
                lease_duration_ms: limits::MIN_LEASE_DURATION_MS,
            };
            match machine.apply(tables, lease, 1) {
                Ok(Outcome::Leased(batch)) if !batch.is_empty() => leased += batch.len(),
                other => panic!("lease failed: {other:?}"),
            }
        }
    }

    #[test]
    fn a_tick_that_stops_at_its_bound_says_so_and_the_next_one_finishes() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let backlog = limits::MAX_SWEEP_PER_TICK + 10;
        lease_messages(&mut machine, &mut tables, backlog);
        let after_expiry = 1 + limits::MIN_LEASE_DURATION_MS as i64;

        let first = tick(&mut machine, &mut tables, after_expiry);
        assert_eq!(first.leases_expired, limits::MAX_SWEEP_PER_TICK as u64);
        assert!(first.reached_a_bound(), "{first:?}");

        let second = tick(&mut machine, &mut tables, after_expiry);
        assert_eq!(second.leases_expired, 10);
        assert!(!second.reached_a_bound(), "{second:?}");
    }
}
