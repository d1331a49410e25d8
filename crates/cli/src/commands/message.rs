//! `tandem message …`: everything known about one message.

use clap::Subcommand;
use serde_json::{Value as Json, json};
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::output::{Table, describe_property, format_time, instance_json, property_json};

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// Stored copies, instances with their state, then tracking events in time order.
    History {
        /// The message id.
        id: String,
    },
}

pub async fn run(command: MessageCommand, context: &CommandContext) -> Result<(), CommandError> {
    match command {
        MessageCommand::History { id } => history(id, context).await,
    }
}

async fn history(message_id: String, context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let request = v1::MessageHistoryRequest {
        message_id: message_id.clone(),
    };
    let mut history = client.message_history(request).await?;
    history.events.sort_by_key(|event| event.at_ms);
    if context.output.is_json() {
        context.output.print_json(&history_json(&history));
        return Ok(());
    }
    if history.messages.is_empty() && history.instances.is_empty() && history.events.is_empty() {
        return Err(CommandError::new(format!(
            "not_found: nothing is known about message '{message_id}'"
        )));
    }
    print_messages(&history.messages);
    print_instances(&history.instances);
    print_events(&history.events);
    Ok(())
}

fn print_messages(messages: &[v1::StoredMessage]) {
    println!("stored copies:");
    if messages.is_empty() {
        println!("  (none)");
    }
    for message in messages {
        println!(
            "  {}  {} bytes  received {}  publisher {}",
            message.message_id,
            message.body_bytes,
            format_time(message.received_at_ms),
            or_dash(&message.publisher)
        );
        for property in &message.properties {
            println!("    {}", describe_property(property));
        }
    }
}

fn print_instances(instances: &[v1::Instance]) {
    println!("\ninstances:");
    if instances.is_empty() {
        println!("  (none)");
        return;
    }
    let mut table = Table::new(vec!["ID", "HOST", "STATE", "ATTEMPTS", "LAST ERROR"]);
    for instance in instances {
        table.add_row(vec![
            instance.id.to_string(),
            or_dash(&instance.host).to_string(),
            instance.state.clone(),
            instance.attempts.to_string(),
            instance.last_error.clone(),
        ]);
    }
    table.print();
}

fn print_events(events: &[v1::TrackingEvent]) {
    println!("\nevents:");
    let mut table = Table::new(vec!["TIME", "INSTANCE", "KIND", "DETAIL"]);
    for event in events {
        let instance = match event.instance {
            0 => "-".to_string(),
            instance => instance.to_string(),
        };
        table.add_row(vec![
            format_time(event.at_ms),
            instance,
            event.kind.clone(),
            event.detail.clone(),
        ]);
    }
    table.print();
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

fn history_json(history: &v1::MessageHistoryResponse) -> Json {
    let messages: Vec<Json> = history
        .messages
        .iter()
        .map(|message| {
            let properties: Vec<Json> = message.properties.iter().map(property_json).collect();
            json!({
                "message_id": message.message_id,
                "body_bytes": message.body_bytes,
                "properties": properties,
                "received_at": format_time(message.received_at_ms),
                "publisher": message.publisher,
            })
        })
        .collect();
    let instances: Vec<Json> = history.instances.iter().map(instance_json).collect();
    let events: Vec<Json> = history
        .events
        .iter()
        .map(|event| {
            json!({
                "at": format_time(event.at_ms),
                "instance": event.instance,
                "kind": event.kind,
                "detail": event.detail,
            })
        })
        .collect();
    json!({ "messages": messages, "instances": instances, "events": events })
}
