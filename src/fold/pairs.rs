//! Maps whose keys are not strings (struct and tuple keys) as JSON lists of `[key, value]`
//! pairs, so a snapshot of the folded state is JSON like everything else the journal holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(m: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter())
}

pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Vec::<(K, V)>::deserialize(d).map(|v| v.into_iter().collect())
}

/// A map of such maps.
pub mod nested {
    use super::*;

    pub fn serialize<K, K2, V, S>(m: &BTreeMap<K, BTreeMap<K2, V>>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        K2: Serialize,
        V: Serialize,
        S: Serializer,
    {
        s.collect_seq(m.iter().map(|(k, inner)| (k, inner.iter().collect::<Vec<_>>())))
    }

    pub fn deserialize<'de, K, K2, V, D>(d: D) -> Result<BTreeMap<K, BTreeMap<K2, V>>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        K2: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Vec::<(K, Vec<(K2, V)>)>::deserialize(d)
            .map(|v| v.into_iter().map(|(k, i)| (k, i.into_iter().collect())).collect())
    }
}
