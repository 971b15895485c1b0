//! PURE. `step(state, record) -> commands`: the one place where the operator decides anything.
//! No clock (time is `record.at`), no I/O, no randomness, no unordered-map iteration.

pub mod admission;
pub mod child;
pub mod conditions;
pub mod frozen;
pub mod last_status;
pub mod listed;
pub mod observe;
pub mod op;
pub mod op_map;
pub mod outcome;
pub mod pairs;
pub mod preconditions;
pub mod queue;
pub mod reconcile;
pub mod secret_refs;
pub mod template;
pub mod validate;
pub mod world;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::key::{ObjKey, OpKey};
use crate::record::{OutcomeResult, Record, RecordBody, ResourceKind};
use admission::Admission;
use op::OpState;
use op_map::OpMap;
use queue::{Queues, Slot};
use reconcile::Env;
use world::World;

/// Everything folded so far: the observed world and one state machine per Operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Restored")]
pub struct State {
    pub world: World,
    /// Boxed: an `OpState` is 1.3 KB inline. Looked up by hash, walked in key order.
    pub ops: OpMap,
    /// Operation UID → key, to route child events by their UID label.
    pub by_uid: BTreeMap<String, OpKey>,
    /// Non-terminal Operations by (namespace, target): the per-target queues.
    #[serde(with = "pairs")]
    pub by_target: BTreeMap<(String, String), BTreeSet<OpKey>>,
    /// Highest `seq` folded; older records (already in a snapshot) are skipped.
    pub last_seq: u64,
    /// The shard the journal belongs to (from the latest Started record).
    #[serde(default)]
    pub shard: crate::shard::Shard,
    /// Set by a Started record until the process's first Operation relist ends.
    #[serde(default)]
    pub first_relist: bool,
    /// The per-target queues in queue order; derived from `ops`, so snapshots leave it out.
    #[serde(skip)]
    pub queues: Queues,
    /// The cap on Operations run at once (from the latest Started record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u32>,
    /// Who runs and who waits under that cap; derived from `ops`.
    #[serde(skip)]
    pub admission: Admission,
}

/// A snapshot's `State`; the queue index is rebuilt from its Operations. Generic in its two
/// large parts, so `from_snapshot` can read them as raw JSON first.
#[derive(Deserialize)]
struct Restored<W = World, O = Ops> {
    world: W,
    ops: O,
    by_uid: BTreeMap<String, OpKey>,
    #[serde(with = "pairs")]
    by_target: BTreeMap<(String, String), BTreeSet<OpKey>>,
    last_seq: u64,
    #[serde(default)]
    shard: crate::shard::Shard,
    #[serde(default)]
    first_relist: bool,
    #[serde(default)]
    max_active: Option<u32>,
}

/// The Operations as a snapshot holds them: `[key, state]` pairs.
#[derive(Deserialize)]
struct Ops(OpMap);

impl From<Restored> for State {
    fn from(r: Restored) -> State {
        let Ops(mut ops) = r.ops;
        let queues = Queues::rebuild(ops.values());
        let admission = Admission::rebuild(r.max_active.map(|n| n as usize), ops.iter());
        let mut world = r.world;
        // Children are read back as text; those of running Operations become trees again.
        // Ended Operations' statuses become digests (snapshots before digests held them whole).
        ops.for_each_mut(|op| {
            if !op.is_terminal() {
                keep_children(&mut world, op);
            } else if let Some(last) = op.last_status.as_mut() {
                last.settle();
            }
        });
        State {
            world,
            ops,
            by_uid: r.by_uid,
            by_target: r.by_target,
            last_seq: r.last_seq,
            shard: r.shard,
            first_relist: r.first_relist,
            queues,
            max_active: r.max_active,
            admission,
        }
    }
}

