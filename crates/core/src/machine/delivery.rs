//! Delivery: lease ready instances to host instances, and the lease holder's verdicts
//! (renew, complete, abandon, fail). The lease token fences every verdict.

use super::MessageBox;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{InstanceId, LeaseToken};
use crate::instance::{Instance, InstanceState};
use crate::limits;
use crate::outcome::{LeasedMessage, Outcome};
use crate::subscription::{NextDelivery, Transport};
use crate::tables::Tables;
use crate::timestamp::format_rfc3339;
use crate::tracking::TrackingKind;
use crate::validate;

impl MessageBox {
    pub(super) fn lease(
        &mut self,
        tables: &mut impl Tables,
        host: &str,
        holder: &str,
        max_messages: u32,
        lease_duration_ms: u64,
        now_ms: i64,
    ) -> Result<Outcome> {
        let host_id = self.existing_host(host)?.id;
        validate::name("host instance", holder)?;
        if max_messages == 0 || max_messages > limits::MAX_LEASE_BATCH {
            return Err(Error::invalid(format!(
                "max messages must be between 1 and {}",
                limits::MAX_LEASE_BATCH
            )));
        }
        validate_lease_duration(lease_duration_ms)?;
        let expires_at_ms = now_ms.saturating_add(lease_duration_ms as i64);
        let mut leased = Vec::new();
        let mut leased_bytes = 0;
        for mut instance in tables.ready_instances(host_id, max_messages as usize) {
            let Some(message) = tables.load_message(instance.message_seq) else {
                continue;
            };
            leased_bytes += message.body.len();
            if !leased.is_empty() && leased_bytes > limits::MAX_LEASE_BYTES {
                break;
            }
            instance.attempts += 1;
            instance.lease_token = Self::take_counter(&mut self.state.next_lease_token);
            instance.lease_holder = holder.to_string();
            instance.lease_expires_at_ms = expires_at_ms;
            self.set_state(&mut instance, InstanceState::Leased);
            tables.update_instance(&instance);
            let backup_transport = self
                .delivery_policy(&instance)
                .is_backup_delivery(instance.attempts);
            let transport = if backup_transport {
                Transport::Backup
            } else {
                Transport::Primary
            };
            self.track(
                tables,
                &instance,
                TrackingKind::Leased,
                format!(
                    "leased by '{holder}' (attempt {} through the {} transport, token {}, \
                     until {})",
                    instance.attempts,
                    transport.as_str(),
                    instance.lease_token,
                    format_rfc3339(expires_at_ms)
                ),
                now_ms,
            );
            leased.push(LeasedMessage {
                instance: instance.id,
                message_id: message.message_id,
                token: instance.lease_token,
                expires_at_ms,
                attempt: instance.attempts,
                subscription: instance.subscription.unwrap_or_default(),
                priority: instance.priority,
                body: message.body,
                context: message.context,
                received_at_ms: message.received_at_ms,
                publisher: message.publisher,
                backup_transport,
            });
        }
        self.state_dirty |= !leased.is_empty();
        Ok(Outcome::Leased(leased))
    }

    pub(super) fn renew_lease(
        &mut self,
        tables: &mut impl Tables,
        id: InstanceId,
        token: LeaseToken,
        lease_duration_ms: u64,
        now_ms: i64,
    ) -> Result<Outcome> {
        validate_lease_duration(lease_duration_ms)?;
        let mut instance = current_lease(tables, id, token, now_ms)?;
        instance.lease_expires_at_ms = now_ms.saturating_add(lease_duration_ms as i64);
        tables.update_instance(&instance);
        self.track(
            tables,
            &instance,
            TrackingKind::LeaseRenewed,
            format!(
                "renewed until {}",
                format_rfc3339(instance.lease_expires_at_ms)
            ),
            now_ms,
        );
        Ok(Outcome::LeaseRenewed {
            expires_at_ms: instance.lease_expires_at_ms,
        })
    }

