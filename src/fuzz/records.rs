//! `fold_records`: the pure fold over record sequences built from choices. The bytes drive a
//! model cluster (`harness`) through what happens to an operator: Operations created, edited,
//! cancelled and deleted; templates, targets and Secrets coming and going; children moving
//! through their engines' phases; commands run late, answered with errors or lost; relists,
//! restarts, discovery and time. Every record is folded a second time, through `step_owned`
//! and snapshots, and checked as it goes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::bytes::Choices;
use super::journal::probe_agrees;
use super::objects::{self, NS, TOKEN};
use crate::api::{ANNOTATION_REQUESTED_BY, Condition, ConditionType};
use crate::command::{Action, Command};
use crate::fold::{self, State};
use crate::harness::Harness;
use crate::journal_codec;
use crate::key::{ObjKey, OpKey};
use crate::record::{
    ChildKind, Discovery, Observed, Outcome, OutcomeData, OutcomeResult, Record, RecordBody, ResourceKind, Started,
    TimerFired, TimerKind, WatchEvent,
};

/// Enough for every lifecycle; longer runs only slow the fuzzer down.
const MAX_RECORDS: usize = 2_000;

/// Operation slots: a name may be reused by a new Operation; `other` has no template.
const OPS: [(&str, &str); 4] = [(NS, "a"), (NS, "b"), (NS, "c"), ("other", "d")];
const APPS: [&str; 2] = ["shop", "cart"];
const SECRETS: [&str; 2] = ["db-creds", "restic-secret"];
const TEMPLATE_NAMES: [&str; 7] =
    ["velero-backup", "argo-runbook", "job-command", "csi-snapshot", "volsync", "helm-hooks", "upgrade"];
const VERSIONS: [&str; 3] = ["1.2.0", "1.2.1", "2.0.0"];
const RESULTS: [OutcomeResult; 9] = [
    OutcomeResult::Ok,
    OutcomeResult::AlreadyExistsOurs,
    OutcomeResult::AlreadyExistsForeign,
    OutcomeResult::Conflict,
    OutcomeResult::Forbidden,
    OutcomeResult::NotFound,
    OutcomeResult::Invalid,
    OutcomeResult::Error,
    OutcomeResult::Superseded,
];
const ACTIONS: [&str; 10] = [
    "CreateChild",
    "DeleteChild",
    "PatchChild",
    "PatchStatus",
    "EmitEvent",
    "PatchTargetVersion",
    "LoadHelmHooks",
    "AddFinalizer",
    "RemoveFinalizer",
    "DeleteOperation",
];
const TIMERS: [TimerKind; 3] = [TimerKind::Deadline, TimerKind::AcceptGrace, TimerKind::Retention];

pub fn fold_records(data: &[u8]) {
    let (flags, rest) = data.split_first().map_or((0, data), |(f, rest)| (*f, rest));
    let mut d = Driver::resume(&starts()[usize::from(flags % 4)], rest);
    while !d.input.is_empty() && d.h.journal.len() < MAX_RECORDS {
        d.act();
        d.check();
    }
    d.finish();
}

/// Where a run starts: the world after the setup the first byte chooses, folded once and
/// cloned for every run (setting up each time was a tenth of the fuzzer's time). A setup holds
/// no Operation, so it leaves no timer or outcome behind in the harness.
#[derive(Clone)]
struct Start {
    state: State,
    journal: Vec<Record>,
    commands: Vec<Command>,
    objects: BTreeMap<(ResourceKind, ObjKey), Value>,
    shadow: State,
    shadow_cmds: Vec<Command>,
}

fn starts() -> &'static [Start] {
    static STARTS: OnceLock<Vec<Start>> = OnceLock::new();
    STARTS.get_or_init(|| (0..4).map(Driver::setup).collect())
}

fn templates() -> &'static [Value] {
    static TEMPLATES: OnceLock<Vec<Value>> = OnceLock::new();
    TEMPLATES.get_or_init(objects::templates)
}

