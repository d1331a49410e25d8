//! Send ports: a host instance leases messages from its host's queue, hands each to the
//! send port whose subscription routed it, and settles the lease with the outcome.
//!
//! - Deliveries run concurrently, at most [`limits::HOST_MAX_DELIVERIES_IN_FLIGHT`]; the
//!   lease is renewed while one runs, so a slow endpoint does not let it expire.
//! - The leased message says which transport to use: the port's own, or its backup once
//!   the primary's retries are exhausted (the message box counts the attempts, so the
//!   choice survives a host instance's crash and a failover).
//! - A failed delivery is reported with its reason (`fail`): the message box retries it
//!   per the port's policy, then on the backup, then suspends it.
//! - During an outage of the message box, the client's calls wait (they retry until the
//!   database is back); deliveries already made are completed once it is. A completion
//!   that can no longer land (the lease ended meanwhile) means the message is delivered
//!   again later, which the transports make harmless: FILE replaces the same file, HTTP
//!   sends the same message id.

pub mod file;
pub mod http;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_client::{ClientError, LeaseStatus, TandemClient, v1};
use tandem_core::{Property, Value, limits};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::bindings::{SendPort, Transport};

/// One leased message, as a transport needs it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub instance: u64,
    pub token: u64,
    pub message_id: String,
    pub attempt: u32,
    pub subscription: u64,
    pub backup_transport: bool,
    pub body: Vec<u8>,
    pub properties: Vec<Property>,
}

impl Delivery {
    fn from_leased(leased: v1::LeasedMessage) -> Delivery {
        let properties = leased
            .properties
            .into_iter()
            .filter_map(|property| Property::try_from(property).ok())
            .collect();
        Delivery {
            instance: leased.instance,
            token: leased.token,
            message_id: leased.message_id,
            attempt: leased.attempt,
            subscription: leased.subscription,
            backup_transport: leased.backup_transport,
            body: leased.body,
            properties,
        }
    }

    /// A context property's value by name.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties
            .iter()
            .find(|property| property.name == name)
            .map(|property| &property.value)
    }
}

/// What the send side of a host instance needs.
pub struct SendSide {
    pub client: TandemClient,
    pub host: String,
    pub instance: String,
    pub lease_duration: Duration,
    pub ports: SendPorts,
}

/// The host's send ports, found by the id of the subscription that routed a message.
pub struct SendPorts {
    by_name: BTreeMap<String, SendPort>,
    names_by_subscription: Mutex<BTreeMap<u64, String>>,
}

impl SendPorts {
    pub fn new(ports: impl IntoIterator<Item = SendPort>) -> SendPorts {
        SendPorts {
            by_name: ports
                .into_iter()
                .map(|port| (port.name.clone(), port))
                .collect(),
            names_by_subscription: Mutex::new(BTreeMap::new()),
        }
    }

    /// The port of `subscription`; the subscriptions are listed again when the id is new
    /// (a port applied after this instance started).
    async fn resolve(&self, client: &TandemClient, subscription: u64) -> Result<&SendPort, String> {
        if self.cached_name(subscription).is_none() {
            let listed = client
                .list_subscriptions()
                .await
                .map_err(|error| format!("cannot list subscriptions: {error}"))?;
            let mut names = self.lock_names();
            for listed in listed.subscriptions {
                names.insert(listed.id, listed.name);
            }
        }
        let Some(name) = self.cached_name(subscription) else {
            return Err(format!(
                "subscription {subscription} no longer exists (its send port was changed or \
                 removed); terminate the message or resume it after re-applying the bindings"
            ));
        };
        match self.by_name.get(&name) {
            Some(port) if port.enabled => Ok(port),
            Some(_) => Err(format!("send port '{name}' is disabled in the bindings")),
            None => Err(format!(
                "subscription '{name}' has no send port in this host instance's bindings"
            )),
        }
    }

    fn cached_name(&self, subscription: u64) -> Option<String> {
        self.lock_names().get(&subscription).cloned()
    }

    fn lock_names(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.names_by_subscription
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.values().all(|port| !port.enabled)
    }
}

