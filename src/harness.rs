//! An in-memory model of the cluster that answers the fold's commands, for tests and property
//! checks (sans-IO style: the caller drives a simulated clock until nothing is left to do).
//! It is not an engine simulator: those run against the real API server (`src/sim/`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use crate::api::{ANNOTATION_COMMAND_ID, FINALIZER, LABEL_OPERATION_UID};
use crate::command::{Action, Command, HelmHook};
use crate::fold::{self, State};
use crate::key::{ObjKey, OpKey};
use crate::record::{
    ChildKind, Discovery, Observed, Outcome, OutcomeData, OutcomeResult, Record, RecordBody, ResourceKind, TimerFired,
    TimerKind, WatchEvent,
};

/// A fixed epoch so every run of a test sees the same times.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

#[derive(Default)]
pub struct Harness {
    pub state: State,
    pub now: DateTime<Utc>,
    pub seq: u64,
    /// Every record folded, in order: replaying it must give the same commands.
    pub journal: Vec<Record>,
    /// Every command the fold emitted, in order.
    pub commands: Vec<Command>,
    pub objects: BTreeMap<(ResourceKind, ObjKey), Value>,
    timers: BTreeSet<(DateTime<Utc>, OpKey, TimerKind)>,
    queue: VecDeque<RecordBody>,
    /// Hooks the model returns for LoadHelmHooks, by release.
    pub helm_hooks: BTreeMap<String, Vec<HelmHook>>,
    /// Results to force on the next command of an action name (e.g. "CreateChild").
    pub fail_next: BTreeMap<&'static str, (OutcomeResult, String)>,
    /// When false, children are created but no watch event is delivered (stale cache).
    pub deliver_child_events: bool,
    /// When false, status patches are not echoed back as watch events.
    pub echo_status: bool,
    /// When true, a created child's watch event arrives before the create's outcome (a race the
    /// runtime sees whenever the watch is quicker than the HTTP response).
    pub child_event_first: bool,
    /// Check after every record that reconciling again would send nothing (`fold::unsettled`).
    pub check_settled: bool,
}

impl Harness {
    pub fn new() -> Self {
        Self { now: epoch(), deliver_child_events: true, echo_status: true, ..Default::default() }
    }

    /// Folds one record, redacted first as the runtime does.
    pub fn record(&mut self, mut body: RecordBody) -> Vec<Command> {
        body.redact();
        self.seq += 1;
        let rec = Record { seq: self.seq, at: self.now, body };
        let cmds = fold::step(&mut self.state, &rec);
        if self.check_settled {
            let again = fold::unsettled(&self.state, rec.at);
            assert!(again.is_empty(), "after seq {} the fold is not settled: it would send {again:?}", rec.seq);
        }
        self.journal.push(rec);
        self.commands.extend(cmds.iter().cloned());
        cmds
    }

    fn observe(&mut self, resource: ResourceKind, event: WatchEvent, object: Option<Value>) -> Vec<Command> {
        self.record(RecordBody::Observed(Observed { resource, event, object }))
    }

    /// Applies an object as a watch Apply event and runs everything that follows.
    pub fn apply(&mut self, resource: ResourceKind, mut obj: Value) {
        let key = ObjKey::of(&obj).unwrap_or_else(|| ObjKey::new("", ""));
        let old = self.objects.get(&(resource, key.clone())).cloned();
        let meta = &mut obj["metadata"];
        if meta.get("uid").is_none() {
            meta["uid"] = json!(
                old.as_ref()
                    .and_then(|o| o.pointer("/metadata/uid").cloned())
                    .unwrap_or_else(|| json!(format!("uid-{}", key.name)))
            );
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = old
                .as_ref()
                .and_then(|o| o.pointer("/metadata/creationTimestamp").cloned())
                .unwrap_or_else(|| json!(self.now.to_rfc3339()));
        }
        let generation =
            old.as_ref().and_then(|o| o.pointer("/metadata/generation")).and_then(Value::as_i64).unwrap_or(0);
        let spec_changed = old.as_ref().map(|o| o.get("spec") != obj.get("spec")).unwrap_or(true);
        obj["metadata"]["generation"] = json!(if spec_changed { generation + 1 } else { generation.max(1) });
        self.objects.insert((resource, key), obj.clone());
        let cmds = self.observe(resource, WatchEvent::Apply, Some(obj));
        self.run(cmds);
        self.settle();
    }