    pub(super) fn complete(
        &mut self,
        tables: &mut impl Tables,
        id: InstanceId,
        token: LeaseToken,
        now_ms: i64,
    ) -> Result<Outcome> {
        let instance = current_lease(tables, id, token, now_ms)?;
        self.track(
            tables,
            &instance,
            TrackingKind::Completed,
            format!("completed by '{}'", instance.lease_holder),
            now_ms,
        );
        self.remove_instance(tables, &instance, now_ms);
        Ok(Outcome::Completed)
    }

    pub(super) fn abandon(
        &mut self,
        tables: &mut impl Tables,
        id: InstanceId,
        token: LeaseToken,
        now_ms: i64,
    ) -> Result<Outcome> {
        let mut instance = current_lease(tables, id, token, now_ms)?;
        instance.attempts = instance.attempts.saturating_sub(1);
        self.set_state(&mut instance, InstanceState::Ready);
        tables.update_instance(&instance);
        self.track(
            tables,
            &instance,
            TrackingKind::Abandoned,
            format!(
                "given back by '{}' without counting an attempt",
                instance.lease_holder
            ),
            now_ms,
        );
        Ok(Outcome::Abandoned)
    }

    pub(super) fn fail(
        &mut self,
        tables: &mut impl Tables,
        id: InstanceId,
        token: LeaseToken,
        reason: String,
        now_ms: i64,
    ) -> Result<Outcome> {
        validate::reason(&reason)?;
        let mut instance = current_lease(tables, id, token, now_ms)?;
        self.track(
            tables,
            &instance,
            TrackingKind::Failed,
            format!(
                "attempt {} failed at '{}': {reason}",
                instance.attempts, instance.lease_holder
            ),
            now_ms,
        );
        instance.last_error = Some(reason);
        let suspended = self.retry_or_suspend(tables, &mut instance, now_ms);
        Ok(Outcome::Failed { suspended })
    }

    /// After a failed delivery: back into the queue per the subscription's delivery policy
    /// (the primary transport's retries, then the backup transport's, if any), or into the
    /// suspended queue once they are exhausted. Returns whether it was suspended.
    pub(super) fn retry_or_suspend(
        &mut self,
        tables: &mut impl Tables,
        instance: &mut Instance,
        now_ms: i64,
    ) -> bool {
        let next = self
            .delivery_policy(instance)
            .after_failed(instance.attempts);
        let delay_ms = match next {
            NextDelivery::Retry { delay_ms, .. } => delay_ms,
            NextDelivery::SwitchToBackup { .. } => 0,
            NextDelivery::Suspend => {
                self.suspend(tables, instance, now_ms);
                return true;
            }
        };
        let (state, when) = if delay_ms == 0 {
            (InstanceState::Ready, "now".to_string())
        } else {
            instance.visible_at_ms = now_ms.saturating_add(delay_ms as i64);
            (
                InstanceState::Delayed,
                format!("at {}", format_rfc3339(instance.visible_at_ms)),
            )
        };
        self.set_state(instance, state);
        tables.update_instance(instance);
        self.track(
            tables,
            instance,
            TrackingKind::RetryScheduled,
            next_delivery_detail(next, &when),
            now_ms,
        );
        false
    }

    /// Moves an instance into its host's suspended queue, keeping `last_error` as the reason.
    pub(super) fn suspend(
        &mut self,
        tables: &mut impl Tables,
        instance: &mut Instance,
        now_ms: i64,
    ) {
        self.set_state(instance, InstanceState::Suspended);
        tables.update_instance(instance);
        let policy = self.delivery_policy(instance);
        let transports = if policy.backup.is_some() {
            let backup = policy.backup_deliveries(instance.attempts);
            format!(
                " ({} through the primary transport, {backup} through the backup transport)",
                instance.attempts - backup
            )
        } else {
            String::new()
        };
        let detail = format!(
            "suspended after {} attempts{transports}: {}",
            instance.attempts,
            instance.last_error.as_deref().unwrap_or("unknown error")
        );
        self.track(tables, instance, TrackingKind::Suspended, detail, now_ms);
    }
}

