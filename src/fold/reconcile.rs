//! The per-Operation state machine: given the folded world, decide conditions and commands.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::conditions::{Transition, human_duration};
use super::last_status::LastStatus;
use super::op::{CancelState, CreateState, OpState, Pending, RollbackState, StepState, UpgradeState};
use super::preconditions::{self, Preconditions};
use super::queue::Queues;
use super::validate::{self, Acceptance};
use super::world::World;
use crate::api::{
    ApplicationInstance, ChildRef, ConditionStatus as S, ConditionType as C, EngineStatus, OperationStatus,
    PlannedChild, reason,
};
use crate::command::{Action, Command, EventType};
use crate::engine::{ChildSpec, EngineKind, OpContext, Verdict, helm_hook, naming, upgrade};
use crate::key::ObjKey;
use crate::record::TimerKind;

/// How long a missing template or target may take to appear before the
/// Operation is rejected (watch streams of different kinds arrive in any order).
pub const ACCEPT_GRACE_SECS: i64 = 30;

const NO_HOOKS: &str = "the Helm release has no Job hooks for this event";

pub struct Env<'a> {
    pub world: &'a World,
    pub now: DateTime<Utc>,
    /// The per-target queues (an Operation that has not started reads its place).
    pub queues: &'a Queues,
}

impl OpState {
    /// Sends a command; `pending` marks it as awaiting an outcome.
    pub(crate) fn emit(&mut self, action: Action, pending: Option<Pending>, out: &mut Vec<Command>) -> String {
        let id = match (&action, &pending) {
            (Action::CreateChild { step, .. }, _) => naming::step_command_id(self.id_prefix(), *step, "create"),
            _ => {
                self.counter += 1;
                naming::counted_command_id(self.id_prefix(), self.counter, action.name())
            }
        };
        if let Some(p) = pending {
            self.pending.insert(id.clone(), p);
        }
        out.push(Command { id: id.clone(), op: self.key.clone(), uid: self.uid.clone(), action });
        id
    }

    /// Sets a condition; a transition of a contract condition emits one Event with its reason.
    pub(crate) fn set(
        &mut self,
        ty: C,
        status: S,
        reason: &str,
        message: impl Into<String>,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        if let Some(t) = self.conditions.set(ty, status, reason, message, self.generation, now) {
            self.event_for(&t, out);
        }
    }

    fn event_for(&mut self, t: &Transition, out: &mut Vec<Command>) {
        let warning = (t.status == S::False && t.ty != C::Progressing) || t.reason == reason::RETRYING;
        let action = Action::EmitEvent {
            event_type: if warning { EventType::Warning } else { EventType::Normal },
            reason: t.reason.clone(),
            note: [t.ty.as_str(), "=", t.status.as_str(), ": ", &t.message].concat(),
            action: t.ty.as_str().to_string(),
        };
        self.emit_event(action, out);
    }

    /// An Event, remembered until its outcome is journaled (see `unsent_events`).
    pub(crate) fn emit_event(&mut self, action: Action, out: &mut Vec<Command>) {
        let id = self.emit(action.clone(), Some(Pending::Event), out);
        self.unsent_events.insert(id, action);
    }

    /// After a restart: the Events whose outcome never reached the journal, under their IDs
    /// (the Event's name derives from it, so one that was created is not created twice).
    pub(crate) fn resend_events(&mut self, out: &mut Vec<Command>) {
        for (id, action) in &self.unsent_events {
            self.pending.insert(id.clone(), Pending::Event);
            out.push(Command { id: id.clone(), op: self.key.clone(), uid: self.uid.clone(), action: action.clone() });
        }
    }

    fn arm(&mut self, timer: TimerKind, at: DateTime<Utc>, out: &mut Vec<Command>) {
        if self.timers.get(&timer) != Some(&at) {
            self.timers.insert(timer, at);
            self.emit(Action::SetTimer { timer, at }, None, out);
        }
    }