struct Driver<'a> {
    input: Choices<'a>,
    h: Harness,
    /// While set, the model effector runs nothing by itself: commands wait in `held`.
    hold: bool,
    /// Commands not run yet: run late, answered without their effect, answered twice, or lost.
    held: Vec<Command>,
    /// The second fold: every record through `step_owned`, restored from snapshots on the way.
    shadow: State,
    shadow_cmds: Vec<Command>,
    /// Records of `h.journal` the shadow has folded.
    folded: usize,
    uids: u32,
}

impl<'a> Driver<'a> {
    fn resume(start: &Start, data: &'a [u8]) -> Self {
        let mut h = Harness::new();
        // `check` asserts this itself, minding timers that are due (`settled`).
        h.check_settled = false;
        h.helm_hooks.insert("shop".into(), objects::helm_hooks());
        h.state = start.state.clone();
        h.seq = start.journal.len() as u64;
        h.journal = start.journal.clone();
        h.commands = start.commands.clone();
        h.objects = start.objects.clone();
        Self {
            input: Choices::new(data),
            h,
            hold: false,
            held: Vec::new(),
            shadow: start.shadow.clone(),
            shadow_cmds: start.shadow_cmds.clone(),
            folded: start.journal.len(),
            uids: 0,
        }
    }

    /// Most runs start from a world where Operations can run (`flags` bit 0 clear); bit 1
    /// adds discovery and a relist of every kind.
    fn setup(flags: u8) -> Start {
        let empty = Start {
            state: State::default(),
            journal: Vec::new(),
            commands: Vec::new(),
            objects: BTreeMap::new(),
            shadow: State::default(),
            shadow_cmds: Vec::new(),
        };
        let mut d = Driver::resume(&empty, &[]);
        if flags & 1 == 0 {
            for t in objects::base_templates() {
                d.put(ResourceKind::OperationTemplate, t);
            }
            d.put(ResourceKind::ApplicationInstance, objects::app("shop", NS, "1.2.0", Some((true, 1))));
        }
        if flags & 2 != 0 {
            d.discovery(0xff, true);
            d.relist_all();
        }
        d.check();
        Start {
            state: d.h.state,
            journal: d.h.journal,
            commands: d.h.commands,
            objects: d.h.objects,
            shadow: d.shadow,
            shadow_cmds: d.shadow_cmds,
        }
    }

