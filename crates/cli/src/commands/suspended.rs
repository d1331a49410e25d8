//! `tandem suspended …`: inspect, resume and terminate suspended message instances.

use clap::Subcommand;
use serde_json::{Value as Json, json};
use tandem_core::limits::MAX_LIST_ROWS;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::output::{Table, format_time, instance_json};

#[derive(Debug, Subcommand)]
pub enum SuspendedCommand {
    /// List suspended message instances.
    List {
        /// Only this host's suspended queue [default: every host].
        #[arg(long)]
        host: Option<String>,
        /// At most this many instances.
        #[arg(long, default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=MAX_LIST_ROWS as i64))]
        limit: u32,
    },
    /// Put a suspended instance back in its host's queue, with fresh attempts.
    Resume {
        /// The instance id (see `tandem suspended list`).
        id: u64,
    },
    /// Remove a suspended instance for good (recorded in tracking).
    Terminate {
        /// The instance id (see `tandem suspended list`).
        id: u64,
        /// Why, recorded in tracking.
        #[arg(long, default_value = "terminated by an operator")]
        reason: String,
    },
}

pub async fn run(command: SuspendedCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        SuspendedCommand::List { host, limit } => list(host, limit, context).await,
        SuspendedCommand::Resume { id } => resume(id, context).await,
        SuspendedCommand::Terminate { id, reason } => terminate(id, reason, context).await,
    }
}

async fn list(
    host: Option<String>,
    limit: u32,
    context: &CommandContext,
) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let request = v1::ListInstancesRequest {
        host: host.unwrap_or_default(),
        state: "suspended".to_string(),
        after: 0,
        limit,
    };
    let instances = client.list_instances(request).await?.instances;
    if context.output.is_json() {
        let instances: Vec<Json> = instances.iter().map(instance_json).collect();
        context
            .output
            .print_json(&json!({ "instances": instances }));
        return Ok(());
    }
    let mut table = Table::new(vec![
        "ID",
        "MESSAGE ID",
        "HOST",
        "ATTEMPTS",
        "LAST ERROR",
        "ENQUEUED AT",
    ]);
    for instance in &instances {
        table.add_row(vec![
            instance.id.to_string(),
            instance.message_id.clone(),
            instance.host.clone(),
            instance.attempts.to_string(),
            instance.last_error.clone(),
            format_time(instance.enqueued_at_ms),
        ]);
    }
    table.print();
    Ok(())
}

async fn resume(id: u64, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    client.resume(v1::ResumeRequest { instance: id }).await?;
    if context.output.is_json() {
        context.output.print_json(&json!({ "resumed": id }));
    } else {
        println!("resumed instance {id}");
    }
    Ok(())
}

async fn terminate(id: u64, reason: String, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let request = v1::TerminateRequest {
        instance: id,
        reason,
    };
    client.terminate(request).await?;
    if context.output.is_json() {
        context.output.print_json(&json!({ "terminated": id }));
    } else {
        println!("terminated instance {id}");
    }
    Ok(())
}