    /// Ends the Operation. Terminal outcomes never change afterwards.
    pub(crate) fn finish(
        &mut self,
        ok: bool,
        why: &str,
        message: impl Into<String>,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        if self.is_terminal() {
            return;
        }
        let message = message.into();
        self.set(C::Progressing, S::False, why, message.clone(), now, out);
        self.set(C::Succeeded, if ok { S::True } else { S::False }, why, message, now, out);
        self.completed = Some(now);
        self.queue_position = None;
    }

    /// The deadline: the spec's, else the template's, from creation.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let secs =
            self.spec.as_ref()?.deadline_seconds.or(self.template.as_ref().and_then(|t| t.spec().deadline_seconds))?;
        Some(self.created + Duration::seconds(secs))
    }
}

/// Everything an engine needs, owned, so the Operation can be mutated while it is used.
struct Owned {
    params: serde_json::Map<String, Value>,
    template: crate::api::OperationTemplateSpec,
    target: ApplicationInstance,
}

impl Owned {
    fn ctx<'a>(&'a self, op: &'a OpState) -> OpContext<'a> {
        OpContext {
            name: &op.key.name,
            namespace: &op.key.namespace,
            uid: &op.uid,
            ty: op.spec.as_ref().map(|s| s.type_).unwrap_or(crate::api::OperationType::RunCommand),
            params: &self.params,
            template: &self.template,
            target: &self.target,
        }
    }
}

fn owned(op: &OpState, world: &World) -> Option<Owned> {
    with_ctx(op, world, |ctx| Owned {
        params: ctx.params.clone(),
        template: ctx.template.clone(),
        target: ctx.target.clone(),
    })
}

