//! [`PropertyAnchors`]: for one property name, the AND-groups anchored on `property ==
//! value`, bucketed by the value's [`AnchorKey`]. Strings are looked up by `&str` and other
//! values by a `Copy` key, so routing a message allocates nothing per lookup.

use std::collections::BTreeMap;

use crate::value::Value;

use super::AndGroup;
use super::anchor_key::{AnchorKey, ScalarKey};
use super::index::GroupId;

/// The groups anchored on one (property, key), in group id order.
pub(super) type Bucket = BTreeMap<GroupId, AndGroup>;

#[derive(Clone, Debug, Default)]
pub(super) struct PropertyAnchors {
    strings: BTreeMap<String, Bucket>,
    scalars: BTreeMap<ScalarKey, Bucket>,
}

impl PropertyAnchors {
    /// The groups whose anchor value equals `value`, if any.
    pub(super) fn bucket_for_value(&self, value: &Value) -> Option<&Bucket> {
        match value {
            Value::String(text) => self.strings.get(text.as_str()),
            scalar => self.scalars.get(&ScalarKey::of(scalar)?),
        }
    }

    pub(super) fn bucket_len(&self, key: &AnchorKey) -> usize {
        let bucket = match key {
            AnchorKey::String(text) => self.strings.get(text),
            AnchorKey::Scalar(scalar) => self.scalars.get(scalar),
        };
        bucket.map_or(0, BTreeMap::len)
    }

    pub(super) fn insert(&mut self, key: AnchorKey, group_id: GroupId, group: AndGroup) {
        let bucket = match key {
            AnchorKey::String(text) => self.strings.entry(text).or_default(),
            AnchorKey::Scalar(scalar) => self.scalars.entry(scalar).or_default(),
        };
        bucket.insert(group_id, group);
    }

    /// Removes one group, dropping its bucket when it empties.
    pub(super) fn remove(&mut self, key: &AnchorKey, group_id: GroupId) {
        match key {
            AnchorKey::String(text) => remove_from(&mut self.strings, text, group_id),
            AnchorKey::Scalar(scalar) => remove_from(&mut self.scalars, scalar, group_id),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.strings.is_empty() && self.scalars.is_empty()
    }
}

fn remove_from<Key: Ord>(buckets: &mut BTreeMap<Key, Bucket>, key: &Key, group_id: GroupId) {
    let Some(bucket) = buckets.get_mut(key) else {
        return;
    };
    bucket.remove(&group_id);
    if bucket.is_empty() {
        buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_id(subscription: u64) -> GroupId {
        GroupId {
            subscription,
            position: 0,
        }
    }

    #[test]
    fn finds_buckets_by_value_and_drops_them_when_empty() {
        let mut anchors = PropertyAnchors::default();
        let group = AndGroup {
            predicates: Vec::new(),
        };
        anchors.insert(
            AnchorKey::Scalar(ScalarKey::Number(5)),
            group_id(1),
            group.clone(),
        );
        anchors.insert(AnchorKey::String("Order".to_string()), group_id(2), group);
        assert_eq!(
            anchors
                .bucket_for_value(&Value::Float(5.0))
                .map(BTreeMap::len),
            Some(1)
        );
        assert_eq!(
            anchors
                .bucket_for_value(&Value::String("Order".to_string()))
                .map(BTreeMap::len),
            Some(1)
        );
        assert!(anchors.bucket_for_value(&Value::Int(6)).is_none());
        assert!(anchors.bucket_for_value(&Value::Float(f64::NAN)).is_none());
        assert_eq!(
            anchors.bucket_len(&AnchorKey::Scalar(ScalarKey::Number(5))),
            1
        );

        anchors.remove(&AnchorKey::Scalar(ScalarKey::Number(5)), group_id(1));
        anchors.remove(&AnchorKey::String("Order".to_string()), group_id(2));
        anchors.remove(&AnchorKey::String("Absent".to_string()), group_id(3));
        assert!(anchors.is_empty());
    }
}