    fn act(&mut self) {
        match self.input.byte() % 30 {
            0 => {
                let t = self.input.pick(templates()).clone();
                self.put(ResourceKind::OperationTemplate, t);
            }
            1 => {
                let name = *self.input.pick(&TEMPLATE_NAMES);
                self.remove(ResourceKind::OperationTemplate, &ObjKey::new("", name));
            }
            2 => self.app(),
            3 => {
                let key = ObjKey::new(NS, *self.input.pick(&APPS));
                self.remove(ResourceKind::ApplicationInstance, &key);
            }
            4 => self.secret(),
            5 | 6 => self.create_op(),
            7 => self.with_op(|d, o| {
                o["spec"]["cancel"] = json!(d.input.byte() % 4 != 0);
                true
            }),
            8 => self.request_delete(),
            9 => {
                let (ns, name) = *self.input.pick(&OPS);
                self.remove(ResourceKind::Operation, &ObjKey::new(ns, name));
            }
            10 => self.with_op(|d, o| {
                // The spec is immutable but for `cancel` (CEL): an edit must change nothing.
                match d.input.byte() % 3 {
                    0 => o["spec"]["parameters"] = json!({ "edited": d.input.byte() }),
                    1 => o["metadata"]["labels"] = json!({ "touched": d.input.byte().to_string() }),
                    _ => o["spec"]["dryRun"] = json!(d.input.flag()),
                }
                true
            }),
            11 | 12 => self.child_status(true),
            13 => {
                if let Some((kind, key)) = self.pick_child() {
                    self.remove(ResourceKind::Child(kind), &key);
                }
            }
            14 => self.child_status(false),
            15 => {
                let kind = *self.input.pick(&ResourceKind::ALL);
                self.relist(kind);
            }
            16 => {
                let secs = 1 + i64::from(self.input.byte() % 60);
                self.h.advance(secs);
            }
            17 => {
                // Past deadlines, grace periods and retention.
                let secs = *self.input.pick(&[300, 3_600, 86_400, 2_700_000]);
                self.h.advance(secs);
            }
            18 => {
                // A crash: whatever was not run is lost.
                self.held.clear();
                self.emit(RecordBody::Restart);
            }
            19 => {
                let mask = self.input.flag().then(|| self.input.byte());
                // The mask's top bit (no child kind) caps the Operations run at once: 1 or 2.
                let max_active = mask.filter(|m| m & 0x80 != 0).map(|m| 1 + u32::from(m & 1));
                self.emit(RecordBody::Started(Started { max_active, ..Default::default() }));
                if let Some(mask) = mask {
                    self.discovery(mask, true);
                    self.relist_all();
                }
            }
            20 => {
                let (mask, watch) = (self.input.byte(), self.input.flag());
                self.discovery(mask, watch);
            }
            21 => {
                let (action, result) = (*self.input.pick(&ACTIONS), *self.input.pick(&RESULTS));
                self.h.fail_next.insert(action, (result, "injected failure".into()));
            }
            22 => self.hold = !self.hold,
            23 | 24 => self.held_command(),
            25 => self.redeliver(),
            26 => {
                let keys: Vec<OpKey> = self.h.state.ops.keys().cloned().collect();
                if !keys.is_empty() {
                    let op = self.input.pick(&keys).clone();
                    let timer = *self.input.pick(&TIMERS);
                    self.emit(RecordBody::Timer(TimerFired { op, timer }));
                }
            }
            27 => {
                self.check();
                self.snapshot();
            }
            28 => self.h.deliver_child_events = !self.h.deliver_child_events,
            _ => self.h.echo_status = !self.h.echo_status,
        }
    }

    /// Folds one record; the model effector runs what comes out unless commands are held.
    fn emit(&mut self, body: RecordBody) {
        let cmds = self.h.record(body);
        if self.hold {
            // Timers are the runtime's own (`run::route`), not API calls: only a crash loses them.
            let (timers, calls) = cmds.into_iter().partition(|c| matches!(c.action, Action::SetTimer { .. }));
            self.h.run(timers);
            self.held.extend(calls);
        } else {
            self.h.run(cmds);
            self.h.settle();
        }
    }

    fn observe(&mut self, resource: ResourceKind, event: WatchEvent, object: Option<Value>) {
        self.emit(RecordBody::Observed(Observed { resource, event, object }));
    }

    /// Stores an object as the API server would (UID and creation time kept, generation moved
    /// by spec changes) and delivers the watch event.
    fn put(&mut self, resource: ResourceKind, mut obj: Value) {
        let Some(key) = ObjKey::of(&obj) else { return };
        let old = self.h.objects.get(&(resource, key.clone()));
        let old_meta = old.map(|o| o["metadata"].clone()).unwrap_or(Value::Null);
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        let generation =
            if old.is_none_or(|o| o.get("spec") != obj.get("spec")) { generation + 1 } else { generation.max(1) };
        let defaults =
            [("uid", json!(format!("uid-{}", key.name))), ("creationTimestamp", json!(self.h.now.to_rfc3339()))];
        let meta = &mut obj["metadata"];
        for (field, default) in defaults {
            if meta.get(field).is_none() {
                meta[field] = old_meta.get(field).cloned().unwrap_or(default);
            }
        }
        meta["generation"] = json!(generation);
        self.h.objects.insert((resource, key), obj.clone());
        self.observe(resource, WatchEvent::Apply, Some(obj));
    }

    fn remove(&mut self, resource: ResourceKind, key: &ObjKey) {
        if let Some(obj) = self.h.objects.remove(&(resource, key.clone())) {
            self.observe(resource, WatchEvent::Delete, Some(obj));
        }
    }

    fn get(&self, resource: ResourceKind, key: &ObjKey) -> Option<Value> {
        self.h.objects.get(&(resource, key.clone())).cloned()
    }

