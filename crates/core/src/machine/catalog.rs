//! Catalog commands: settings, hosts and subscriptions.

use super::MessageBox;
use crate::error::{Error, ErrorCode, Result};
use crate::filter::Filter;
use crate::host::{Host, QueueDepth};
use crate::ids::{HostId, SubscriptionId};
use crate::limits;
use crate::outcome::Outcome;
use crate::settings::Settings;
use crate::subscription::{RetryPolicy, Subscription, SubscriptionDefinition};
use crate::tables::Tables;
use crate::validate;

impl MessageBox {
    pub(super) fn configure(&mut self, settings: Settings) -> Result<Outcome> {
        validate::settings(&settings)?;
        self.state.settings = settings;
        self.state_dirty = true;
        Ok(Outcome::Configured)
    }

    pub(super) fn create_host(
        &mut self,
        tables: &mut impl Tables,
        name: String,
        now_ms: i64,
    ) -> Result<Outcome> {
        validate::name("host", &name)?;
        if self.host_ids_by_name.contains_key(&name) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("host '{name}' exists already"),
            ));
        }
        let id = Self::take_counter(&mut self.state.next_host_id);
        self.state_dirty = true;
        let host = Host {
            id,
            name,
            created_at_ms: now_ms,
            depth: QueueDepth::default(),
        };
        tables.save_host(&host);
        self.host_ids_by_name.insert(host.name.clone(), id);
        self.hosts.insert(id, host.clone());
        Ok(Outcome::HostCreated(host))
    }

    pub(super) fn create_subscription(
        &mut self,
        tables: &mut impl Tables,
        definition: SubscriptionDefinition,
        now_ms: i64,
    ) -> Result<Outcome> {
        let (host_id, filter) = self.check_subscription(&definition, None)?;
        let id = Self::take_counter(&mut self.state.next_subscription_id);
        self.state_dirty = true;
        let subscription = defined(definition, id, host_id, &filter, now_ms);
        Ok(self.store_subscription(tables, subscription, filter))
    }

    /// Gives subscription `id` a new definition in one command, keeping its id, once the
    /// new one has passed every check: its queued instances stay in their host queues and
    /// are retried by the new policy.
    pub(super) fn replace_subscription(
        &mut self,
        tables: &mut impl Tables,
        id: SubscriptionId,
        definition: SubscriptionDefinition,
    ) -> Result<Outcome> {
        let Some(created_at_ms) = self.subscription(id).map(|old| old.created_at_ms) else {
            return Err(subscription_not_found(id));
        };
        let (host_id, filter) = self.check_subscription(&definition, Some(id))?;
        self.forget_subscription(id);
        let subscription = defined(definition, id, host_id, &filter, created_at_ms);
        Ok(self.store_subscription(tables, subscription, filter))
    }

    /// Every check of a new subscription; `replacing` is one that goes away in the same
    /// step (its name and its place count as free).
    fn check_subscription(
        &self,
        definition: &SubscriptionDefinition,
        replacing: Option<SubscriptionId>,
    ) -> Result<(HostId, Filter)> {
        let name = &definition.name;
        validate::name("subscription", name)?;
        let name_holder = self.subscription_ids_by_name.get(name).copied();
        if name_holder.is_some() && name_holder != replacing {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("subscription '{name}' exists already"),
            ));
        }
        let host_id = self.existing_host(&definition.host)?.id;
        validate_priority(definition.priority)?;
        validate_retry("retry", &definition.retry)?;
        if let Some(backup) = &definition.backup {
            validate_retry("backup retry", backup)?;
        }
        let filter = Filter::parse(&definition.filter)
            .map_err(|error| Error::invalid(format!("filter: {error}")))?;
        let remaining = self.subscriptions.len() - usize::from(replacing.is_some());
        if remaining >= limits::MAX_SUBSCRIPTIONS {
            return Err(Error::invalid(format!(
                "a message box holds at most {} subscriptions",
                limits::MAX_SUBSCRIPTIONS
            )));
        }
        Ok((host_id, filter))
    }

    fn store_subscription(
        &mut self,
        tables: &mut impl Tables,
        subscription: Subscription,
        filter: Filter,
    ) -> Outcome {
        tables.save_subscription(&subscription);
        self.add_subscription(subscription.clone(), filter);
        Outcome::SubscriptionCreated(subscription)
    }

    /// Takes subscription `id` out of the catalog and the routing index (not out of the
    /// tables).
    fn forget_subscription(&mut self, id: SubscriptionId) -> Option<Subscription> {
        let subscription = self.subscriptions.remove(&id)?;
        self.routing.remove(id);
        self.subscription_ids_by_name.remove(&subscription.name);
        Some(subscription)
    }

    pub(super) fn delete_subscription(
        &mut self,
        tables: &mut impl Tables,
        id: SubscriptionId,
    ) -> Result<Outcome> {
        if self.forget_subscription(id).is_none() {
            return Err(subscription_not_found(id));
        }
        tables.delete_subscription(id);
        Ok(Outcome::SubscriptionDeleted)
    }
}

