//! A child as last seen. While its Operation runs, the engines read it on every reconcile, so it
//! is kept as a JSON tree. Once the Operation has ended nothing reads it on a hot path, so it is
//! kept as compact JSON text: about a quarter of the heap (at 10,000 retained Operations, the
//! difference is some 80 MB). Both forms hold the same object, compare equal, and serialise the
//! same way; a snapshot is read back as text and the children of running Operations are then
//! made trees again.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Clone, Debug)]
pub enum Child {
    Live(Value),
    Settled(Box<RawValue>),
}

impl Child {
    /// The object (parsed again from text for a settled child).
    pub fn value(&self) -> Cow<'_, Value> {
        match self {
            Child::Live(v) => Cow::Borrowed(v),
            Child::Settled(raw) => Cow::Owned(serde_json::from_str(raw.get()).unwrap_or(Value::Null)),
        }
    }

    /// The object, taken (a tree moves out; text is parsed).
    pub fn into_value(self) -> Value {
        match self {
            Child::Live(v) => v,
            settled => settled.value().into_owned(),
        }
    }

    pub fn is_settled(&self) -> bool {
        matches!(self, Child::Settled(_))
    }

    /// Kept as text from now on.
    pub fn settle(&mut self) {
        if let Child::Live(v) = self
            && let Ok(raw) = serde_json::value::to_raw_value(v)
        {
            *self = Child::Settled(raw);
        }
    }

    /// Kept as a tree from now on.
    pub fn wake(&mut self) {
        if let Child::Settled(_) = self {
            *self = Child::Live(self.value().into_owned());
        }
    }
}

impl PartialEq for Child {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Child::Live(a), Child::Live(b)) => a == b,
            _ => self.value() == other.value(),
        }
    }
}

impl Serialize for Child {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Child::Live(v) => v.serialize(s),
            Child::Settled(raw) => raw.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Child {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Child::Settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_forms_hold_the_same_object_and_serialise_alike() {
        let obj = json!({ "metadata": { "name": "j", "labels": { "a": "b" } }, "status": { "succeeded": 1 } });
        let live = Child::Live(obj.clone());
        let mut settled = live.clone();
        settled.settle();
        assert!(settled.is_settled());
        assert_eq!(settled, live);
        assert_eq!(*settled.value(), obj);
        assert_eq!(serde_json::to_string(&settled).unwrap(), serde_json::to_string(&live).unwrap());
        let back: Child = serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap();
        assert_eq!(back, live);
        settled.wake();
        assert!(matches!(settled, Child::Live(ref v) if *v == obj));
    }
}
