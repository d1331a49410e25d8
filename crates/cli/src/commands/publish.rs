//! `tandem publish`: publish one message with typed context properties.

use std::io::Read;

use clap::Args;
use serde_json::json;
use tandem_client::new_message_id;
use tandem_core::Property;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::property_spec::{parse_property, parse_written_property};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Idempotency key: a publish retried with the same id is stored once
    /// [default: a new unique id].
    #[arg(long)]
    message_id: Option<String>,
    /// Who publishes; recorded in tracking.
    #[arg(long, default_value = "tandem-cli")]
    publisher: String,
    /// A promoted (routable) property; TYPE is string (default), int, float, bool or
    /// timestamp (RFC 3339 or epoch milliseconds). Repeat for several, e.g.
    /// `--property MessageType=Order --property Total:int=1500`.
    #[arg(long = "property", value_name = "NAME[:TYPE]=VALUE", value_parser = parse_property)]
    properties: Vec<Property>,
    /// A written property: carried with the message but not usable in filters.
    #[arg(long = "written", value_name = "NAME[:TYPE]=VALUE", value_parser = parse_written_property)]
    written_properties: Vec<Property>,
    /// The body: literal TEXT, @FILE to read a file, or - to read standard input
    /// [default: empty].
    #[arg(long, value_name = "TEXT|@FILE|-")]
    body: Option<String>,
}

pub async fn run(arguments: PublishArgs, context: &CommandContext) -> Result<(), CommandError> {
    let body = read_body(arguments.body.as_deref())?;
    let message_id = arguments.message_id.unwrap_or_else(new_message_id);
    let properties = arguments
        .properties
        .into_iter()
        .chain(arguments.written_properties)
        .collect();
    let client = context.connect().await?.with_publisher(arguments.publisher);
    let result = client.publish_one(message_id, body, properties).await?;
    print_result(&result, context);
    Ok(())
}

fn print_result(result: &v1::PublishResult, context: &CommandContext) {
    if context.output.is_json() {
        context.output.print_json(&json!({
            "message_id": result.message_id,
            "duplicate": result.duplicate,
            "instances": result.instances,
            "routing_failure": result.routing_failure,
        }));
    } else if result.duplicate {
        println!("{} (duplicate)", result.message_id);
    } else if result.routing_failure {
        println!(
            "{} (matched no subscription; kept in the routing-failure queue)",
            result.message_id
        );
    } else {
        println!("{}", result.message_id);
    }
}

/// The body named by `--body`: literal text, `@FILE`, or `-` for standard input.
fn read_body(body: Option<&str>) -> Result<Vec<u8>, CommandError> {
    match body {
        None => Ok(Vec::new()),
        Some("-") => read_standard_input(),
        Some(text) => match text.strip_prefix('@') {
            Some("") => Err(CommandError::new(
                "--body @ needs a file name, e.g. --body @order.json",
            )),
            Some(path) => std::fs::read(path).map_err(|error| {
                CommandError::new(format!("cannot read the body file '{path}': {error}"))
            }),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}

fn read_standard_input() -> Result<Vec<u8>, CommandError> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|error| CommandError::new(format!("cannot read the body from stdin: {error}")))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_from_text_or_files() {
        assert_eq!(read_body(None).expect("empty body"), b"");
        assert_eq!(read_body(Some("hi")).expect("text body"), b"hi");
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("order.json");
        std::fs::write(&path, b"{\"total\":1500}").expect("write");
        let spec = format!("@{}", path.display());
        assert_eq!(
            read_body(Some(&spec)).expect("file body"),
            b"{\"total\":1500}"
        );
    }

    #[test]
    fn missing_body_files_are_named() {
        let error = read_body(Some("@/no/such/file.json")).expect_err("missing file");
        assert!(
            error.message.contains("/no/such/file.json"),
            "{}",
            error.message
        );
        let error = read_body(Some("@")).expect_err("no file name");
        assert!(
            error.message.contains("needs a file name"),
            "{}",
            error.message
        );
    }
}
