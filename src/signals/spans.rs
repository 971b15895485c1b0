//! Signals rendered as OpenTelemetry spans with IDs derived from the Operation UID: one trace
//! per Operation, whichever process (or replay) emits its spans. The root span is emitted when
//! the Operation ends, with its start at creation; every other span names it as parent.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor};

use super::ids;
use super::{OpInfo, Signal};

fn context(uid: &str, span: &str) -> Option<SpanContext> {
    Some(SpanContext::new(
        TraceId::from_hex(&ids::trace_id(uid)).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    ))
}

fn op_attributes(op: &OpInfo, seq: u64, epoch: Option<u64>) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("vworkspace.operation.namespace", op.namespace.clone()),
        KeyValue::new("vworkspace.operation.name", op.name.clone()),
        KeyValue::new("vworkspace.operation.uid", op.uid.clone()),
        KeyValue::new("vworkspace.operation.type", op.ty.clone()),
        KeyValue::new("vworkspace.operation.engine", op.engine.clone()),
        KeyValue::new("vworkspace.operation.target", op.target.clone()),
        KeyValue::new("vworkspace.journal.seq", seq as i64),
    ];
    if !op.requested_by.is_empty() {
        a.push(KeyValue::new("vworkspace.operation.requested_by", op.requested_by.clone()));
    }
    if let Some(e) = epoch {
        a.push(KeyValue::new("vworkspace.lease.epoch", e as i64));
    }
    a
}

/// The span a signal becomes. `epoch` is the lease epoch of the process emitting it (None in
/// a replay, which knows no lease).
pub fn render(sig: &Signal, epoch: Option<u64>) -> Option<SpanData> {
    let (op, name, span, start, end, mut attrs, status, seq): (
        &OpInfo,
        String,
        String,
        _,
        _,
        Vec<KeyValue>,
        Status,
        u64,
    ) = match sig {
        Signal::Finished(f) => (
            &f.op,
            "operation".to_string(),
            ids::root_span_id(&f.op.uid),
            f.created,
            f.completed,
            vec![
                KeyValue::new("vworkspace.outcome.succeeded", f.succeeded),
                KeyValue::new("vworkspace.outcome.reason", f.reason.clone()),
                KeyValue::new("vworkspace.outcome.message", f.message.clone()),
            ],
            if f.succeeded { Status::Ok } else { Status::error(format!("{}: {}", f.reason, f.message)) },
            f.seq,
        ),
        Signal::Transition(t) => (
            &t.op,
            format!("transition {}", t.ty),
            ids::span_id(&["transition", &t.op.uid, &t.seq.to_string(), &t.ty]),
            t.at,
            t.at,
            vec![
                KeyValue::new("vworkspace.condition.type", t.ty.clone()),
                KeyValue::new("vworkspace.condition.from", t.from.clone().unwrap_or_default()),
                KeyValue::new("vworkspace.condition.status", t.status.clone()),
                KeyValue::new("vworkspace.condition.reason", t.reason.clone()),
                KeyValue::new("vworkspace.condition.message", t.message.clone()),
                KeyValue::new("vworkspace.operation.phase", t.phase.clone()),
            ],
            Status::Unset,
            t.seq,
        ),
        Signal::Command(c) => {
            let mut a = vec![
                KeyValue::new("vworkspace.command.id", c.id.clone()),
                KeyValue::new("vworkspace.command.action", c.action.clone()),
                KeyValue::new("vworkspace.command.result", c.result.clone()),
                KeyValue::new("vworkspace.command.issued_seq", c.issued_seq as i64),
            ];
            if !c.message.is_empty() {
                a.push(KeyValue::new("vworkspace.command.message", c.message.clone()));
            }
            if let Some((kind, ns, name)) = &c.child {
                a.push(KeyValue::new("vworkspace.child.kind", kind.clone()));
                a.push(KeyValue::new("vworkspace.child.namespace", ns.clone()));
                a.push(KeyValue::new("vworkspace.child.name", name.clone()));
            }
            let ok = matches!(c.result.as_str(), "Ok" | "AlreadyExistsOurs");
            (
                &c.op,
                format!("command {}", c.action),
                ids::span_id(&["command", &c.id, &c.issued_seq.to_string()]),
                c.issued_at,
                c.at,
                a,
                if ok { Status::Ok } else { Status::error(format!("{}: {}", c.result, c.message)) },
                c.seq,
            )
        }
        Signal::Wait(w) => {
            let mut a = vec![
                KeyValue::new("vworkspace.child.kind", w.kind.clone()),
                KeyValue::new("vworkspace.child.namespace", w.namespace.clone()),
                KeyValue::new("vworkspace.child.name", w.name.clone()),
                KeyValue::new("vworkspace.child.step", w.step as i64),
                KeyValue::new("vworkspace.child.done", w.done),
            ];
            if let Some(p) = &w.phase {
                a.push(KeyValue::new("vworkspace.engine.phase", p.clone()));
            }
            if let Some(p) = &w.progress {
                a.push(KeyValue::new("vworkspace.engine.progress", p.clone()));
            }
            (
                &w.op,
                format!("wait {}", w.kind),
                ids::span_id(&["wait", &w.op.uid, &w.step.to_string(), &w.seq.to_string()]),
                w.start,
                w.end,
                a,
                Status::Unset,
                w.seq,
            )
        }
    };
    let root = ids::root_span_id(&op.uid);
    let parent = if matches!(sig, Signal::Finished(_)) { SpanId::INVALID } else { SpanId::from_hex(&root).ok()? };
    attrs.extend(op_attributes(op, seq, epoch));
    Some(SpanData {
        span_context: context(&op.uid, &span)?,
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(name),
        start_time: SystemTime::from(start),
        end_time: SystemTime::from(end),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder("vworkspace-operator").build(),
    })
}

/// A context whose parent is the Operation's root span, for spans made through `tracing`.
pub fn parent(uid: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    let sc = SpanContext::new(
        TraceId::from_hex(&ids::trace_id(uid)).ok()?,
        SpanId::from_hex(&ids::root_span_id(uid)).ok()?,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    Some(opentelemetry::Context::new().with_remote_span_context(sc))
}

/// Where live signals' spans go: set once when OTLP export is configured.
static SINK: OnceLock<Box<dyn SpanProcessor>> = OnceLock::new();

pub fn set_sink(p: Box<dyn SpanProcessor>) {
    let _ = SINK.set(p);
}

pub fn sink() -> Option<&'static dyn SpanProcessor> {
    SINK.get().map(|b| b.as_ref())
}

/// Sends the spans of `signals` to the live sink, if there is one (no cost otherwise).
pub fn emit(signals: &[Signal], epoch: Option<u64>) {
    if let Some(s) = sink() {
        for sig in signals {
            if let Some(span) = render(sig, epoch) {
                s.on_end(span);
            }
        }
    }
}