impl State {
    /// Decodes a snapshot with the world and the Operations on two threads: they are nearly all
    /// of it, and a restart waits for this (1.75 s of a 2.9 s restore at 42,000 Operations).
    /// The result is exactly what `serde_json::from_slice` gives.
    pub fn from_snapshot(bytes: &[u8]) -> serde_json::Result<State> {
        type Raw<'a> = &'a serde_json::value::RawValue;
        let parts: Restored<Raw<'_>, Raw<'_>> = serde_json::from_slice(bytes)?;
        let (world, ops) = std::thread::scope(|s| {
            let world = s.spawn(|| serde_json::from_str::<World>(parts.world.get()));
            let ops = serde_json::from_str::<Ops>(parts.ops.get());
            // A panic in serde is a bug; let it surface as one rather than as a bad snapshot.
            (world.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), ops)
        });
        Ok(State::from(Restored {
            world: world?,
            ops: ops?,
            by_uid: parts.by_uid,
            by_target: parts.by_target,
            last_seq: parts.last_seq,
            shard: parts.shard,
            first_relist: parts.first_relist,
            max_active: parts.max_active,
        }))
    }

    /// Every watched kind has finished its first list: the fold acts on what it sees.
    pub fn synced(&self) -> bool {
        synced(&self.world)
    }
}

/// Which Operations a record may change.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub ops: BTreeSet<OpKey>,
    /// Every active Operation still being accepted (templates, secrets, discovery).
    pub all_unstarted: bool,
    /// Every Operation (the last relist finished: time to act).
    pub all: bool,
}

/// Folds one record. Deterministic and idempotent: the same records give the same commands.
pub fn step(state: &mut State, record: &Record) -> Vec<Command> {
    step_body(state, record.seq, record.at, Cow::Borrowed(&record.body))
}

/// `step`, taking the record: an observed object moves into the world instead of being copied.
pub fn step_owned(state: &mut State, record: Record) -> Vec<Command> {
    step_body(state, record.seq, record.at, Cow::Owned(record.body))
}

fn step_body(state: &mut State, seq: u64, at: DateTime<Utc>, body: Cow<'_, RecordBody>) -> Vec<Command> {
    if folded(state, seq) {
        return Vec::new();
    }
    state.last_seq = state.last_seq.max(seq);
    let mut out = Vec::new();
    let mut touched = Touched::default();
    let body = match body {
        Cow::Owned(RecordBody::Observed(o)) => {
            observe::observed(state, o.resource, o.event, o.object.map(Cow::Owned), at, &mut touched);
            None
        }
        Cow::Borrowed(RecordBody::Observed(o)) => {
            observe::observed(state, o.resource, o.event, o.object.as_ref().map(Cow::Borrowed), at, &mut touched);
            None
        }
        other => Some(other),
    };
    match body.as_deref() {
        None | Some(RecordBody::Observed(_)) => {}
        Some(RecordBody::Discovery(d)) => {
            state.world.discovery(d);
            state.world.watch(&d.watched);
            touched.all_unstarted = true;
        }
        Some(RecordBody::Started(s)) => {
            // Act only on what the new process relists: absence means nothing until then, and
            // the relist drops what another shard now owns.
            state.world.restart_sync();
            state.shard = s.shard;
            state.first_relist = true;
            state.max_active = s.max_active;
            let cap = s.max_active.map(|n| n as usize);
            state.admission = Admission::rebuild(cap, state.ops.iter());
        }
        Some(RecordBody::Restart) => {
            state.ops.for_each_mut(|op| {
                op.forget_in_flight();
                op.resend_events(&mut out);
            });
            touched.all = true;
        }
        Some(RecordBody::Timer(t)) => {
            if let Some(op) = state.ops.get_mut(&t.op) {
                op.fired(t.timer);
                touched.ops.insert(t.op.clone());
            }
        }
        Some(RecordBody::Outcome(o)) => {
            if let Some(op) = state.ops.get_mut(&o.op) {
                let was_terminal = op.is_terminal();
                if outcome::apply(op, o, at, &mut out) {
                    touched.ops.insert(o.op.clone());
                }
                // An outcome can end it (a refused create): settled as a reconcile would, or a
                // snapshot would read back another state (found by random inputs).
                refile(state, &o.op, was_terminal);
            }
        }
    }
    reconcile_touched(state, touched, at, &mut out);
    out
}

