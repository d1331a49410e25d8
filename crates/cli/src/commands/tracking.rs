//! `tandem tracking …`: manage tracking events.

use std::time::Instant;

use clap::Subcommand;
use serde_json::json;
use tandem_core::limits;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::parse_milliseconds;

/// Purge calls one `tandem tracking purge` makes at most (each removes up to
/// `MAX_TRACKING_PURGE_PER_COMMAND` events: a billion in all).
const MAX_PURGE_CALLS: u64 = 100_000;

#[derive(Debug, Subcommand)]
pub enum TrackingCommand {
    /// Remove tracking events older than a duration. Each call to the node removes a bounded
    /// number (10,000), so that the node's other work goes on; this command repeats the call
    /// until everything that old is gone, printing its progress.
    Purge {
        /// Age of the events to remove, e.g. 7d, 12h.
        #[arg(long, value_name = "DURATION", value_parser = parse_milliseconds)]
        older_than: u64,
    },
}

pub async fn run(command: TrackingCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        TrackingCommand::Purge { older_than } => purge(older_than, context).await,
    }
}

/// Purges in calls of at most the node's bound until a call finds fewer. The cut-off stays
/// where it was at the start: each call asks for events older than `older_than_ms` plus the
/// time since, so that events aging past it meanwhile do not keep the loop going.
async fn purge(older_than_ms: u64, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let bound = limits::MAX_TRACKING_PURGE_PER_COMMAND as u64;
    let started = Instant::now();
    let mut purged = 0;
    for call in 1..=MAX_PURGE_CALLS {
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let response = client
            .purge_tracking(v1::PurgeTrackingRequest {
                older_than_ms: older_than_ms.saturating_add(elapsed_ms),
            })
            .await?;
        purged += response.events;
        if response.events < bound {
            break;
        }
        if !context.output.is_json() {
            eprintln!("purged {purged} tracking events so far ({call} calls) ...");
        }
    }
    if context.output.is_json() {
        context
            .output
            .print_json(&json!({ "purged_events": purged }));
    } else {
        println!("purged {purged} tracking events");
    }
    Ok(())
}
