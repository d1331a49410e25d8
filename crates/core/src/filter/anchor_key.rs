//! [`AnchorKey`]: the routing-index key of an `==` operand or of a context value.
//!
//! The one rule: whenever [`Value::compare`] says two values are equal, their keys are
//! equal. So int `5` and float `5.0` share a key, and so do `-0.0` and `0`. Distinct values
//! may share a key (the ints that round to 2^63 as floats do); that only adds a candidate,
//! because the index evaluates every candidate group in full. NaN equals nothing, so it has
//! no key.

use crate::value::Value;

/// 2^63, the first float above every `i64`.
const TWO_TO_THE_63: f64 = 9_223_372_036_854_775_808.0;

/// The key of a value that is not a string (strings are keyed by their text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ScalarKey {
    Bool(bool),
    /// Ints, and floats with an integral value in `i64` range.
    Number(i64),
    /// Every other float, by its bits.
    FloatBits(u64),
    Timestamp(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AnchorKey {
    String(String),
    Scalar(ScalarKey),
}

impl AnchorKey {
    /// `None` for NaN, which no value equals.
    pub(super) fn of(value: &Value) -> Option<AnchorKey> {
        match value {
            Value::String(text) => Some(AnchorKey::String(text.clone())),
            scalar => ScalarKey::of(scalar).map(AnchorKey::Scalar),
        }
    }
}

impl ScalarKey {
    /// `None` for strings and NaN.
    pub(super) fn of(value: &Value) -> Option<ScalarKey> {
        match value {
            Value::String(_) => None,
            Value::Int(number) => Some(int_key(*number)),
            Value::Float(number) => float_key(*number),
            Value::Bool(flag) => Some(ScalarKey::Bool(*flag)),
            Value::Timestamp(millis) => Some(ScalarKey::Timestamp(*millis)),
        }
    }
}

/// `Value::compare` falls back to comparing `int as f64` with a float outside `i64` range,
/// so the ints that round up to 2^63 equal the float 2^63: they all take the largest key.
fn int_key(number: i64) -> ScalarKey {
    if number as f64 >= TWO_TO_THE_63 {
        ScalarKey::Number(i64::MAX)
    } else {
        ScalarKey::Number(number)
    }
}

fn float_key(number: f64) -> Option<ScalarKey> {
    if number.is_nan() {
        return None;
    }
    let integral_in_range =
        number.fract() == 0.0 && (-TWO_TO_THE_63..TWO_TO_THE_63).contains(&number);
    if integral_in_range {
        Some(int_key(number as i64))
    } else if number == TWO_TO_THE_63 {
        Some(int_key(i64::MAX))
    } else {
        Some(ScalarKey::FloatBits(number.to_bits()))
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;

    fn key(value: Value) -> Option<AnchorKey> {
        AnchorKey::of(&value)
    }

    #[test]
    fn equal_numbers_share_a_key() {
        assert_eq!(key(Value::Int(5)), key(Value::Float(5.0)));
        assert_eq!(key(Value::Int(0)), key(Value::Float(-0.0)));
        assert_eq!(key(Value::Int(i64::MIN)), key(Value::Float(-TWO_TO_THE_63)));
        assert_eq!(key(Value::Float(1e300)), key(Value::Float(1e300)));
        assert_ne!(key(Value::Float(5.5)), key(Value::Int(5)));
    }

    #[test]
    fn ints_that_compare_equal_to_two_to_the_63_share_its_key() {
        let float = Value::Float(TWO_TO_THE_63);
        for int in [i64::MAX, i64::MAX - 1, i64::MAX - 511] {
            assert_eq!(Value::Int(int).compare(&float), Some(Ordering::Equal));
            assert_eq!(key(Value::Int(int)), key(float.clone()), "{int}");
        }
    }

    #[test]
    fn types_that_never_compare_equal_get_different_keys() {
        assert_ne!(key(Value::Int(5)), key(Value::Timestamp(5)));
        assert_ne!(key(Value::Int(1)), key(Value::Bool(true)));
        assert_ne!(key(Value::String("5".to_string())), key(Value::Int(5)));
    }

    #[test]
    fn nan_has_no_key() {
        assert_eq!(key(Value::Float(f64::NAN)), None);
        assert_eq!(ScalarKey::of(&Value::String("x".to_string())), None);
    }
}
