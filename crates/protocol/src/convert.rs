//! Conversions between wire properties and core's typed properties, shared by the server
//! (decoding publishes) and the client (encoding them).

use tandem_core::{Property, Value};

use crate::v1;
use crate::v1::property::Value as WireValue;

/// Why a wire property could not become a core property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyError(pub String);

impl std::fmt::Display for PropertyError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for PropertyError {}

impl From<Property> for v1::Property {
    fn from(property: Property) -> v1::Property {
        let value = match property.value {
            Value::String(text) => WireValue::StringValue(text),
            Value::Int(number) => WireValue::IntValue(number),
            Value::Float(number) => WireValue::FloatValue(number),
            Value::Bool(flag) => WireValue::BoolValue(flag),
            Value::Timestamp(millis) => WireValue::TimestampMs(millis),
        };
        v1::Property {
            name: property.name.into_bytes(),
            value: Some(value),
            written: !property.promoted,
        }
    }
}

impl TryFrom<v1::Property> for Property {
    type Error = PropertyError;

    fn try_from(property: v1::Property) -> Result<Property, PropertyError> {
        let name = String::from_utf8(property.name).map_err(|error| {
            PropertyError(format!(
                "property name is not valid UTF-8 (invalid byte at offset {})",
                error.utf8_error().valid_up_to()
            ))
        })?;
        let value = match property.value {
            Some(WireValue::StringValue(text)) => Value::String(text),
            Some(WireValue::IntValue(number)) => Value::Int(number),
            Some(WireValue::FloatValue(number)) => Value::Float(number),
            Some(WireValue::BoolValue(flag)) => Value::Bool(flag),
            Some(WireValue::TimestampMs(millis)) => Value::Timestamp(millis),
            None => return Err(PropertyError(format!("property '{name}' has no value"))),
        };
        Ok(Property {
            name,
            value,
            promoted: !property.written,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip() {
        let property = Property {
            name: "Total".into(),
            value: Value::Int(1500),
            promoted: true,
        };
        let wire = v1::Property::from(property.clone());
        assert_eq!(Property::try_from(wire), Ok(property));
    }

    #[test]
    fn invalid_utf8_names_are_named_precisely() {
        let wire = v1::Property {
            name: vec![b'a', 0xff],
            value: Some(WireValue::IntValue(1)),
            written: false,
        };
        let error = Property::try_from(wire).unwrap_err();
        assert!(error.0.contains("not valid UTF-8"), "{error}");
        assert!(error.0.contains("offset 1"), "{error}");
    }
}
