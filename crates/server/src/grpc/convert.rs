//! Core types <-> gRPC wire messages. Property conversions live in `tandem_protocol`.

use tandem_core::error::Result;
use tandem_core::host::Host;
use tandem_core::instance::Instance;
use tandem_core::message::NewMessage;
use tandem_core::outcome::{LeasedMessage, PublishReceipt};
use tandem_core::subscription::{RetryPolicy, Subscription};
use tandem_core::{Context, Error, MessageId, Property};
use tandem_protocol::v1;
use tandem_store::Catalog;
use tandem_store::reader::MessageSummary;

use crate::errors::to_wire_error;
use crate::operations::{Acknowledgement, Settled, Settlement, Verdict, host_name};
use tandem_protocol::message_id::new_message_id;

/// A published message's id (given or generated) and the message, or why its properties
/// could not be read.
pub fn new_message(message: v1::PublishMessage) -> (String, Result<NewMessage>) {
    let message_id = if message.message_id.is_empty() {
        new_message_id()
    } else {
        message.message_id
    };
    let properties = message
        .properties
        .into_iter()
        .map(Property::try_from)
        .collect::<std::result::Result<Vec<Property>, _>>()
        .map_err(|error| Error::invalid(format!("message '{message_id}': {error}")));
    let converted = properties.map(|properties| NewMessage {
        message_id: MessageId(message_id.clone()),
        body: message.body,
        properties,
    });
    (message_id, converted)
}

pub fn acknowledgement(acknowledgement: Acknowledgement) -> v1::Acknowledgement {
    v1::Acknowledgement {
        term: acknowledgement.term,
        log_index: acknowledgement.log_index,
        node_id: acknowledgement.node_id,
    }
}

pub fn publish_result(message_id: String, result: Result<PublishReceipt>) -> v1::PublishResult {
    match result {
        Ok(receipt) => v1::PublishResult {
            message_id: receipt.message_id.0,
            duplicate: receipt.duplicate,
            instances: receipt.instances,
            routing_failure: receipt.routing_failure,
            error: None,
        },
        Err(error) => v1::PublishResult {
            message_id,
            error: Some(to_wire_error(&error)),
            ..v1::PublishResult::default()
        },
    }
}

/// A wire settlement as the store's, or why it cannot be carried out (an unknown verdict).
pub fn settlement(settlement: v1::Settlement) -> Result<Settlement> {
    let verdict = match v1::Verdict::try_from(settlement.verdict) {
        Ok(v1::Verdict::Complete) => Verdict::Complete,
        Ok(v1::Verdict::Abandon) => Verdict::Abandon,
        Ok(v1::Verdict::Fail) => Verdict::Fail(settlement.reason),
        Err(_) => {
            return Err(Error::invalid(format!(
                "message instance {}: unknown verdict {}; use VERDICT_COMPLETE, \
                 VERDICT_ABANDON or VERDICT_FAIL",
                settlement.instance, settlement.verdict
            )));
        }
    };
    Ok(Settlement {
        instance: settlement.instance,
        token: settlement.token,
        verdict,
    })
}

pub fn settlement_result(instance: u64, result: Result<Settled>) -> v1::SettlementResult {
    match result {
        Ok(settled) => v1::SettlementResult {
            instance,
            suspended: settled.suspended,
            error: None,
        },
        Err(error) => v1::SettlementResult {
            instance,
            suspended: false,
            error: Some(to_wire_error(&error)),
        },
    }
}

pub fn properties(context: &Context) -> Vec<v1::Property> {
    context.properties().map(v1::Property::from).collect()
}

pub fn leased_message(message: LeasedMessage) -> v1::LeasedMessage {
    v1::LeasedMessage {
        instance: message.instance,
        message_id: message.message_id.0,
        token: message.token,
        expires_at_ms: message.expires_at_ms,
        attempt: message.attempt,
        subscription: message.subscription,
        priority: u32::from(message.priority),
        properties: properties(&message.context),
        body: message.body,
        received_at_ms: message.received_at_ms,
        publisher: message.publisher,
        backup_transport: message.backup_transport,
    }
}

pub fn host(host: &Host) -> v1::Host {
    v1::Host {
        id: host.id,
        name: host.name.clone(),
        created_at_ms: host.created_at_ms,
        depth: Some(v1::QueueDepth {
            ready: host.depth.ready,
            delayed: host.depth.delayed,
            leased: host.depth.leased,
            suspended: host.depth.suspended,
        }),
    }
}

