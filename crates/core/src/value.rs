//! Typed property values and the typed comparison rules that filters use.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// The value of one context property.
///
/// Timestamps are milliseconds since the Unix epoch (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Value {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Timestamp(i64),
}

/// The type of a [`Value`], used in error messages and the wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Timestamp => "timestamp",
        }
    }

    pub fn from_name(name: &str) -> Option<ValueType> {
        match name {
            "string" | "str" => Some(ValueType::String),
            "int" | "integer" => Some(ValueType::Int),
            "float" | "double" => Some(ValueType::Float),
            "bool" | "boolean" => Some(ValueType::Bool),
            "timestamp" | "time" => Some(ValueType::Timestamp),
            _ => None,
        }
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Int(_) => ValueType::Int,
            Value::Float(_) => ValueType::Float,
            Value::Bool(_) => ValueType::Bool,
            Value::Timestamp(_) => ValueType::Timestamp,
        }
    }

    /// Typed comparison. Values of the same type compare naturally; `int` and `float`
    /// compare numerically with each other. Any other pair of types is incomparable
    /// (`None`), and every filter predicate over an incomparable pair is false.
    /// NaN is incomparable with everything.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Int(a), Value::Float(b)) => compare_int_float(*a, *b),
            (Value::Float(a), Value::Int(b)) => compare_int_float(*b, *a).map(Ordering::reverse),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Parses the textual form of a value of the given type, as typed on the command
    /// line (`Total:int=1500`). Timestamps accept RFC 3339 (`2026-11-26T10:00:00Z`) or
    /// integer milliseconds since the epoch.
    pub fn parse_typed(value_type: ValueType, text: &str) -> Result<Value, String> {
        match value_type {
            ValueType::String => Ok(Value::String(text.to_string())),
            ValueType::Int => text
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("'{text}' is not an int")),
            ValueType::Float => match text.trim().parse::<f64>() {
                Ok(number) if number.is_finite() => Ok(Value::Float(number)),
                _ => Err(format!("'{text}' is not a finite float")),
            },
            ValueType::Bool => match text.trim() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("'{text}' is not a bool (true or false)")),
            },
            ValueType::Timestamp => {
                let trimmed = text.trim();
                if let Ok(millis) = trimmed.parse::<i64>() {
                    return Ok(Value::Timestamp(millis));
                }
                crate::timestamp::parse_rfc3339(trimmed)
                    .map(Value::Timestamp)
                    .map_err(|reason| format!("'{text}' is not a timestamp: {reason}"))
            }
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::String(text) => write!(formatter, "{text:?}"),
            Value::Int(number) => write!(formatter, "{number}"),
            Value::Float(number) => write!(formatter, "{number:?}"),
            Value::Bool(flag) => write!(formatter, "{flag}"),
            Value::Timestamp(millis) => {
                write!(formatter, "{}", crate::timestamp::format_rfc3339(*millis))
            }
        }
    }
}

fn compare_int_float(int: i64, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    // i64 -> f64 can round; compare exactly when the float is integral and in range.
    if float.fract() == 0.0
        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&float)
    {
        return Some(int.cmp(&(float as i64)));
    }
    (int as f64).partial_cmp(&float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_and_float_compare_numerically() {
        assert_eq!(
            Value::Int(5).compare(&Value::Float(5.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            Value::Float(4.5).compare(&Value::Int(5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::Int(i64::MAX).compare(&Value::Float(1e30)),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn different_types_are_incomparable() {
        assert_eq!(Value::Int(1).compare(&Value::String("1".into())), None);
        assert_eq!(Value::Bool(true).compare(&Value::Int(1)), None);
        assert_eq!(Value::Float(f64::NAN).compare(&Value::Float(1.0)), None);
    }

    #[test]
    fn typed_text_parses_or_explains() {
        assert_eq!(
            Value::parse_typed(ValueType::Int, "1500"),
            Ok(Value::Int(1500))
        );
        assert!(
            Value::parse_typed(ValueType::Int, "x")
                .unwrap_err()
                .contains("not an int")
        );
        assert_eq!(
            Value::parse_typed(ValueType::Timestamp, "1970-01-01T00:00:01Z"),
            Ok(Value::Timestamp(1000))
        );
    }
}
