//! The operations both APIs share, as methods of [`AppState`]: publish with per-message
//! results, the long-poll lease, batch settlement, subscription creation with defaults,
//! instance listings and tracking purges. The gRPC and HTTP layers only translate their wire formats to these.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tandem_core::error::Result;
use tandem_core::ids::{HostId, InstanceId, LeaseToken};
use tandem_core::instance::{Instance, InstanceState};
use tandem_core::message::NewMessage;
use tandem_core::outcome::{LeasedMessage, PublishReceipt};
use tandem_core::subscription::{RetryPolicy, Subscription, SubscriptionDefinition};
use tandem_core::{Command, Error, ErrorCode, Outcome, limits};
use tandem_store::{Catalog, InstanceQuery};
use tokio::time::Instant;

use crate::state::AppState;

/// The longest a lease call may wait for work.
const MAX_LEASE_WAIT: Duration = Duration::from_millis(limits::MAX_LEASE_WAIT_MS);
/// A waiting lease looks at its queue at least this often, even without a wake-up.
const LEASE_RECHECK_INTERVAL: Duration = Duration::from_millis(limits::LEASE_RECHECK_INTERVAL_MS);
/// Attempts at a generated subscription name before giving up (names can race).
const GENERATED_NAME_ATTEMPTS: usize = 3;
/// The reason recorded when an operator terminates without giving one.
pub const DEFAULT_TERMINATE_REASON: &str = "terminated by an operator";

/// A lease request with the wire defaults applied.
#[derive(Clone, Debug)]
pub struct LeaseOrder {
    pub host: String,
    pub holder: String,
    pub max_messages: u32,
    pub lease_duration_ms: u64,
}

impl LeaseOrder {
    /// Applies the defaults for zero values: one message, the default lease duration.
    pub fn new(host: String, holder: String, max_messages: u32, lease_duration_ms: u64) -> Self {
        LeaseOrder {
            host,
            holder,
            max_messages: if max_messages == 0 { 1 } else { max_messages },
            lease_duration_ms: lease_duration_or_default(lease_duration_ms),
        }
    }
}

/// Zero means the default lease duration.
pub fn lease_duration_or_default(lease_duration_ms: u64) -> u64 {
    if lease_duration_ms == 0 {
        limits::DEFAULT_LEASE_DURATION_MS
    } else {
        lease_duration_ms
    }
}

/// What to do with one leased message in a batch settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Complete,
    Abandon,
    /// Failed delivery, with the reason recorded.
    Fail(String),
}

/// One settlement of a batch: the leased instance, its fencing token and the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub instance: InstanceId,
    pub token: LeaseToken,
    pub verdict: Verdict,
}

impl Settlement {
    fn command(self) -> Command {
        let (instance, token) = (self.instance, self.token);
        match self.verdict {
            Verdict::Complete => Command::Complete { instance, token },
            Verdict::Abandon => Command::Abandon { instance, token },
            Verdict::Fail(reason) => Command::Fail {
                instance,
                token,
                reason,
            },
        }
    }
}

/// A settlement that was carried out; `suspended` only for a fail that exhausted retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    pub suspended: bool,
}

/// A subscription to create, as the caller gave it (empty name and zero priority mean
/// "choose for me").
#[derive(Clone, Debug, Default)]
pub struct SubscriptionOrder {
    pub name: String,
    pub host: String,
    pub filter: String,
    pub priority: u32,
    pub retry_count: Option<u32>,
    pub retry_interval_ms: Option<u64>,
    pub exponential_backoff: bool,
    /// The backup transport's retries as the caller gave them; `None`: no backup transport.
    pub backup: Option<RetryPolicy>,
    /// The subscription that takes this definition in the same command, if any.
    pub replaces: Option<u64>,
}

/// What a publish answers: one result per message, and the acknowledgement (absent when no
/// message reached the log).
#[derive(Debug)]
pub struct Published {
    pub results: Vec<Result<PublishReceipt>>,
    pub acknowledgement: Option<Acknowledgement>,
}

/// Which active, in which term, committed a write, and where in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub term: u64,
    pub log_index: u64,
    pub node_id: u64,
}

