//! A message's context: its typed properties, promoted (routable) or only written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// One context property as a publisher supplies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Property {
    pub name: String,
    pub value: Value,
    /// Promoted properties can be used by subscription filters; written ones are only carried.
    pub promoted: bool,
}

/// The context of one message: properties by name, in name order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    properties: BTreeMap<String, ContextValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ContextValue {
    value: Value,
    promoted: bool,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// Builds a context; a later property with the same name replaces an earlier one.
    pub fn from_properties(properties: impl IntoIterator<Item = Property>) -> Context {
        let mut context = Context::new();
        for property in properties {
            context.insert(property);
        }
        context
    }

    pub fn insert(&mut self, property: Property) {
        self.properties.insert(
            property.name,
            ContextValue {
                value: property.value,
                promoted: property.promoted,
            },
        );
    }

    /// A promoted property's value: the only values filters see.
    pub fn promoted(&self, name: &str) -> Option<&Value> {
        self.properties
            .get(name)
            .filter(|entry| entry.promoted)
            .map(|entry| &entry.value)
    }

    /// Every promoted property, in name order.
    pub fn promoted_properties(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.properties
            .iter()
            .filter(|(_, entry)| entry.promoted)
            .map(|(name, entry)| (name.as_str(), &entry.value))
    }

    /// Every property, promoted or written, in name order.
    pub fn properties(&self) -> impl Iterator<Item = Property> + '_ {
        self.properties.iter().map(|(name, entry)| Property {
            name: name.clone(),
            value: entry.value.clone(),
            promoted: entry.promoted,
        })
    }

    /// Every property by reference, promoted or written, in name order: name, value, and
    /// whether it is promoted.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value, bool)> {
        self.properties
            .iter()
            .map(|(name, entry)| (name.as_str(), &entry.value, entry.promoted))
    }

    pub fn len(&self) -> usize {
        self.properties.len()
    }

    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }
}
