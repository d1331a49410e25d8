//! Subscription filters: the filter language (text -> [`Filter`]), its evaluation against a
//! message's promoted properties, and the [`RoutingIndex`] that finds every subscription a
//! message matches.
//!
//! A filter is an OR of AND-groups of predicates (BizTalk subscription semantics):
//!
//! ```text
//! MessageType == "Order" and Total > 1000 or Priority exists
//! ```
//!
//! # Layout
//!
//! - `lexer`: filter text -> tokens, with line and column.
//! - `parser`: tokens -> AND-groups of predicates, with "expected ..., found ..." errors.
//! - `predicate`: [`Predicate`] and [`Operator`], and how one predicate evaluates.
//! - `literal`: canonical text of operand values.
//! - `error`: [`FilterError`].
//! - `anchor_key`: how `==` operands normalize into index keys.
//! - `property_anchors`: the buckets of anchored groups for one property.
//! - `index`: [`RoutingIndex`].

mod anchor_key;
mod error;
mod index;
mod lexer;
mod literal;
mod parser;
mod predicate;
mod property_anchors;

use std::fmt;

use crate::context::Context;

pub use error::FilterError;
pub use index::{RoutingIndex, SubscriptionId};
pub use predicate::{Operator, Predicate};

/// The longest filter text accepted, in bytes, both as written and in canonical form
/// ([`Filter::to_text`], which is what a subscription stores).
pub const MAX_FILTER_BYTES: usize = 64 * 1024;
/// The most predicates one filter may have, over all its AND-groups.
pub const MAX_FILTER_PREDICATES: usize = 1000;
/// The longest property name accepted in a filter, in bytes.
pub const MAX_PROPERTY_NAME_BYTES: usize = 256;

/// A parsed subscription filter: matches when any of its AND-groups matches.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    groups: Vec<AndGroup>,
}

/// Predicates that must all hold.
#[derive(Clone, Debug, PartialEq)]
pub struct AndGroup {
    pub predicates: Vec<Predicate>,
}

impl Filter {
    /// Parses filter text. A filter whose canonical text would be over [`MAX_FILTER_BYTES`]
    /// is refused too (escapes and spacing can make it several times longer than what was
    /// written): a subscription stores the canonical text and parses it again on every
    /// load, so it must always fit.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let filter = Filter {
            groups: parser::parse(text)?,
        };
        let canonical_bytes = filter.to_text().len();
        if canonical_bytes > MAX_FILTER_BYTES {
            let message = format!(
                "filter is {canonical_bytes} bytes in canonical form (with its escapes and \
                 spacing written out); the limit is {MAX_FILTER_BYTES} bytes"
            );
            return Err(FilterError::at(lexer::Position::START, message));
        }
        Ok(filter)
    }

    pub fn matches(&self, context: &Context) -> bool {
        self.groups.iter().any(|group| group.matches(context))
    }

    pub fn groups(&self) -> &[AndGroup] {
        &self.groups
    }

    /// Canonical text: `Filter::parse(&filter.to_text())` gives back an equal filter.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (index, group) in self.groups.iter().enumerate() {
            if index > 0 {
                text.push_str(" or ");
            }
            group.write_text(&mut text);
        }
        text
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_text())
    }
}

impl AndGroup {
    pub fn matches(&self, context: &Context) -> bool {
        self.predicates
            .iter()
            .all(|predicate| predicate.matches(context))
    }