impl AppState {
    /// Publishes a batch. Messages refused during conversion keep their slot (and error)
    /// in the answer but never reach the store.
    pub async fn publish(
        &self,
        publisher: String,
        messages: Vec<Result<NewMessage>>,
    ) -> Result<Published> {
        check_batch_size(messages.len())?;
        let mut accepted = Vec::with_capacity(messages.len());
        let mut refusals = Vec::with_capacity(messages.len());
        for message in messages {
            match message {
                Ok(message) => {
                    accepted.push(message);
                    refusals.push(None);
                }
                Err(error) => refusals.push(Some(error)),
            }
        }
        let (stored, acknowledgement) = self.publish_accepted(publisher, accepted).await?;
        let mut stored = stored.into_iter();
        let results = refusals
            .into_iter()
            .map(|refusal| match refusal {
                Some(error) => Err(error),
                None => stored.next().unwrap_or_else(|| {
                    Err(Error::unavailable(
                        "the store answered fewer results than messages",
                    ))
                }),
            })
            .collect();
        Ok(Published {
            results,
            acknowledgement,
        })
    }

    async fn publish_accepted(
        &self,
        publisher: String,
        messages: Vec<NewMessage>,
    ) -> Result<(Vec<Result<PublishReceipt>>, Option<Acknowledgement>)> {
        if messages.is_empty() {
            return Ok((Vec::new(), None));
        }
        if self.replica.is_active()
            && let Err(short_of_room) = self.disk.admit_publish(self.store.data_dir())
            && !self.only_duplicates(&messages).await
        {
            return Err(short_of_room);
        }
        let acknowledged = self
            .execute_acknowledged(Command::Publish {
                publisher,
                messages,
            })
            .await?;
        let acknowledgement = Acknowledgement {
            term: acknowledged.term,
            log_index: acknowledged.log_index,
            node_id: self.replica.node_id(),
        };
        match acknowledged.outcome {
            Outcome::Published(results) => Ok((results, Some(acknowledgement))),
            _ => Err(unexpected_outcome("publish")),
        }
    }

    /// True when every message is a retry of one published within the dedupe window (as the
    /// store reads now): publishing them stores nothing, so a disk short of room lets them
    /// through, and their publisher learns they are safe.
    async fn only_duplicates(&self, messages: &[NewMessage]) -> bool {
        let message_ids = messages
            .iter()
            .map(|message| message.message_id.as_str().to_string())
            .collect();
        let Ok(published) = self.store.last_published_at(message_ids).await else {
            return false;
        };
        let settings = &self.store.catalog().state.settings;
        let now_ms = self.replica.time().now_ms();
        published.iter().all(|published_at_ms| {
            published_at_ms.is_some_and(|at_ms| settings.is_duplicate_publish(at_ms, now_ms))
        })
    }

    /// One lease attempt, answering at once.
    pub async fn lease_now(&self, order: &LeaseOrder) -> Result<Vec<LeasedMessage>> {
        let command = Command::Lease {
            host: order.host.clone(),
            holder: order.holder.clone(),
            max_messages: order.max_messages,
            lease_duration_ms: order.lease_duration_ms,
        };
        match self.execute(command).await? {
            Outcome::Leased(messages) => Ok(messages),
            _ => Err(unexpected_outcome("lease")),
        }
    }