/// What a tracking event says about the delivery that follows a failed one; `when` is
/// "now" or "at <time>".
pub(super) fn next_delivery_detail(next: NextDelivery, when: &str) -> String {
    match next {
        NextDelivery::Retry {
            transport,
            retry,
            retry_count,
            ..
        } => {
            let transport = transport.as_str();
            format!(
                "retry {when} through the {transport} transport ({retry} of {retry_count} \
                 {transport} retries used)"
            )
        }
        NextDelivery::SwitchToBackup { retry_count } => format!(
            "the primary transport's retries are used up; switching to the backup transport \
             {when} (0 of {retry_count} backup retries used)"
        ),
        NextDelivery::Suspend => "no deliveries left on any transport".to_string(),
    }
}

/// The instance, if `token` is its current, unexpired lease; otherwise the precise reason.
fn current_lease(
    tables: &mut impl Tables,
    id: InstanceId,
    token: LeaseToken,
    now_ms: i64,
) -> Result<Instance> {
    let Some(instance) = tables.load_instance(id) else {
        return Err(Error::not_found(format!(
            "message instance {id} does not exist (completed, terminated or never created)"
        )));
    };
    if instance.lease_token != token {
        return Err(Error::new(
            ErrorCode::LeaseMismatch,
            format!(
                "lease token {token} is not the current lease of message instance {id}; \
                 the lease was superseded or never granted"
            ),
        ));
    }
    if instance.state != InstanceState::Leased {
        return Err(Error::new(
            ErrorCode::LeaseExpired,
            format!(
                "the lease of message instance {id} has ended; the instance is {} now",
                instance.state.as_str()
            ),
        ));
    }
    if instance.lease_expires_at_ms <= now_ms {
        return Err(Error::new(
            ErrorCode::LeaseExpired,
            format!(
                "the lease of message instance {id} expired at {}; the message is available \
                 to other host instances again",
                format_rfc3339(instance.lease_expires_at_ms)
            ),
        ));
    }
    Ok(instance)
}

fn validate_lease_duration(lease_duration_ms: u64) -> Result<()> {
    if (limits::MIN_LEASE_DURATION_MS..=limits::MAX_LEASE_DURATION_MS).contains(&lease_duration_ms)
    {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "lease duration {lease_duration_ms} ms is out of range ({} to {} ms)",
        limits::MIN_LEASE_DURATION_MS,
        limits::MAX_LEASE_DURATION_MS
    )))
}

#[cfg(test)]
mod tests {
    use crate::MessageBox;
    use crate::command::Command;
    use crate::context::Property;
    use crate::ids::MessageId;
    use crate::instance::InstanceState;
    use crate::limits;
    use crate::memory_tables::MemoryTables;
    use crate::message::NewMessage;
    use crate::outcome::{LeasedMessage, Outcome};
    use crate::settings::Settings;
    use crate::subscription::RetryPolicy;
    use crate::tracking::TrackingKind;
    use crate::value::Value;

    fn big_message(id: &str, bytes: usize) -> NewMessage {
        NewMessage {
            message_id: MessageId(id.to_string()),
            body: vec![0; bytes],
            properties: vec![Property {
                name: "Kind".into(),
                value: Value::String("big".into()),
                promoted: true,
            }],
        }
    }

    fn leased_count(machine: &mut MessageBox, tables: &mut MemoryTables) -> usize {
        let lease = Command::Lease {
            host: "h".into(),
            holder: "worker".into(),
            max_messages: 10,
            lease_duration_ms: 30_000,
        };
        match machine.apply(tables, lease, 2) {
            Ok(Outcome::Leased(messages)) => messages.len(),
            other => panic!("lease failed: {other:?}"),
        }
    }

