//! `tandem bindings check|apply FILE`: check a bindings file (every problem with its line),
//! and make the message box match it. Nothing is applied when the file has any problem.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;
use tandem_host::Bindings;
use tandem_host::apply::{self, Step};

use crate::command_context::CommandContext;
use crate::command_error::CommandError;

#[derive(Debug, Subcommand)]
pub enum BindingsCommand {
    /// Check a bindings file without contacting any node.
    Check {
        /// The bindings file (TOML).
        file: PathBuf,
    },
    /// Create the hosts and send-port subscriptions a bindings file declares.
    Apply {
        /// The bindings file (TOML).
        file: PathBuf,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(command: BindingsCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        BindingsCommand::Check { file } => check(&file, context),
        BindingsCommand::Apply { file, dry_run } => apply(&file, dry_run, context).await,
    }
}

/// Loads and checks a bindings file; problems become one error listing each.
pub fn load(file: &Path) -> Result<Bindings, CommandError> {
    Bindings::load(file).map_err(|error| {
        let count = error.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        CommandError::new(format!(
            "the bindings file has {count} {noun}; nothing was applied\n{error}"
        ))
        .with_hint("fix each line named above, then run the command again")
    })
}

fn check(file: &Path, context: &CommandContext) -> Result<(), CommandError> {
    let bindings = load(file)?;
    let summary = format!(
        "{}: ok ({} hosts, {} receive locations, {} send ports)",
        file.display(),
        bindings.hosts.len(),
        bindings.receive_locations.len(),
        bindings.send_ports.len()
    );
    if context.output.is_json() {
        context.output.print_json(&json!({
            "file": file.display().to_string(),
            "hosts": bindings.hosts.len(),
            "receive_locations": bindings.receive_locations.len(),
            "send_ports": bindings.send_ports.len(),
        }));
    } else {
        println!("{summary}");
    }
    Ok(())
}

async fn apply(file: &Path, dry_run: bool, context: &CommandContext) -> Result<(), CommandError> {
    let bindings = load(file)?;
    let client = context.connect().await?;
    let steps = apply::plan(&client, &bindings).await?;
    let changes = steps.iter().filter(|step| step.changes_something()).count();
    if !dry_run {
        apply::execute(&client, &steps, |step| {
            if step.changes_something() && !context.output.is_json() {
                eprintln!("applying: {step}");
            }
        })
        .await?;
    }
    if context.output.is_json() {
        let steps: Vec<String> = steps.iter().map(Step::to_string).collect();
        context.output.print_json(&json!({
            "file": file.display().to_string(),
            "dry_run": dry_run,
            "changes": changes,
            "steps": steps,
        }));
        return Ok(());
    }
    for step in &steps {
        println!("{step}");
    }
    let verb = if dry_run { "would change" } else { "changed" };
    println!(
        "{}: {verb} {changes} of {} items",
        file.display(),
        steps.len()
    );
    Ok(())
}
