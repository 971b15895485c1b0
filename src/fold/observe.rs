//! Folding watch events: Operations become state machines, everything else goes to the world.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::last_status::LastStatus;
use super::listed::Listed;
use super::op::{OpState, RollbackState, UpgradeState};
use super::world::Change;
use super::{State, Touched, ops_on_target, owner_of};
use crate::api::{FINALIZER, OperationSpec, OperationStatus};
use crate::key::{ObjKey, OpKey};
use crate::record::{ResourceKind, WatchEvent};

/// Folds one watch event; the object is moved into the world when the caller gave it away.
pub(crate) fn observed(
    state: &mut State,
    resource: ResourceKind,
    event: WatchEvent,
    obj: Option<Cow<'_, Value>>,
    at: DateTime<Utc>,
    touched: &mut Touched,
) {
    let key = obj.as_deref().and_then(ObjKey::of);
    match (event, obj, key) {
        (WatchEvent::Init, _, _) => state.world.relist_begin(resource),
        (WatchEvent::InitApply, Some(obj), Some(key)) => state.world.relist_item(resource, key, &obj),
        (WatchEvent::InitDone, _, _) => {
            let was_synced = super::synced(&state.world);
            let (changes, ops) = state.world.relist_end(resource);
            if resource == ResourceKind::Operation {
                relist_ops(state, ops, at, touched);
            }
            for c in changes {
                route_change(state, &c, touched);
            }
            if !was_synced && super::synced(&state.world) {
                touched.all = true;
            }
        }
        (WatchEvent::Apply, Some(obj), Some(key)) => {
            if resource == ResourceKind::Operation {
                apply_op(state, &obj, at, touched);
            } else {
                route(state, resource, &key, Some(&obj), touched);
                state.world.apply(resource, key, obj.into_owned());
            }
        }
        (WatchEvent::Delete, Some(obj), Some(key)) => {
            if resource == ResourceKind::Operation {
                delete_op(state, &OpKey::new(key.namespace, key.name), touched);
            } else {
                state.world.delete(resource, &key);
                route(state, resource, &key, Some(&obj), touched);
            }
        }
        // An event without an object, or an object without a name: nothing to fold.
        _ => {}
    }
}

/// Which Operations a change to the world concerns.
fn route_change(state: &State, change: &Change, touched: &mut Touched) {
    match change {
        Change::Applied(k, key, o) => route(state, *k, key, Some(o), touched),
        Change::Deleted(k, key, o) => route(state, *k, key, o.as_ref(), touched),
    }
}

fn route(state: &State, kind: ResourceKind, key: &ObjKey, obj: Option<&Value>, touched: &mut Touched) {
    match kind {
        ResourceKind::ApplicationInstance => touched.ops.extend(ops_on_target(state, key)),
        ResourceKind::OperationTemplate | ResourceKind::Secret => touched.all_unstarted = true,
        ResourceKind::Child(_) => {
            if let Some(op) = obj.and_then(|o| owner_of(state, o)) {
                touched.ops.insert(op);
            }
        }
        ResourceKind::Operation => {}
    }
}

fn relist_ops(
    state: &mut State,
    fresh: std::collections::BTreeMap<ObjKey, Listed>,
    at: DateTime<Utc>,
    touched: &mut Touched,
) {
    // The first relist of a new process: an Operation whose status is not what this journal last
    // wrote was moved on by another shard meanwhile (a shard count that went down and up again):
    // the cluster is the truth, so it is adopted afresh instead of resumed from a stale step.
    if std::mem::take(&mut state.first_relist) {
        let moved: Vec<OpKey> = fresh
            .iter()
            .filter_map(|(k, listed)| {
                let key = OpKey::new(k.namespace.clone(), k.name.clone());
                let op = state.ops.get(&key)?;
                let obj = listed.value();
                let status = obj.get("status").and_then(|s| OperationStatus::deserialize(s).ok());
                let same_uid = crate::json::at(&obj, "/metadata/uid").and_then(Value::as_str) == Some(op.uid.as_str());
                let same = |mut s: OperationStatus| op.last_status.as_ref().is_some_and(|last| last.same(&mut s));
                (same_uid && status.is_some_and(|s| !same(s))).then_some(key)
            })
            .collect();
        for k in moved {
            delete_op(state, &k, touched);
        }
    }
    let gone: Vec<OpKey> = state
        .ops
        .keys()
        .filter(|k| !fresh.contains_key(&ObjKey::new(k.namespace.clone(), k.name.clone())))
        .cloned()
        .collect();
    for k in gone {
        delete_op(state, &k, touched);
    }
    // Parsed one at a time: only the text of the whole list is held at once.
    for listed in fresh.values() {
        apply_op(state, &listed.value(), at, touched);
    }
}

