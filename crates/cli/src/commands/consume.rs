//! `tandem consume`: act as a host instance from the command line — lease messages,
//! print them, and complete (or fail, or abandon) each one. A leased batch of more than one
//! message is settled with one `Settle` call.

use clap::Args;
use serde_json::{Value as Json, json};
use tandem_client::{ClientError, TandemClient};
use tandem_core::limits::MAX_LEASE_BATCH;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::parse_milliseconds;
use crate::output::{describe_body, describe_property, format_time, property_json};

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The host whose queue to consume.
    #[arg(long)]
    host: String,
    /// The host instance name recorded as lease holder [default: cli-<pid>].
    #[arg(long)]
    holder: Option<String>,
    /// Stop after this many messages in total [default: run until Ctrl-C].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// Messages leased per call.
    #[arg(long, default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LEASE_BATCH)))]
    batch: u32,
    /// How long each lease hides the message from other host instances.
    #[arg(long = "lease", value_name = "DURATION", default_value = "30s", value_parser = parse_milliseconds)]
    lease_duration: u64,
    /// How long each lease call waits for work when the queue is empty.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_milliseconds)]
    wait: u64,
    /// Report each message as failed with this reason instead of completing it
    /// (retried per the subscription's policy, then suspended).
    #[arg(long, value_name = "REASON", conflicts_with = "abandon")]
    fail: Option<String>,
    /// Give each message back without counting an attempt instead of completing it.
    #[arg(long)]
    abandon: bool,
    /// Stop after the first lease call that finds the queue empty.
    #[arg(long)]
    exit_when_empty: bool,
    /// Do not print each message, only the final count.
    #[arg(long)]
    quiet: bool,
}

/// What to do with each leased message.
#[derive(Clone, Debug)]
enum Settlement {
    Complete,
    Fail(String),
    Abandon,
}

pub async fn run(arguments: ConsumeArgs, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let settlement = settlement_for(&arguments);
    let holder = arguments
        .holder
        .clone()
        .unwrap_or_else(|| format!("cli-{}", std::process::id()));
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut consumed: u64 = 0;
    while arguments.max.is_none_or(|max| consumed < max) {
        let request = lease_request(&arguments, &holder, consumed);
        let leased = tokio::select! {
            result = client.lease(request) => result.map_err(|error| lease_failure(error, &arguments.host))?,
            _ = &mut interrupted => break,
        };
        if leased.messages.is_empty() && arguments.exit_when_empty {
            break;
        }
        let results = if leased.messages.len() > 1 {
            settle_batch(&client, &leased.messages, &settlement).await?
        } else {
            let mut results = Vec::with_capacity(leased.messages.len());
            for message in &leased.messages {
                results.push(settle(&client, message, &settlement).await);
            }
            results
        };
        for (message, result) in leased.messages.iter().zip(results) {
            let outcome = outcome_of(message, &settlement, result)?;
            print_message(message, &outcome, &arguments, context);
            consumed += 1;
        }
    }
    if !context.output.is_json() {
        println!("consumed {consumed} message{}", plural(consumed));
    }
    Ok(())
}

fn settlement_for(arguments: &ConsumeArgs) -> Settlement {
    match (&arguments.fail, arguments.abandon) {
        (Some(reason), _) => Settlement::Fail(reason.clone()),
        (None, true) => Settlement::Abandon,
        (None, false) => Settlement::Complete,
    }
}

fn lease_request(arguments: &ConsumeArgs, holder: &str, consumed: u64) -> v1::LeaseRequest {
    let remaining = arguments.max.map_or(u64::MAX, |max| max - consumed);
    let max_messages = u64::from(arguments.batch).min(remaining) as u32;
    v1::LeaseRequest {
        host: arguments.host.clone(),
        holder: holder.to_string(),
        max_messages,
        lease_duration_ms: arguments.lease_duration,
        wait_ms: arguments.wait,
    }
}

fn lease_failure(error: ClientError, host: &str) -> CommandError {
    let not_found = error.is_code("not_found");
    let failure = CommandError::from(error);
    if not_found {
        failure.with_hint(format!("declare the host with `tandem host create {host}`"))
    } else {
        failure
    }
}