/// What reconciling every Operation once more at `now` would send. The fold skips records
/// that change nothing an Operation reads (echoes of its own writes, answered Events), which
/// is sound only if each reconcile leaves nothing undone: this is empty after every record.
pub fn unsettled(state: &State, now: chrono::DateTime<chrono::Utc>) -> Vec<Command> {
    let mut again = state.clone();
    let mut out = Vec::new();
    reconcile_touched(&mut again, Touched { all: true, ..Default::default() }, now, &mut out);
    out
}

/// Folds an Operation watch event known only by what `OpMeta` holds, when that is enough: true
/// when the record is already folded or is an echo (`step` would change nothing but `last_seq`).
/// Replay and restart use it to skip decoding those records whole.
pub fn skip_echo(state: &mut State, seq: u64, key: &OpKey, meta: &observe::OpMeta) -> bool {
    if folded(state, seq) {
        return true;
    }
    if !observe::is_echo(state, key, meta) {
        return false;
    }
    state.last_seq = state.last_seq.max(seq);
    true
}

/// Folds an outcome known only by its command ID and result, when that is enough: true when the
/// record is already folded or answers a command whose outcome changes nothing the Operation
/// reads (`outcome::inert`: an Event, a status written). `step` would only drop the command
/// from the Operation's books then: reconciling nobody admits nobody either, since every step
/// of a synced fold ends with the admission cap's slots filled. Replay uses it to skip decoding
/// half of all records whole.
pub fn skip_answered(state: &mut State, seq: u64, key: &OpKey, command_id: &str, result: &OutcomeResult) -> bool {
    if folded(state, seq) {
        return true;
    }
    let Some(op) = state.ops.get_mut(key) else { return false };
    if !op.pending.get(command_id).is_some_and(|p| outcome::inert(p, result)) {
        return false;
    }
    op.answered(command_id);
    state.last_seq = state.last_seq.max(seq);
    true
}

/// Whether a record was folded already (a snapshot or an earlier pass covers it); seq 0 never is.
fn folded(state: &State, seq: u64) -> bool {
    seq != 0 && seq <= state.last_seq
}

/// Whether every watched kind has finished its first list: before that, absence means nothing.
fn synced(world: &World) -> bool {
    ResourceKind::ALL.iter().all(|k| world.is_synced(*k))
}

/// An Operation's children are kept as text once it has ended, as trees while it runs
/// (`child::Child`).
/// Its last status likewise becomes a digest (`last_status`).
fn keep_children(world: &mut World, op: &mut OpState) {
    if op.is_terminal()
        && !world.replay
        && let Some(last) = op.last_status.as_mut()
    {
        last.settle();
    }
    for s in &op.steps {
        world.keep_child(s.kind, &s.namespace, &s.name, op.is_terminal());
    }
}

/// Puts an Operation where it now stands in its target's queue; the waiting Operations whose
/// shown place that changes go into `next`.
fn requeue(state: &mut State, key: &OpKey, next: &mut BTreeSet<OpKey>) {
    if let Some(t) = state.queues.set(key, state.ops.get(key).and_then(Slot::of)) {
        next.extend(state.queues.revisits(&t));
    }
}

fn reindex(state: &mut State, key: &OpKey) {
    let Some(op) = state.ops.get(key) else { return };
    let Some(target) = op.target_name() else { return };
    let tkey = (key.namespace.clone(), target.to_string());
    if op.is_terminal() {
        if let Some(set) = state.by_target.get_mut(&tkey) {
            set.remove(key);
            if set.is_empty() {
                state.by_target.remove(&tkey);
            }
        }
    } else {
        state.by_target.entry(tkey).or_default().insert(key.clone());
    }
}

