//! Context properties typed on the command line: `NAME[:TYPE]=VALUE`, e.g.
//! `MessageType=Order`, `Total:int=1500`, `Flag:bool=true`.

use tandem_core::{Property, Value, ValueType};

/// The accepted type names, for error messages.
const TYPE_NAMES: &str = "string, int, float, bool or timestamp";

/// Parses `NAME[:TYPE]=VALUE` into a property (promoted; the caller decides).
///
/// The type defaults to `string`. A name may itself contain ':' (e.g. a namespace URI)
/// as long as what follows the last ':' is not a bare word.
pub fn parse_property(spec: &str) -> Result<Property, String> {
    let Some((name_and_type, text)) = spec.split_once('=') else {
        return Err(format!(
            "'{spec}' has no '='; expected NAME[:TYPE]=VALUE, e.g. Total:int=1500"
        ));
    };
    let (name, value_type) = split_type(name_and_type)?;
    if name.is_empty() {
        return Err(format!("'{spec}' has an empty property name"));
    }
    let value = Value::parse_typed(value_type, text)
        .map_err(|reason| format!("property '{name}': {reason}"))?;
    Ok(Property {
        name: name.to_string(),
        value,
        promoted: true,
    })
}

fn split_type(name_and_type: &str) -> Result<(&str, ValueType), String> {
    let Some((name, type_name)) = name_and_type.rsplit_once(':') else {
        return Ok((name_and_type, ValueType::String));
    };
    let looks_like_a_type = !type_name.is_empty()
        && type_name
            .chars()
            .all(|character| character.is_ascii_alphabetic());
    if !looks_like_a_type {
        return Ok((name_and_type, ValueType::String));
    }
    match ValueType::from_name(type_name) {
        Some(value_type) => Ok((name, value_type)),
        None => Err(format!(
            "unknown type '{type_name}' for property '{name}'; use {TYPE_NAMES}"
        )),
    }
}

/// Parses a written (carried, not routable) property.
pub fn parse_written_property(spec: &str) -> Result<Property, String> {
    parse_property(spec).map(|property| Property {
        promoted: false,
        ..property
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_properties_parse() {
        let total = parse_property("Total:int=1500").expect("valid spec");
        assert_eq!(total.name, "Total");
        assert_eq!(total.value, Value::Int(1500));
        assert!(total.promoted);
        let flag = parse_property("Flag:bool=true").expect("valid spec");
        assert_eq!(flag.value, Value::Bool(true));
    }

    #[test]
    fn the_type_defaults_to_string_and_values_may_hold_equals_signs() {
        let property = parse_property("MessageType=Order").expect("valid spec");
        assert_eq!(property.value, Value::String("Order".into()));
        let property = parse_property("Query=a=b").expect("valid spec");
        assert_eq!(property.value, Value::String("a=b".into()));
    }

    #[test]
    fn names_may_contain_a_namespace() {
        let property = parse_property("http://schemas/order#Total:int=7").expect("valid spec");
        assert_eq!(property.name, "http://schemas/order#Total");
        assert_eq!(property.value, Value::Int(7));
        let property = parse_property("http://schemas/order#Kind=X").expect("valid spec");
        assert_eq!(property.name, "http://schemas/order#Kind");
    }

    #[test]
    fn bad_specs_are_explained() {
        let error = parse_property("Total:integr=5").unwrap_err();
        assert!(error.contains("unknown type 'integr'"), "{error}");
        let error = parse_property("Total:int").unwrap_err();
        assert!(error.contains("no '='"), "{error}");
        let error = parse_property("Total:int=many").unwrap_err();
        assert!(error.contains("not an int"), "{error}");
        let error = parse_property("=5").unwrap_err();
        assert!(error.contains("empty property name"), "{error}");
    }

    #[test]
    fn written_properties_are_not_promoted() {
        let property = parse_written_property("Note=hello").expect("valid spec");
        assert!(!property.promoted);
    }
}