/// The subscription `definition` describes, as stored.
fn defined(
    definition: SubscriptionDefinition,
    id: SubscriptionId,
    host: HostId,
    filter: &Filter,
    created_at_ms: i64,
) -> Subscription {
    Subscription {
        id,
        name: definition.name,
        host,
        filter: filter.to_text(),
        priority: definition.priority,
        retry: definition.retry,
        backup: definition.backup,
        created_at_ms,
    }
}

fn subscription_not_found(id: SubscriptionId) -> Error {
    Error::not_found(format!("subscription {id} does not exist"))
}

fn validate_priority(priority: u8) -> Result<()> {
    if (limits::HIGHEST_PRIORITY..=limits::LOWEST_PRIORITY).contains(&priority) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "priority {priority} is out of range: use {} (highest) to {} (lowest)",
        limits::HIGHEST_PRIORITY,
        limits::LOWEST_PRIORITY
    )))
}

/// Checks one transport's retry policy; `what` names it in the error ("retry", "backup retry").
fn validate_retry(what: &str, retry: &RetryPolicy) -> Result<()> {
    if retry.retry_count > limits::MAX_RETRY_COUNT {
        return Err(Error::invalid(format!(
            "{what} count {} is above the limit of {}",
            retry.retry_count,
            limits::MAX_RETRY_COUNT
        )));
    }
    if retry.retry_interval_ms > limits::MAX_RETRY_INTERVAL_MS {
        return Err(Error::invalid(format!(
            "{what} interval {} ms is above the limit of {} ms",
            retry.retry_interval_ms,
            limits::MAX_RETRY_INTERVAL_MS
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::MessageBox;
    use crate::command::Command;
    use crate::context::Property;
    use crate::error::ErrorCode;
    use crate::ids::{MessageId, SubscriptionId};
    use crate::memory_tables::MemoryTables;
    use crate::message::NewMessage;
    use crate::outcome::Outcome;
    use crate::subscription::{RetryPolicy, SubscriptionDefinition};
    use crate::value::Value;

    fn replace(id: SubscriptionId, name: &str, filter: &str) -> Command {
        let definition = SubscriptionDefinition {
            name: name.into(),
            host: "h".into(),
            filter: filter.into(),
            priority: 3,
            retry: RetryPolicy::default(),
            backup: None,
        };
        Command::ReplaceSubscription { id, definition }
    }

    /// A host `h` with subscription `orders` (`Kind == "order"`); answers its id.
    fn with_subscription(machine: &mut MessageBox, tables: &mut MemoryTables) -> SubscriptionId {
        machine
            .apply(tables, Command::CreateHost { name: "h".into() }, 1)
            .expect("host");
        let create = Command::CreateSubscription {
            name: "orders".into(),
            host: "h".into(),
            filter: "Kind == \"order\"".into(),
            priority: 5,
            retry: RetryPolicy::default(),
            backup: None,
        };
        match machine.apply(tables, create, 1) {
            Ok(Outcome::SubscriptionCreated(subscription)) => subscription.id,
            other => panic!("create failed: {other:?}"),
        }
    }

    /// Whether a message of `kind` routes anywhere (publishing it).
    fn routes(machine: &mut MessageBox, tables: &mut MemoryTables, id: &str, kind: &str) -> bool {
        let message = NewMessage {
            message_id: MessageId(id.into()),
            body: b"x".to_vec(),
            properties: vec![Property {
                name: "Kind".into(),
                value: Value::String(kind.into()),
                promoted: true,
            }],
        };
        let publish = Command::Publish {
            publisher: "test".into(),
            messages: vec![message],
        };
        match machine.apply(tables, publish, 2) {
            Ok(Outcome::Published(receipts)) => receipts[0].is_ok(),
            other => panic!("publish failed: {other:?}"),
        }
    }

    #[test]
    fn a_replaced_subscription_keeps_its_id_and_routes_by_its_new_definition() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let old = with_subscription(&mut machine, &mut tables);
        let replaced = machine
            .apply(
                &mut tables,
                replace(old, "orders", "Kind == \"invoice\""),
                2,
            )
            .expect("replace");
        let Outcome::SubscriptionCreated(new) = replaced else {
            panic!("{replaced:?}");
        };
        assert_eq!(new.id, old, "the replacement keeps the id");
        assert_eq!((new.name.as_str(), new.priority), ("orders", 3));
        assert_eq!(machine.subscription(old), Some(&new));
        assert_eq!(machine.subscriptions().count(), 1);
        assert!(routes(&mut machine, &mut tables, "m1", "invoice"));
        assert!(!routes(&mut machine, &mut tables, "m2", "order"));
    }

    #[test]
    fn instances_queued_before_a_replacement_are_retried_by_the_new_policy() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let old = with_subscription(&mut machine, &mut tables);
        assert!(routes(&mut machine, &mut tables, "queued", "order"));
        let mut no_retries = replace(old, "orders", "Kind == \"order\"");
        if let Command::ReplaceSubscription { definition, .. } = &mut no_retries {
            definition.retry.retry_count = 0;
        }
        machine.apply(&mut tables, no_retries, 2).expect("replace");
        let lease = Command::Lease {
            host: "h".into(),
            holder: "worker".into(),
            max_messages: 1,
            lease_duration_ms: 30_000,
        };
        let Ok(Outcome::Leased(leased)) = machine.apply(&mut tables, lease, 3) else {
            panic!("lease failed");
        };
        let fail = Command::Fail {
            instance: leased[0].instance,
            token: leased[0].token,
            reason: "down".into(),
        };
        let failed = machine.apply(&mut tables, fail, 4).expect("fail");
        assert_eq!(
            failed,
            Outcome::Failed { suspended: true },
            "no retries left under the new policy"
        );
    }

    #[test]
    fn a_replacement_that_fails_a_check_changes_nothing() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let old = with_subscription(&mut machine, &mut tables);
        let broken = machine
            .apply(&mut tables, replace(old, "orders", "Kind == "), 2)
            .expect_err("a bad filter");
        assert_eq!(broken.code, ErrorCode::InvalidArgument);
        let unknown = machine
            .apply(
                &mut tables,
                replace(old + 100, "orders", "Kind == \"x\""),
                2,
            )
            .expect_err("an unknown subscription");
        assert_eq!(unknown.code, ErrorCode::NotFound);
        assert!(machine.subscription(old).is_some());
        assert!(routes(&mut machine, &mut tables, "m1", "order"));
    }

    #[test]
    fn a_replacement_may_not_take_another_subscriptions_name() {
        let mut machine = MessageBox::new();
        let mut tables = MemoryTables::default();
        let old = with_subscription(&mut machine, &mut tables);
        let other = Command::CreateSubscription {
            name: "invoices".into(),
            host: "h".into(),
            filter: "Kind == \"invoice\"".into(),
            priority: 5,
            retry: RetryPolicy::default(),
            backup: None,
        };
        machine.apply(&mut tables, other, 1).expect("second");
        let taken = machine
            .apply(&mut tables, replace(old, "invoices", "Kind == \"x\""), 2)
            .expect_err("the name is taken");
        assert_eq!(taken.code, ErrorCode::AlreadyExists);
        assert!(machine.subscription(old).is_some());
    }
}
