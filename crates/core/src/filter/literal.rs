//! Canonical text of operand values: the literal syntax that the parser reads back to the
//! same value (strings quoted and escaped, floats in shortest round-trip form, timestamps as
//! `timestamp("...")`).

use crate::timestamp;
use crate::value::Value;

pub(super) fn write_literal(value: &Value, output: &mut String) {
    match value {
        Value::String(text) => write_quoted(text, output),
        Value::Int(number) => output.push_str(&number.to_string()),
        // Debug formatting always has a '.' or an exponent, so it reads back as a float.
        Value::Float(number) => output.push_str(&format!("{number:?}")),
        Value::Bool(flag) => output.push_str(if *flag { "true" } else { "false" }),
        Value::Timestamp(millis) => {
            output.push_str("timestamp(");
            write_quoted(&timestamp_text(*millis), output);
            output.push(')');
        }
    }
}

/// RFC 3339 when it reads back exactly (years 0 to 9999), otherwise epoch milliseconds,
/// which `timestamp("...")` also accepts.
fn timestamp_text(millis: i64) -> String {
    let text = timestamp::format_rfc3339(millis);
    if timestamp::parse_rfc3339(&text) == Ok(millis) {
        text
    } else {
        millis.to_string()
    }
}

fn write_quoted(text: &str, output: &mut String) {
    output.push('"');
    for character in text.chars() {
        match character {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\n' => output.push_str("\\n"),
            '\t' => output.push_str("\\t"),
            control if control.is_control() => {
                output.push_str(&format!("\\u{{{:x}}}", u32::from(control)));
            }
            other => output.push(other),
        }
    }
    output.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(value: Value) -> String {
        let mut output = String::new();
        write_literal(&value, &mut output);
        output
    }

    #[test]
    fn writes_each_type() {
        assert_eq!(
            literal(Value::String("say \"hi\"\\\n\t\r".to_string())),
            r#""say \"hi\"\\\n\t\u{d}""#
        );
        assert_eq!(literal(Value::Int(-42)), "-42");
        assert_eq!(literal(Value::Float(5.0)), "5.0");
        assert_eq!(literal(Value::Float(1e300)), "1e300");
        assert_eq!(literal(Value::Bool(true)), "true");
        assert_eq!(
            literal(Value::Timestamp(0)),
            r#"timestamp("1970-01-01T00:00:00.000Z")"#
        );
        assert_eq!(
            literal(Value::Timestamp(i64::MIN)),
            format!("timestamp(\"{}\")", i64::MIN)
        );
    }
}
