//! Publish: validate, de-duplicate, throttle, route, and store a message with all its
//! instances, or store nothing.

use super::MessageBox;
use crate::context::Context;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{HostId, SubscriptionId};
use crate::instance::{Instance, InstanceState};
use crate::limits;
use crate::message::{NewMessage, StoredMessage};
use crate::outcome::{Outcome, PublishReceipt};
use crate::tables::Tables;
use crate::tracking::{TrackingEvent, TrackingKind};
use crate::validate;

impl MessageBox {
    pub(super) fn publish(
        &mut self,
        tables: &mut impl Tables,
        publisher: &str,
        messages: Vec<NewMessage>,
        now_ms: i64,
    ) -> Result<Outcome> {
        if messages.len() > limits::MAX_PUBLISH_BATCH {
            return Err(Error::invalid(format!(
                "a publish batch holds at most {} messages; this one has {}",
                limits::MAX_PUBLISH_BATCH,
                messages.len()
            )));
        }
        if publisher.len() > limits::MAX_NAME_BYTES {
            return Err(Error::invalid("publisher name is too long"));
        }
        let receipts = messages
            .into_iter()
            .map(|message| self.publish_one(tables, publisher, message, now_ms))
            .collect();
        Ok(Outcome::Published(receipts))
    }

    /// Every check happens before the first write, so a refused message changes nothing.
    fn publish_one(
        &mut self,
        tables: &mut impl Tables,
        publisher: &str,
        message: NewMessage,
        now_ms: i64,
    ) -> Result<PublishReceipt> {
        validate::new_message(&message, &self.state.settings)?;
        if self.is_duplicate(tables, &message, now_ms) {
            return Ok(PublishReceipt {
                message_id: message.message_id,
                duplicate: true,
                instances: Vec::new(),
                routing_failure: false,
            });
        }
        if self.throttled() {
            return Err(Error {
                code: ErrorCode::Throttled,
                message: format!(
                    "the store holds {} messages, at or above its throttle of {}; retry later",
                    self.state.message_count, self.state.settings.throttle_message_count
                ),
                retry_after_ms: Some(limits::THROTTLE_RETRY_AFTER_MS),
                redirect: None,
            });
        }
        let context = Context::from_properties(message.properties);
        let matches = self.routing.route(&context);
        if matches.is_empty() && !self.state.settings.routing_failure_queue {
            return Err(no_route_error(message.message_id.as_str(), &context));
        }
        let stored = StoredMessage {
            seq: Self::take_counter(&mut self.state.next_message_seq),
            message_id: message.message_id,
            body: message.body,
            context,
            received_at_ms: now_ms,
            publisher: publisher.to_string(),
        };
        tables.insert_message(&stored);
        self.state.message_count += 1;
        self.state_dirty = true;
        if matches.is_empty() {
            return Ok(self.keep_routing_failure(tables, &stored, now_ms));
        }
        let instances = self.create_instances(tables, &stored, &matches, now_ms);
        Ok(PublishReceipt {
            message_id: stored.message_id,
            duplicate: false,
            instances,
            routing_failure: false,
        })
    }

    fn is_duplicate(&self, tables: &mut impl Tables, message: &NewMessage, now_ms: i64) -> bool {
        tables
            .find_dedupe(&message.message_id)
            .is_some_and(|published_at_ms| {
                self.state
                    .settings
                    .is_duplicate_publish(published_at_ms, now_ms)
            })
    }

    /// One ready instance per matching subscription; also used when resuming a routing
    /// failure that now matches.
    pub(super) fn create_instances(
        &mut self,
        tables: &mut impl Tables,
        message: &StoredMessage,
        subscriptions: &[SubscriptionId],
        now_ms: i64,
    ) -> Vec<u64> {
        let mut created = Vec::with_capacity(subscriptions.len());
        let mut routed_to = Vec::with_capacity(subscriptions.len());
        for &subscription_id in subscriptions {
            let Some(subscription) = self.subscription(subscription_id) else {
                continue;
            };
            let (host, priority, name) = (
                subscription.host,
                subscription.priority,
                subscription.name.clone(),
            );
            let instance = self.new_instance(message, Some(subscription_id), Some(host), priority);
            let instance = self.enqueue(tables, instance, InstanceState::Ready, now_ms);
            routed_to.push(format!(
                "subscription '{name}' (host '{}') as instance {}",
                self.host_name(host),
                instance.id
            ));
            created.push(instance.id);
        }
        self.track_message(
            tables,
            message,
            TrackingKind::Received,
            format!(
                "from '{}', routed to {}",
                message.publisher,
                routed_to.join(", ")
            ),
            now_ms,
        );
        created
    }

    fn keep_routing_failure(
        &mut self,
        tables: &mut impl Tables,
        message: &StoredMessage,
        now_ms: i64,
    ) -> PublishReceipt {
        let mut instance = self.new_instance(message, None, None, limits::LOWEST_PRIORITY);
        instance.last_error = Some("no subscription matched".to_string());
        let instance = self.enqueue(tables, instance, InstanceState::Suspended, now_ms);
        self.track_message(
            tables,
            message,
            TrackingKind::RoutingFailed,
            format!(
                "from '{}', matched no subscription; kept as suspended instance {}",
                message.publisher, instance.id
            ),
            now_ms,
        );
        PublishReceipt {
            message_id: message.message_id.clone(),
            duplicate: false,
            instances: vec![instance.id],
            routing_failure: true,
        }
    }

    fn new_instance(
        &mut self,
        message: &StoredMessage,
        subscription: Option<SubscriptionId>,
        host: Option<HostId>,
        priority: u8,
    ) -> Instance {
        Instance {
            id: Self::take_counter(&mut self.state.next_instance_id),
            message_seq: message.seq,
            message_id: message.message_id.clone(),
            subscription,
            host,
            priority,
            state: InstanceState::Ready,
            attempts: 0,
            visible_at_ms: 0,
            lease_token: 0,
            lease_holder: String::new(),
            lease_expires_at_ms: 0,
            last_error: None,
            enqueued_at_ms: 0,
        }
    }

    fn enqueue(
        &mut self,
        tables: &mut impl Tables,
        mut instance: Instance,
        state: InstanceState,
        now_ms: i64,
    ) -> Instance {
        instance.state = state;
        instance.enqueued_at_ms = now_ms;
        self.count_in(&instance);
        tables.insert_instance(&instance);
        instance
    }

    pub(super) fn host_name(&self, id: HostId) -> &str {
        self.host(id).map(|host| host.name.as_str()).unwrap_or("?")
    }

    pub(super) fn track_message(
        &self,
        tables: &mut impl Tables,
        message: &StoredMessage,
        kind: TrackingKind,
        detail: String,
        now_ms: i64,
    ) {
        if self.state.settings.tracking {
            tables.append_tracking(
                message.seq,
                &TrackingEvent {
                    message_id: message.message_id.clone(),
                    instance: None,
                    at_ms: now_ms,
                    kind,
                    detail,
                },
            );
        }
    }
}

fn no_route_error(message_id: &str, context: &Context) -> Error {
    let promoted: Vec<String> = context
        .promoted_properties()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    let properties = if promoted.is_empty() {
        "it has no promoted properties".to_string()
    } else {
        format!("its promoted properties are {}", promoted.join(", "))
    };
    Error::new(
        ErrorCode::NoRoute,
        format!(
            "message '{message_id}' matched no subscription ({properties}); nothing was stored"
        ),
    )
}