    #[test]
    fn a_lease_stops_at_its_byte_budget_but_always_hands_out_one_message() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let body_bytes = limits::MAX_LEASE_BYTES * 2 / 5;
        let settings = Settings {
            max_body_bytes: limits::MAX_LEASE_BYTES as u64 * 2,
            ..Settings::default()
        };
        let setup = [
            Command::Configure(settings),
            Command::CreateHost { name: "h".into() },
            Command::CreateSubscription {
                name: "s".into(),
                host: "h".into(),
                filter: "Kind == \"big\"".into(),
                priority: 5,
                retry: RetryPolicy::default(),
                backup: None,
            },
            Command::Publish {
                publisher: "test".into(),
                messages: vec![
                    big_message("a", body_bytes),
                    big_message("b", body_bytes),
                    big_message("c", body_bytes),
                    big_message("d", limits::MAX_LEASE_BYTES + 1),
                ],
            },
        ];
        for command in setup {
            machine.apply(&mut tables, command, 1).expect("setup");
        }
        assert_eq!(
            leased_count(&mut machine, &mut tables),
            2,
            "two fit in the budget"
        );
        assert_eq!(
            leased_count(&mut machine, &mut tables),
            1,
            "the third alone"
        );
        assert_eq!(
            leased_count(&mut machine, &mut tables),
            1,
            "one over the budget still goes"
        );
        assert_eq!(leased_count(&mut machine, &mut tables), 0);
    }

    const PRIMARY_INTERVAL_MS: u64 = 1_000;
    const BACKUP_INTERVAL_MS: u64 = 50;

    /// A host `h` and a subscription with one primary retry (1 s apart) and a backup
    /// transport with one retry (50 ms apart), holding one published message.
    fn with_backup_transport() -> (MessageBox, MemoryTables) {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let setup = [
            Command::CreateHost { name: "h".into() },
            Command::CreateSubscription {
                name: "s".into(),
                host: "h".into(),
                filter: "Kind == \"big\"".into(),
                priority: 5,
                retry: RetryPolicy {
                    retry_count: 1,
                    retry_interval_ms: PRIMARY_INTERVAL_MS,
                    exponential_backoff: false,
                },
                backup: Some(RetryPolicy {
                    retry_count: 1,
                    retry_interval_ms: BACKUP_INTERVAL_MS,
                    exponential_backoff: false,
                }),
            },
            Command::Publish {
                publisher: "test".into(),
                messages: vec![big_message("m", 4)],
            },
        ];
        for command in setup {
            machine.apply(&mut tables, command, 0).expect("setup");
        }
        (machine, tables)
    }

    fn lease_one(
        machine: &mut MessageBox,
        tables: &mut MemoryTables,
        now_ms: i64,
    ) -> LeasedMessage {
        let lease = Command::Lease {
            host: "h".into(),
            holder: "worker".into(),
            max_messages: 1,
            lease_duration_ms: 30_000,
        };
        match machine.apply(tables, lease, now_ms) {
            Ok(Outcome::Leased(mut messages)) if messages.len() == 1 => messages.remove(0),
            other => panic!("expected one leased message at {now_ms}: {other:?}"),
        }
    }

    fn fail(
        machine: &mut MessageBox,
        tables: &mut MemoryTables,
        leased: &LeasedMessage,
        reason: &str,
        now_ms: i64,
    ) -> bool {
        let command = Command::Fail {
            instance: leased.instance,
            token: leased.token,
            reason: reason.into(),
        };
        match machine.apply(tables, command, now_ms) {
            Ok(Outcome::Failed { suspended }) => suspended,
            other => panic!("fail refused: {other:?}"),
        }
    }

    fn details(tables: &MemoryTables, kind: TrackingKind) -> Vec<String> {
        tables
            .tracking
            .iter()
            .filter(|(_, event)| event.kind == kind)
            .map(|(_, event)| event.detail.clone())
            .collect()
    }

    #[test]
    fn the_backup_transport_takes_over_after_the_primary_retries_then_the_instance_suspends() {
        let (mut machine, mut tables) = with_backup_transport();
        let mut now_ms = 10;
        let mut transports = Vec::new();
        for attempt in 1..=4 {
            let leased = lease_one(&mut machine, &mut tables, now_ms);
            assert_eq!(leased.attempt, attempt);
            transports.push(leased.backup_transport);
            let suspended = fail(
                &mut machine,
                &mut tables,
                &leased,
                &format!("refused {attempt}"),
                now_ms,
            );
            assert_eq!(suspended, attempt == 4, "attempt {attempt}");
            let instance = &tables.instances[&leased.instance];
            let (state, wait_ms) = match attempt {
                1 => (InstanceState::Delayed, PRIMARY_INTERVAL_MS),
                2 => (InstanceState::Ready, 0),
                3 => (InstanceState::Delayed, BACKUP_INTERVAL_MS),
                _ => (InstanceState::Suspended, 0),
            };
            assert_eq!(instance.state, state, "after attempt {attempt}");
            if state == InstanceState::Delayed {
                assert_eq!(instance.visible_at_ms, now_ms + wait_ms as i64);
                now_ms += wait_ms as i64;
                machine
                    .apply(&mut tables, Command::Tick, now_ms)
                    .expect("tick");
            }
        }
        assert_eq!(transports, [false, false, true, true]);
        assert_eq!(
            details(&tables, TrackingKind::RetryScheduled),
            [
                "retry at 1970-01-01T00:00:01.010Z through the primary transport \
                 (1 of 1 primary retries used)",
                "the primary transport's retries are used up; switching to the backup \
                 transport now (0 of 1 backup retries used)",
                "retry at 1970-01-01T00:00:01.060Z through the backup transport \
                 (1 of 1 backup retries used)",
            ]
        );
        let leases = details(&tables, TrackingKind::Leased);
        assert!(
            leases[1].contains("attempt 2 through the primary transport"),
            "{leases:?}"
        );
        assert!(
            leases[2].contains("attempt 3 through the backup transport"),
            "{leases:?}"
        );
        assert_eq!(
            details(&tables, TrackingKind::Suspended),
            [
                "suspended after 4 attempts (2 through the primary transport, 2 through the \
                 backup transport): refused 4"
            ]
        );
    }

    #[test]
    fn an_expired_lease_counts_toward_the_switch_and_a_resume_starts_on_the_primary_again() {
        let (mut machine, mut tables) = with_backup_transport();
        let first = lease_one(&mut machine, &mut tables, 0);
        fail(&mut machine, &mut tables, &first, "refused", 0);
        let now_ms = PRIMARY_INTERVAL_MS as i64;
        machine
            .apply(&mut tables, Command::Tick, now_ms)
            .expect("tick");
        let second = lease_one(&mut machine, &mut tables, now_ms);
        assert!(!second.backup_transport);
        let expired_ms = second.expires_at_ms;
        machine
            .apply(&mut tables, Command::Tick, expired_ms)
            .expect("tick");
        let expired = details(&tables, TrackingKind::LeaseExpired);
        assert_eq!(
            expired,
            [
                "lease of 'worker' expired; the primary transport's retries are used up; \
              switching to the backup transport now (0 of 1 backup retries used)"
            ]
        );
        let third = lease_one(&mut machine, &mut tables, expired_ms);
        assert!(third.backup_transport);
        assert!(!fail(
            &mut machine,
            &mut tables,
            &third,
            "backup refused",
            expired_ms
        ));
        let retry_ms = expired_ms + BACKUP_INTERVAL_MS as i64;
        machine
            .apply(&mut tables, Command::Tick, retry_ms)
            .expect("tick");
        let fourth = lease_one(&mut machine, &mut tables, retry_ms);
        assert!(fourth.backup_transport);
        assert!(fail(
            &mut machine,
            &mut tables,
            &fourth,
            "backup refused",
            retry_ms
        ));
        let resume = Command::Resume {
            instance: fourth.instance,
        };
        assert_eq!(
            machine.apply(&mut tables, resume, retry_ms),
            Ok(Outcome::Resumed)
        );
        let resumed = lease_one(&mut machine, &mut tables, retry_ms);
        assert_eq!(resumed.attempt, 1);
        assert!(
            !resumed.backup_transport,
            "a resumed instance starts on the primary"
        );
    }

    #[test]
    fn a_backup_retry_policy_is_checked_like_the_primary() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        machine
            .apply(&mut tables, Command::CreateHost { name: "h".into() }, 0)
            .expect("host");
        let create = Command::CreateSubscription {
            name: "s".into(),
            host: "h".into(),
            filter: "Kind == \"a\"".into(),
            priority: 5,
            retry: RetryPolicy::default(),
            backup: Some(RetryPolicy {
                retry_count: limits::MAX_RETRY_COUNT + 1,
                ..RetryPolicy::default()
            }),
        };
        let error = machine.apply(&mut tables, create, 0).expect_err("refused");
        assert!(error.message.contains("backup retry count"), "{error:?}");
        assert!(tables.subscriptions.is_empty());
    }
}