    fn app(&mut self) {
        let name = *self.input.pick(&APPS);
        let version = *self.input.pick(&VERSIONS);
        let ready = self.input.byte();
        let key = ObjKey::new(NS, name);
        let mut obj = objects::app(name, NS, version, None);
        let generation = self.get(ResourceKind::ApplicationInstance, &key).map_or(1, |old| {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            if old.get("spec") == obj.get("spec") { g } else { g + 1 }
        });
        // Ready at the generation it will have, or still at the one before (a rollout under way).
        let observed = if ready & 4 == 0 { generation } else { generation - 1 };
        if ready & 3 != 0 {
            obj = objects::app(name, NS, version, Some((ready & 1 == 1, observed)));
        }
        self.put(ResourceKind::ApplicationInstance, obj);
    }

    fn secret(&mut self) {
        let key = ObjKey::new(NS, *self.input.pick(&SECRETS));
        if self.get(ResourceKind::Secret, &key).is_some() {
            self.remove(ResourceKind::Secret, &key);
        } else {
            let obj =
                json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": key.name, "namespace": NS } });
            self.put(ResourceKind::Secret, obj);
        }
    }

    fn create_op(&mut self) {
        let (ns, name) = *self.input.pick(&OPS);
        let spec = *self.input.pick(objects::SPECS);
        let m = self.input.byte();
        let key = ObjKey::new(ns, name);
        // A new Operation under a name in use: the old one's Delete was delivered, or missed.
        if self.input.flag() {
            self.remove(ResourceKind::Operation, &key);
        } else {
            self.h.objects.remove(&(ResourceKind::Operation, key));
        }
        let mut o = objects::operation(ns, name, spec);
        self.uids += 1;
        o["metadata"]["uid"] = json!(format!("uid-{name}-{}", self.uids));
        if m & 1 != 0 {
            o["spec"]["dryRun"] = json!(true);
        }
        if m & 2 != 0 {
            o["spec"]["deadlineSeconds"] = json!(if m & 64 != 0 { 30 } else { 600 });
        }
        if m & 4 != 0 {
            o["spec"]["template"] = json!(spec.3);
        }
        if m & 8 != 0 {
            o["spec"]["target"]["name"] = json!("cart");
        }
        if m & 16 != 0 {
            o["spec"]["cancel"] = json!(true);
        }
        if m & 32 != 0 {
            o["metadata"]["annotations"] = json!({ ANNOTATION_REQUESTED_BY: "alice" });
        }
        if m & 128 != 0 {
            // Found in the cluster with a status: a journal lost, the cluster is the truth.
            o["status"] = objects::adopted_status(m & 64 != 0);
        }
        self.put(ResourceKind::Operation, o);
    }

    /// Edits one Operation in the cluster when `edit` says so.
    fn with_op(&mut self, edit: impl FnOnce(&mut Self, &mut Value) -> bool) {
        let (ns, name) = *self.input.pick(&OPS);
        let Some(mut o) = self.get(ResourceKind::Operation, &ObjKey::new(ns, name)) else { return };
        if edit(self, &mut o) {
            self.put(ResourceKind::Operation, o);
        }
    }

    /// `kubectl delete`: with a finalizer the object only gets a deletion time.
    fn request_delete(&mut self) {
        let now = self.h.now.to_rfc3339();
        let (ns, name) = *self.input.pick(&OPS);
        let key = ObjKey::new(ns, name);
        let Some(mut o) = self.get(ResourceKind::Operation, &key) else { return };
        let finalized = o.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if finalized {
            o["metadata"]["deletionTimestamp"] = json!(now);
            self.put(ResourceKind::Operation, o);
        } else {
            self.remove(ResourceKind::Operation, &key);
        }
    }

    fn pick_child(&mut self) -> Option<(ChildKind, ObjKey)> {
        let children: Vec<(ChildKind, ObjKey)> = self
            .h
            .objects
            .keys()
            .filter_map(|(r, k)| match r {
                ResourceKind::Child(c) => Some((*c, k.clone())),
                _ => None,
            })
            .collect();
        (!children.is_empty()).then(|| self.input.pick(&children).clone())
    }

