//! Catalog commands: settings, hosts and subscriptions.

use super::MessageBox;
use crate::error::{Error, ErrorCode, Result};
use crate::filter::Filter;
use crate::host::{Host, QueueDepth};
use crate::ids::SubscriptionId;
use crate::limits;
use crate::outcome::Outcome;
use crate::settings::Settings;
use crate::subscription::{RetryPolicy, Subscription};
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_subscription(
        &mut self,
        tables: &mut impl Tables,
        name: String,
        host: &str,
        filter_text: String,
        priority: u8,
        retry: RetryPolicy,
        backup: Option<RetryPolicy>,
        now_ms: i64,
    ) -> Result<Outcome> {
        validate::name("subscription", &name)?;
        if self.subscription_ids_by_name.contains_key(&name) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("subscription '{name}' exists already"),
            ));
        }
        let host_id = self.existing_host(host)?.id;
        validate_priority(priority)?;
        validate_retry("retry", &retry)?;
        if let Some(backup) = &backup {
            validate_retry("backup retry", backup)?;
        }
        let filter = Filter::parse(&filter_text)
            .map_err(|error| Error::invalid(format!("filter: {error}")))?;
        if self.subscriptions.len() >= limits::MAX_SUBSCRIPTIONS {
            return Err(Error::invalid(format!(
                "a message box holds at most {} subscriptions",
                limits::MAX_SUBSCRIPTIONS
            )));
        }
        let id = Self::take_counter(&mut self.state.next_subscription_id);
        self.state_dirty = true;
        let subscription = Subscription {
            id,
            name,
            host: host_id,
            filter: filter.to_text(),
            priority,
            retry,
            backup,
            created_at_ms: now_ms,
        };
        tables.save_subscription(&subscription);
        self.add_subscription(subscription.clone(), filter);
        Ok(Outcome::SubscriptionCreated(subscription))
    }

    pub(super) fn delete_subscription(
        &mut self,
        tables: &mut impl Tables,
        id: SubscriptionId,
    ) -> Result<Outcome> {
        let Some(subscription) = self.subscriptions.remove(&id) else {
            return Err(Error::not_found(format!(
                "subscription {id} does not exist"
            )));
        };
        self.routing.remove(id);
        self.subscription_ids_by_name.remove(&subscription.name);
        tables.delete_subscription(id);
        Ok(Outcome::SubscriptionDeleted)
    }
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