    fn write_text(&self, output: &mut String) {
        for (index, predicate) in self.predicates.iter().enumerate() {
            if index > 0 {
                output.push_str(" and ");
            }
            predicate.write_text(output);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::context::Property;
    use crate::value::Value;

    fn context(properties: &[(&str, Value)]) -> Context {
        Context::from_properties(properties.iter().map(|(name, value)| Property {
            name: name.to_string(),
            value: value.clone(),
            promoted: true,
        }))
    }

    #[test]
    fn matches_any_group_whose_predicates_all_hold() {
        let filter =
            Filter::parse(r#"MessageType == "Order" and Total > 1000 or Priority exists"#).unwrap();
        let order = |total: i64| {
            context(&[
                ("MessageType", Value::String("Order".to_string())),
                ("Total", Value::Int(total)),
            ])
        };
        assert!(filter.matches(&order(1500)));
        assert!(!filter.matches(&order(999)));
        assert!(filter.matches(&context(&[("Priority", Value::Int(1))])));
        assert!(!filter.matches(&context(&[])));
        assert!(filter.matches(&context(&[
            ("MessageType", Value::String("Order".to_string())),
            ("Total", Value::Float(1000.5)),
        ])));
    }

    #[test]
    fn text_is_canonical_and_round_trips() {
        let text = "  MessageType==\"Order\"&&Total>1000.0 ||\n Priority EXISTS or At >= timestamp(\"2026-11-26T10:00:00Z\") AND Flag != TRUE";
        let filter = Filter::parse(text).unwrap();
        let canonical = "MessageType == \"Order\" and Total > 1000.0 or Priority exists or \
                         At >= timestamp(\"2026-11-26T10:00:00.000Z\") and Flag != true";
        assert_eq!(filter.to_text(), canonical);
        assert_eq!(filter.to_string(), canonical);
        assert_eq!(Filter::parse(canonical), Ok(filter));
    }

    #[test]
    fn a_filter_whose_canonical_text_is_over_the_limit_is_refused() {
        // 11,007 bytes as written; 66,007 once each DEL is written out as \u{7f}.
        let text = format!("A == \"{}\"", "\u{7f}".repeat(11_000));
        let error = Filter::parse(&text).expect_err("canonical text over the limit");
        assert_eq!((error.line, error.column), (1, 1));
        assert!(
            error
                .message
                .starts_with("filter is 66007 bytes in canonical form"),
            "{error}"
        );
        let fits = format!("A == \"{}\"", "\u{7f}".repeat(10_000));
        let filter = Filter::parse(&fits).expect("canonical text within the limit");
        assert_eq!(Filter::parse(&filter.to_text()), Ok(filter));
    }

    #[test]
    fn groups_expose_the_structure() {
        let filter = Filter::parse("A == 1 and B exists or C < 2").unwrap();
        assert_eq!(filter.groups().len(), 2);
        assert_eq!(filter.groups()[0].predicates[1], Predicate::exists("B"));
        assert_eq!(filter.groups()[1].predicates[0].operator, Operator::Less);
    }

    fn property_name() -> impl Strategy<Value = String> {
        "[A-Za-z_][A-Za-z0-9_.:-]{0,12}".prop_filter("keywords are not property names", |name| {
            lexer::keyword_kind(name).is_none()
        })
    }

    fn operand() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("finite", |number| number.is_finite())
                .prop_map(Value::Float),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Timestamp),
            (-62_135_596_800_000_i64..253_402_300_799_999).prop_map(Value::Timestamp),
        ]
    }

    fn predicate() -> impl Strategy<Value = Predicate> {
        let comparison_operators = prop_oneof![
            Just(Operator::Equal),
            Just(Operator::NotEqual),
            Just(Operator::Less),
            Just(Operator::LessOrEqual),
            Just(Operator::Greater),
            Just(Operator::GreaterOrEqual),
        ];
        prop_oneof![
            property_name().prop_map(Predicate::exists),
            (property_name(), comparison_operators, operand()).prop_map(
                |(property, operator, operand)| Predicate::comparison(property, operator, operand)
            ),
        ]
    }

    fn filter() -> impl Strategy<Value = Filter> {
        let group =
            prop::collection::vec(predicate(), 1..4).prop_map(|predicates| AndGroup { predicates });
        prop::collection::vec(group, 1..4).prop_map(|groups| Filter { groups })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_of_to_text_gives_back_the_filter(filter in filter()) {
            prop_assert_eq!(Filter::parse(&filter.to_text()), Ok(filter));
        }

        #[test]
        fn parser_never_panics(text in "[ -~\n]{0,60}") {
            let _ = Filter::parse(&text);
        }
    }
}