fn delete_op(state: &mut State, key: &OpKey, touched: &mut Touched) {
    if let Some(op) = state.ops.remove(key) {
        // Its place in the queue goes with the next reconcile, which revisits those behind it.
        touched.ops.insert(key.clone());
        state.admission.release(key);
        state.by_uid.remove(&op.uid);
        if let Some(t) = op.target_name() {
            let tkey = (key.namespace.clone(), t.to_string());
            if let Some(set) = state.by_target.get_mut(&tkey) {
                set.remove(key);
                if set.is_empty() {
                    state.by_target.remove(&tkey);
                }
            }
        }
    }
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// What the fold reads of an Operation watch event once it knows the Operation: a replay can
/// probe these from the journal body without building the object (`journal_codec::op_meta`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpMeta {
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
    /// Whether `metadata.finalizers` holds ours.
    pub finalizer: bool,
    /// `spec.cancel`: absent is false; None when it is not a boolean (the spec would not parse).
    pub cancel: Option<bool>,
}

impl OpMeta {
    pub fn of(obj: &Value) -> Self {
        let meta = &obj["metadata"];
        Self {
            uid: meta.get("uid").and_then(Value::as_str).unwrap_or_default().to_string(),
            generation: meta.get("generation").and_then(Value::as_i64).unwrap_or(1),
            deleting: meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()),
            finalizer: meta
                .get("finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|v| v.as_str() == Some(FINALIZER))),
            cancel: match crate::json::at(obj, "/spec/cancel") {
                None => Some(false),
                Some(v) => v.as_bool(),
            },
        }
    }
}

/// Whether an Operation event is the echo of the operator's own status or finalizer write:
/// nothing the fold reads changed, so it touches nothing (a quarter of all records).
pub fn is_echo(state: &State, key: &OpKey, m: &OpMeta) -> bool {
    state.ops.get(key).is_some_and(|op| {
        op.uid == m.uid
            && op.generation == m.generation
            && op.deleting == m.deleting
            && op.has_finalizer == (m.finalizer || (op.has_finalizer && !m.deleting))
            && m.cancel.is_none_or(|c| op.spec.as_ref().is_none_or(|s| s.cancel == c))
    })
}

fn apply_op(state: &mut State, obj: &Value, at: DateTime<Utc>, touched: &mut Touched) {
    let Some(key) = ObjKey::of(obj).map(|k| OpKey::new(k.namespace, k.name)) else { return };
    let m = OpMeta::of(obj);
    if m.uid.is_empty() || is_echo(state, &key, &m) {
        return;
    }
    // Same name, new UID: the old Operation is gone and this is a new one.
    if state.ops.get(&key).is_some_and(|o| o.uid != m.uid) {
        delete_op(state, &key, touched);
    }
    let meta = &obj["metadata"];
    let OpMeta { uid, generation, deleting, finalizer, cancel } = m;
    if let Some(op) = state.ops.get_mut(&key) {
        // Only `cancel` may change after creation; a changed spec otherwise is ignored (CEL forbids it).
        op.generation = generation;
        op.has_finalizer = finalizer || (op.has_finalizer && !deleting);
        op.deleting = deleting;
        if let (Some(spec), Some(c)) = (op.spec.as_mut(), cancel) {
            spec.cancel = c;
        }
        state.admission.update(&key, op);
        touched.ops.insert(key.clone());
        super::reindex(state, &key);
        return;
    }
    let parsed = obj.get("spec").map(OperationSpec::deserialize);
    let op = state.ops.get_or_insert_with(key.clone(), || {
        let created = parse_time(meta.get("creationTimestamp")).unwrap_or(at);
        let mut op = OpState::new(key.clone(), uid.clone(), created);
        op.requested_by = requested_by(meta);
        match &parsed {
            Some(Ok(spec)) => op.spec = Some(spec.clone()),
            Some(Err(e)) => op.spec_error = Some(format!("spec does not parse: {e}")),
            None => op.spec_error = Some("spec is missing".into()),
        }
        if let Some(status) = obj.get("status").and_then(|s| OperationStatus::deserialize(s).ok()) {
            adopt(&mut op, status);
        }
        Box::new(op)
    });
    op.generation = generation;
    op.deleting = deleting;
    op.has_finalizer = finalizer;
    state.admission.update(&key, op);
    state.by_uid.insert(uid, key.clone());
    touched.ops.insert(key.clone());
    super::reindex(state, &key);
}

fn requested_by(meta: &Value) -> Option<String> {
    let annotated = meta.get("annotations").and_then(|a| a.get(crate::api::ANNOTATION_REQUESTED_BY));
    annotated.or_else(|| crate::json::at(meta, "/managedFields/0/manager")).and_then(Value::as_str).map(str::to_string)
}

/// Takes over what the cluster already shows, after a lost journal: the cluster is the truth.
fn adopt(op: &mut OpState, status: OperationStatus) {
    if status.conditions.is_empty() {
        return;
    }
    op.conditions.adopt(&status.conditions);
    op.started = status.start_time;
    op.completed = status.completion_time;
    op.outputs = status.outputs.clone();
    op.engine = status.engine.clone();
    op.plan = status.plan.clone();
    op.queue_position = status.queue_position;
    if let (Some(prev), Some(ver)) = (status.outputs.get("previousVersion"), status.outputs.get("version")) {
        op.upgrade = Some(UpgradeState {
            previous: prev.clone(),
            version: ver.clone(),
            generation: status.outputs.get("targetGeneration").and_then(|g| g.parse().ok()),
            rollback: RollbackState::None,
        });
    }
    op.last_status = Some(LastStatus::new(status, op.is_terminal()));
}
