//! [`RoutingIndex`]: finds every subscription whose filter a message's context matches,
//! at a cost that stays flat as equality subscriptions grow.
//!
//! Each AND-group is placed once:
//!
//! - **anchored**, when it has an `==` predicate: under (property, [`AnchorKey`] of the
//!   value) of the `==` predicate whose bucket is currently smallest. A group can only match
//!   a context whose promoted property equals its anchor value, so routing looks up each
//!   promoted property's bucket and evaluates only those groups.
//! - **scanned**, otherwise (`!=`, `<`, `exists`, ...): evaluated on every route.
//!
//! Everything is kept in `BTreeMap`s, so the index, like the state machine it serves, has
//! no hash-map iteration order. A per-subscription record of placements makes `remove`
//! proportional to the subscription's own groups.

use std::collections::BTreeMap;

use crate::context::Context;

use super::anchor_key::AnchorKey;
use super::predicate::Operator;
use super::property_anchors::PropertyAnchors;
use super::{AndGroup, Filter};

pub type SubscriptionId = u64;

/// One AND-group of one subscription: its position in the filter's list of groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct GroupId {
    pub(super) subscription: SubscriptionId,
    pub(super) position: usize,
}

/// Where one group was put, so that it can be taken out again.
#[derive(Clone, Debug)]
enum Placement {
    Anchored {
        group_id: GroupId,
        property: String,
        key: AnchorKey,
    },
    Scanned {
        group_id: GroupId,
    },
}

#[derive(Clone, Debug, Default)]
pub struct RoutingIndex {
    anchored: BTreeMap<String, PropertyAnchors>,
    scanned: BTreeMap<GroupId, AndGroup>,
    placements: BTreeMap<SubscriptionId, Vec<Placement>>,
}

impl RoutingIndex {
    pub fn new() -> RoutingIndex {
        RoutingIndex::default()
    }

    /// Adds a subscription, replacing any existing entry for the same id.
    pub fn insert(&mut self, subscription: SubscriptionId, filter: &Filter) {
        self.remove(subscription);
        let placements = filter
            .groups()
            .iter()
            .enumerate()
            .map(|(position, group)| {
                self.place(
                    GroupId {
                        subscription,
                        position,
                    },
                    group,
                )
            })
            .collect();
        self.placements.insert(subscription, placements);
    }

    /// Removes a subscription; removing an unknown id does nothing.
    pub fn remove(&mut self, subscription: SubscriptionId) {
        let Some(placements) = self.placements.remove(&subscription) else {
            return;
        };
        for placement in placements {
            self.unplace(placement);
        }
    }

    /// Every subscription the context matches, ascending, without duplicates.
    pub fn route(&self, context: &Context) -> Vec<SubscriptionId> {
        let mut matched = Vec::new();
        for (property, value) in context.promoted_properties() {
            let bucket = self
                .anchored
                .get(property)
                .and_then(|anchors| anchors.bucket_for_value(value));
            if let Some(bucket) = bucket {
                collect_matching(bucket, context, &mut matched);
            }
        }
        collect_matching(&self.scanned, context, &mut matched);
        matched.sort_unstable();
        matched.dedup();
        matched
    }

    /// The number of subscriptions.
    pub fn len(&self) -> usize {
        self.placements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.placements.is_empty()
    }

    fn place(&mut self, group_id: GroupId, group: &AndGroup) -> Placement {
        let Some((property, key)) = self.choose_anchor(group) else {
            self.scanned.insert(group_id, group.clone());
            return Placement::Scanned { group_id };
        };
        let anchors = self.anchored.entry(property.clone()).or_default();
        anchors.insert(key.clone(), group_id, group.clone());
        Placement::Anchored {
            group_id,
            property,
            key,
        }
    }

    fn unplace(&mut self, placement: Placement) {
        match placement {
            Placement::Scanned { group_id } => {
                self.scanned.remove(&group_id);
            }
            Placement::Anchored {
                group_id,
                property,
                key,
            } => {
                let Some(anchors) = self.anchored.get_mut(&property) else {
                    return;
                };
                anchors.remove(&key, group_id);
                if anchors.is_empty() {
                    self.anchored.remove(&property);
                }
            }
        }
    }