pub fn subscription(subscription: &Subscription, catalog: &Catalog) -> v1::Subscription {
    v1::Subscription {
        id: subscription.id,
        name: subscription.name.clone(),
        host: host_name(catalog, Some(subscription.host)),
        filter: subscription.filter.clone(),
        priority: u32::from(subscription.priority),
        retry_count: subscription.retry.retry_count,
        retry_interval_ms: subscription.retry.retry_interval_ms,
        exponential_backoff: subscription.retry.exponential_backoff,
        created_at_ms: subscription.created_at_ms,
        backup: subscription.backup.map(wire_retry_policy),
    }
}

/// A wire retry policy as given: every field counts (proto3 cannot tell 0 from absent).
pub fn retry_policy(policy: v1::RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        retry_count: policy.retry_count,
        retry_interval_ms: policy.retry_interval_ms,
        exponential_backoff: policy.exponential_backoff,
    }
}

fn wire_retry_policy(policy: RetryPolicy) -> v1::RetryPolicy {
    v1::RetryPolicy {
        retry_count: policy.retry_count,
        retry_interval_ms: policy.retry_interval_ms,
        exponential_backoff: policy.exponential_backoff,
    }
}

pub fn instance(instance: &Instance, catalog: &Catalog) -> v1::Instance {
    v1::Instance {
        id: instance.id,
        message_id: instance.message_id.0.clone(),
        subscription: instance.subscription.unwrap_or_default(),
        host: host_name(catalog, instance.host),
        priority: u32::from(instance.priority),
        state: instance.state.as_str().to_string(),
        attempts: instance.attempts,
        visible_at_ms: instance.visible_at_ms,
        lease_holder: instance.lease_holder.clone(),
        lease_expires_at_ms: instance.lease_expires_at_ms,
        last_error: instance.last_error.clone().unwrap_or_default(),
        enqueued_at_ms: instance.enqueued_at_ms,
    }
}

pub fn stored_message(message: &MessageSummary) -> v1::StoredMessage {
    v1::StoredMessage {
        message_id: message.message_id.0.clone(),
        body_bytes: message.body_bytes as u64,
        properties: properties(&message.context),
        received_at_ms: message.received_at_ms,
        publisher: message.publisher.clone(),
    }
}

pub fn tracking_event(event: &tandem_core::tracking::TrackingEvent) -> v1::TrackingEvent {
    v1::TrackingEvent {
        message_id: event.message_id.0.clone(),
        instance: event.instance.unwrap_or_default(),
        at_ms: event.at_ms,
        kind: event.kind.as_str().to_string(),
        detail: event.detail.clone(),
    }
}

pub fn settings(settings: &tandem_core::settings::Settings) -> v1::Settings {
    v1::Settings {
        max_body_bytes: settings.max_body_bytes,
        dedupe_window_ms: settings.dedupe_window_ms,
        throttle_message_count: settings.throttle_message_count,
        routing_failure_queue: settings.routing_failure_queue,
        tracking: settings.tracking,
        tracking_retention_ms: settings.tracking_retention_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_protocol::v1::property::Value as WireValue;

    #[test]
    fn empty_ids_are_generated_and_bad_properties_refused() {
        let message = v1::PublishMessage {
            message_id: String::new(),
            body: b"x".to_vec(),
            properties: vec![v1::Property {
                name: vec![0xff],
                value: Some(WireValue::IntValue(1)),
                written: false,
            }],
        };
        let (message_id, converted) = new_message(message);
        assert!(!message_id.is_empty());
        let error = converted.expect_err("invalid UTF-8");
        assert!(error.message.contains("UTF-8"), "{}", error.message);
    }

    #[test]
    fn settlements_convert_and_unknown_verdicts_are_refused() {
        let fail = v1::Settlement {
            instance: 7,
            token: 9,
            verdict: v1::Verdict::Fail as i32,
            reason: "boom".into(),
        };
        assert_eq!(
            settlement(fail),
            Ok(Settlement {
                instance: 7,
                token: 9,
                verdict: Verdict::Fail("boom".into()),
            })
        );
        let unknown = v1::Settlement {
            instance: 7,
            verdict: 42,
            ..Default::default()
        };
        let error = settlement(unknown).expect_err("unknown verdict");
        assert!(error.message.contains("verdict 42"), "{}", error.message);
    }
}
