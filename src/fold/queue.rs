//! The per-target queues (`ConflictingOperation`, DESIGN §2): who holds or waits for each target,
//! in queue order (creationTimestamp, then name). An Operation's place costs its rank, and a
//! change to a queue revisits only the Operations whose shown place changes, so N Operations
//! on one target cost O(N) per change, not O(N²).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::op::OpState;
use crate::api::{ConditionStatus, ConditionType};
use crate::key::OpKey;

/// Places up to this are shown exactly, with the names ahead; beyond it, rounded down to
/// 10, 20, 50, 100, 200, 500, …, so a deep queue rewrites each status O(log N) times.
pub const EXACT: usize = 10;

/// Queue order: creationTimestamp, then name (unique within a namespace).
pub type Order = (DateTime<Utc>, String);
/// (namespace, target name).
pub type TargetKey = (String, String);

/// Where one Operation stands in its target's queue, as its peers read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub target: TargetKey,
    pub order: Order,
    pub started: bool,
    pub exclusive: bool,
    /// The place its status shows (`queuePosition`).
    pub shown: Option<u32>,
}

impl Slot {
    /// An Operation holds or waits for its target once accepted, until it ends (dry runs and
    /// Operations being deleted never do).
    pub fn of(op: &OpState) -> Option<Slot> {
        let target = op.target_name()?;
        let holds = !op.is_terminal()
            && !op.is_dry_run()
            && !op.deleting
            && op.conditions.status(ConditionType::Accepted) == ConditionStatus::True;
        holds.then(|| Slot {
            target: (op.key.namespace.clone(), target.to_string()),
            order: (op.created, op.key.name.clone()),
            started: op.started.is_some(),
            exclusive: op.template.as_ref().is_none_or(|t| t.spec().preconditions.exclusive),
            shown: op.queue_position,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct TargetQueue {
    /// Started holders, and the exclusive ones among them.
    started: BTreeSet<Order>,
    started_exclusive: BTreeSet<Order>,
    /// Waiting holders → (exclusive, shown place).
    waiting: BTreeMap<Order, (bool, Option<u32>)>,
    waiting_exclusive: BTreeSet<Order>,
}

impl TargetQueue {
    fn is_empty(&self) -> bool {
        self.started.is_empty() && self.waiting.is_empty()
    }

    /// Holders a non-exclusive Operation yields to (only exclusive ones), or all of them.
    fn ahead<'a>(&'a self, order: &'a Order, exclusive: bool) -> Box<dyn Iterator<Item = &'a Order> + 'a> {
        if exclusive {
            Box::new(
                self.started
                    .iter()
                    .chain(self.waiting.range(..order.clone()).map(|(o, _)| o))
                    .filter(move |o| *o != order),
            )
        } else {
            Box::new(
                self.started_exclusive
                    .iter()
                    .chain(self.waiting_exclusive.range(..order.clone()))
                    .filter(move |o| *o != order),
            )
        }
    }
}

/// What an Operation that has not started sees ahead of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// Conflicting Operations that hold the target or are ahead in its queue.
    pub ahead: usize,
    /// Their names, sorted; only when `ahead <= EXACT`.
    pub names: Vec<String>,
}

impl Place {
    /// The place the status shows: exact up to `EXACT`, then rounded down (a lower bound).
    pub fn shown(&self) -> Option<u32> {
        shown(self.ahead)
    }
}

fn shown(ahead: usize) -> Option<u32> {
    if ahead == 0 {
        return None;
    }
    if ahead <= EXACT {
        return Some(ahead as u32);
    }
    // 10, 20, 50, 100, 200, 500, …: the largest not above `ahead`.
    let mut decade = EXACT;
    let rounded = loop {
        if ahead < decade * 2 {
            break decade;
        }
        if ahead < decade * 5 {
            break decade * 2;
        }
        if ahead < decade * 10 {
            break decade * 5;
        }
        decade *= 10;
    };
    Some(u32::try_from(rounded).unwrap_or(u32::MAX))
}

/// Every target's queue, indexed by Operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Queues {
    slots: BTreeMap<OpKey, Slot>,
    targets: BTreeMap<TargetKey, TargetQueue>,
}

impl Queues {
    /// The index of a restored state (it is derived, so snapshots do not carry it).
    pub fn rebuild<'a>(ops: impl IntoIterator<Item = &'a OpState>) -> Queues {
        let mut q = Queues::default();
        for op in ops {
            q.set(&op.key, Slot::of(op));
        }
        q
    }

