//! Delivery: lease ready instances to host instances, and the lease holder's verdicts
//! (renew, complete, abandon, fail). The lease token fences every verdict.

use super::MessageBox;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{InstanceId, LeaseToken};
use crate::instance::{Instance, InstanceState};
use crate::limits;
use crate::outcome::{LeasedMessage, Outcome};
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
            self.track(
                tables,
                &instance,
                TrackingKind::Leased,
                format!(
                    "leased by '{holder}' (attempt {}, token {}, until {})",
                    instance.attempts,
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
        self.remove_instance(tables, &instance);
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

    /// After a failed or expired delivery: back into the queue per the retry policy, or
    /// into the suspended queue once it is exhausted. Returns whether it was suspended.
    pub(super) fn retry_or_suspend(
        &mut self,
        tables: &mut impl Tables,
        instance: &mut Instance,
        now_ms: i64,
    ) -> bool {
        let policy = self.retry_policy(instance);
        if policy.allows_retry_after(instance.attempts) {
            let delay_ms = policy.delay_after(instance.attempts);
            let (state, detail) = if delay_ms == 0 {
                (InstanceState::Ready, "retry now".to_string())
            } else {
                instance.visible_at_ms = now_ms.saturating_add(delay_ms as i64);
                (
                    InstanceState::Delayed,
                    format!("retry at {}", format_rfc3339(instance.visible_at_ms)),
                )
            };
            self.set_state(instance, state);
            tables.update_instance(instance);
            let detail = format!(
                "{detail} ({} of {} retries used)",
                instance.attempts, policy.retry_count
            );
            self.track(
                tables,
                instance,
                TrackingKind::RetryScheduled,
                detail,
                now_ms,
            );
            return false;
        }
        self.suspend(tables, instance, now_ms);
        true
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
        let detail = format!(
            "suspended after {} attempts: {}",
            instance.attempts,
            instance.last_error.as_deref().unwrap_or("unknown error")
        );
        self.track(tables, instance, TrackingKind::Suspended, detail, now_ms);
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
    use crate::limits;
    use crate::memory_tables::MemoryTables;
    use crate::message::NewMessage;
    use crate::outcome::Outcome;
    use crate::settings::Settings;
    use crate::subscription::RetryPolicy;
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
}
