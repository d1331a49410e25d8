//! Context properties in JSON. A plain JSON value is a promoted property of the obvious
//! type (string, integer -> int, other number -> float, bool); an object
//! `{"type": "int|float|string|bool|timestamp", "value": ..., "promoted": bool}` gives the
//! type explicitly (timestamps as RFC 3339 text or epoch milliseconds) or a written
//! (not promoted) property. Responses use the same shape, so properties round-trip.

use serde_json::{Map, Value as Json, json};
use tandem_core::timestamp::format_rfc3339;
use tandem_core::{Context, Error, Property, Value, ValueType};

/// The keys a typed property object may have.
const TYPED_KEYS: [&str; 3] = ["type", "value", "promoted"];

/// Every property of a JSON object, in key order; the first bad one refuses them all.
pub fn from_json(properties: Map<String, Json>) -> Result<Vec<Property>, Error> {
    properties
        .into_iter()
        .map(|(name, value)| property(name, value))
        .collect()
}

fn property(name: String, value: Json) -> Result<Property, Error> {
    let (value, promoted) = match value {
        Json::Object(object) => typed_value(&name, object)?,
        plain => (plain_value(&name, plain)?, true),
    };
    Ok(Property {
        name,
        value,
        promoted,
    })
}

fn plain_value(name: &str, value: Json) -> Result<Value, Error> {
    match value {
        Json::String(text) => Ok(Value::String(text)),
        Json::Bool(flag) => Ok(Value::Bool(flag)),
        Json::Number(number) => number_value(name, &number),
        Json::Null | Json::Array(_) | Json::Object(_) => Err(Error::invalid(format!(
            "property '{name}' must be a string, number, bool or \
             {{\"type\", \"value\", \"promoted\"}} object"
        ))),
    }
}

fn number_value(name: &str, number: &serde_json::Number) -> Result<Value, Error> {
    if let Some(integer) = number.as_i64() {
        return Ok(Value::Int(integer));
    }
    if number.is_u64() {
        return Err(Error::invalid(format!(
            "property '{name}' value {number} does not fit in a 64-bit signed int"
        )));
    }
    match number.as_f64() {
        Some(float) if float.is_finite() => Ok(Value::Float(float)),
        _ => Err(Error::invalid(format!(
            "property '{name}' value {number} is not a finite float"
        ))),
    }
}

fn typed_value(name: &str, object: Map<String, Json>) -> Result<(Value, bool), Error> {
    if let Some(unknown) = object
        .keys()
        .find(|key| !TYPED_KEYS.contains(&key.as_str()))
    {
        return Err(Error::invalid(format!(
            "property '{name}' has unknown key '{unknown}'; use type, value and promoted"
        )));
    }
    let promoted = match object.get("promoted") {
        None => true,
        Some(Json::Bool(flag)) => *flag,
        Some(_) => {
            return Err(Error::invalid(format!(
                "property '{name}': promoted must be true or false"
            )));
        }
    };
    let value_type = match object.get("type") {
        Some(Json::String(type_name)) => ValueType::from_name(type_name).ok_or_else(|| {
            Error::invalid(format!(
                "property '{name}' has unknown type '{type_name}'; use int, float, string, \
                 bool or timestamp"
            ))
        })?,
        _ => {
            return Err(Error::invalid(format!(
                "property '{name}' needs a \"type\" (int, float, string, bool or timestamp)"
            )));
        }
    };
    let text = match object.get("value") {
        Some(Json::String(text)) => text.clone(),
        Some(Json::Number(number)) => number.to_string(),
        Some(Json::Bool(flag)) => flag.to_string(),
        _ => {
            return Err(Error::invalid(format!(
                "property '{name}' needs a \"value\" (a string, number or bool)"
            )));
        }
    };
    let value = Value::parse_typed(value_type, &text)
        .map_err(|reason| Error::invalid(format!("property '{name}': {reason}")))?;
    Ok((value, promoted))
}

/// A context as a JSON object, in the shape [`from_json`] reads.
pub fn to_json(context: &Context) -> Map<String, Json> {
    context
        .properties()
        .map(|property| {
            (
                property.name,
                property_json(&property.value, property.promoted),
            )
        })
        .collect()
}

fn property_json(value: &Value, promoted: bool) -> Json {
    let plain = match value {
        Value::String(text) => json!(text),
        Value::Int(number) => json!(number),
        Value::Float(number) => json!(number),
        Value::Bool(flag) => json!(flag),
        Value::Timestamp(millis) => {
            return json!({
                "type": "timestamp",
                "value": format_rfc3339(*millis),
                "promoted": promoted,
            });
        }
    };
    if promoted {
        plain
    } else {
        json!({ "type": value.value_type().name(), "value": plain, "promoted": false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Property>, Error> {
        let object: Map<String, Json> = serde_json::from_str(text).expect("object");
        from_json(object)
    }

    #[test]
    fn plain_values_take_their_obvious_type() {
        let properties = parse(r#"{"a":"x","b":3,"c":1.5,"d":true}"#).expect("valid");
        let values: Vec<Value> = properties
            .into_iter()
            .map(|property| property.value)
            .collect();
        assert_eq!(
            values,
            vec![
                Value::String("x".into()),
                Value::Int(3),
                Value::Float(1.5),
                Value::Bool(true)
            ]
        );
    }

    #[test]
    fn typed_objects_parse_timestamps_and_written_properties() {
        let properties = parse(
            r#"{"At":{"type":"timestamp","value":"1970-01-01T00:00:01Z"},
                "Note":{"type":"string","value":"n","promoted":false},
                "Total":{"type":"float","value":3}}"#,
        )
        .expect("valid");
        assert_eq!(properties[0].value, Value::Timestamp(1000));
        assert!(!properties[1].promoted);
        assert_eq!(properties[2].value, Value::Float(3.0));
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(parse(r#"{"a":null}"#).unwrap_err().message.contains("'a'"));
        assert!(parse(r#"{"a":{"type":"int","value":"x"}}"#).is_err());
        assert!(parse(r#"{"a":{"type":"money","value":1}}"#).is_err());
        assert!(parse(r#"{"a":{"type":"int","value":1,"extra":1}}"#).is_err());
        assert!(parse(r#"{"a":18446744073709551615}"#).is_err());
    }

    #[test]
    fn contexts_round_trip() {
        let original = parse(
            r#"{"a":"x","b":3,"c":2.0,"t":{"type":"timestamp","value":5},
                "w":{"type":"int","value":1,"promoted":false}}"#,
        )
        .expect("valid");
        let context = Context::from_properties(original.clone());
        let again = from_json(to_json(&context)).expect("round trip");
        assert_eq!(again, original);
    }
}
