//! `tandem host …`: declare and list hosts, and run a host instance (`host run`, in
//! [`crate::commands::host_run`]).

use clap::Subcommand;
use serde_json::json;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::commands::host_run::{self, HostRunArgs};
use crate::output::{host_depth_table, host_json};

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Declare a host: a named class of work with its own queue and suspended queue.
    Create {
        /// The host's name, e.g. "orders".
        name: String,
    },
    /// List hosts with their queue depths.
    List,
    /// Run a host instance: its receive locations and send ports from a bindings file.
    Run(HostRunArgs),
}

pub async fn run(command: HostCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        HostCommand::Create { name } => create(name, context).await,
        HostCommand::List => list(context).await,
        HostCommand::Run(arguments) => host_run::run(arguments, context).await,
    }
}

async fn create(name: String, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let host = client.create_host(v1::CreateHostRequest { name }).await?;
    if context.output.is_json() {
        context.output.print_json(&host_json(&host));
    } else {
        println!("created host {} (id {})", host.name, host.id);
    }
    Ok(())
}

async fn list(context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let hosts = client.list_hosts().await?.hosts;
    if context.output.is_json() {
        let hosts: Vec<_> = hosts.iter().map(host_json).collect();
        context.output.print_json(&json!({ "hosts": hosts }));
    } else {
        host_depth_table(&hosts).print();
    }
    Ok(())
}
