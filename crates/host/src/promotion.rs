//! Property promotion: the rules of a receive location that turn what arrives (a JSON
//! body's fields, HTTP headers, the file's name) into typed context properties that
//! subscriptions can route on.

use tandem_core::{Property, Value, ValueType};

use crate::file_name::Glob;

/// One rule: set `property` (typed) from `source`. A promoted property can be used in
/// filters; a written one is only carried with the message.
#[derive(Clone, Debug, PartialEq)]
pub struct Promotion {
    pub property: String,
    pub source: PromotionSource,
    pub value_type: ValueType,
    pub promoted: bool,
}

/// Where a promoted value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum PromotionSource {
    /// A field of a JSON body, by JSON Pointer (RFC 6901), e.g. `/order/total`.
    JsonPointer(String),
    /// An HTTP request header (HTTP receive only); names compare case-insensitively.
    Header(String),
    /// The received file's name (FILE receive only); with a pattern, the part its single
    /// `*` matched.
    FileName(Option<Glob>),
}

impl PromotionSource {
    /// Parses `json:/pointer`, `header:Name`, `file_name` or `file_name:pattern-*.ext`.
    pub fn parse(text: &str) -> Result<PromotionSource, String> {
        if let Some(pointer) = text.strip_prefix("json:") {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(format!(
                    "'{text}': a JSON Pointer is empty or starts with '/', e.g. json:/order/total"
                ));
            }
            return Ok(PromotionSource::JsonPointer(pointer.to_string()));
        }
        if let Some(header) = text.strip_prefix("header:") {
            if header.is_empty() || !header.bytes().all(is_header_name_byte) {
                return Err(format!("'{text}': '{header}' is not an HTTP header name"));
            }
            return Ok(PromotionSource::Header(header.to_ascii_lowercase()));
        }
        if text == "file_name" {
            return Ok(PromotionSource::FileName(None));
        }
        if let Some(pattern) = text.strip_prefix("file_name:") {
            let glob = Glob::new(pattern).map_err(|reason| format!("'{text}': {reason}"))?;
            if glob.star_count() != 1 {
                return Err(format!(
                    "'{text}': the pattern needs exactly one '*', the part to promote"
                ));
            }
            return Ok(PromotionSource::FileName(Some(glob)));
        }
        Err(format!(
            "'{text}' is not a source; use json:/pointer, header:Name, file_name or \
             file_name:pattern-*.ext"
        ))
    }
}

fn is_header_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// What arrived at a receive location, as promotion rules see it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arrival<'a> {
    pub body: &'a [u8],
    /// Header names in lower case.
    pub headers: &'a [(String, String)],
    pub file_name: Option<&'a str>,
}

/// The properties `promotions` find in `arrival`. A source that is absent (no such field,
/// header or match) sets nothing; a value that does not fit its type, or a JSON rule on a
/// body that is not JSON, refuses the message with the reason.
pub fn promote(promotions: &[Promotion], arrival: Arrival<'_>) -> Result<Vec<Property>, String> {
    let mut json_body = None;
    let mut properties = Vec::with_capacity(promotions.len());
    for promotion in promotions {
        let text = match &promotion.source {
            PromotionSource::JsonPointer(pointer) => {
                if json_body.is_none() {
                    json_body = Some(parse_json(arrival.body)?);
                }
                let body = json_body.as_ref().expect("parsed above");
                json_text(body, pointer, &promotion.property)?
            }
            PromotionSource::Header(name) => arrival
                .headers
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| value.clone()),
            PromotionSource::FileName(pattern) => match (arrival.file_name, pattern) {
                (Some(file_name), None) => Some(file_name.to_string()),
                (Some(file_name), Some(glob)) => glob.capture(file_name).map(str::to_string),
                (None, _) => None,
            },
        };
        let Some(text) = text else { continue };
        let value = Value::parse_typed(promotion.value_type, &text)
            .map_err(|reason| format!("property '{}': {reason}", promotion.property))?;
        properties.push(Property {
            name: promotion.property.clone(),
            value,
            promoted: promotion.promoted,
        });
    }
    Ok(properties)
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|error| {
        format!("the body is not JSON ({error}), but a promotion rule reads a JSON field")
    })
}

/// The value at `pointer` as text; None when absent or null.
fn json_text(
    body: &serde_json::Value,
    pointer: &str,
    property: &str,
) -> Result<Option<String>, String> {
    match body.pointer(pointer) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(serde_json::Value::Number(number)) => Ok(Some(number.to_string())),
        Some(serde_json::Value::Bool(flag)) => Ok(Some(flag.to_string())),
        Some(_) => Err(format!(
            "property '{property}': the JSON field at '{pointer}' is an object or array, not \
             a single value"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(property: &str, source: &str, value_type: ValueType) -> Promotion {
        Promotion {
            property: property.to_string(),
            source: PromotionSource::parse(source).expect("valid source"),
            value_type,
            promoted: true,
        }
    }

    #[test]
    fn json_fields_headers_and_file_names_become_typed_properties() {
        let rules = [
            rule("MessageType", "json:/type", ValueType::String),
            rule("Total", "json:/order/total", ValueType::Int),
            rule("Express", "json:/express", ValueType::Bool),
            rule("Channel", "header:X-Channel", ValueType::String),
            rule("OrderNo", "file_name:order-*.json", ValueType::Int),
        ];
        let body = br#"{"type":"Order","order":{"total":1500},"express":true}"#;
        let headers = [("x-channel".to_string(), "web".to_string())];
        let arrival = Arrival {
            body,
            headers: &headers,
            file_name: Some("order-42.json"),
        };
        let properties = promote(&rules, arrival).expect("promoted");
        let values: Vec<(&str, &Value)> = properties
            .iter()
            .map(|property| (property.name.as_str(), &property.value))
            .collect();
        assert_eq!(
            values,
            [
                ("MessageType", &Value::String("Order".into())),
                ("Total", &Value::Int(1500)),
                ("Express", &Value::Bool(true)),
                ("Channel", &Value::String("web".into())),
                ("OrderNo", &Value::Int(42)),
            ]
        );
    }

    #[test]
    fn absent_sources_set_nothing() {
        let rules = [
            rule("Total", "json:/missing", ValueType::Int),
            rule("Channel", "header:X-Channel", ValueType::String),
            rule("OrderNo", "file_name:order-*.json", ValueType::Int),
        ];
        let arrival = Arrival {
            body: b"{}",
            headers: &[],
            file_name: Some("invoice.json"),
        };
        assert_eq!(promote(&rules, arrival).expect("nothing to promote"), []);
    }

    #[test]
    fn values_that_do_not_fit_refuse_the_message() {
        let rules = [rule("Total", "json:/total", ValueType::Int)];
        let wrong_type = Arrival {
            body: br#"{"total":"many"}"#,
            ..Arrival::default()
        };
        let error = promote(&rules, wrong_type).expect_err("not an int");
        assert!(
            error.contains("Total") && error.contains("not an int"),
            "{error}"
        );
        let not_json = Arrival {
            body: b"<order/>",
            ..Arrival::default()
        };
        let error = promote(&rules, not_json).expect_err("not JSON");
        assert!(error.contains("not JSON"), "{error}");
    }

    #[test]
    fn sources_are_checked_when_parsed() {
        for bad in [
            "json:total",
            "header:",
            "header:bad name",
            "file_name:*-*",
            "xml:/a",
        ] {
            assert!(PromotionSource::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            PromotionSource::parse("header:X-Type").expect("valid"),
            PromotionSource::Header("x-type".to_string())
        );
    }
}
