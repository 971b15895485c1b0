//! A child as last seen. While its Operation runs, the engines read it on every reconcile, so it
//! is kept as a JSON tree. Once the Operation has ended nothing reads it on a hot path, so it is
//! kept as compact JSON text, lz4-compressed when it settles at run time (a settled child was 1.7
//! KB of text, mostly its spec: 17 MB of the heap at 10,000 retained Operations). All forms hold
//! the same object, compare equal, and serialise the same way; a snapshot is read back as plain
//! text (compressing every child would slow a restart), and the children of running Operations
//! are then made trees again.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Clone, Debug)]
pub enum Child {
    Live(Value),
    /// As read back from a snapshot, or settled by a replay (`settle`).
    Settled(Box<RawValue>),
    /// Compact text, lz4-compressed with its length first.
    Packed(Box<[u8]>),
}

impl Child {
    /// The object (parsed again from text for a settled child).
    pub fn value(&self) -> Cow<'_, Value> {
        match self {
            Child::Live(v) => Cow::Borrowed(v),
            _ => Cow::Owned(self.text().and_then(|t| serde_json::from_slice(&t).ok()).unwrap_or(Value::Null)),
        }
    }

    /// A settled child's text (a packed one's decompressed; it was written from a `Value`).
    fn text(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Child::Live(_) => None,
            Child::Settled(raw) => Some(Cow::Borrowed(raw.get().as_bytes())),
            Child::Packed(b) => lz4_flex::decompress_size_prepended(b).ok().map(Cow::Owned),
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
        !matches!(self, Child::Live(_))
    }

    /// Kept as text from now on, lz4-compressed when `pack` (a replay keeps it plain: compressing
    /// was 4% of its instructions); the tree it was is handed back.
    pub fn settle(&mut self, pack: bool) -> Option<Value> {
        let Child::Live(v) = self else { return None };
        let text = if pack {
            Child::Packed(lz4_flex::compress_prepend_size(&serde_json::to_vec(v).ok()?).into_boxed_slice())
        } else {
            Child::Settled(RawValue::from_string(serde_json::to_string(v).ok()?).ok()?)
        };
        match std::mem::replace(self, text) {
            Child::Live(tree) => Some(tree),
            _ => None,
        }
    }

    /// Kept as a tree from now on.
    pub fn wake(&mut self) {
        if self.is_settled() {
            *self = Child::Live(self.value().into_owned());
        }
    }
}

impl PartialEq for Child {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Child::Live(a), Child::Live(b)) => a == b,
            (Child::Live(_), _) | (_, Child::Live(_)) => self.value() == other.value(),
            // Text written from a `Value` is canonical (keys sorted): equal text, equal objects.
            _ => self.text() == other.text() || self.value() == other.value(),
        }
    }
}

impl Serialize for Child {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Child::Live(v) => v.serialize(s),
            Child::Settled(raw) => raw.serialize(s),
            Child::Packed(_) => {
                let text =
                    self.text().ok_or_else(|| serde::ser::Error::custom("a packed child does not decompress"))?;
                let text = String::from_utf8(text.into_owned()).map_err(serde::ser::Error::custom)?;
                RawValue::from_string(text).map_err(serde::ser::Error::custom)?.serialize(s)
            }
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
        settled.settle(true);
        assert!(settled.is_settled());
        assert_eq!(settled, live);
        assert_eq!(*settled.value(), obj);
        assert_eq!(serde_json::to_string(&settled).unwrap(), serde_json::to_string(&live).unwrap());
        let back: Child = serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap();
        assert_eq!(back, live);
        settled.wake();
        assert!(matches!(settled, Child::Live(ref v) if *v == obj));
    }

    #[test]
    fn a_settled_child_is_packed_and_reads_as_the_text_a_snapshot_holds() {
        let obj = json!({ "metadata": { "name": "j" }, "spec": { "template": { "spec": { "containers": [{ "name": "run", "image": "busybox" }] } } } });
        let live = Child::Live(obj.clone());
        let mut packed = live.clone();
        packed.settle(true);
        assert!(matches!(packed, Child::Packed(_)));
        let from_snapshot: Child = serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap();
        assert!(matches!(from_snapshot, Child::Settled(_)));
        assert_eq!(packed, from_snapshot);
        assert_eq!(packed, live);
        assert_eq!(serde_json::to_string(&packed).unwrap(), serde_json::to_string(&from_snapshot).unwrap());
        assert_eq!(*packed.value(), obj);
        let mut other = Child::Live(json!({ "metadata": { "name": "k" } }));
        other.settle(true);
        assert_ne!(packed, other);
        packed.wake();
        assert_eq!(packed, Child::Live(obj));
    }
}
