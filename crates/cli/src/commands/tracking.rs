//! `tandem tracking …`: manage tracking events.

use clap::Subcommand;
use serde_json::json;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::parse_milliseconds;

#[derive(Debug, Subcommand)]
pub enum TrackingCommand {
    /// Remove tracking events older than a duration (a bounded number per call).
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

async fn purge(older_than_ms: u64, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let response = client
        .purge_tracking(v1::PurgeTrackingRequest { older_than_ms })
        .await?;
    if context.output.is_json() {
        context
            .output
            .print_json(&json!({ "purged_events": response.events }));
    } else {
        println!("purged {} tracking events", response.events);
    }
    Ok(())
}
