//! A cap on the Operations one process runs at once (`run --max-active-operations`, carried by
//! the Started record so a replay decides alike). Beyond it a new Operation waits, in creation
//! order, untouched: no status, no Event, no command. A burst of submissions, or a relist that
//! finds thousands at once, then waits as objects in the API server, not as commands in the
//! effector's queue (backpressure alone pauses the watch, and a long pause ends in a 410 and a
//! relist that brings everything in at once).
//!
//! Derived from the Operations (rebuilt on restore), like the per-target queues.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::op::OpState;
use crate::key::OpKey;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Admission {
    cap: Option<usize>,
    /// Holding a slot: started, not ended, not being deleted (and, for one step, those `fill`
    /// just admitted).
    active: BTreeSet<OpKey>,
    /// Not admitted yet, in creation order (then name).
    waiting: BTreeSet<(DateTime<Utc>, OpKey)>,
    waiting_since: BTreeMap<OpKey, DateTime<Utc>>,
}

/// Once reconciled, an Operation has conditions; one adopted with a status has them too.
fn admitted(op: &OpState) -> bool {
    !op.conditions.map.is_empty() || op.started.is_some()
}

/// Only a started Operation holds a slot: one blocked on its preconditions (a busy or unready
/// target, a missing Secret) or still waiting to be accepted gives it back, so one stuck target
/// cannot hold every slot. A deletion holds none.
fn holds(op: &OpState) -> bool {
    op.started.is_some() && !op.deleting
}

/// Ending one takes no slot: a deletion, a cancel before the start, a dry run.
fn passes(op: &OpState) -> bool {
    op.deleting || op.spec.as_ref().is_some_and(|s| s.cancel) || op.is_dry_run()
}

impl Admission {
    pub fn rebuild<'a>(cap: Option<usize>, ops: impl Iterator<Item = (&'a OpKey, &'a OpState)>) -> Self {
        let mut a = Admission { cap, ..Default::default() };
        for (key, op) in ops {
            a.update(key, op);
        }
        a
    }

    pub fn cap(&self) -> Option<usize> {
        self.cap
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Files `op` where it now stands: running (admitted, not ended), waiting (not admitted
    /// yet), or neither (ended). Called after anything that may change that, so the sets are
    /// always what `rebuild` would make of the Operations.
    pub fn update(&mut self, key: &OpKey, op: &OpState) {
        if self.cap.is_none() {
            return;
        }
        if op.is_terminal() {
            self.release(key);
        } else if admitted(op) {
            self.forget_waiting(key);
            if holds(op) {
                // Even over the cap: one that was blocked starts when its target frees.
                self.active.insert(key.clone());
            } else {
                self.active.remove(key);
            }
        } else if !self.active.contains(key) {
            // (Admitted by `fill` and not reconciled yet: it keeps its slot.)
            self.wait(key, op.created);
        }
    }

    /// Whether `op` may be reconciled now: not while it waits, unless reconciling it ends it
    /// or it is being deleted.
    pub fn gate(&self, key: &OpKey, op: &OpState) -> bool {
        self.cap.is_none() || !self.waiting_since.contains_key(key) || passes(op)
    }

    /// An Operation went away: its slot is free.
    pub fn release(&mut self, key: &OpKey) {
        self.active.remove(key);
        self.forget_waiting(key);
    }

    /// Admits the oldest waiting Operations into the free slots; returns them, to reconcile.
    pub fn fill(&mut self) -> Vec<OpKey> {
        let Some(cap) = self.cap else { return Vec::new() };
        let mut admitted = Vec::new();
        while self.active.len() < cap {
            let Some((_, key)) = self.waiting.pop_first() else { break };
            self.waiting_since.remove(&key);
            self.active.insert(key.clone());
            admitted.push(key);
        }
        admitted
    }

    fn wait(&mut self, key: &OpKey, created: DateTime<Utc>) {
        if self.waiting_since.insert(key.clone(), created).is_none() {
            self.waiting.insert((created, key.clone()));
        }
    }

    fn forget_waiting(&mut self, key: &OpKey) {
        if let Some(at) = self.waiting_since.remove(key) {
            self.waiting.remove(&(at, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> OpKey {
        OpKey::new("ns", n)
    }

    fn op(n: &str, secs: i64) -> OpState {
        OpState::new(key(n), format!("uid-{n}"), DateTime::from_timestamp(secs, 0).unwrap())
    }

    #[test]
    fn without_a_cap_everything_passes() {
        let mut a = Admission::default();
        a.update(&key("a"), &op("a", 1));
        assert!(a.gate(&key("a"), &op("a", 1)));
        assert!(a.fill().is_empty());
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn the_oldest_waiting_take_the_free_slots() {
        let ops = [("c", 3), ("b", 2), ("a", 9)].map(|(n, t)| (key(n), op(n, t)));
        let mut a = Admission::rebuild(Some(1), ops.iter().map(|(k, o)| (k, o)));
        assert!(ops.iter().all(|(k, o)| !a.gate(k, o)), "all wait");
        assert_eq!(a.fill(), vec![key("b")], "the oldest first, not the first by name");
        assert!(a.gate(&key("b"), &ops[1].1), "admitted by fill");
        a.update(&key("b"), &ops[1].1);
        assert!(a.fill().is_empty(), "its slot is kept until it is reconciled");
        a.release(&key("b"));
        assert_eq!(a.fill(), vec![key("c")]);
        a.release(&key("a"));
        a.release(&key("c"));
        assert!(a.fill().is_empty(), "a went away before its turn");
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn waiting_twice_keeps_one_place() {
        let mut a = Admission::rebuild(Some(0), std::iter::empty());
        a.update(&key("a"), &op("a", 1));
        a.update(&key("a"), &op("a", 1));
        assert_eq!(a.waiting(), 1);
        assert!(a.fill().is_empty());
    }
}