    /// Leases, waiting up to `wait` (capped at [`MAX_LEASE_WAIT`]) for work. Wakes on the
    /// work signal, re-checks every [`LEASE_RECHECK_INTERVAL`], and answers empty at the
    /// deadline, on shutdown, or when `hang_up` resolves (the caller went away).
    pub async fn lease_waiting(
        &self,
        order: &LeaseOrder,
        wait: Duration,
        hang_up: impl Future<Output = ()>,
    ) -> Result<Vec<LeasedMessage>> {
        let deadline = Instant::now() + wait.min(MAX_LEASE_WAIT);
        let mut work = self.watch_work();
        let mut first_attempt = true;
        tokio::pin!(hang_up);
        loop {
            work.borrow_and_update();
            // The first attempt always reaches the store so that errors (unknown host,
            // bad holder) are reported; later ones only when the catalog shows ready work.
            if first_attempt || self.has_ready_work(&order.host) {
                let leased = self.lease_now(order).await?;
                if !leased.is_empty() {
                    return Ok(leased);
                }
            }
            first_attempt = false;
            let now = Instant::now();
            if now >= deadline || self.is_shutting_down() {
                return Ok(Vec::new());
            }
            let recheck_at = deadline.min(now + LEASE_RECHECK_INTERVAL);
            tokio::select! {
                changed = work.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(recheck_at).await;
                    }
                }
                () = tokio::time::sleep_until(recheck_at) => {}
                () = self.shutdown_begun() => {}
                () = &mut hang_up => return Ok(Vec::new()),
            }
        }
    }

    /// Settles a batch of leases. Every settlement is submitted to the store at once, in
    /// request order, so that they share a group commit; each succeeds or is refused on
    /// its own. Settlements refused before reaching the store (e.g. a verdict the caller
    /// could not name) keep their slot and error. Waiting leases are woken as for the
    /// single-settlement calls.
    /// Settles every (instance, settlement) pair at once so they share a group commit; a
    /// settlement that did not convert from the wire is answered with its error. Results come
    /// back in request order, each with its instance.
    pub async fn settle_batch(
        &self,
        settlements: Vec<(InstanceId, Result<Settlement>)>,
    ) -> Result<Vec<(InstanceId, Result<Settled>)>> {
        check_settle_batch_size(settlements.len())?;
        let pending = settlements
            .into_iter()
            .map(|(instance, settlement)| async move { (instance, self.settle(settlement).await) });
        Ok(join_in_order(pending).await)
    }

    async fn settle(&self, settlement: Result<Settlement>) -> Result<Settled> {
        match self.execute(settlement?.command()).await? {
            Outcome::Completed | Outcome::Abandoned => Ok(Settled { suspended: false }),
            Outcome::Failed { suspended } => Ok(Settled { suspended }),
            _ => Err(unexpected_outcome("settle")),
        }
    }

    fn has_ready_work(&self, host: &str) -> bool {
        self.store
            .catalog()
            .host(host)
            .is_none_or(|host| host.depth.ready > 0)
    }

    /// Creates a subscription (replacing `order.replaces` in the same step, if given),
    /// choosing a name and defaults when the caller gave none.
    pub async fn create_subscription(&self, order: SubscriptionOrder) -> Result<Subscription> {
        let priority = subscription_priority(order.priority)?;
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            retry_count: order.retry_count.unwrap_or(defaults.retry_count),
            retry_interval_ms: order
                .retry_interval_ms
                .unwrap_or(defaults.retry_interval_ms),
            exponential_backoff: order.exponential_backoff,
        };
        let name_is_generated = order.name.is_empty();
        let mut attempts_left = if name_is_generated {
            GENERATED_NAME_ATTEMPTS
        } else {
            1
        };
        loop {
            attempts_left -= 1;
            let name = if name_is_generated {
                self.generated_subscription_name(&order.host)
            } else {
                order.name.clone()
            };
            let definition = SubscriptionDefinition {
                name,
                host: order.host.clone(),
                filter: order.filter.clone(),
                priority,
                retry,
                backup: order.backup,
            };
            let command = match order.replaces {
                None => Command::create_subscription(definition),
                Some(id) => Command::ReplaceSubscription { id, definition },
            };
            match self.execute(command).await {
                Ok(Outcome::SubscriptionCreated(subscription)) => return Ok(subscription),
                Ok(_) => return Err(unexpected_outcome("create subscription")),
                Err(error) if error.code == ErrorCode::AlreadyExists && attempts_left > 0 => {}
                Err(error) => return Err(error),
            }
        }
    }

    fn generated_subscription_name(&self, host: &str) -> String {
        let next_id = self.store.catalog().state.next_subscription_id;
        format!("{host}-sub-{next_id}")
    }

    /// Lists instances by host name and state text (both optional: empty means every).
    pub async fn list_instances(
        &self,
        host: &str,
        state: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Instance>> {
        let query = InstanceQuery {
            host: self.optional_host_id(host)?,
            state: parse_optional_state(state)?,
            after,
            limit: list_limit(limit),
        };
        self.store.instances(query).await
    }

    fn optional_host_id(&self, host: &str) -> Result<Option<HostId>> {
        if host.is_empty() {
            return Ok(None);
        }
        match self.store.catalog().host(host) {
            Some(found) => Ok(Some(found.id)),
            None => Err(Error::not_found(format!("host '{host}' does not exist"))),
        }
    }

    /// Removes tracking events older than `older_than_ms` (relative to the replica set's
    /// time, which stamps the events).
    pub async fn purge_tracking(&self, older_than_ms: u64) -> Result<u64> {
        let age_ms = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let before_ms = self.replica.time().now_ms().saturating_sub(age_ms);
        match self.execute(Command::PurgeTracking { before_ms }).await? {
            Outcome::TrackingPurged { events } => Ok(events),
            _ => Err(unexpected_outcome("purge tracking")),
        }
    }
}

