//! Sharding across StatefulSet replicas. With `--shards N` each pod owns the Operations whose
//! target (namespace/name of the ApplicationInstance) hashes to its ordinal, taken from the pod
//! name. Hashing the target, not the Operation, keeps each target's queue (one Operation in
//! flight per target) inside one shard. Each shard has its own Lease (`<lease>-shard-<K>`) and
//! its own journal; the Lease epoch fences it. How a change of N hands over: `leader` (the
//! barrier) and docs/operate/install.md.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Annotation on every child: the Lease (hence the shard) whose holder created or patched it.
pub const ANNOTATION_LEASE: &str = "ops.vworkspace.io/lease";
/// Annotation on a shard's Lease: the shard count its holder runs with.
pub const ANNOTATION_SHARDS: &str = "ops.vworkspace.io/shards";
/// Label on every Lease of one deployment, so a pod can list its peers' Leases.
pub const LABEL_LEASE_FAMILY: &str = "ops.vworkspace.io/lease-family";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("shard ordinal {ordinal} is not below the shard count {count}")]
    OutOfRange { ordinal: u32, count: u32 },
    #[error("the shard count must be at least 1")]
    NoShards,
    #[error("pod name {0:?} does not end in -<ordinal> (a StatefulSet pod name); pass --shard-ordinal")]
    PodName(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This process's shard: `ordinal` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub ordinal: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { ordinal: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.ordinal, self.count)
    }
}

/// The shard that owns a target under `count` shards: the first 8 bytes of sha256 over
/// "namespace/name", modulo the count (stable across builds and platforms).
pub fn owner(namespace: &str, target: &str, count: u32) -> u32 {
    let digest = Sha256::digest(format!("{namespace}/{target}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

impl Shard {
    pub fn new(ordinal: u32, count: u32) -> Result<Self> {
        if count == 0 {
            return Err(Error::NoShards);
        }
        if ordinal >= count {
            return Err(Error::OutOfRange { ordinal, count });
        }
        Ok(Self { ordinal, count })
    }

    /// The ordinal a StatefulSet gives its pod as the name's last `-` segment.
    pub fn from_pod_name(pod: &str, count: u32) -> Result<Self> {
        let ordinal =
            pod.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).ok_or_else(|| Error::PodName(pod.into()))?;
        Self::new(ordinal, count)
    }

    pub fn owns(&self, namespace: &str, target: &str) -> bool {
        self.count <= 1 || owner(namespace, target, self.count) == self.ordinal
    }

    /// The shard's Lease: the base name alone when there is one shard, so a single replica
    /// keeps the Lease it always had.
    pub fn lease_name(&self, base: &str) -> String {
        if self.count <= 1 { base.to_string() } else { format!("{base}-shard-{}", self.ordinal) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_exactly_one_owner() {
        for count in 1..=5 {
            let shards: Vec<Shard> = (0..count).map(|k| Shard::new(k, count).unwrap()).collect();
            let mut per = vec![0usize; count as usize];
            for i in 0..3000 {
                let t = format!("app-{i}");
                let owners: Vec<u32> = shards.iter().filter(|s| s.owns("ns", &t)).map(|s| s.ordinal).collect();
                assert_eq!(owners.len(), 1, "{t} under {count}: {owners:?}");
                per[owners[0] as usize] += 1;
            }
            // Spread: no shard gets under half its fair share.
            assert!(per.iter().all(|n| *n * 2 * count as usize >= 3000), "{count}: {per:?}");
        }
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Fixed values: a change here moves every target to another shard on upgrade.
        let pinned: Vec<u32> = ["a", "b", "c", "d", "e"].iter().map(|t| owner("ns", t, 7)).collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u32; 5] = [6, 1, 5, 2, 2];

    #[test]
    fn ordinals_come_from_pod_names_and_bad_ones_are_refused() {
        assert_eq!(Shard::from_pod_name("vworkspace-operator-2", 3), Ok(Shard { ordinal: 2, count: 3 }));
        assert_eq!(Shard::from_pod_name("vworkspace-operator-3", 3), Err(Error::OutOfRange { ordinal: 3, count: 3 }));
        assert_eq!(Shard::from_pod_name("laptop", 2), Err(Error::PodName("laptop".into())));
        assert_eq!(Shard::new(0, 0), Err(Error::NoShards));
        assert_eq!(Shard::new(0, 1).unwrap().lease_name("vw"), "vw");
        assert_eq!(Shard::new(1, 3).unwrap().lease_name("vw"), "vw-shard-1");
    }
}