    /// The `==` predicate whose (property, key) bucket is smallest now (the first on ties),
    /// so that common values such as a shared message type do not collect every group.
    fn choose_anchor(&self, group: &AndGroup) -> Option<(String, AnchorKey)> {
        group
            .predicates
            .iter()
            .filter(|predicate| predicate.operator == Operator::Equal)
            .filter_map(|predicate| {
                let key = AnchorKey::of(predicate.operand.as_ref()?)?;
                Some((predicate.property.as_str(), key))
            })
            .min_by_key(|(property, key)| self.bucket_len(property, key))
            .map(|(property, key)| (property.to_string(), key))
    }

    fn bucket_len(&self, property: &str, key: &AnchorKey) -> usize {
        self.anchored
            .get(property)
            .map_or(0, |anchors| anchors.bucket_len(key))
    }
}

fn collect_matching(
    groups: &BTreeMap<GroupId, AndGroup>,
    context: &Context,
    matched: &mut Vec<SubscriptionId>,
) {
    for (group_id, group) in groups {
        if group.matches(context) {
            matched.push(group_id.subscription);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::context::Property;
    use crate::filter::anchor_key::ScalarKey;
    use crate::filter::literal::write_literal;
    use crate::value::Value;

    fn filter(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn context(properties: &[(&str, Value)]) -> Context {
        Context::from_properties(properties.iter().map(|(name, value)| Property {
            name: name.to_string(),
            value: value.clone(),
            promoted: true,
        }))
    }

    fn string(text: &str) -> Value {
        Value::String(text.to_string())
    }

    #[test]
    fn routes_to_every_matching_subscription_in_order() {
        let mut index = RoutingIndex::new();
        index.insert(30, &filter(r#"MessageType == "Order" and Total > 1000"#));
        index.insert(10, &filter(r#"MessageType == "Order""#));
        index.insert(20, &filter("Priority exists or Total == 1500.0"));
        index.insert(40, &filter(r#"MessageType == "Invoice""#));
        let order = context(&[
            ("MessageType", string("Order")),
            ("Total", Value::Int(1500)),
        ]);
        assert_eq!(index.route(&order), vec![10, 20, 30]);
        assert_eq!(index.route(&context(&[])), Vec::<SubscriptionId>::new());
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn subscription_matching_through_two_groups_is_listed_once() {
        let mut index = RoutingIndex::new();
        index.insert(7, &filter("A == 1 or B == 2 or C exists"));
        let both = context(&[
            ("A", Value::Int(1)),
            ("B", Value::Int(2)),
            ("C", Value::Bool(true)),
        ]);
        assert_eq!(index.route(&both), vec![7]);
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut index = RoutingIndex::new();
        index.insert(1, &filter("A == 1"));
        index.insert(1, &filter("A == 2"));
        assert_eq!(index.len(), 1);
        assert!(index.route(&context(&[("A", Value::Int(1))])).is_empty());
        assert_eq!(index.route(&context(&[("A", Value::Int(2))])), vec![1]);
        index.remove(1);
        index.remove(99);
        assert!(index.is_empty());
        assert!(index.anchored.is_empty() && index.scanned.is_empty());
    }

    #[test]
    fn equality_groups_are_anchored_and_others_scanned() {
        let mut index = RoutingIndex::new();
        index.insert(1, &filter("A == 1 and B != 2 or C < 3"));
        assert_eq!(index.anchored.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(index.scanned.len(), 1);
    }

    #[test]
    fn anchor_prefers_the_smaller_bucket() {
        let mut index = RoutingIndex::new();
        index.insert(1, &filter(r#"MessageType == "Order""#));
        index.insert(2, &filter(r#"MessageType == "Order" and Customer == 42"#));
        assert_eq!(
            index.bucket_len("Customer", &AnchorKey::Scalar(ScalarKey::Number(42))),
            1
        );
        assert_eq!(
            index.bucket_len("MessageType", &AnchorKey::String("Order".to_string())),
            1
        );
    }

    /// Flat routing: with 10,000 equality subscriptions, a message is evaluated against its
    /// own bucket only, never against the other subscriptions.
    #[test]
    fn routing_cost_does_not_grow_with_equality_subscriptions() {
        let mut index = RoutingIndex::new();
        for subscription in 0..10_000_u64 {
            let text = format!("MessageType == \"Type{subscription}\" and Total > 10");
            index.insert(subscription, &filter(&text));
        }
        assert!(index.scanned.is_empty());
        let message = context(&[
            ("MessageType", string("Type4321")),
            ("Total", Value::Int(11)),
        ]);
        let candidates = index.anchored["MessageType"].bucket_for_value(&string("Type4321"));
        assert_eq!(candidates.map(BTreeMap::len), Some(1));
        assert_eq!(index.route(&message), vec![4321]);
    }

    #[test]
    fn int_and_float_anchors_meet() {
        let mut index = RoutingIndex::new();
        index.insert(1, &filter("Total == 5.0"));
        index.insert(2, &filter("Total == 5"));
        index.insert(3, &filter("Total == 9223372036854775807"));
        assert_eq!(
            index.route(&context(&[("Total", Value::Int(5))])),
            vec![1, 2]
        );
        assert_eq!(
            index.route(&context(&[("Total", Value::Float(5.0))])),
            vec![1, 2]
        );
        let two_to_the_63 = Value::Float(9_223_372_036_854_775_808.0);
        assert_eq!(index.route(&context(&[("Total", two_to_the_63)])), vec![3]);
    }

    // Random subscriptions over a small vocabulary, so that values collide often.

    const PROPERTIES: [&str; 3] = ["A", "B", "C"];

    fn small_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0_i64..3).prop_map(Value::Int),
            (0_i64..3).prop_map(|number| Value::Float(number as f64)),
            Just(Value::Float(1.5)),
            prop::sample::select(vec!["x", "y"]).prop_map(string),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    fn small_predicate() -> impl Strategy<Value = String> {
        let property = prop::sample::select(PROPERTIES.to_vec());
        let operator = prop::sample::select(vec!["==", "==", "!=", "<", ">=", "exists"]);
        (property, operator, small_value()).prop_map(|(property, operator, value)| {
            if operator == "exists" {
                format!("{property} exists")
            } else {
                let mut literal_text = String::new();
                write_literal(&value, &mut literal_text);
                format!("{property} {operator} {literal_text}")
            }
        })
    }

    fn small_filter() -> impl Strategy<Value = Filter> {
        let group = prop::collection::vec(small_predicate(), 1..4)
            .prop_map(|predicates| predicates.join(" and "));
        prop::collection::vec(group, 1..3).prop_map(|groups| filter(&groups.join(" or ")))
    }

    fn small_context() -> impl Strategy<Value = Context> {
        let property = (
            prop::sample::select(PROPERTIES.to_vec()),
            small_value(),
            prop::bool::weighted(0.8),
        );
        prop::collection::vec(property, 0..4).prop_map(|properties| {
            Context::from_properties(properties.into_iter().map(|(name, value, promoted)| {
                Property {
                    name: name.to_string(),
                    value,
                    promoted,
                }
            }))
        })
    }

    /// Insert (Some) or remove (None) a subscription id in 0..12.
    fn operations() -> impl Strategy<Value = Vec<(SubscriptionId, Option<Filter>)>> {
        prop::collection::vec(
            (0_u64..12, prop::option::weighted(0.75, small_filter())),
            1..40,
        )
    }

    fn brute_force(
        filters: &BTreeMap<SubscriptionId, Filter>,
        context: &Context,
    ) -> Vec<SubscriptionId> {
        filters
            .iter()
            .filter(|(_, filter)| filter.matches(context))
            .map(|(id, _)| *id)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn route_equals_brute_force_evaluation(
            operations in operations(),
            contexts in prop::collection::vec(small_context(), 1..8),
        ) {
            let mut index = RoutingIndex::new();
            let mut filters = BTreeMap::new();
            for (subscription, operation) in operations {
                match operation {
                    Some(filter) => {
                        index.insert(subscription, &filter);
                        filters.insert(subscription, filter);
                    }
                    None => {
                        index.remove(subscription);
                        filters.remove(&subscription);
                    }
                }
                prop_assert_eq!(index.len(), filters.len());
                for context in &contexts {
                    prop_assert_eq!(index.route(context), brute_force(&filters, context));
                }
            }
        }
    }
}