/// Refuses a batch larger than the store takes, before converting anything.
pub fn check_batch_size(count: usize) -> Result<()> {
    if count > limits::MAX_PUBLISH_BATCH {
        return Err(Error::invalid(format!(
            "a publish batch holds at most {} messages; this one has {count}",
            limits::MAX_PUBLISH_BATCH
        )));
    }
    Ok(())
}

/// Refuses a settle batch larger than a lease batch, before submitting anything.
pub fn check_settle_batch_size(count: usize) -> Result<()> {
    let limit = limits::MAX_LEASE_BATCH as usize;
    if count > limit {
        return Err(Error::invalid(format!(
            "a settle batch holds at most {limit} settlements; this one has {count}"
        )));
    }
    Ok(())
}

/// Runs the futures concurrently and answers their outputs in the given order. Each is
/// first polled in order, so their commands reach the store's queue in request order.
async fn join_in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut finished = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => finished = false,
                }
            }
        }
        if finished {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn subscription_priority(priority: u32) -> Result<u8> {
    if priority == 0 {
        return Ok(limits::DEFAULT_PRIORITY);
    }
    u8::try_from(priority).map_err(|_| {
        Error::invalid(format!(
            "priority {priority} is out of range; use {} (highest) to {} (lowest)",
            limits::HIGHEST_PRIORITY,
            limits::LOWEST_PRIORITY
        ))
    })
}

fn parse_optional_state(state: &str) -> Result<Option<InstanceState>> {
    if state.is_empty() {
        return Ok(None);
    }
    InstanceState::parse(state).map(Some).ok_or_else(|| {
        Error::invalid(format!(
            "unknown instance state '{state}'; use ready, delayed, leased or suspended"
        ))
    })
}

fn list_limit(limit: usize) -> usize {
    if limit == 0 {
        limits::DEFAULT_LIST_LIMIT
    } else {
        limit.min(limits::MAX_LIST_ROWS)
    }
}

/// The name of a host by id, empty when unknown (routing failures have no host).
pub fn host_name(catalog: &Catalog, host: Option<HostId>) -> String {
    host.and_then(|id| catalog.hosts.iter().find(|candidate| candidate.id == id))
        .map(|found| found.name.clone())
        .unwrap_or_default()
}

/// The store answered a command with the wrong kind of outcome: a bug, reported plainly.
pub fn unexpected_outcome(operation: &str) -> Error {
    Error::unavailable(format!(
        "the store answered {operation} with an unexpected outcome"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_orders_apply_defaults() {
        let order = LeaseOrder::new("h".into(), "i".into(), 0, 0);
        assert_eq!(order.max_messages, 1);
        assert_eq!(order.lease_duration_ms, limits::DEFAULT_LEASE_DURATION_MS);
    }

    #[test]
    fn states_parse_or_explain() {
        assert_eq!(parse_optional_state(""), Ok(None));
        assert_eq!(
            parse_optional_state("ready"),
            Ok(Some(InstanceState::Ready))
        );
        assert!(parse_optional_state("done").is_err());
    }

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(list_limit(0), limits::DEFAULT_LIST_LIMIT);
        assert_eq!(list_limit(5_000), limits::MAX_LIST_ROWS);
    }

    #[test]
    fn settle_batches_are_capped_at_the_lease_batch() {
        let limit = limits::MAX_LEASE_BATCH as usize;
        assert!(check_settle_batch_size(limit).is_ok());
        let error = check_settle_batch_size(limit + 1).expect_err("too many");
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert!(error.message.contains("at most 1000"), "{}", error.message);
    }

    #[tokio::test]
    async fn joined_futures_answer_in_order() {
        let delays = [30_u64, 0, 10];
        let futures = delays.iter().map(|&delay| async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            delay
        });
        assert_eq!(join_in_order(futures).await, delays);
    }

    #[test]
    fn priorities_default_and_refuse_overflow() {
        assert_eq!(subscription_priority(0), Ok(limits::DEFAULT_PRIORITY));
        assert_eq!(subscription_priority(3), Ok(3));
        assert!(subscription_priority(1_000).is_err());
    }
}