/// Runs `f` with the engine's view of the Operation, borrowed: the hot path (building and
/// mapping children) needs no copy of the template or parameters. None as for `owned`.
fn with_ctx<R>(op: &OpState, world: &World, f: impl FnOnce(&OpContext<'_>) -> R) -> Option<R> {
    let spec = op.spec.as_ref()?;
    let template = op.template.as_ref()?.spec();
    let key = ObjKey::new(op.key.namespace.clone(), spec.target.name.clone());
    let absent;
    let target = match world.app(&key) {
        Some((_, a)) => a,
        // The target may be gone mid-flight; engines only read its name then.
        None => {
            let mut a = ApplicationInstance::new(&spec.target.name, Default::default());
            a.metadata.namespace = Some(op.key.namespace.clone());
            absent = a;
            &absent
        }
    };
    // As `validate::params_map`: anything but an object reads as no parameters here (acceptance rejects it).
    let empty = serde_json::Map::new();
    let params = match &spec.parameters {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let ctx = OpContext {
        name: &op.key.name,
        namespace: &op.key.namespace,
        uid: &op.uid,
        ty: spec.type_,
        params,
        template,
        target,
    };
    Some(f(&ctx))
}

pub fn reconcile(op: &mut OpState, env: &Env<'_>, out: &mut Vec<Command>) {
    let now = env.now;
    op.conditions.init(op.generation, now);
    if op.deleting {
        cleanup(op, env, out);
        return;
    }
    if op.is_terminal() {
        after_terminal(op, env, out);
        emit_status(op, env, out);
        return;
    }
    advance(op, env, out);
    emit_status(op, env, out);
    // What follows the end (retention) is armed now: no later record need arrive to do it.
    if op.is_terminal() {
        after_terminal(op, env, out);
    }
}

/// Deadline, acceptance and the engine, for an Operation that has not finished.
fn advance(op: &mut OpState, env: &Env<'_>, out: &mut Vec<Command>) {
    let now = env.now;
    if let Some(deadline) = op.deadline() {
        if now >= deadline {
            deadline_exceeded(op, op.kind, now, out);
            return;
        }
        op.arm(TimerKind::Deadline, deadline, out);
    }
    if op.started.is_none() || op.template.is_none() {
        accept(op, env, out);
    }
    if op.started.is_some()
        && !op.is_terminal()
        && let Some(k) = op.kind
    {
        drive(op, k, env, out);
    }
}

/// Acceptance and preconditions, up to the start.
fn accept(op: &mut OpState, env: &Env<'_>, out: &mut Vec<Command>) {
    let now = env.now;
    let cancel = op.spec.as_ref().is_some_and(|s| s.cancel);
    match validate::validate(op, env.world) {
        Acceptance::Rejected { reason: r, message } => {
            op.set(C::Accepted, S::False, r, message.clone(), now, out);
            op.set(
                C::PreconditionsMet,
                S::Unknown,
                reason::PENDING,
                "not evaluated: the Operation was not accepted",
                now,
                out,
            );
            op.finish(false, reason::REJECTED, format!("{r}: {message}"), now, out);
        }
        Acceptance::Waiting { reason: r, message } => {
            op.set(C::Accepted, S::False, r, message.clone(), now, out);
            if cancel {
                op.finish(false, reason::CANCELLED, "cancelled before it was accepted", now, out);
                return;
            }
            // A missing engine waits for its CRD until the deadline; the rest get a grace period.
            if r != reason::ENGINE_UNAVAILABLE {
                let grace = op.created + Duration::seconds(ACCEPT_GRACE_SECS);
                if now >= grace {
                    op.finish(false, reason::REJECTED, format!("{r}: {message}"), now, out);
                } else {
                    op.arm(TimerKind::AcceptGrace, grace, out);
                }
            }
        }
        Acceptance::Accepted(a) => {
            if op.started.is_some() {
                // Adopted mid-flight after a lost journal: resume with the template as it is now.
                op.template = Some(a.template);
                op.kind = Some(a.engine);
                // Its deadline may come from that template: arm it as acceptance does (found by fuzzing).
                if let Some(d) = op.deadline() {
                    op.arm(TimerKind::Deadline, d, out);
                }
                return;
            }
            let msg = format!("template {}, engine {}", a.template.name(), a.engine.display());
            op.set(C::Accepted, S::True, reason::VALID, msg, now, out);
            op.template = Some(a.template.clone());
            op.kind = Some(a.engine);
            op.engine.get_or_insert_with(|| EngineStatus { name: a.engine.display().into(), ..Default::default() });
            if let Some(d) = op.deadline() {
                op.arm(TimerKind::Deadline, d, out);
            }
            if cancel {
                op.finish(false, reason::CANCELLED, "cancelled before it started", now, out);
                return;
            }
            if op.is_dry_run() {
                dry_run(op, a.engine, env, out);
                return;
            }
            match preconditions::check(op, a.template.spec(), env.world, env.queues) {
                Preconditions::Blocked { reason: r, message, queue_position } => {
                    op.queue_position = queue_position;
                    op.set(C::PreconditionsMet, S::False, r, message, now, out);
                    op.set(C::Progressing, S::False, reason::WAITING, "waiting for preconditions", now, out);
                }
                Preconditions::Met => {
                    op.queue_position = None;
                    op.set(
                        C::PreconditionsMet,
                        S::True,
                        reason::PRECONDITIONS_MET,
                        "target ready, no conflicting Operation, secrets present",
                        now,
                        out,
                    );
                    op.started = Some(now);
                }
            }
        }
    }
}

/// Validates and plans without creating anything (`spec.dryRun`).
fn dry_run(op: &mut OpState, kind: EngineKind, env: &Env<'_>, out: &mut Vec<Command>) {
    let now = env.now;
    let Some(o) = owned(op, env.world) else { return };
    let mut plan = Vec::new();
    if kind == EngineKind::ChartUpgrade {
        let ctx = o.ctx(op);
        let version = upgrade::target_version(&ctx).unwrap_or_default();
        let key = ObjKey::new(op.key.namespace.clone(), op.target_name().unwrap_or_default());
        plan.push(PlannedChild {
            api_version: "ops.vworkspace.io/v1alpha1".into(),
            kind: "ApplicationInstance".into(),
            namespace: key.namespace.clone(),
            name: format!("{} (spec.chart.version -> {version})", key.name),
            step: 0,
        });
    } else if kind == EngineKind::HelmHookJob && op.hooks.is_none() {
        load_hooks(op, &o, out);
        return;
    } else {
        let hooks = op.hooks.clone().unwrap_or_default();
        let steps = if kind == EngineKind::HelmHookJob { hooks.len() } else { 1 };
        if steps == 0 {
            op.finish(false, reason::ENGINE_REJECTED, NO_HOOKS, now, out);
            return;
        }
        for i in 0..steps as u32 {
            match kind.build(&o.ctx(op), i, &hooks) {
                Ok(c) => plan.push(PlannedChild {
                    api_version: c.kind.api_version().into(),
                    kind: c.kind.kind().into(),
                    namespace: c.namespace,
                    name: c.name,
                    step: i,
                }),
                Err(e) => {
                    op.finish(false, reason::ENGINE_REJECTED, e.message, now, out);
                    return;
                }
            }
        }
    }
    let pre = preconditions::check(op, &o.template, env.world, env.queues);
    match pre {
        Preconditions::Met => {
            op.set(C::PreconditionsMet, S::True, reason::PRECONDITIONS_MET, "preconditions hold now", now, out)
        }
        Preconditions::Blocked { reason: r, message, .. } => {
            op.set(C::PreconditionsMet, S::False, r, message, now, out)
        }
    }
    let n = plan.len();
    op.plan = plan;
    op.finish(true, reason::DRY_RUN, format!("dry run: {n} child(ren) would be created; see status.plan"), now, out);
}

fn load_hooks(op: &mut OpState, o: &Owned, out: &mut Vec<Command>) {
    if op.has_pending(&Pending::LoadHooks) {
        return;
    }
    let ctx = o.ctx(op);
    let release = helm_hook::release_name(&ctx).to_string();
    let Ok(event) = helm_hook::hook_event(&ctx) else { return };
    op.emit(Action::LoadHelmHooks { release, event }, Some(Pending::LoadHooks), out);
}

fn drive(op: &mut OpState, kind: EngineKind, env: &Env<'_>, out: &mut Vec<Command>) {
    let now = env.now;
    if op.cancel == CancelState::Stopping {
        return;
    }
    if op.spec.as_ref().is_some_and(|s| s.cancel) {
        start_cancel(op, kind, now, out);
        return;
    }
    if kind.needs_finalizer() && !op.has_finalizer {
        if !op.finalizer_requested {
            op.finalizer_requested = true;
            op.emit(Action::AddFinalizer, Some(Pending::AddFinalizer), out);
        }
        return;
    }
    if op.spec.is_none() || op.template.is_none() {
        return;
    }
    if kind == EngineKind::ChartUpgrade {
        let Some(o) = owned(op, env.world) else { return };
        drive_upgrade(op, &o, env, out);
        return;
    }
    if kind == EngineKind::HelmHookJob && op.hooks.is_none() {
        let Some(o) = owned(op, env.world) else { return };
        load_hooks(op, &o, out);
        if op.conditions.reason(C::Progressing) != reason::RETRYING {
            op.set(C::Progressing, S::True, reason::QUEUED, "reading hooks from the Helm release record", now, out);
        }
        return;
    }
    let hooks = op.hooks.clone().unwrap_or_default();
    let total = if kind == EngineKind::HelmHookJob { hooks.len() as u32 } else { 1 };
    if total == 0 {
        op.finish(false, reason::ENGINE_REJECTED, NO_HOOKS, now, out);
        return;
    }
    loop {
        let Some(i) = (0..total).find(|i| !op.steps.get(*i as usize).is_some_and(|s| s.done)) else {
            let msg = op.conditions.get(C::Progressing).map(|c| c.message.clone()).unwrap_or_default();
            op.finish(
                true,
                reason::COMPLETED,
                if total > 1 { format!("all {total} steps completed") } else { msg },
                now,
                out,
            );
            return;
        };
        // Built once when the step is first planned, and used for its create right after.
        let mut built = None;
        if op.steps.len() <= i as usize {
            let Some(planned) = with_ctx(op, env.world, |ctx| kind.build(ctx, i, &hooks)) else { return };
            match planned {
                Ok(c) => {
                    op.steps.push(StepState {
                        step: i,
                        kind: c.kind,
                        namespace: c.namespace.clone(),
                        name: c.name.clone(),
                        create: CreateState::NotSent,
                        seen: false,
                        done: false,
                    });
                    built = Some(c);
                }
                Err(e) => {
                    op.finish(false, reason::ENGINE_REJECTED, e.message, now, out);
                    return;
                }
            }
        }
        let st = op.steps[i as usize].clone();
        let observed = env.world.child(st.kind, &st.namespace, &st.name);
        if let Some(obj) = &observed
            && !is_ours(obj, &op.uid)
        {
            let msg = super::op::foreign_child(&st.describe());
            op.finish(false, reason::REJECTED, msg, now, out);
            return;
        }
        if observed.is_some() {
            let s = &mut op.steps[i as usize];
            s.seen = true;
            s.create = CreateState::Created;
        }
        match op.steps[i as usize].create {
            CreateState::NotSent => {
                let child = match built {
                    Some(c) => Ok(c),
                    None => match with_ctx(op, env.world, |ctx| kind.build(ctx, i, &hooks)) {
                        Some(c) => c,
                        None => return,
                    },
                };
                match child {
                    Ok(c) => {
                        op.steps[i as usize].create = CreateState::Sent;
                        let action = Action::CreateChild {
                            kind: c.kind,
                            namespace: c.namespace,
                            name: c.name,
                            step: i,
                            env_from: c.env_from,
                            manifest: c.manifest,
                        };
                        op.emit(action, Some(Pending::Create { step: i }), out);
                    }
                    Err(e) => op.finish(false, reason::ENGINE_REJECTED, e.message, now, out),
                }
                return;
            }
            CreateState::Sent => return,
            CreateState::Created => {}
        }
        let Some(obj) = observed else {
            if st.seen {
                let msg = format!("{} was deleted while the Operation was active", st.describe());
                op.finish(false, reason::CHILD_LOST, msg, now, out);
            }
            return;
        };
        let Some(mapped) = with_ctx(op, env.world, |ctx| kind.map(ctx, i, &obj)) else { return };
        let mut engine = mapped.engine;
        engine.name = kind.display().into();
        op.engine = Some(engine);
        op.outputs.extend(mapped.outputs);
        match mapped.verdict {
            Verdict::Progressing { reason: r, message } => {
                let message = if total > 1 { format!("step {}/{total}: {message}", i + 1) } else { message };
                op.set(C::Progressing, S::True, r, message, now, out);
                return;
            }
            Verdict::Failed { reason: r, message } => {
                op.finish(false, &r, message, now, out);
                return;
            }
            Verdict::Succeeded { message } => {
                op.steps[i as usize].done = true;
                if i + 1 < total {
                    let message = format!("step {}/{total}: {message}", i + 1);
                    op.set(C::Progressing, S::True, reason::IN_PROGRESS, message, now, out);
                } else if let Some(c) = op.conditions.map.get_mut(&C::Progressing) {
                    // Carried into the Completed message without an extra Event.
                    c.message = message;
                }
            }
        }
    }
}

fn drive_upgrade(op: &mut OpState, o: &Owned, env: &Env<'_>, out: &mut Vec<Command>) {
    let now = env.now;
    let ctx = o.ctx(op);
    let version = upgrade::target_version(&ctx).unwrap_or_default();
    let rollback = upgrade::rollback_requested(&ctx);
    let target = op.target_name().unwrap_or_default().to_string();
    let app = env.world.apps.get(&ObjKey::new(op.key.namespace.clone(), target.clone())).map(|a| a.raw.clone());
    let current = o.target.spec.chart.version.clone();
    let up = op.upgrade.get_or_insert_with(|| UpgradeState {
        previous: current,
        version: version.clone(),
        generation: None,
        rollback: RollbackState::None,
    });
    let up = up.clone();
    op.outputs.insert("previousVersion".into(), up.previous.clone());
    op.outputs.insert("version".into(), up.version.clone());
    if let RollbackState::Sent { .. } = up.rollback {
        return;
    }
    let Some(generation) = up.generation else {
        if !op.has_pending(&Pending::PatchTarget { rollback: false }) {
            let action = Action::PatchTargetVersion {
                target,
                version: up.version.clone(),
                expected_current: up.previous.clone(),
            };
            op.emit(action, Some(Pending::PatchTarget { rollback: false }), out);
        }
        return;
    };
    let Some(app) = app else {
        op.finish(
            false,
            reason::CHILD_LOST,
            format!("ApplicationInstance {target} was deleted during the upgrade"),
            now,
            out,
        );
        return;
    };
    op.engine = Some(EngineStatus {
        name: "chartUpgrade".into(),
        phase: preconditions::target_ready(&app)
            .map(|(r, _)| if r { "Ready".to_string() } else { "NotReady".to_string() }),
        ..Default::default()
    });
    match upgrade::map_target(&app, generation, &up.version) {
        Verdict::Progressing { reason: r, message } => op.set(C::Progressing, S::True, r, message, now, out),
        Verdict::Succeeded { message } => op.finish(true, reason::COMPLETED, message, now, out),
        Verdict::Failed { reason: r, message } if rollback => {
            let note = format!("{message}; rolling back to {}", up.previous);
            op.set(C::Progressing, S::True, reason::ROLLING_BACK, note.clone(), now, out);
            if let Some(u) = op.upgrade.as_mut() {
                u.rollback = RollbackState::Sent { reason: r, message };
            }
            let action = Action::PatchTargetVersion {
                target,
                version: up.previous.clone(),
                expected_current: up.version.clone(),
            };
            op.emit(action, Some(Pending::PatchTarget { rollback: true }), out);
        }
        Verdict::Failed { reason: r, message } => op.finish(false, &r, message, now, out),
    }
}

/// Whether an observed object carries this Operation's UID label.
fn is_ours(obj: &Value, uid: &str) -> bool {
    crate::json::at(obj, "/metadata/labels")
        .and_then(|l| l.get(crate::api::LABEL_OPERATION_UID))
        .and_then(Value::as_str)
        == Some(uid)
}

/// The current step's child, if a create was sent for it.
fn current_child(op: &OpState) -> Option<ChildSpec> {
    op.steps.iter().rev().find(|s| s.create != CreateState::NotSent).map(|s| ChildSpec {
        kind: s.kind,
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        manifest: Value::Null,
        env_from: None,
    })
}

fn start_cancel(op: &mut OpState, kind: EngineKind, now: DateTime<Utc>, out: &mut Vec<Command>) {
    if kind == EngineKind::ChartUpgrade {
        let sent = op.upgrade.as_ref().is_some_and(|u| u.generation.is_some())
            || op.has_pending(&Pending::PatchTarget { rollback: false });
        match op.upgrade.clone().filter(|_| sent) {
            Some(up) => {
                op.cancel = CancelState::Stopping;
                op.set(
                    C::Progressing,
                    S::True,
                    reason::CANCELLING,
                    format!("cancel requested: restoring chart version {}", up.previous),
                    now,
                    out,
                );
                let action = Action::PatchTargetVersion {
                    target: op.target_name().unwrap_or_default().to_string(),
                    version: up.previous,
                    expected_current: up.version,
                };
                op.emit(action, Some(Pending::PatchTarget { rollback: true }), out);
            }
            None => op.finish(false, reason::CANCELLED, "cancelled before the chart version was changed", now, out),
        }
        return;
    }
    match current_child(op) {
        Some(child) if !op.steps.iter().all(|s| s.done) => {
            op.cancel = CancelState::Stopping;
            let step = op.steps.iter().rev().find(|s| s.create != CreateState::NotSent).map(|s| s.step).unwrap_or(0);
            op.set(
                C::Progressing,
                S::True,
                reason::CANCELLING,
                format!("cancel requested: stopping {} {}", child.kind.kind(), child.name),
                now,
                out,
            );
            op.emit(kind.cancel(&child), Some(Pending::Stop { step }), out);
        }
        _ => op.finish(false, reason::CANCELLED, "cancelled before a child was created", now, out),
    }
}

fn deadline_exceeded(op: &mut OpState, kind: Option<EngineKind>, now: DateTime<Utc>, out: &mut Vec<Command>) {
    let secs = op.deadline().map(|d| (d - op.created).num_seconds()).unwrap_or(0);
    let state = if op.started.is_some() { "running" } else { "waiting" };
    if kind == Some(EngineKind::ChartUpgrade) && upgrade_rollback_on_deadline(op, secs, now, out) {
        return;
    }
    op.finish(
        false,
        reason::DEADLINE_EXCEEDED,
        format!("the deadline of {secs}s passed while the Operation was {state}"),
        now,
        out,
    );
    // Best effort: stop the work that no longer has an Operation waiting for it.
    if let (Some(k), Some(child)) = (kind, current_child(op))
        && k != EngineKind::ChartUpgrade
        && !op.steps.iter().all(|s| s.done)
    {
        let step = op.steps.len().saturating_sub(1) as u32;
        op.emit(k.cancel(&child), Some(Pending::Stop { step }), out);
    }
}

/// A timed-out Upgrade is a failed one: with `rollbackOnFailure`, the chart version goes back
/// first and the Operation ends when the rollback's outcome arrives. True while that is under way.
fn upgrade_rollback_on_deadline(op: &mut OpState, secs: i64, now: DateTime<Utc>, out: &mut Vec<Command>) -> bool {
    let Some(up) = op.upgrade.clone() else { return false };
    if matches!(up.rollback, RollbackState::Sent { .. }) {
        return true;
    }
    let asked = op
        .spec
        .as_ref()
        .and_then(|s| s.parameters.as_ref())
        .and_then(|p| p.get("rollbackOnFailure"))
        .and_then(Value::as_bool)
        == Some(true);
    let patched = up.generation.is_some() || op.has_pending(&Pending::PatchTarget { rollback: false });
    if !asked || !patched {
        return false;
    }
    let message = format!("the deadline of {secs}s passed before the rollout of {} was Ready", up.version);
    let note = format!("{message}; rolling back to {}", up.previous);
    op.set(C::Progressing, S::True, reason::ROLLING_BACK, note, now, out);
    if let Some(u) = op.upgrade.as_mut() {
        u.rollback = RollbackState::Sent { reason: reason::DEADLINE_EXCEEDED.to_string(), message };
    }
    let action = Action::PatchTargetVersion {
        target: op.target_name().unwrap_or_default().to_string(),
        version: up.previous,
        expected_current: up.version,
    };
    op.emit(action, Some(Pending::PatchTarget { rollback: true }), out);
    true
}

fn after_terminal(op: &mut OpState, env: &Env<'_>, out: &mut Vec<Command>) {
    let cancelled = op.conditions.reason(C::Succeeded) == reason::CANCELLED;
    if op.spec.as_ref().is_some_and(|s| s.cancel) && !cancelled && !op.cancel_ignored_reported {
        op.cancel_ignored_reported = true;
        let note = format!("cancel ignored: the Operation already finished ({})", op.conditions.reason(C::Succeeded));
        op.emit_event(
            Action::EmitEvent {
                event_type: EventType::Warning,
                reason: "CancelIgnored".into(),
                note,
                action: "Cancel".into(),
            },
            out,
        );
    }
    let ttl = op.template.as_ref().and_then(|t| t.spec().retention.ttl_seconds_after_finished);
    if let (Some(ttl), Some(done)) = (ttl, op.completed) {
        let at = done + Duration::seconds(ttl);
        if env.now < at {
            op.arm(TimerKind::Retention, at, out);
        } else if !op.cleanup.retention_delete_sent {
            op.cleanup.retention_delete_sent = true;
            op.emit(Action::DeleteOperation, Some(Pending::DeleteOperation), out);
        }
    }
}

/// The Operation is being deleted: remove children an owner reference cannot reach, then the finalizer.
fn cleanup(op: &mut OpState, _env: &Env<'_>, out: &mut Vec<Command>) {
    if !op.has_finalizer {
        return;
    }
    if op
        .steps
        .iter()
        .any(|s| s.create == CreateState::Sent && op.pending.values().any(|p| *p == Pending::Create { step: s.step }))
    {
        return;
    }
    if !op.cleanup.deletes_sent {
        op.cleanup.deletes_sent = true;
        let foreign: Vec<StepState> = op
            .steps
            .iter()
            .filter(|s| s.namespace != op.key.namespace && s.create != CreateState::NotSent)
            .cloned()
            .collect();
        for s in foreign {
            op.emit(
                Action::DeleteChild { kind: s.kind, namespace: s.namespace, name: s.name },
                Some(Pending::CleanupDelete { step: s.step }),
                out,
            );
        }
    }
    let waiting = op.pending.values().any(|p| matches!(p, Pending::CleanupDelete { .. }));
    if !waiting && !op.cleanup.finalizer_removal_sent {
        op.cleanup.finalizer_removal_sent = true;
        op.emit(Action::RemoveFinalizer, Some(Pending::RemoveFinalizer), out);
    }
}

pub fn build_status(op: &OpState, now: DateTime<Utc>) -> OperationStatus {
    let end = op.completed.unwrap_or(now);
    OperationStatus {
        observed_generation: op.generation,
        phase: Some(op.conditions.phase()),
        conditions: op.conditions.to_status(op.generation),
        message: Some(op.conditions.summary()).filter(|m| !m.is_empty()),
        progress: op.engine.as_ref().and_then(|e| e.progress).map(|p| format!("{}/{}", p.completed, p.total)),
        duration: op.started.map(|s| human_duration((end - s).num_seconds())),
        start_time: op.started,
        completion_time: op.completed,
        queue_position: op.queue_position,
        children: op
            .steps
            .iter()
            .filter(|s| s.create == CreateState::Created)
            .map(|s| ChildRef {
                api_version: s.kind.api_version().into(),
                kind: s.kind.kind().into(),
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                step: s.step,
            })
            .collect(),
        engine: op.engine.clone(),
        outputs: op.outputs.clone(),
        plan: op.plan.clone(),
        trace_id: Some(op.trace_id().to_string()),
    }
}

/// Sends the status when anything but the running duration changed.
fn emit_status(op: &mut OpState, env: &Env<'_>, out: &mut Vec<Command>) {
    let mut status = build_status(op, env.now);
    if !op.last_status.as_ref().is_some_and(|last| last.same(&mut status)) {
        let (last, status) = LastStatus::sent(status, op.is_terminal() && !env.world.replay);
        op.last_status = Some(last);
        op.emit(Action::PatchStatus { status }, Some(Pending::Status), out);
    }
}
