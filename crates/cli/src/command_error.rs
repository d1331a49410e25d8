//! [`CommandError`]: why a command failed, printed as `error: …` (plus a hint) with exit 1.

use tandem_client::ClientError;

/// A failed command: the message printed after `error: ` and an optional hint.
#[derive(Debug)]
pub struct CommandError {
    pub message: String,
    pub hint: Option<String>,
}

impl CommandError {
    pub fn new(message: impl Into<String>) -> CommandError {
        CommandError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the error (and hint) to stderr.
    pub fn print(&self) {
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }
}

impl From<ClientError> for CommandError {
    fn from(error: ClientError) -> CommandError {
        let hint = hint_for(&error);
        CommandError {
            message: error.to_string(),
            hint,
        }
    }
}

/// Advice for the errors a person can act on.
fn hint_for(error: &ClientError) -> Option<String> {
    let hint = match error.code.as_str() {
        "no_route" => {
            "create a subscription that matches, or enable routing_failure_queue".to_string()
        }
        "throttled" => {
            let wait = error
                .retry_after_ms
                .map(|milliseconds| format!("retry after {milliseconds} ms, or "))
                .unwrap_or_default();
            format!(
                "{wait}consume messages: that brings the count under throttle_message_count \
                 and frees room in the store for new ones"
            )
        }
        "too_large" => "raise max_body_bytes in the node's configuration".to_string(),
        "lease_expired" => "the lease ran out before settling; lease for longer".to_string(),
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_gets_a_hint() {
        let error = CommandError::from(ClientError::new("no_route", "no subscription matches"));
        assert_eq!(error.message, "no_route: no subscription matches");
        assert!(
            error
                .hint
                .expect("a hint")
                .contains("routing_failure_queue")
        );
    }

    #[test]
    fn unknown_codes_get_no_hint() {
        let error = CommandError::from(ClientError::new("internal", "oops"));
        assert!(error.hint.is_none());
    }
}
