//! `bindings apply`: makes the message box match a checked bindings file. Hosts are
//! created when missing; each enabled send port gets a subscription of its host's queue
//! with the port's filter, priority and retry policies (a changed port's subscription is
//! replaced, a disabled port's removed). Subscriptions that no send port names are left
//! alone: they may belong to other tools. Receive locations need nothing in the message
//! box: host instances run them from the same file.
//!
//! [`plan`] only reads, so a dry run shows exactly what [`execute`] would change.

use std::collections::BTreeMap;
use std::fmt;

use tandem_client::{ClientError, TandemClient, v1};
use tandem_core::subscription::RetryPolicy;

use crate::bindings::{Bindings, SendPort};

/// One change (or confirmation) that applying makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    CreateHost(String),
    HostExists(String),
    CreateSubscription(SendPort),
    /// The port changed: its old subscription is deleted and a new one created.
    ReplaceSubscription {
        old_id: u64,
        port: SendPort,
    },
    /// A disabled port's subscription is deleted.
    RemoveSubscription {
        id: u64,
        port: String,
    },
    Unchanged(String),
    /// A disabled port without a subscription: nothing to do.
    StaysDisabled(String),
}

impl Step {
    /// Whether the step writes to the message box.
    pub fn changes_something(&self) -> bool {
        matches!(
            self,
            Step::CreateHost(_)
                | Step::CreateSubscription(_)
                | Step::ReplaceSubscription { .. }
                | Step::RemoveSubscription { .. }
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateHost(name) => write!(formatter, "host {name}: create"),
            Step::HostExists(name) => write!(formatter, "host {name}: exists"),
            Step::CreateSubscription(port) => write!(
                formatter,
                "send port {}: create its subscription ({})",
                port.name, port.transport
            ),
            Step::ReplaceSubscription { old_id, port } => write!(
                formatter,
                "send port {}: changed, replace subscription {old_id}",
                port.name
            ),
            Step::RemoveSubscription { id, port } => write!(
                formatter,
                "send port {port}: disabled, remove subscription {id}"
            ),
            Step::Unchanged(name) => write!(formatter, "send port {name}: unchanged"),
            Step::StaysDisabled(name) => write!(formatter, "send port {name}: disabled"),
        }
    }
}

/// What applying `bindings` would do, given what the message box holds now.
pub async fn plan(client: &TandemClient, bindings: &Bindings) -> Result<Vec<Step>, ClientError> {
    let hosts = client.list_hosts().await?.hosts;
    let subscriptions: BTreeMap<String, v1::Subscription> = client
        .list_subscriptions()
        .await?
        .subscriptions
        .into_iter()
        .map(|subscription| (subscription.name.clone(), subscription))
        .collect();
    let mut steps: Vec<Step> = bindings
        .hosts
        .iter()
        .map(|name| match hosts.iter().any(|host| &host.name == name) {
            true => Step::HostExists(name.clone()),
            false => Step::CreateHost(name.clone()),
        })
        .collect();
    for port in &bindings.send_ports {
        steps.push(port_step(port, subscriptions.get(&port.name)));
    }
    Ok(steps)
}

fn port_step(port: &SendPort, existing: Option<&v1::Subscription>) -> Step {
    match (port.enabled, existing) {
        (true, None) => Step::CreateSubscription(port.clone()),
        (true, Some(current)) if matches(port, current) => Step::Unchanged(port.name.clone()),
        (true, Some(current)) => Step::ReplaceSubscription {
            old_id: current.id,
            port: port.clone(),
        },
        (false, Some(current)) => Step::RemoveSubscription {
            id: current.id,
            port: port.name.clone(),
        },
        (false, None) => Step::StaysDisabled(port.name.clone()),
    }
}

/// Whether the subscription already routes and retries as the port says.
fn matches(port: &SendPort, current: &v1::Subscription) -> bool {
    let backup = port
        .backup
        .as_ref()
        .map(|backup| wire_policy(&backup.retry));
    current.host == port.host
        && current.filter == port.filter
        && current.priority == u32::from(port.priority)
        && current.retry_count == port.retry.retry_count
        && current.retry_interval_ms == port.retry.retry_interval_ms
        && current.exponential_backoff == port.retry.exponential_backoff
        && current.backup == backup
}

/// Carries out `steps` in order, telling `progress` about each before it runs. Stops at
/// the first failure; the steps before it stay applied, and applying again finishes the
/// rest (every step is decided from what the message box holds).
pub async fn execute(
    client: &TandemClient,
    steps: &[Step],
    mut progress: impl FnMut(&Step),
) -> Result<(), ClientError> {
    for step in steps {
        progress(step);
        match step {
            Step::CreateHost(name) => {
                client
                    .create_host(v1::CreateHostRequest { name: name.clone() })
                    .await?;
            }
            Step::CreateSubscription(port) => create_subscription(client, port, None).await?,
            Step::ReplaceSubscription { old_id, port } => {
                replace_subscription(client, *old_id, port).await?;
            }
            Step::RemoveSubscription { id, .. } => delete_subscription(client, *id).await?,
            Step::HostExists(_) | Step::Unchanged(_) | Step::StaysDisabled(_) => {}
        }
    }
    Ok(())
}

/// Gives subscription `old_id` the port's definition in one step, so that no message
/// published meanwhile finds neither; creates it when the old one is gone (deleted by hand
/// since the plan was made).
async fn replace_subscription(
    client: &TandemClient,
    old_id: u64,
    port: &SendPort,
) -> Result<(), ClientError> {
    match create_subscription(client, port, Some(old_id)).await {
        Err(error) if error.is_code("not_found") => create_subscription(client, port, None).await,
        other => other,
    }
}

async fn create_subscription(
    client: &TandemClient,
    port: &SendPort,
    replaces: Option<u64>,
) -> Result<(), ClientError> {
    let request = v1::CreateSubscriptionRequest {
        name: port.name.clone(),
        host: port.host.clone(),
        filter: port.filter.clone(),
        priority: u32::from(port.priority),
        retry_count: Some(port.retry.retry_count),
        retry_interval_ms: Some(port.retry.retry_interval_ms),
        exponential_backoff: port.retry.exponential_backoff,
        backup: port
            .backup
            .as_ref()
            .map(|backup| wire_policy(&backup.retry)),
        replaces,
    };
    client.create_subscription(request).await.map(drop)
}

async fn delete_subscription(client: &TandemClient, id: u64) -> Result<(), ClientError> {
    let request = v1::DeleteSubscriptionRequest { id };
    match client.delete_subscription(request).await {
        Err(error) if error.is_code("not_found") => Ok(()),
        other => other.map(drop),
    }
}

fn wire_policy(policy: &RetryPolicy) -> v1::RetryPolicy {
    v1::RetryPolicy {
        retry_count: policy.retry_count,
        retry_interval_ms: policy.retry_interval_ms,
        exponential_backoff: policy.exponential_backoff,
    }
}
