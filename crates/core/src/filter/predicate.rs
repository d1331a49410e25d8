//! [`Predicate`]: one `property operator value` test (or `property exists`), and how it
//! evaluates against a message's promoted properties.
//!
//! A predicate on a property that is not promoted is false for every operator, `!=`
//! included; only `exists` looks at presence. Comparison is [`Value::compare`]: a pair of
//! values it cannot compare (different types, NaN) makes the predicate false, again `!=`
//! included.

use std::cmp::Ordering;

use crate::context::Context;
use crate::value::Value;

use super::literal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Exists,
}

impl Operator {
    /// The operator as written in filter text.
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Equal => "==",
            Operator::NotEqual => "!=",
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::Exists => "exists",
        }
    }

    /// Whether `property_value.compare(operand) == Some(ordering)` satisfies this
    /// operator. `Exists` accepts every ordering: it only asks for presence.
    pub fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Operator::Equal => ordering == Ordering::Equal,
            Operator::NotEqual => ordering != Ordering::Equal,
            Operator::Less => ordering == Ordering::Less,
            Operator::LessOrEqual => ordering != Ordering::Greater,
            Operator::Greater => ordering == Ordering::Greater,
            Operator::GreaterOrEqual => ordering != Ordering::Less,
            Operator::Exists => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    pub property: String,
    pub operator: Operator,
    /// The value compared against; `None` only for [`Operator::Exists`].
    pub operand: Option<Value>,
}

impl Predicate {
    /// `property exists`.
    pub fn exists(property: impl Into<String>) -> Predicate {
        Predicate {
            property: property.into(),
            operator: Operator::Exists,
            operand: None,
        }
    }

    /// `property operator operand`, for every operator but `Exists`.
    pub fn comparison(
        property: impl Into<String>,
        operator: Operator,
        operand: Value,
    ) -> Predicate {
        Predicate {
            property: property.into(),
            operator,
            operand: Some(operand),
        }
    }

    pub fn matches(&self, context: &Context) -> bool {
        let Some(property_value) = context.promoted(&self.property) else {
            return false;
        };
        match (self.operator, &self.operand) {
            (Operator::Exists, _) => true,
            (operator, Some(operand)) => property_value
                .compare(operand)
                .is_some_and(|ordering| operator.accepts(ordering)),
            (_, None) => false,
        }
    }

    /// Canonical text, such as `Total > 1000` or `Priority exists`.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        self.write_text(&mut text);
        text
    }

    pub(super) fn write_text(&self, output: &mut String) {
        output.push_str(&self.property);
        output.push(' ');
        output.push_str(self.operator.symbol());
        if let Some(operand) = &self.operand {
            output.push(' ');
            literal::write_literal(operand, output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Property;

    fn context_with(value: Value) -> Context {
        let promoted = Property {
            name: "P".to_string(),
            value,
            promoted: true,
        };
        let written = Property {
            name: "W".to_string(),
            value: Value::Int(1),
            promoted: false,
        };
        Context::from_properties([promoted, written])
    }

    fn evaluate(property_value: Value, operator: Operator, operand: Value) -> bool {
        Predicate::comparison("P", operator, operand).matches(&context_with(property_value))
    }

    /// Results in the order ==, !=, <, <=, >, >=.
    fn evaluate_all(property_value: Value, operand: Value) -> [bool; 6] {
        use Operator::*;
        [Equal, NotEqual, Less, LessOrEqual, Greater, GreaterOrEqual]
            .map(|operator| evaluate(property_value.clone(), operator, operand.clone()))
    }

    #[test]
    fn typed_comparison_table() {
        let string = |text: &str| Value::String(text.to_string());
        let cases = [
            (
                Value::Int(5),
                Value::Int(5),
                [true, false, false, true, false, true],
            ),
            (
                Value::Int(4),
                Value::Int(5),
                [false, true, true, true, false, false],
            ),
            (
                Value::Int(6),
                Value::Int(5),
                [false, true, false, false, true, true],
            ),
            (
                Value::Int(5),
                Value::Float(5.0),
                [true, false, false, true, false, true],
            ),
            (
                Value::Float(4.5),
                Value::Int(5),
                [false, true, true, true, false, false],
            ),
            (
                Value::Float(5.5),
                Value::Float(5.25),
                [false, true, false, false, true, true],
            ),
            (
                string("Order"),
                string("Order"),
                [true, false, false, true, false, true],
            ),
            (
                string("Invoice"),
                string("Order"),
                [false, true, true, true, false, false],
            ),
            (
                Value::Bool(true),
                Value::Bool(false),
                [false, true, false, false, true, true],
            ),
            (
                Value::Timestamp(1000),
                Value::Timestamp(2000),
                [false, true, true, true, false, false],
            ),
            (Value::Int(1), string("1"), [false; 6]),
            (Value::Timestamp(5), Value::Int(5), [false; 6]),
            (Value::Bool(true), Value::Int(1), [false; 6]),
            (Value::Float(f64::NAN), Value::Float(1.0), [false; 6]),
        ];
        for (property_value, operand, expected) in cases {
            let description = format!("{property_value:?} against {operand:?}");
            assert_eq!(
                evaluate_all(property_value, operand),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn missing_property_is_false_for_every_comparison() {
        for operand in [Value::Int(1), Value::String("x".to_string())] {
            let operators = [
                Operator::Equal,
                Operator::NotEqual,
                Operator::Less,
                Operator::Greater,
            ];
            for operator in operators {
                let predicate = Predicate::comparison("Absent", operator, operand.clone());
                assert!(
                    !predicate.matches(&context_with(Value::Int(1))),
                    "{predicate:?}"
                );
            }
        }
    }

    #[test]
    fn written_but_not_promoted_property_is_invisible() {
        let context = context_with(Value::Int(0));
        assert!(!Predicate::comparison("W", Operator::Equal, Value::Int(1)).matches(&context));
        assert!(!Predicate::comparison("W", Operator::NotEqual, Value::Int(2)).matches(&context));
        assert!(!Predicate::exists("W").matches(&context));
    }

    #[test]
    fn exists_is_true_only_when_promoted() {
        let context = context_with(Value::Bool(false));
        assert!(Predicate::exists("P").matches(&context));
        assert!(!Predicate::exists("Absent").matches(&context));
    }

    #[test]
    fn type_mismatch_is_false_even_for_not_equal() {
        assert!(!evaluate(
            Value::String("5".to_string()),
            Operator::NotEqual,
            Value::Int(5)
        ));
        assert!(evaluate(
            Value::Int(6),
            Operator::NotEqual,
            Value::Float(5.0)
        ));
    }

    #[test]
    fn comparison_without_operand_never_matches() {
        let predicate = Predicate {
            property: "P".to_string(),
            operator: Operator::Equal,
            operand: None,
        };
        assert!(!predicate.matches(&context_with(Value::Int(1))));
    }

    #[test]
    fn text_is_canonical() {
        assert_eq!(
            Predicate::comparison("Total", Operator::Greater, Value::Int(1000)).to_text(),
            "Total > 1000"
        );
        assert_eq!(Predicate::exists("Priority").to_text(), "Priority exists");
    }
}