/// Leases and delivers until `shutdown` turns true, then lets the deliveries under way
/// finish for up to [`limits::HOST_STOP_GRACE_MS`] and returns.
pub async fn run(side: Arc<SendSide>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits::HOST_MAX_DELIVERIES_IN_FLIGHT));
    let mut deliveries = JoinSet::new();
    while !*shutdown.borrow() {
        while deliveries.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = deliveries.join_next() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let leased = tokio::select! {
            leased = lease(&side, free) => leased,
            _ = shutdown.changed() => break,
        };
        for message in leased {
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                break;
            };
            let side = Arc::clone(&side);
            deliveries.spawn(async move {
                deliver_and_settle(&side, Delivery::from_leased(message)).await;
                drop(slot);
            });
        }
    }
    let grace = Duration::from_millis(limits::HOST_STOP_GRACE_MS);
    let drained = tokio::time::timeout(grace, async {
        while deliveries.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        // Still waiting for the message box: their leases expire and they are delivered again.
        tracing::warn!(
            host = %side.host,
            "stopping with {} deliveries unsettled; they will be delivered again",
            deliveries.len()
        );
        deliveries.abort_all();
    }
}

/// Up to `room` messages, waiting a while for work; none after an error that retrying did
/// not cure (it is logged, and the loop asks again after a pause).
async fn lease(side: &SendSide, room: usize) -> Vec<v1::LeasedMessage> {
    let request = v1::LeaseRequest {
        host: side.host.clone(),
        holder: side.instance.clone(),
        max_messages: u32::try_from(room.min(limits::HOST_LEASE_BATCH)).unwrap_or(1),
        lease_duration_ms: millis(side.lease_duration),
        wait_ms: limits::HOST_LEASE_WAIT_MS,
    };
    match side.client.lease(request).await {
        Ok(response) => response.messages,
        Err(error) => {
            tracing::warn!(host = %side.host, "cannot lease from the host queue: {error}");
            tokio::time::sleep(Duration::from_millis(limits::HOST_ERROR_PAUSE_MS)).await;
            Vec::new()
        }
    }
}

async fn deliver_and_settle(side: &SendSide, delivery: Delivery) {
    let outcome = match side
        .ports
        .resolve(&side.client, delivery.subscription)
        .await
    {
        Ok(port) => deliver_renewing(side, port, &delivery).await,
        Err(reason) => Err(reason),
    };
    let settled = match &outcome {
        Ok(()) => {
            let request = v1::SettleRequest {
                instance: delivery.instance,
                token: delivery.token,
            };
            side.client.complete(request).await.map(drop)
        }
        Err(reason) => {
            tracing::warn!(message_id = %delivery.message_id, attempt = delivery.attempt, "delivery failed: {reason}");
            let request = v1::FailRequest {
                instance: delivery.instance,
                token: delivery.token,
                reason: reason.clone(),
            };
            side.client.fail(request).await.map(drop)
        }
    };
    if let Err(error) = settled {
        report_unsettled(&delivery, &error);
    }
}

/// Delivers through the transport the attempt calls for, renewing the lease meanwhile.
async fn deliver_renewing(
    side: &SendSide,
    port: &SendPort,
    delivery: &Delivery,
) -> Result<(), String> {
    let transport = match (&port.backup, delivery.backup_transport) {
        (Some(backup), true) => &backup.transport,
        _ => &port.transport,
    };
    let delivering = deliver(transport, delivery);
    let (result, lease) = side
        .client
        .renew_while(
            delivery.instance,
            delivery.token,
            side.lease_duration,
            delivering,
        )
        .await;
    if let LeaseStatus::Lost(error) = lease {
        tracing::warn!(message_id = %delivery.message_id, "the lease ended during delivery: {error}");
    }
    result
}

pub async fn deliver(transport: &Transport, delivery: &Delivery) -> Result<(), String> {
    match transport {
        Transport::File { folder, file_name } => file::deliver(folder, file_name, delivery).await,
        Transport::Http { url } => http::deliver(url, delivery).await,
    }
}

/// A settlement that did not land. After a retried completion, `not_found` means the
/// first attempt did land; an ended lease means another delivery follows.
fn report_unsettled(delivery: &Delivery, error: &ClientError) {
    if error.completed_by_earlier_attempt() {
        return;
    }
    if error.is_code("lease_expired") || error.is_code("lease_mismatch") {
        tracing::warn!(
            message_id = %delivery.message_id,
            "the lease ended before the outcome was recorded; the message will be delivered again: {error}"
        );
        return;
    }
    tracing::error!(message_id = %delivery.message_id, "cannot record the delivery outcome: {error}");
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