    /// Moves a child to one of its engine's statuses, with a watch event or (a missed update) without.
    fn child_status(&mut self, delivered: bool) {
        let Some((kind, key)) = self.pick_child() else { return };
        let Some(mut obj) = self.get(ResourceKind::Child(kind), &key) else { return };
        let mut status = self.input.pick(&objects::child_statuses(kind)).clone();
        if status.get("lastManualSync").and_then(Value::as_str) == Some(TOKEN) {
            status["lastManualSync"] = obj.pointer("/spec/trigger/manual").cloned().unwrap_or(Value::Null);
        }
        obj["status"] = status;
        if delivered {
            self.put(ResourceKind::Child(kind), obj);
        } else {
            self.h.objects.insert((ResourceKind::Child(kind), key), obj);
        }
    }

    /// A full relist of one kind: Init, every stored object, InitDone.
    fn relist(&mut self, kind: ResourceKind) {
        let objs: Vec<Value> = self.h.objects.iter().filter(|((k, _), _)| *k == kind).map(|(_, v)| v.clone()).collect();
        self.observe(kind, WatchEvent::Init, None);
        for o in objs {
            self.observe(kind, WatchEvent::InitApply, Some(o));
        }
        self.observe(kind, WatchEvent::InitDone, None);
    }

    /// What a new process lists before it acts: the base kinds and every watched child kind.
    fn relist_all(&mut self) {
        let watched: Vec<ResourceKind> = self.h.state.world.watched.iter().copied().collect();
        for kind in ResourceKind::BASE.into_iter().chain(watched) {
            self.relist(kind);
        }
    }

    /// The installed engine CRDs, one bit per child kind; watched as the runtime would, or not.
    fn discovery(&mut self, mask: u8, watch: bool) {
        let installed: BTreeSet<ChildKind> =
            ChildKind::ALL.into_iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, k)| k).collect();
        let watched = if watch { installed.iter().map(|k| ResourceKind::Child(*k)).collect() } else { BTreeSet::new() };
        self.emit(RecordBody::Discovery(Discovery { installed, watched }));
    }

    fn held_command(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let i = self.input.below(self.held.len());
        match self.input.byte() % 4 {
            0 => {
                let c = self.held.remove(i);
                self.h.run(vec![c]);
                self.h.settle();
            }
            1 => {
                let c = self.held.remove(i);
                self.answer(&c);
            }
            2 => {
                let c = self.held[i].clone();
                self.answer(&c);
            }
            _ => {
                self.held.remove(i);
            }
        }
    }

    /// An outcome for `c` without its effect in the model cluster.
    fn answer(&mut self, c: &Command) {
        let result = *self.input.pick(&RESULTS);
        let data = match (&c.action, result) {
            (Action::PatchTargetVersion { .. }, OutcomeResult::Ok) => {
                OutcomeData::Generation(i64::from(self.input.byte()))
            }
            (Action::LoadHelmHooks { release, .. }, OutcomeResult::Ok) => OutcomeData::HelmHooks {
                release_secret: format!("sh.helm.release.v1.{release}.v1"),
                hooks: if self.input.flag() { objects::helm_hooks() } else { Vec::new() },
            },
            _ => OutcomeData::None,
        };
        self.emit(RecordBody::Outcome(Outcome::of(c, result, "injected".into(), data)));
    }

    /// A past watch record delivered again (watch streams repeat themselves).
    fn redeliver(&mut self) {
        let len = self.h.journal.len();
        if len == 0 {
            return;
        }
        let i = (usize::from(self.input.byte()) << 8 | usize::from(self.input.byte())) % len;
        if let Some(body @ RecordBody::Observed(_)) = self.h.journal.get(i).map(|r| r.body.clone()) {
            self.emit(body);
        }
    }

    /// Folds the new records a second time, checking each step.
    fn check(&mut self) {
        while let Some(r) = self.h.journal.get(self.folded).cloned() {
            self.folded += 1;
            journal_trip(&r);
            let before = finished(&self.shadow);
            // The first Operation relist of a new process adopts what the cluster shows
            // (`observe::relist_ops`): there the cluster is the truth, by design.
            let adopting = self.shadow.first_relist
                && matches!(&r.body, RecordBody::Observed(o)
                    if o.resource == ResourceKind::Operation && o.event == WatchEvent::InitDone);
            let (seq, at) = (r.seq, r.at);
            let cmds = fold::step_owned(&mut self.shadow, r);
            if !adopting {
                still_finished(&before, &self.shadow, &cmds, seq);
            }
            settled(&self.shadow, at, seq);
            self.shadow_cmds.extend(cmds);
        }
    }

    /// A snapshot of the second fold, written and read back as the runtime does; folding
    /// continues from what was read.
    fn snapshot(&mut self) {
        let bytes = serde_json::to_vec(&self.shadow).unwrap_or_else(|e| panic!("the state does not serialise: {e}"));
        let mut tree: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let before = tree.clone();
        vworkspace_journal::redact::redact(&mut tree);
        assert!(tree == before, "the folded state holds something redaction removes");
        let restored: State =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("a snapshot does not read back: {e}"));
        assert!(restored == self.shadow, "a snapshot reads back as another state");
        self.shadow = restored;
    }

    fn finish(mut self) {
        self.check();
        assert!(self.shadow_cmds == self.h.commands, "folding the same records again sent other commands");
        assert!(self.shadow == self.h.state, "folding the same records again gave another state");
        self.snapshot();
    }
}

