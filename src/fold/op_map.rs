//! The Operations by key: walked in key order, looked up through a hash index. A lookup in an
//! ordered map of 43,000 Operations compares some twenty keys, and the fold looks the record's
//! Operation up several times a record: the largest single cost of a replay (a seventh of it).
//! The index is never iterated (so the fold's purity rule, no hash-order walk, holds): every
//! walk, `Debug` included, goes by `order`.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::op::OpState;
use crate::key::{OpIndex, OpKey};

#[derive(Clone, Default)]
pub struct OpMap {
    by_key: OpIndex<Box<OpState>>,
    order: BTreeSet<OpKey>,
}

impl OpMap {
    pub fn get(&self, key: &OpKey) -> Option<&OpState> {
        self.by_key.get(key).map(|op| &**op)
    }

    pub fn get_mut(&mut self, key: &OpKey) -> Option<&mut OpState> {
        self.by_key.get_mut(key).map(|op| &mut **op)
    }

    pub fn contains_key(&self, key: &OpKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn insert(&mut self, key: OpKey, op: Box<OpState>) -> Option<Box<OpState>> {
        self.order.insert(key.clone());
        self.by_key.insert(key, op)
    }

    pub fn get_or_insert_with(&mut self, key: OpKey, new: impl FnOnce() -> Box<OpState>) -> &mut OpState {
        if !self.by_key.contains_key(&key) {
            self.order.insert(key.clone());
        }
        self.by_key.entry(key).or_insert_with(new)
    }

    pub fn remove(&mut self, key: &OpKey) -> Option<Box<OpState>> {
        self.order.remove(key);
        self.by_key.remove(key)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.order.clear();
    }

    /// In key order.
    pub fn keys(&self) -> impl Iterator<Item = &OpKey> + '_ {
        self.order.iter()
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&OpKey, &OpState)> + '_ {
        self.order.iter().filter_map(|k| self.by_key.get(k).map(|op| (k, &**op)))
    }

    /// In key order.
    pub fn values(&self) -> impl Iterator<Item = &OpState> + '_ {
        self.iter().map(|(_, op)| op)
    }

    /// Changes every Operation, in key order (a restart sends commands as it goes).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut OpState)) {
        for k in &self.order {
            if let Some(op) = self.by_key.get_mut(k) {
                f(op);
            }
        }
    }
}

impl std::fmt::Debug for OpMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for OpMap {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl FromIterator<(OpKey, Box<OpState>)> for OpMap {
    fn from_iter<I: IntoIterator<Item = (OpKey, Box<OpState>)>>(iter: I) -> Self {
        let mut m = OpMap::default();
        for (k, op) in iter {
            m.insert(k, op);
        }
        m
    }
}

impl<'a> IntoIterator for &'a OpMap {
    type Item = (&'a OpKey, &'a OpState);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// As `[key, state]` pairs in key order (`pairs`), the form snapshots have always had.
impl Serialize for OpMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for OpMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<(OpKey, Box<OpState>)>::deserialize(d).map(|v| v.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn op(name: &str) -> (OpKey, Box<OpState>) {
        let key = OpKey::new("ns", name);
        let state = OpState::new(key.clone(), format!("uid-{name}"), DateTime::UNIX_EPOCH);
        (key, Box::new(state))
    }

    #[test]
    fn walks_in_key_order_and_reads_back_as_it_was_written() {
        let names = ["m", "b", "z", "a", "q", "c"];
        let mut m: OpMap = names.iter().map(|n| op(n)).collect();
        m.remove(&OpKey::new("ns", "q"));
        let want = ["a", "b", "c", "m", "z"];
        assert_eq!(m.keys().map(|k| k.name.as_str()).collect::<Vec<_>>(), want);
        assert_eq!(
            m.iter().map(|(k, o)| (k.name.as_str(), o.key.name.as_str())).unzip::<_, _, Vec<_>, Vec<_>>().1,
            want
        );
        let mut walked = Vec::new();
        m.for_each_mut(|o| walked.push(o.key.name.clone()));
        assert_eq!(walked, want);
        assert_eq!(
            (m.len(), m.contains_key(&OpKey::new("ns", "q")), m.get(&OpKey::new("ns", "z")).is_some()),
            (5, false, true)
        );

        // The snapshot form: pairs in key order, read back equal.
        let text = serde_json::to_string(&m).unwrap();
        let back: OpMap = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        let pairs: Vec<(OpKey, serde_json::Value)> = serde_json::from_str(&text).unwrap();
        assert_eq!(pairs.iter().map(|(k, _)| k.name.as_str()).collect::<Vec<_>>(), want);

        let (key, fresh) = op("d");
        m.get_or_insert_with(key.clone(), || fresh).counter = 3;
        m.get_or_insert_with(key.clone(), || unreachable!("d is there")).counter += 1;
        assert_eq!((m.get(&key).map(|o| o.counter), m.keys().nth(3)), (Some(4), Some(&key)));
        m.remove(&key);

        let mut other = m.clone();
        other.get_mut(&OpKey::new("ns", "a")).unwrap().counter = 7;
        assert_ne!(other, m);
        m.clear();
        assert!(m.is_empty() && m.keys().next().is_none());
    }
}
