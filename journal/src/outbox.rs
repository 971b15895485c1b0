//! The outbox beside the records, in the same store: events derived from records, numbered in
//! order, with a persistent cursor per sink (at-least-once delivery), and the high-water record
//! seq whose events are in (a restart re-derives the events of later records).

use sled::Tree;

use crate::Result;
use crate::store::store_err;

const HIGH_WATER: &[u8] = b"hw";
const LAST: &[u8] = b"n";
const EVENT: u8 = b'e';
const CURSOR: &[u8] = b"c/";

#[derive(Clone)]
pub struct Outbox {
    tree: Tree,
}

fn event_key(n: u64) -> [u8; 9] {
    let mut k = [EVENT; 9];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn u64_of(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl Outbox {
    pub(crate) fn new(tree: Tree) -> Self {
        Self { tree }
    }

    /// The last record seq whose events are in the outbox.
    pub fn high_water(&self) -> Result<u64> {
        Ok(self.tree.get(HIGH_WATER).map_err(store_err)?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// The number of the newest event (0 when none was ever written). Kept apart from the
    /// events, so numbers never repeat once delivered events are trimmed.
    pub fn last(&self) -> Result<u64> {
        Ok(self.tree.get(LAST).map_err(store_err)?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Appends the events of the records up to `high_water`, atomically with the high water.
    /// Returns the number of the last event.
    pub fn put(&self, high_water: u64, events: &[Vec<u8>]) -> Result<u64> {
        let mut n = self.last()?;
        let mut batch = sled::Batch::default();
        for e in events {
            n += 1;
            batch.insert(&event_key(n), e.as_slice());
        }
        batch.insert(HIGH_WATER, &high_water.to_be_bytes());
        batch.insert(LAST, &n.to_be_bytes());
        self.tree.apply_batch(batch).map_err(store_err)?;
        Ok(n)
    }

    /// Up to `limit` events after `after`, with their numbers.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.tree
            .range(event_key(after.saturating_add(1))..=event_key(u64::MAX))
            .take(limit)
            .map(|r| r.map(|(k, v)| (u64_of(&k[1..]), v.to_vec())).map_err(store_err))
            .collect()
    }

    fn cursor_key(sink: &str) -> Vec<u8> {
        [CURSOR, sink.as_bytes()].concat()
    }

    /// The last event `sink` acknowledged.
    pub fn cursor(&self, sink: &str) -> Result<u64> {
        Ok(self.tree.get(Self::cursor_key(sink)).map_err(store_err)?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Records `sink`'s acknowledgement and makes it durable: once acked, never sent again.
    pub fn ack(&self, sink: &str, n: u64) -> Result<()> {
        self.tree.insert(Self::cursor_key(sink), &n.to_be_bytes()).map_err(store_err)?;
        self.tree.flush().map_err(store_err)?;
        Ok(())
    }

    /// Drops events up to `upto` (all sinks have them), and beyond `keep` of the newest.
    pub fn trim(&self, upto: u64, keep: u64) -> Result<u64> {
        let last = self.last()?;
        let floor = upto.max(last.saturating_sub(keep));
        let keys: Vec<sled::IVec> = self
            .tree
            .range(event_key(0)..=event_key(floor))
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(store_err)?;
        let mut batch = sled::Batch::default();
        for k in &keys {
            batch.remove(k);
        }
        self.tree.apply_batch(batch).map_err(store_err)?;
        Ok(keys.len() as u64)
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Journal, SledJournal};

    #[test]
    fn numbers_never_repeat_and_cursors_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = SledJournal::open(dir.path()).unwrap();
            let o = j.outbox().unwrap();
            assert_eq!(o.put(5, &[b"a".to_vec(), b"b".to_vec()]).unwrap(), 2);
            o.ack("cp", 2).unwrap();
            assert_eq!(o.trim(2, 100).unwrap(), 2);
            assert_eq!(o.put(7, &[b"c".to_vec()]).unwrap(), 3, "after a trim, numbering goes on");
            assert_eq!(o.read(o.cursor("cp").unwrap(), 10).unwrap(), vec![(3, b"c".to_vec())]);
            j.durable().unwrap();
        }
        SledJournal::close(dir.path());
        let (j, _) = SledJournal::open(dir.path()).unwrap();
        let o = j.outbox().unwrap();
        assert_eq!((o.high_water().unwrap(), o.last().unwrap(), o.cursor("cp").unwrap()), (7, 3, 2));
        assert_eq!(o.cursor("other").unwrap(), 0);
        // A sink that is down keeps at most `keep` events.
        o.put(8, &(0..10).map(|i| vec![i]).collect::<Vec<_>>()).unwrap();
        o.trim(0, 4).unwrap();
        assert_eq!(o.read(0, 100).unwrap().len(), 4);
    }
}
