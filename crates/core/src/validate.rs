//! Input validation shared by every command: names, message ids, properties, bodies.
//! Every failure says what is wrong in words a person understands.

use crate::context::Property;
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use crate::message::NewMessage;
use crate::settings::Settings;
use crate::value::Value;

/// Host, subscription and host-instance names: 1..=128 bytes of `[A-Za-z0-9_.-]`.
pub fn name(kind: &str, text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(Error::invalid(format!("{kind} name must not be empty")));
    }
    if text.len() > limits::MAX_NAME_BYTES {
        return Err(Error::invalid(format!(
            "{kind} name is {} bytes; the limit is {}",
            text.len(),
            limits::MAX_NAME_BYTES
        )));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        return Err(Error::invalid(format!(
            "{kind} name '{text}' contains {bad:?}; use letters, digits, '_', '.' and '-'"
        )));
    }
    Ok(())
}

/// Free-text reasons given to fail and terminate.
pub fn reason(text: &str) -> Result<()> {
    if text.len() > limits::MAX_REASON_BYTES {
        return Err(Error::invalid(format!(
            "reason is {} bytes; the limit is {}",
            text.len(),
            limits::MAX_REASON_BYTES
        )));
    }
    Ok(())
}

pub fn new_message(message: &NewMessage, settings: &Settings) -> Result<()> {
    message_id(message.message_id.as_str())?;
    if message.body.len() as u64 > settings.max_body_bytes {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!(
                "message '{}' body is {} bytes; the limit is {} bytes",
                message.message_id,
                message.body.len(),
                settings.max_body_bytes
            ),
        ));
    }
    if message.properties.len() > limits::MAX_PROPERTIES_PER_MESSAGE {
        return Err(Error::invalid(format!(
            "message '{}' has {} properties; the limit is {}",
            message.message_id,
            message.properties.len(),
            limits::MAX_PROPERTIES_PER_MESSAGE
        )));
    }
    message.properties.iter().try_for_each(property)
}

pub fn message_id(text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(Error::invalid("message id must not be empty"));
    }
    if text.len() > limits::MAX_MESSAGE_ID_BYTES {
        return Err(Error::invalid(format!(
            "message id is {} bytes; the limit is {}",
            text.len(),
            limits::MAX_MESSAGE_ID_BYTES
        )));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(format!(
            "message id {text:?} contains whitespace or a control character"
        )));
    }
    Ok(())
}

pub fn property(property: &Property) -> Result<()> {
    let name = property.name.as_str();
    let first_is_valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_is_valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    if !first_is_valid || !rest_is_valid || name.len() > limits::MAX_PROPERTY_NAME_BYTES {
        return Err(Error::invalid(format!(
            "property name {name:?} is not valid: it must start with a letter or '_', continue \
             with letters, digits, '_', '.', ':' or '-', and be at most {} bytes",
            limits::MAX_PROPERTY_NAME_BYTES
        )));
    }
    match &property.value {
        Value::String(text) if text.len() > limits::MAX_PROPERTY_VALUE_BYTES => {
            Err(Error::invalid(format!(
                "property '{name}' value is {} bytes; the limit is {}",
                text.len(),
                limits::MAX_PROPERTY_VALUE_BYTES
            )))
        }
        Value::Float(number) if !number.is_finite() => Err(Error::invalid(format!(
            "property '{name}' is not a finite float"
        ))),
        _ => Ok(()),
    }
}

pub fn settings(settings: &Settings) -> Result<()> {
    if settings.max_body_bytes == 0 || settings.max_body_bytes > limits::MAX_BODY_BYTES_CEILING {
        return Err(Error::invalid(format!(
            "max body bytes must be between 1 and {}",
            limits::MAX_BODY_BYTES_CEILING
        )));
    }
    if settings.throttle_message_count == 0 {
        return Err(Error::invalid("throttle message count must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_explain_what_is_wrong() {
        assert!(name("host", "orders-eu.1").is_ok());
        assert!(
            name("host", "")
                .unwrap_err()
                .message
                .contains("must not be empty")
        );
        assert!(name("host", "a b").unwrap_err().message.contains("' '"));
    }

    #[test]
    fn property_names_follow_the_filter_identifier_rules() {
        let property = |name: &str| Property {
            name: name.to_string(),
            value: Value::Int(1),
            promoted: true,
        };
        assert!(super::property(&property("BTS.MessageType")).is_ok());
        assert!(super::property(&property("1abc")).is_err());
        assert!(super::property(&property("a b")).is_err());
    }
}
