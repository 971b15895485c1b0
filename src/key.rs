//! Object keys with a total order, so every map in the core iterates deterministically.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `namespace/name` of an Operation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpKey {
    pub namespace: String,
    pub name: String,
}

impl OpKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// Parses `NS/NAME`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then(|| Self::new(ns, name))
    }
}

impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `namespace/name` of any object; the namespace is empty for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// Reads the key from an object's metadata.
    pub fn of(obj: &serde_json::Value) -> Option<Self> {
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let ns = meta.get("namespace").and_then(|v| v.as_str()).unwrap_or("");
        Some(Self::new(ns, name))
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Hashing for indexes that are looked up, never iterated: foldhash with a fixed seed, so
/// buckets are the same in every process. SipHash was 2% of a replay in these lookups.
pub type FixedHash = foldhash::fast::FixedState;

/// Operations by key, for lookups only (a walk in key order goes over an ordered map).
pub type OpIndex<V> = std::collections::HashMap<OpKey, V, FixedHash>;

/// The entry for `k`, cloning the key only when it is new (a record touches Operations that
/// are there already, and a key is two strings).
pub fn entry<'m, V>(map: &'m mut OpIndex<V>, k: &OpKey, new: impl FnOnce() -> V) -> &'m mut V {
    if !map.contains_key(k) {
        map.insert(k.clone(), new());
    }
    map.get_mut(k).expect("inserted above")
}