/// Through the journal and back: the record the fold sees is the record a replay reads.
fn journal_trip(r: &Record) {
    let raw = vworkspace_journal::envelope::encode(r.seq, &journal_codec::to_entry(r))
        .unwrap_or_else(|e| panic!("record {} does not encode: {e}", r.seq));
    let entry = vworkspace_journal::envelope::decode(r.seq, &raw)
        .unwrap_or_else(|e| panic!("record {} does not decode: {e}", r.seq));
    let back = journal_codec::from_entry(&entry);
    assert!(matches!(&back, Ok(b) if b == r), "record {r:?} reads back as {back:?}");
    probe_agrees(&entry, r);
}

/// After every record, reconciling every Operation again would send nothing (`fold::unsettled`).
/// Not while a timer is due: time-driven work waits for the timer's own record, which may come
/// after this one (two timers due at one instant fire one record at a time, in the runtime too).
fn settled(state: &State, at: DateTime<Utc>, seq: u64) {
    if state.ops.values().any(|o| o.timers.values().any(|due| *due <= at)) {
        return;
    }
    let again = fold::unsettled(state, at);
    assert!(again.is_empty(), "after seq {seq} the fold is not settled: it would send {again:?}");
}

/// What an Operation with a terminal outcome shows, by key, with its UID.
type Finished = BTreeMap<OpKey, (String, Option<Condition>, Option<DateTime<Utc>>)>;

fn finished(state: &State) -> Finished {
    state
        .ops
        .iter()
        .filter(|(_, o)| o.is_terminal())
        .map(|(k, o)| (k.clone(), (o.uid.clone(), o.conditions.get(ConditionType::Succeeded).cloned(), o.completed)))
        .collect()
}

/// A terminal outcome never changes, and a finished Operation creates no more children.
fn still_finished(before: &Finished, after: &State, cmds: &[Command], seq: u64) {
    for (key, (uid, succeeded, completed)) in before {
        if let Some(op) = after.ops.get(key).filter(|o| o.uid == *uid) {
            let now = op.conditions.get(ConditionType::Succeeded);
            assert!(
                now == succeeded.as_ref() && op.completed == *completed,
                "seq {seq}: finished {key} changed its outcome from {succeeded:?} at {completed:?} to {now:?} at {:?}",
                op.completed
            );
        }
        let created = cmds.iter().find(|c| c.uid == *uid && matches!(c.action, Action::CreateChild { .. }));
        assert!(created.is_none(), "seq {seq}: finished {key} created a child: {created:?}");
    }
}
