//! The binary context encoding gives back every context it encodes, and refuses anything
//! else with an error (a snapshot from another node may carry damaged rows), never a panic.

use proptest::prelude::*;
use tandem_core::context::{Context, Property};
use tandem_core::value::Value;
use tandem_store::context_codec::{decode, encode};

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,40}".prop_map(Value::String),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN is never equal to itself", |number| !number.is_nan())
            .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Timestamp),
    ]
}

fn context() -> impl Strategy<Value = Context> {
    prop::collection::vec((".{1,20}", value(), any::<bool>()), 0..12).prop_map(|properties| {
        Context::from_properties(
            properties
                .into_iter()
                .map(|(name, value, promoted)| Property {
                    name,
                    value,
                    promoted,
                }),
        )
    })
}

proptest! {
    #[test]
    fn every_context_comes_back_as_it_was_encoded(context in context()) {
        prop_assert_eq!(decode(&encode(&context)), Ok(context));
    }

    #[test]
    fn damaged_encodings_are_refused_or_decoded_but_never_panic(
        context in context(),
        cut in any::<prop::sample::Index>(),
        flipped in any::<prop::sample::Index>(),
        noise in any::<u8>(),
    ) {
        let encoded = encode(&context);
        let _ = decode(&encoded[..cut.index(encoded.len() + 1)]);
        let mut damaged = encoded.clone();
        let at = flipped.index(damaged.len());
        damaged[at] ^= noise;
        let _ = decode(&damaged);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }
}

#[test]
fn truncated_and_trailing_bytes_are_refused() {
    let context = Context::from_properties([Property {
        name: "Kind".into(),
        value: Value::Int(7),
        promoted: true,
    }]);
    let encoded = encode(&context);
    for length in 0..encoded.len() {
        assert!(
            decode(&encoded[..length]).is_err(),
            "{length} bytes decoded"
        );
    }
    let mut trailing = encoded.clone();
    trailing.push(0);
    assert!(decode(&trailing).unwrap_err().contains("after the context"));
    let mut unknown_version = encoded;
    unknown_version[0] = 9;
    assert!(decode(&unknown_version).unwrap_err().contains("encoding 9"));
}

#[test]
fn a_property_named_twice_is_refused() {
    let context = Context::from_properties([Property {
        name: "Kind".into(),
        value: Value::Bool(true),
        promoted: false,
    }]);
    let encoded = encode(&context);
    // Version, count 1, then the one property: say the count is 2 and repeat the property.
    let mut twice = vec![encoded[0], 2];
    twice.extend_from_slice(&encoded[2..]);
    twice.extend_from_slice(&encoded[2..]);
    assert!(decode(&twice).unwrap_err().contains("twice"));
}
