//! [`CommandContext`]: what every command gets from the global options.

use tandem_client::TandemClient;

use crate::command_error::CommandError;
use crate::output::Output;

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
        Ok(TandemClient::connect(&self.server).await?)
    }
}