    pub fn delete(&mut self, resource: ResourceKind, key: &ObjKey) {
        if let Some(obj) = self.objects.remove(&(resource, key.clone())) {
            let cmds = self.observe(resource, WatchEvent::Delete, Some(obj));
            self.run(cmds);
            self.settle();
        }
    }

    pub fn get(&self, resource: ResourceKind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(resource, ObjKey::new(ns, name)))
    }

    /// The operator restarts: commands in flight when it stopped are lost, not answered.
    pub fn restart_losing_in_flight(&mut self) {
        self.queue.clear();
        let cmds = self.record(RecordBody::Restart);
        self.run(cmds);
        self.settle();
    }

    /// Re-delivers a past watch record (a duplicate) under a new seq.
    pub fn redeliver(&mut self, index: usize) {
        let Some(body) = self.journal.get(index).map(|r| r.body.clone()) else { return };
        if matches!(body, RecordBody::Observed(_)) {
            let cmds = self.record(body);
            self.run(cmds);
            self.settle();
        }
    }

    /// Changes a child's status in the cluster without a watch event (a missed update).
    pub fn set_child_status_quietly(&mut self, kind: ChildKind, ns: &str, name: &str, status: Value) {
        if let Some(obj) = self.objects.get_mut(&(ResourceKind::Child(kind), ObjKey::new(ns, name))) {
            obj["status"] = status;
        }
    }

    /// Merges `status` into a child (as its controller would) and delivers the watch event.
    pub fn set_child_status(&mut self, kind: ChildKind, ns: &str, name: &str, status: Value) {
        let Some(mut obj) = self.get(ResourceKind::Child(kind), ns, name).cloned() else { return };
        obj["status"] = status;
        self.apply(ResourceKind::Child(kind), obj);
    }

    pub fn discovery(&mut self, installed: &[ChildKind]) {
        let cmds = self.record(RecordBody::Discovery(Discovery {
            installed: installed.iter().copied().collect(),
            ..Default::default()
        }));
        self.run(cmds);
        self.settle();
    }

    /// A full relist of one kind: Init, InitApply for every stored object, InitDone.
    pub fn relist(&mut self, resource: ResourceKind) {
        self.relist_where(resource, |_| true);
    }

    /// A relist that delivers only the objects `keep` accepts (a shard's filtered watch).
    pub fn relist_where(&mut self, resource: ResourceKind, keep: impl Fn(&Value) -> bool) {
        let objs: Vec<Value> =
            self.objects.iter().filter(|((k, _), v)| *k == resource && keep(v)).map(|(_, v)| v.clone()).collect();
        let mut cmds = self.observe(resource, WatchEvent::Init, None);
        for o in objs {
            cmds.extend(self.observe(resource, WatchEvent::InitApply, Some(o)));
        }
        cmds.extend(self.observe(resource, WatchEvent::InitDone, None));
        self.run(cmds);
        self.settle();
    }

    /// Moves the clock, firing due timers in order.
    pub fn advance(&mut self, secs: i64) {
        let until = self.now + Duration::seconds(secs);
        while let Some(first) = self.timers.first().cloned() {
            if first.0 > until {
                break;
            }
            self.timers.remove(&first);
            self.now = self.now.max(first.0);
            let cmds = self.record(RecordBody::Timer(TimerFired { op: first.1, timer: first.2 }));
            self.run(cmds);
            self.settle();
        }
        self.now = until;
    }

    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let Some(body) = self.queue.pop_front() else { return };
            let cmds = self.record(body);
            self.run(cmds);
        }
        panic!("the fold did not settle within 10000 records");
    }

    fn outcome(&mut self, c: &Command, result: OutcomeResult, message: &str, data: OutcomeData) {
        self.queue.push_back(RecordBody::Outcome(Outcome::of(c, result, message.into(), data)));
    }

    fn echo(&mut self, resource: ResourceKind, key: ObjKey, event: WatchEvent) {
        let obj = match event {
            WatchEvent::Delete => self.objects.remove(&(resource, key)),
            _ => self.objects.get(&(resource, key)).cloned(),
        };
        if let Some(obj) = obj {
            self.queue.push_back(RecordBody::Observed(Observed { resource, event, object: Some(obj) }));
        }
    }

    /// The model effector: runs each command against the in-memory cluster.
    pub fn run(&mut self, cmds: Vec<Command>) {
        for c in cmds {
            if let Some((r, m)) = self.fail_next.remove(c.action.name()) {
                self.outcome(&c, r, &m, OutcomeData::None);
                continue;
            }
            let op_key = ObjKey::new(c.op.namespace.clone(), c.op.name.clone());
            match &c.action {
                Action::CreateChild { kind, namespace, name, manifest, .. } => {
                    let key = ObjKey::new(namespace.clone(), name.clone());
                    let rk = ResourceKind::Child(*kind);
                    match self.objects.get(&(rk, key.clone())) {
                        Some(existing) => {
                            let ours = existing.pointer("/metadata/labels").and_then(|l| l.get(LABEL_OPERATION_UID))
                                == manifest.pointer("/metadata/labels").and_then(|l| l.get(LABEL_OPERATION_UID));
                            let r = if ours {
                                OutcomeResult::AlreadyExistsOurs
                            } else {
                                OutcomeResult::AlreadyExistsForeign
                            };
                            self.outcome(&c, r, "already exists", OutcomeData::None);
                        }
                        None => {
                            let mut obj = manifest.clone();
                            obj["metadata"]["uid"] = json!(format!("uid-{name}"));
                            obj["metadata"]["creationTimestamp"] = json!(self.now.to_rfc3339());
                            assert!(
                                obj.pointer(&format!(
                                    "/metadata/annotations/{}",
                                    ANNOTATION_COMMAND_ID.replace('/', "~1")
                                ))
                                .is_some()
                            );
                            self.objects.insert((rk, key.clone()), obj);
                            let first = self.deliver_child_events && self.child_event_first;
                            if first {
                                self.echo(rk, key.clone(), WatchEvent::Apply);
                            }
                            self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                            if self.deliver_child_events && !first {
                                self.echo(rk, key, WatchEvent::Apply);
                            }
                        }
                    }
                }
                Action::DeleteChild { kind, namespace, name } => {
                    let rk = ResourceKind::Child(*kind);
                    let key = ObjKey::new(namespace.clone(), name.clone());
                    if self.objects.contains_key(&(rk, key.clone())) {
                        self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                        self.echo(rk, key, WatchEvent::Delete);
                    } else {
                        self.outcome(&c, OutcomeResult::NotFound, "not found", OutcomeData::None);
                    }
                }
                Action::PatchChild { kind, namespace, name, patch } => {
                    let rk = ResourceKind::Child(*kind);
                    let key = ObjKey::new(namespace.clone(), name.clone());
                    match self.objects.get_mut(&(rk, key.clone())) {
                        Some(obj) => {
                            merge(obj, patch);
                            self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                            self.echo(rk, key, WatchEvent::Apply);
                        }
                        None => self.outcome(&c, OutcomeResult::NotFound, "not found", OutcomeData::None),
                    }
                }
                Action::PatchStatus { status } => {
                    match self.objects.get_mut(&(ResourceKind::Operation, op_key.clone())) {
                        Some(obj) => {
                            obj["status"] = serde_json::to_value(status).unwrap_or(Value::Null);
                            self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                            if self.echo_status {
                                self.echo(ResourceKind::Operation, op_key, WatchEvent::Apply);
                            }
                        }
                        None => self.outcome(&c, OutcomeResult::NotFound, "not found", OutcomeData::None),
                    }
                }
                Action::EmitEvent { .. } | Action::RemoveFinalizer | Action::AddFinalizer => {
                    let add = matches!(c.action, Action::AddFinalizer);
                    let remove = matches!(c.action, Action::RemoveFinalizer);
                    if let Some(obj) =
                        self.objects.get_mut(&(ResourceKind::Operation, op_key.clone())).filter(|_| add || remove)
                    {
                        let mut fins: Vec<Value> =
                            obj.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
                        fins.retain(|f| f.as_str() != Some(FINALIZER));
                        if add {
                            fins.push(json!(FINALIZER));
                        }
                        obj["metadata"]["finalizers"] = json!(fins);
                        let gone = remove && obj.pointer("/metadata/deletionTimestamp").is_some();
                        self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                        self.echo(
                            ResourceKind::Operation,
                            op_key,
                            if gone { WatchEvent::Delete } else { WatchEvent::Apply },
                        );
                    } else {
                        self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                    }
                }
                Action::PatchTargetVersion { target, version, expected_current } => {
                    let key = ObjKey::new(c.op.namespace.clone(), target.clone());
                    match self.objects.get_mut(&(ResourceKind::ApplicationInstance, key.clone())) {
                        Some(app)
                            if app.pointer("/spec/chart/version").and_then(Value::as_str) == Some(expected_current) =>
                        {
                            app["spec"]["chart"]["version"] = json!(version);
                            let g = app.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1) + 1;
                            app["metadata"]["generation"] = json!(g);
                            self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::Generation(g));
                            self.echo(ResourceKind::ApplicationInstance, key, WatchEvent::Apply);
                        }
                        Some(_) => self.outcome(&c, OutcomeResult::Conflict, "version changed", OutcomeData::None),
                        None => self.outcome(&c, OutcomeResult::NotFound, "not found", OutcomeData::None),
                    }
                }
                Action::LoadHelmHooks { release, event } => match self.helm_hooks.get(release) {
                    Some(hooks) => {
                        let hooks: Vec<HelmHook> = hooks.iter().filter(|h| h.events.contains(event)).cloned().collect();
                        let data = OutcomeData::HelmHooks {
                            release_secret: format!("sh.helm.release.v1.{release}.v1"),
                            hooks,
                        };
                        self.outcome(&c, OutcomeResult::Ok, "", data);
                    }
                    None => self.outcome(&c, OutcomeResult::NotFound, "no release record", OutcomeData::None),
                },
                Action::SetTimer { timer, at } => {
                    self.timers.insert((*at, c.op.clone(), *timer));
                }
                Action::DeleteOperation => {
                    self.outcome(&c, OutcomeResult::Ok, "", OutcomeData::None);
                    self.echo(ResourceKind::Operation, op_key, WatchEvent::Delete);
                }
            }
        }
    }

    /// Marks an Operation for deletion (as `kubectl delete` does when a finalizer is present).
    pub fn request_delete(&mut self, ns: &str, name: &str) {
        let key = (ResourceKind::Operation, ObjKey::new(ns, name));
        let Some(mut obj) = self.objects.get(&key).cloned() else { return };
        let has_fin = obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if has_fin {
            obj["metadata"]["deletionTimestamp"] = json!(self.now.to_rfc3339());
            self.objects.insert(key.clone(), obj.clone());
            let cmds = self.observe(ResourceKind::Operation, WatchEvent::Apply, Some(obj));
            self.run(cmds);
        } else {
            self.objects.remove(&key);
            let cmds = self.observe(ResourceKind::Operation, WatchEvent::Delete, Some(obj));
            self.run(cmds);
        }
        self.settle();
    }

    /// The Operation's status as the cluster holds it.
    pub fn status(&self, ns: &str, name: &str) -> Value {
        self.get(ResourceKind::Operation, ns, name).and_then(|o| o.get("status").cloned()).unwrap_or(Value::Null)
    }

    /// `(status, reason)` of one condition of an Operation, from the cluster.
    pub fn condition(&self, ns: &str, name: &str, ty: &str) -> Option<(String, String)> {
        let status = self.status(ns, name);
        let c = status.get("conditions")?.as_array()?.iter().find(|c| c["type"] == ty)?.clone();
        Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
    }

    pub fn phase(&self, ns: &str, name: &str) -> String {
        self.status(ns, name).get("phase").and_then(Value::as_str).unwrap_or("").to_string()
    }

    /// Children of an Operation, counted by UID label across all namespaces and kinds.
    pub fn children_of(&self, op_uid: &str) -> Vec<(ChildKind, ObjKey)> {
        self.objects
            .iter()
            .filter_map(|((rk, key), v)| match rk {
                ResourceKind::Child(k)
                    if v.pointer("/metadata/labels")
                        .and_then(|l| l.get(LABEL_OPERATION_UID))
                        .and_then(Value::as_str)
                        == Some(op_uid) =>
                {
                    Some((*k, key.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Event reasons emitted for an Operation, in order.
    pub fn event_reasons(&self, name: &str) -> Vec<String> {
        self.commands
            .iter()
            .filter(|c| c.op.name == name)
            .filter_map(|c| match &c.action {
                Action::EmitEvent { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

pub use crate::json::merge;

/// Re-folds a journal into a fresh state and returns every command: replay in miniature.
pub fn replay(journal: &[Record]) -> (State, Vec<Command>) {
    let mut state = State::default();
    let mut out = Vec::new();
    for r in journal {
        out.extend(fold::step(&mut state, r));
    }
    (state, out)
}