    /// Puts `key` where `slot` says. Returns the target whose queue changed, if one did in a
    /// way its waiting Operations read (a shown place alone changes nothing for them).
    pub fn set(&mut self, key: &OpKey, slot: Option<Slot>) -> Option<TargetKey> {
        let old = self.slots.get(key);
        if old == slot.as_ref() {
            return None;
        }
        let moved = match (old, &slot) {
            (Some(a), Some(b)) => {
                a.target != b.target || a.order != b.order || a.started != b.started || a.exclusive != b.exclusive
            }
            _ => true,
        };
        let changed = if moved {
            old.map(|s| s.target.clone()).or_else(|| slot.as_ref().map(|s| s.target.clone()))
        } else {
            None
        };
        if let Some(old) = self.slots.remove(key) {
            self.remove(&old);
        }
        if let Some(new) = slot {
            let q = self.targets.entry(new.target.clone()).or_default();
            if new.started {
                q.started.insert(new.order.clone());
                if new.exclusive {
                    q.started_exclusive.insert(new.order.clone());
                }
            } else {
                q.waiting.insert(new.order.clone(), (new.exclusive, new.shown));
                if new.exclusive {
                    q.waiting_exclusive.insert(new.order.clone());
                }
            }
            self.slots.insert(key.clone(), new);
        }
        changed
    }

    fn remove(&mut self, old: &Slot) {
        let Some(q) = self.targets.get_mut(&old.target) else { return };
        if old.started {
            q.started.remove(&old.order);
            q.started_exclusive.remove(&old.order);
        } else {
            q.waiting.remove(&old.order);
            q.waiting_exclusive.remove(&old.order);
        }
        if q.is_empty() {
            self.targets.remove(&old.target);
        }
    }

    /// What `me` (on `target`, at `order`, with its template's exclusivity) sees ahead of it:
    /// every conflicting holder that started, and every conflicting waiter before it.
    /// Conflicting: either of the two is exclusive.
    pub fn place(&self, target: &TargetKey, order: &Order, exclusive: bool) -> Place {
        let Some(q) = self.targets.get(target) else { return Place::default() };
        // Counted without walking the started holders: there may be thousands of non-exclusive ones.
        let (started, waiting_before) = if exclusive {
            (q.started.len() - usize::from(q.started.contains(order)), q.waiting.range(..order.clone()).count())
        } else {
            (
                q.started_exclusive.len() - usize::from(q.started_exclusive.contains(order)),
                q.waiting_exclusive.range(..order.clone()).count(),
            )
        };
        let ahead = started + waiting_before;
        let mut names = Vec::new();
        if ahead <= EXACT {
            names = q.ahead(order, exclusive).map(|o| o.1.clone()).collect();
            names.sort();
        }
        Place { ahead, names }
    }

    /// The waiting Operations on `target` to reconcile again after its queue changed: those
    /// whose shown place is now wrong, and those near the front (their names ahead may change).
    pub fn revisits(&self, target: &TargetKey) -> Vec<OpKey> {
        let Some(q) = self.targets.get(target) else { return Vec::new() };
        let mut out = Vec::new();
        let mut exclusive_before = 0;
        for (i, (order, (exclusive, shown_now))) in q.waiting.iter().enumerate() {
            let ahead = if *exclusive { q.started.len() + i } else { q.started_exclusive.len() + exclusive_before };
            if ahead <= EXACT || shown(ahead) != *shown_now {
                out.push(OpKey::new(target.0.clone(), order.1.clone()));
            }
            exclusive_before += usize::from(*exclusive);
        }
        out
    }

