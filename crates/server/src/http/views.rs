//! Core types as JSON responses. Field names mirror the gRPC messages.

use serde_json::{Value as Json, json};
use tandem_core::host::Host;
use tandem_core::instance::Instance;
use tandem_core::outcome::{LeasedMessage, PublishReceipt};
use tandem_core::subscription::Subscription;
use tandem_core::tracking::TrackingEvent;
use tandem_store::reader::MessageSummary;
use tandem_store::{Catalog, MessageHistory};

use crate::http::{base64, properties};
use crate::operations::{Acknowledgement, host_name};
use crate::state::AppState;

pub fn host(host: &Host) -> Json {
    json!({
        "id": host.id,
        "name": host.name,
        "created_at_ms": host.created_at_ms,
        "depth": {
            "ready": host.depth.ready,
            "delayed": host.depth.delayed,
            "leased": host.depth.leased,
            "suspended": host.depth.suspended,
        },
    })
}

pub fn subscription(subscription: &Subscription, catalog: &Catalog) -> Json {
    json!({
        "id": subscription.id,
        "name": subscription.name,
        "host": host_name(catalog, Some(subscription.host)),
        "filter": subscription.filter,
        "priority": subscription.priority,
        "retry_count": subscription.retry.retry_count,
        "retry_interval_ms": subscription.retry.retry_interval_ms,
        "exponential_backoff": subscription.retry.exponential_backoff,
        "backup": subscription.backup.map(|backup| json!({
            "retry_count": backup.retry_count,
            "retry_interval_ms": backup.retry_interval_ms,
            "exponential_backoff": backup.exponential_backoff,
        })),
        "created_at_ms": subscription.created_at_ms,
    })
}

pub fn instance(instance: &Instance, catalog: &Catalog) -> Json {
    json!({
        "id": instance.id,
        "message_id": instance.message_id.as_str(),
        "subscription": instance.subscription.unwrap_or_default(),
        "host": host_name(catalog, instance.host),
        "priority": instance.priority,
        "state": instance.state.as_str(),
        "attempts": instance.attempts,
        "visible_at_ms": instance.visible_at_ms,
        "lease_holder": instance.lease_holder,
        "lease_expires_at_ms": instance.lease_expires_at_ms,
        "last_error": instance.last_error.clone().unwrap_or_default(),
        "enqueued_at_ms": instance.enqueued_at_ms,
    })
}

pub fn receipt(receipt: &PublishReceipt) -> Json {
    json!({
        "message_id": receipt.message_id.as_str(),
        "duplicate": receipt.duplicate,
        "instances": receipt.instances,
        "routing_failure": receipt.routing_failure,
    })
}

/// Which active, in which term, committed a publish (null when nothing reached the log).
pub fn acknowledgement(acknowledgement: Option<Acknowledgement>) -> Json {
    match acknowledgement {
        Some(acknowledgement) => json!({
            "term": acknowledgement.term,
            "log_index": acknowledgement.log_index,
            "node_id": acknowledgement.node_id,
        }),
        None => Json::Null,
    }
}

/// A leased message; `body` is the text when the body is valid UTF-8, else null.
pub fn leased_message(message: &LeasedMessage) -> Json {
    json!({
        "instance": message.instance,
        "message_id": message.message_id.as_str(),
        "token": message.token,
        "expires_at_ms": message.expires_at_ms,
        "attempt": message.attempt,
        "subscription": message.subscription,
        "priority": message.priority,
        "body": std::str::from_utf8(&message.body).ok(),
        "body_base64": base64::encode(&message.body),
        "properties": properties::to_json(&message.context),
        "received_at_ms": message.received_at_ms,
        "publisher": message.publisher,
        "backup_transport": message.backup_transport,
    })
}

pub fn history(history: &MessageHistory, catalog: &Catalog) -> Json {
    let messages: Vec<Json> = history.messages.iter().map(stored_message).collect();
    let instances: Vec<Json> = history
        .instances
        .iter()
        .map(|found| instance(found, catalog))
        .collect();
    let events: Vec<Json> = history.events.iter().map(tracking_event).collect();
    json!({ "messages": messages, "instances": instances, "events": events })
}

fn stored_message(message: &MessageSummary) -> Json {
    json!({
        "message_id": message.message_id.as_str(),
        "body_bytes": message.body_bytes,
        "properties": properties::to_json(&message.context),
        "received_at_ms": message.received_at_ms,
        "publisher": message.publisher,
    })
}

fn tracking_event(event: &TrackingEvent) -> Json {
    json!({
        "message_id": event.message_id.as_str(),
        "instance": event.instance.unwrap_or_default(),
        "at_ms": event.at_ms,
        "kind": event.kind.as_str(),
        "detail": event.detail,
    })
}

pub fn status(state: &AppState) -> Json {
    let catalog = state.store.catalog();
    let settings = &catalog.state.settings;
    let hosts: Vec<Json> = catalog.hosts.iter().map(host).collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": state.store.data_dir().display().to_string(),
        "format_version": tandem_store::schema::FORMAT_VERSION,
        "message_count": catalog.state.message_count,
        "throttled": state.publish_throttled(),
        "disk_room_bytes": state.disk.room_bytes(),
        "min_free_disk_bytes": state.disk.min_free_bytes(),
        "disk_low": state.disk.is_low(),
        "routing_failures": catalog.state.routing_failures,
        "subscription_count": catalog.subscriptions.len(),
        "hosts": hosts,
        "settings": {
            "max_body_bytes": settings.max_body_bytes,
            "dedupe_window_ms": settings.dedupe_window_ms,
            "throttle_message_count": settings.throttle_message_count,
            "routing_failure_queue": settings.routing_failure_queue,
            "tracking": settings.tracking,
        },
        "started_at_ms": state.started_at_ms,
    })
}