/// Settles one message; answers whether it was suspended (a failure past its retries).
async fn settle(
    client: &TandemClient,
    message: &v1::LeasedMessage,
    settlement: &Settlement,
) -> Result<bool, ClientError> {
    let response = match settlement {
        Settlement::Complete => client.complete(settle_request(message)).await,
        Settlement::Abandon => client.abandon(settle_request(message)).await,
        Settlement::Fail(reason) => {
            let request = v1::FailRequest {
                instance: message.instance,
                token: message.token,
                reason: reason.clone(),
            };
            client.fail(request).await
        }
    };
    response.map(|response| response.suspended)
}

/// Settles a leased batch the same way in one call; one result per message, in order.
/// Only a failure of the call itself is an error here.
async fn settle_batch(
    client: &TandemClient,
    messages: &[v1::LeasedMessage],
    settlement: &Settlement,
) -> Result<Vec<Result<bool, ClientError>>, CommandError> {
    let (verdict, reason) = match settlement {
        Settlement::Complete => (v1::Verdict::Complete, String::new()),
        Settlement::Abandon => (v1::Verdict::Abandon, String::new()),
        Settlement::Fail(reason) => (v1::Verdict::Fail, reason.clone()),
    };
    let settlements = messages
        .iter()
        .map(|message| v1::Settlement {
            instance: message.instance,
            token: message.token,
            verdict: verdict as i32,
            reason: reason.clone(),
        })
        .collect();
    let response = client.settle(settlements).await?;
    if response.results.len() != messages.len() {
        return Err(ClientError::new(
            "internal",
            format!(
                "the node answered {} results for a settle batch of {}",
                response.results.len(),
                messages.len()
            ),
        )
        .into());
    }
    let results = response
        .results
        .into_iter()
        .map(|result| match result.error {
            Some(error) => Err(ClientError::from(error)),
            None => Ok(result.suspended),
        })
        .collect();
    Ok(results)
}

/// What happened to one message; a lease that ran out or was superseded is reported, not
/// fatal.
fn outcome_of(
    message: &v1::LeasedMessage,
    settlement: &Settlement,
    result: Result<bool, ClientError>,
) -> Result<String, CommandError> {
    match result {
        Ok(suspended) => Ok(outcome_name(settlement, suspended).to_string()),
        Err(error) if error.is_code("lease_expired") || error.is_code("lease_mismatch") => {
            eprintln!("warning: instance {}: {error}", message.instance);
            Ok(format!("not settled ({})", error.code))
        }
        Err(error) => Err(error.into()),
    }
}

fn settle_request(message: &v1::LeasedMessage) -> v1::SettleRequest {
    v1::SettleRequest {
        instance: message.instance,
        token: message.token,
    }
}

fn outcome_name(settlement: &Settlement, suspended: bool) -> &'static str {
    match settlement {
        Settlement::Complete => "completed",
        Settlement::Abandon => "abandoned",
        Settlement::Fail(_) if suspended => "failed (suspended)",
        Settlement::Fail(_) => "failed (will be retried)",
    }
}

fn print_message(
    message: &v1::LeasedMessage,
    outcome: &str,
    arguments: &ConsumeArgs,
    context: &CommandContext,
) {
    if arguments.quiet {
        return;
    }
    if context.output.is_json() {
        context
            .output
            .print_json_line(&leased_message_json(message, outcome));
        return;
    }
    println!(
        "instance {}  message {}  attempt {}",
        message.instance, message.message_id, message.attempt
    );
    for property in &message.properties {
        println!("  {}", describe_property(property));
    }
    println!("  body: {}", describe_body(&message.body));
    println!("  {outcome}");
}

fn leased_message_json(message: &v1::LeasedMessage, outcome: &str) -> Json {
    let properties: Vec<Json> = message.properties.iter().map(property_json).collect();
    json!({
        "instance": message.instance,
        "message_id": message.message_id,
        "attempt": message.attempt,
        "subscription": message.subscription,
        "priority": message.priority,
        "publisher": message.publisher,
        "received_at": format_time(message.received_at_ms),
        "properties": properties,
        "body": std::str::from_utf8(&message.body).ok(),
        "body_bytes": message.body.len(),
        "outcome": outcome,
    })
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}
