//! The projector: records, the commands they produced, and the folded state after them, in;
//! signals out. Deterministic, like the fold: it reads only what it is given.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{CommandSpan, Finished, OpInfo, Signal, Transition, Wait};
use crate::api::{ConditionStatus, ConditionType};
use crate::command::{Action, Command};
use crate::fold::State;
use crate::fold::op::{CreateState, OpState};
use crate::key::{OpIndex, OpKey, entry};
use crate::record::{Record, RecordBody, ResourceKind};

#[derive(Clone, Debug)]
struct Issued {
    seq: u64,
    at: DateTime<Utc>,
    action: &'static str,
    child: Option<(String, String, String)>,
}

/// Each contract condition's last `(status, reason)`, indexed by `ConditionType`.
type Seen = [Option<(ConditionStatus, Box<str>)>; ConditionType::ALL.len()];

#[derive(Clone, Debug, Default)]
pub struct Projector {
    /// Per Operation, each condition's last `(status, reason)`: held for every Operation the
    /// fold holds, so it is kept small (an array by condition type, not a map of strings).
    conditions: OpIndex<Seen>,
    issued: BTreeMap<String, Issued>,
    /// Children being waited on: (Operation, step) → since.
    waits: BTreeMap<(OpKey, u32), DateTime<Utc>>,
}

impl OpInfo {
    pub fn of(op: &OpState) -> Self {
        let spec = op.spec.as_ref();
        Self {
            namespace: op.key.namespace.clone(),
            name: op.key.name.clone(),
            uid: op.uid.clone(),
            ty: spec.map(|s| s.type_.as_str().to_string()).unwrap_or_default(),
            engine: op
                .kind
                .map(|k| k.display().to_string())
                .or_else(|| spec.and_then(|s| s.engine).map(|e| e.as_str().to_string()))
                .unwrap_or_default(),
            target: spec.map(|s| s.target.name.clone()).unwrap_or_default(),
            requested_by: op.requested_by.clone().unwrap_or_default(),
        }
    }
}

impl Projector {
    /// A projector that knows the conditions and waits of a restored state (nothing in them
    /// is news), and no commands in flight (a Restart record re-derives those).
    pub fn seeded(state: &State) -> Self {
        let mut p = Self::default();
        for (key, op) in &state.ops {
            let mut seen = Seen::default();
            for (ty, c) in op.conditions.map.iter() {
                seen[ty as usize] = Some((c.status, c.reason.as_str().into()));
            }
            p.conditions.insert(key.clone(), seen);
        }
        p
    }

    /// The Operations a record concerns: its own, its command's, or its child's owner; sorted.
    pub(crate) fn touched(state: &State, rec: &Record, cmds: &[Command]) -> Vec<OpKey> {
        let mut keys: Vec<OpKey> = cmds.iter().map(|c| c.op.clone()).collect();
        match &rec.body {
            RecordBody::Outcome(o) => keys.push(o.op.clone()),
            RecordBody::Timer(t) => keys.push(t.op.clone()),
            RecordBody::Observed(o) => {
                if let Some(obj) = o.object.as_ref() {
                    match o.resource {
                        ResourceKind::Operation => {
                            if let Some(k) = crate::key::ObjKey::of(obj) {
                                keys.push(OpKey::new(k.namespace, k.name));
                            }
                        }
                        ResourceKind::Child(_) => {
                            if let Some(k) = crate::fold::owner_of(state, obj) {
                                keys.push(k);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// The signals one folded record gives, in a stable order (by Operation, then kind).
    pub fn step(&mut self, state: &State, rec: &Record, cmds: &[Command]) -> Vec<Signal> {
        let mut out = Vec::new();
        if let RecordBody::Restart = rec.body {
            // Nothing sent before is known to have run: re-issued commands start again.
            self.issued.clear();
        }
        if let RecordBody::Outcome(o) = &rec.body
            && let Some(i) = self.issued.remove(&o.command_id)
            && let Some(op) = state.ops.get(&o.op)
        {
            out.push(Signal::Command(CommandSpan {
                op: OpInfo::of(op),
                id: o.command_id.clone(),
                action: i.action.to_string(),
                issued_seq: i.seq,
                issued_at: i.at,
                seq: rec.seq,
                at: rec.at,
                result: format!("{:?}", o.result),
                message: o.message.clone(),
                child: i.child,
            }));
        }
        for c in cmds.iter().filter(|c| c.action.has_outcome()) {
            let child = match &c.action {
                Action::CreateChild { kind, namespace, name, .. }
                | Action::DeleteChild { kind, namespace, name }
                | Action::PatchChild { kind, namespace, name, .. } => {
                    Some((kind.kind().to_string(), namespace.clone(), name.clone()))
                }
                _ => None,
            };
            self.issued.insert(c.id.clone(), Issued { seq: rec.seq, at: rec.at, action: c.action.name(), child });
        }
        for key in Self::touched(state, rec, cmds) {
            let Some(op) = state.ops.get(&key) else {
                self.forget(&key);
                continue;
            };
            self.transitions(op, rec, &mut out);
            self.waits(op, rec, &mut out);
        }
        out
    }

    fn forget(&mut self, key: &OpKey) {
        self.conditions.remove(key);
        self.waits.retain(|(k, _), _| k != key);
    }

    fn transitions(&mut self, op: &OpState, rec: &Record, out: &mut Vec<Signal>) {
        let seen = entry(&mut self.conditions, &op.key, Seen::default);
        let mut info = None;
        for (ty, c) in op.conditions.map.iter() {
            let slot = &mut seen[ty as usize];
            if slot.as_ref().is_some_and(|(s, r)| *s == c.status && **r == *c.reason) {
                continue;
            }
            let before = slot.replace((c.status, c.reason.as_str().into()));
            let terminal = c.type_ == ConditionType::Succeeded.as_str() && c.status != ConditionStatus::Unknown;
            let info = info.get_or_insert_with(|| OpInfo::of(op)).clone();
            out.push(Signal::Transition(Transition {
                op: info.clone(),
                seq: rec.seq,
                at: rec.at,
                ty: c.type_.clone(),
                from: before.map(|(s, r)| format!("{}/{r}", s.as_str())),
                status: c.status.as_str().to_string(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                phase: op.conditions.phase().as_str().to_string(),
                terminal,
            }));
            if terminal {
                out.push(Signal::Finished(Finished {
                    op: info,
                    seq: rec.seq,
                    created: op.created,
                    completed: op.completed.unwrap_or(rec.at),
                    succeeded: c.status == ConditionStatus::True,
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                }));
            }
        }
    }

    fn waits(&mut self, op: &OpState, rec: &Record, out: &mut Vec<Signal>) {
        let ended = op.is_terminal();
        for s in &op.steps {
            let k = (op.key.clone(), s.step);
            let waiting = s.create == CreateState::Created && !s.done && !ended;
            match (self.waits.get(&k).copied(), waiting) {
                (None, true) => {
                    self.waits.insert(k, rec.at);
                }
                (Some(start), false) => {
                    self.waits.remove(&k);
                    let engine = op.engine.as_ref();
                    out.push(Signal::Wait(Wait {
                        op: OpInfo::of(op),
                        step: s.step,
                        kind: s.kind.kind().to_string(),
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                        start,
                        end: rec.at,
                        seq: rec.seq,
                        phase: engine.and_then(|e| e.phase.clone()),
                        progress: engine
                            .and_then(|e| e.progress.as_ref())
                            .map(|p| format!("{}/{}", p.completed, p.total)),
                        done: s.done,
                    }));
                }
                _ => {}
            }
        }
    }
}