    /// The Operations the index holds.
    pub fn keys(&self) -> impl Iterator<Item = &OpKey> {
        self.slots.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(i: u64) -> Order {
        (DateTime::from_timestamp((i / 3) as i64, 0).unwrap(), format!("op-{i:03}"))
    }

    #[test]
    fn places_up_to_ten_are_exact_and_deeper_ones_round_down() {
        let cases = [(0, None), (1, Some(1)), (10, Some(10)), (11, Some(10)), (19, Some(10)), (20, Some(20))];
        let more = [(49, Some(20)), (50, Some(50)), (99, Some(50)), (100, Some(100)), (4_999, Some(2_000))];
        for (ahead, want) in cases.into_iter().chain(more) {
            assert_eq!(shown(ahead), want, "{ahead} ahead");
        }
    }

    /// The index against the rule it replaces: every holder that started or is earlier, when
    /// either side is exclusive, over a pseudo-random mix of started and exclusive holders.
    #[test]
    fn place_and_revisits_match_a_scan_of_every_holder() {
        let target: TargetKey = ("ns".into(), "shop".into());
        let mut q = Queues::default();
        let mut holders = Vec::new();
        let mut seed = 7u64;
        for i in 0..60 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let slot = Slot {
                target: target.clone(),
                order: order(i),
                started: seed >> 60 == 0,
                exclusive: !(seed >> 40).is_multiple_of(4),
                shown: None,
            };
            q.set(&OpKey::new("ns", slot.order.1.as_str()), Some(slot.clone()));
            holders.push(slot);
        }
        let mut revisit_expected = Vec::new();
        for me in &holders {
            for exclusive in [true, false] {
                let ahead: Vec<&Slot> = holders
                    .iter()
                    .filter(|h| h.order != me.order && (h.started || h.order < me.order) && (exclusive || h.exclusive))
                    .collect();
                let place = q.place(&target, &me.order, exclusive);
                assert_eq!(place.ahead, ahead.len(), "{} exclusive={exclusive}", me.order.1);
                if ahead.len() <= EXACT {
                    let mut names: Vec<String> = ahead.iter().map(|h| h.order.1.clone()).collect();
                    names.sort();
                    assert_eq!(place.names, names);
                }
                if !me.started && exclusive == me.exclusive {
                    revisit_expected.push(OpKey::new("ns", me.order.1.as_str()));
                }
            }
        }
        // Nothing is shown yet, so every waiting Operation with something ahead (or near the
        // front) is revisited.
        let revisits = q.revisits(&target);
        let mut want: Vec<OpKey> = revisit_expected
            .into_iter()
            .filter(|k| {
                let h = holders.iter().find(|h| h.order.1 == k.name).unwrap();
                let place = q.place(&target, &h.order, h.exclusive);
                place.ahead <= EXACT || place.shown().is_some()
            })
            .collect();
        want.sort_by_key(|k| holders.iter().find(|h| h.order.1 == k.name).map(|h| h.order.clone()));
        assert_eq!(revisits, want);
    }

    #[test]
    fn leaving_keeps_the_index_consistent() {
        let target: TargetKey = ("ns".into(), "shop".into());
        let mut q = Queues::default();
        let slot =
            |i: u64, started| Slot { target: target.clone(), order: order(i), started, exclusive: true, shown: None };
        for i in 0..5 {
            assert_eq!(q.set(&OpKey::new("ns", order(i).1.as_str()), Some(slot(i, i == 0))), Some(target.clone()));
        }
        assert_eq!(q.place(&target, &order(4), true).ahead, 4);
        // A shown place alone moves nobody else.
        let shown = Slot { shown: Some(4), ..slot(4, false) };
        assert_eq!(q.set(&OpKey::new("ns", "op-004"), Some(shown)), None);
        assert_eq!(q.set(&OpKey::new("ns", "op-000"), None), Some(target.clone()));
        assert_eq!(q.place(&target, &order(4), true).ahead, 3);
        for i in 1..5 {
            q.set(&OpKey::new("ns", order(i).1.as_str()), None);
        }
        assert_eq!(q, Queues::default(), "an empty target leaves nothing behind");
    }
}
