//! [`CommandContext`]: what every command gets from the global options.

use std::time::Duration;

use tandem_client::{ConnectionState, TandemClient, retry_policy::DEFAULT_RETRY_DEADLINE};

use crate::command_error::CommandError;
use crate::output::Output;

/// After this long without any answer, a command says on stderr that it is still trying, so
/// a person at a terminal is not left looking at nothing until the client gives up.
const STILL_TRYING_NOTICE_AFTER: Duration = Duration::from_secs(1);

/// The global options: which node to talk to and how to print.
pub struct CommandContext {
    pub server: String,
    pub output: Output,
}

impl CommandContext {
    pub fn new(server: String, json: bool) -> CommandContext {
        CommandContext {
            server,
            output: Output::new(json),
        }
    }

    /// Connects to the node named by `--server`.
    pub async fn connect(&self) -> Result<TandemClient, CommandError> {
        let client = TandemClient::connect(&self.server).await?;
        tokio::spawn(notice_while_no_answer(client.clone()));
        Ok(client)
    }
}

/// Prints one line if no node has answered `client` after [`STILL_TRYING_NOTICE_AFTER`].
async fn notice_while_no_answer(client: TandemClient) {
    tokio::time::sleep(STILL_TRYING_NOTICE_AFTER).await;
    if client.connection_state() == ConnectionState::Connecting {
        let left = DEFAULT_RETRY_DEADLINE.saturating_sub(STILL_TRYING_NOTICE_AFTER);
        eprintln!(
            "tandem: no answer yet from {}; trying for {} s more (Ctrl-C to stop)",
            client.connection().addresses().join(", "),
            left.as_secs()
        );
    }
}
