//! `tandem subscription …`: route matching messages into a host's queue.

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use tandem_core::limits::{DEFAULT_PRIORITY, DEFAULT_RETRY_COUNT, DEFAULT_RETRY_INTERVAL_MS};
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::{format_milliseconds, parse_milliseconds};
use crate::output::{Table, format_time};

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Create a subscription: copies of messages matching the filter go to the host's queue.
    Create(CreateArgs),
    /// List every subscription.
    List,
    /// Delete a subscription by id; messages already routed stay queued.
    Delete {
        /// The subscription id (see `tandem subscription list`).
        id: u64,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The host whose queue receives the matching messages.
    #[arg(long)]
    host: String,
    /// The filter over promoted properties, e.g. 'MessageType == "Order" and Total > 1000'.
    /// Predicates: ==, !=, <, <=, >, >=, exists; combined with `and` and `or`.
    #[arg(long)]
    filter: String,
    /// A name for the subscription [default: chosen by the node].
    #[arg(long, default_value = "")]
    name: String,
    /// Priority from 1 (highest) to 10 (lowest).
    #[arg(long, default_value_t = u32::from(DEFAULT_PRIORITY),
          value_parser = clap::value_parser!(u32).range(1..=10))]
    priority: u32,
    /// Deliveries retried after the first failure before the backup transport takes over
    /// (when there is one) or the message is suspended.
    #[arg(long, default_value_t = DEFAULT_RETRY_COUNT)]
    retry_count: u32,
    /// Wait before a failed message is offered again (e.g. 30s, 5m, 2h).
    #[arg(long, default_value = "5m", value_parser = parse_milliseconds)]
    retry_interval: u64,
    /// Double the retry interval after each failed attempt.
    #[arg(long)]
    exponential_backoff: bool,
    /// Add a backup transport, which delivers once the primary's retries are exhausted and
    /// retries this many times before the message is suspended [default: 3]. Any
    /// --backup-… flag adds the backup transport.
    #[arg(long)]
    backup_retry_count: Option<u32>,
    /// Backup transport: wait before a failed message is offered again through it
    /// [default: 5m].
    #[arg(long, value_parser = parse_milliseconds)]
    backup_retry_interval: Option<u64>,
    /// Backup transport: double its retry interval after each failed attempt.
    #[arg(long)]
    backup_exponential_backoff: bool,
    /// Give the subscription with this id this definition in one step, keeping its id:
    /// every message published meanwhile routes by the old or the new definition, and its
    /// queued messages are retried by the new policy.
    #[arg(long, value_name = "ID")]
    replaces: Option<u64>,
}

impl CreateArgs {
    /// The backup transport's retries, when any backup flag was given.
    fn backup(&self) -> Option<v1::RetryPolicy> {
        let enabled = self.backup_retry_count.is_some()
            || self.backup_retry_interval.is_some()
            || self.backup_exponential_backoff;
        enabled.then(|| v1::RetryPolicy {
            retry_count: self.backup_retry_count.unwrap_or(DEFAULT_RETRY_COUNT),
            retry_interval_ms: self
                .backup_retry_interval
                .unwrap_or(DEFAULT_RETRY_INTERVAL_MS),
            exponential_backoff: self.backup_exponential_backoff,
        })
    }
}

pub async fn run(
    command: SubscriptionCommand,
    context: &CommandContext,
) -> Result<(), CommandError> {
    match command {
        SubscriptionCommand::Create(arguments) => create(arguments, context).await,
        SubscriptionCommand::List => list(context).await,
        SubscriptionCommand::Delete { id } => delete(id, context).await,
    }
}

async fn create(arguments: CreateArgs, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let backup = arguments.backup();
    let request = v1::CreateSubscriptionRequest {
        backup,
        name: arguments.name,
        host: arguments.host,
        filter: arguments.filter,
        priority: arguments.priority,
        retry_count: Some(arguments.retry_count),
        retry_interval_ms: Some(arguments.retry_interval),
        exponential_backoff: arguments.exponential_backoff,
        replaces: arguments.replaces,
    };
    let subscription = client.create_subscription(request).await.map_err(|error| {
        let hint = match error.is_code("not_found") {
            true if error.message.starts_with("subscription") => {
                Some("see `tandem subscription list` for the ids")
            }
            true => Some("declare the host first with `tandem host create NAME`"),
            false => None,
        };
        let failure = CommandError::from(error);
        match hint {
            Some(hint) => failure.with_hint(hint),
            None => failure,
        }
    })?;
    if context.output.is_json() {
        context.output.print_json(&subscription_json(&subscription));
    } else {
        let verb = match arguments.replaces {
            Some(_) => "redefined",
            None => "created",
        };
        println!(
            "{verb} subscription {} ({})",
            subscription.id, subscription.name
        );
    }
    Ok(())
}

async fn list(context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let subscriptions = client.list_subscriptions().await?.subscriptions;
    if context.output.is_json() {
        let subscriptions: Vec<Json> = subscriptions.iter().map(subscription_json).collect();
        context
            .output
            .print_json(&json!({ "subscriptions": subscriptions }));
        return Ok(());
    }
    let mut table = Table::new(vec![
        "ID", "NAME", "HOST", "PRIORITY", "RETRIES", "INTERVAL", "BACKOFF", "BACKUP", "FILTER",
    ]);
    for subscription in &subscriptions {
        table.add_row(vec![
            subscription.id.to_string(),
            subscription.name.clone(),
            subscription.host.clone(),
            subscription.priority.to_string(),
            subscription.retry_count.to_string(),
            format_milliseconds(subscription.retry_interval_ms),
            backoff_name(subscription.exponential_backoff).to_string(),
            backup_text(subscription.backup.as_ref()),
            subscription.filter.clone(),
        ]);
    }
    table.print();
    Ok(())
}

async fn delete(id: u64, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    client
        .delete_subscription(v1::DeleteSubscriptionRequest { id })
        .await?;
    if context.output.is_json() {
        context.output.print_json(&json!({ "deleted": id }));
    } else {
        println!("deleted subscription {id}");
    }
    Ok(())
}

fn backoff_name(exponential_backoff: bool) -> &'static str {
    if exponential_backoff {
        "exponential"
    } else {
        "fixed"
    }
}

/// The backup transport's retries in one column: `3 retries, 30s, fixed`, or `-` for none.
fn backup_text(backup: Option<&v1::RetryPolicy>) -> String {
    match backup {
        Some(backup) => format!(
            "{} retries, {}, {}",
            backup.retry_count,
            format_milliseconds(backup.retry_interval_ms),
            backoff_name(backup.exponential_backoff)
        ),
        None => "-".to_string(),
    }
}

fn subscription_json(subscription: &v1::Subscription) -> Json {
    json!({
        "id": subscription.id,
        "name": subscription.name,
        "host": subscription.host,
        "filter": subscription.filter,
        "priority": subscription.priority,
        "retry_count": subscription.retry_count,
        "retry_interval_ms": subscription.retry_interval_ms,
        "exponential_backoff": subscription.exponential_backoff,
        "backup": subscription.backup.as_ref().map(|backup| json!({
            "retry_count": backup.retry_count,
            "retry_interval_ms": backup.retry_interval_ms,
            "exponential_backoff": backup.exponential_backoff,
        })),
        "created_at": format_time(subscription.created_at_ms),
    })
}