fn reconcile_touched(state: &mut State, touched: Touched, now: chrono::DateTime<chrono::Utc>, out: &mut Vec<Command>) {
    let mut todo: BTreeSet<OpKey> = touched.ops;
    if touched.all {
        todo.extend(state.ops.keys().cloned());
        todo.extend(state.queues.keys().cloned());
    } else if touched.all_unstarted {
        todo.extend(
            state
                .by_target
                .values()
                .flatten()
                // Whoever still runs acceptance (`reconcile::advance`): one adopted mid-flight
                // has started but resolves its template anew (found by fuzzing, tests/fuzz/).
                .filter(|k| state.ops.get(k).is_some_and(|o| o.started.is_none() || o.template.is_none()))
                .cloned(),
        );
    }
    // The index first sees what the record changed (a deletion, a cancel), before anyone reads it.
    let mut next = BTreeSet::new();
    for key in &todo {
        requeue(state, key, &mut next);
    }
    if !synced(&state.world) {
        return;
    }
    todo.extend(next);
    // Those over the cap wait (`admission`); each slot an ending frees admits the oldest waiting
    // one, in this same record, so no later record is needed to start it.
    let mut todo = gated(state, todo);
    todo.extend(state.admission.fill());
    while !todo.is_empty() {
        reconcile_rounds(state, todo, now, out);
        todo = state.admission.fill().into_iter().collect();
    }
}

/// Keeps those the admission cap lets run now; the rest wait their turn.
fn gated(state: &State, todo: BTreeSet<OpKey>) -> BTreeSet<OpKey> {
    if state.admission.cap().is_none() {
        return todo;
    }
    todo.into_iter().filter(|k| state.ops.get(k).is_none_or(|op| state.admission.gate(k, op))).collect()
}

/// A started, finished or withdrawn Operation moves its target's queue: revisit the waiting
/// Operations whose place shows differently, a bounded number of rounds.
fn reconcile_rounds(state: &mut State, mut todo: BTreeSet<OpKey>, now: DateTime<Utc>, out: &mut Vec<Command>) {
    for _round in 0..4 {
        todo = gated(state, todo);
        if todo.is_empty() {
            break;
        }
        let mut next = BTreeSet::new();
        for key in std::mem::take(&mut todo) {
            // Borrowed in place beside the world and the queues: no move out of the map and back.
            let Some(op) = state.ops.get_mut(&key) else { continue };
            let env = Env { world: &state.world, now, queues: &state.queues };
            let was_terminal = op.is_terminal();
            reconcile::reconcile(op, &env, out);
            refile(state, &key, was_terminal);
            requeue(state, &key, &mut next);
        }
        todo = next;
    }
}

/// After anything that may have changed an Operation: where it stands for admission and, if it
/// just ended, its children kept as text, its last status as a digest, its target index.
fn refile(state: &mut State, key: &OpKey, was_terminal: bool) {
    let Some(op) = state.ops.get_mut(key) else { return };
    state.admission.update(key, op);
    if was_terminal != op.is_terminal() {
        keep_children(&mut state.world, op);
        reindex(state, key);
    }
}

/// Routes a child to its Operation by the UID label.
pub(crate) fn owner_of(state: &State, child: &serde_json::Value) -> Option<OpKey> {
    let uid = crate::json::at(child, "/metadata/labels")?.get(crate::api::LABEL_OPERATION_UID)?.as_str()?;
    state.by_uid.get(uid).cloned()
}

/// Operations whose target is `app`.
pub(crate) fn ops_on_target(state: &State, app: &ObjKey) -> Vec<OpKey> {
    state
        .by_target
        .get(&(app.namespace.clone(), app.name.clone()))
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}
