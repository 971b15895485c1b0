//! The replay view: one stable JSON document (schema `vworkspace.replay/v1`, documented in
//! docs/operate/incident-replay.md) that the text and HTML formats are rendered from.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::pass::{Options, Pass, command_text, item_line, op_summary};
use crate::fold::op::OpState;
use crate::key::OpKey;

pub const SCHEMA: &str = "vworkspace.replay/v1";

pub fn build(journal: &str, p: &Pass, opts: &Options) -> Value {
    let ops: Vec<Value> = operations(p, opts).map(|(k, op)| op_view(p, k, op)).collect();
    let mut view = head(journal, p);
    view["operations"] = json!(ops);
    if opts.check {
        view["check"] = check(p);
    }
    view
}

fn operations<'a>(p: &'a Pass, opts: &'a Options) -> impl Iterator<Item = (&'a OpKey, &'a OpState)> {
    p.state.ops.iter().filter(|(k, _)| opts.op.as_ref().is_none_or(|o| o == *k))
}

fn head(journal: &str, p: &Pass) -> Value {
    json!({
        "schema": SCHEMA,
        "journal": journal,
        "records": p.records,
        "firstSeq": p.first_seq,
        "lastSeq": p.last_seq,
        "stoppedEarly": p.stopped,
    })
}

fn check(p: &Pass) -> Value {
    json!({ "ok": p.divergence.is_none(), "outcomesChecked": p.checked, "divergence": p.divergence })
}

fn op_view(p: &Pass, k: &OpKey, op: &OpState) -> Value {
    let mut v = op_summary(op);
    v["operation"] = json!(k.to_string());
    v["inFlight"] = json!(
        p.in_flight
            .iter()
            .filter(|(_, (_, c))| c.op == *k)
            .map(|(id, (seq, c))| json!({ "id": id, "issuedAt": seq, "command": command_text(c) }))
            .collect::<Vec<_>>()
    );
    v["timeline"] = json!(p.timelines.get(k).map(Vec::as_slice).unwrap_or_default());
    v
}

/// The text view of a pass, one Operation at a time: the same text as `text(&build(..))`
/// without holding the whole view as JSON (gigabytes for a million records).
pub fn render_text(journal: &str, p: &Pass, opts: &Options) -> String {
    let mut out = Vec::new();
    // Writing to memory cannot fail, and the text is UTF-8 as written.
    let _ = write_text(journal, p, opts, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `render_text`, written out one Operation at a time: a million-record replay printed
/// 200 MB, and growing that as one string cost a copy of it and its page faults.
pub fn write_text(journal: &str, p: &Pass, opts: &Options, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut out = String::new();
    head_text(&head(journal, p), &mut out);
    let mut pending: std::collections::BTreeMap<&OpKey, Vec<(&String, u64, &crate::command::Command)>> =
        Default::default();
    for (id, (seq, c)) in &p.in_flight {
        pending.entry(&c.op).or_default().push((id, *seq, c));
    }
    for (k, op) in operations(p, opts) {
        let pending = pending.get(k).map(Vec::as_slice).unwrap_or_default();
        match p.lines.get(k) {
            // Already text: written as it is, between the heading and the state.
            Some(lines) => {
                op_heading(k, op, &mut out);
                sink.write_all(out.as_bytes())?;
                out.clear();
                sink.write_all(lines.as_bytes())?;
                op_state(op, pending, &mut out);
            }
            _ => op_text_of(p, k, op, pending, &mut out),
        }
        if out.len() > 1 << 16 {
            sink.write_all(out.as_bytes())?;
            out.clear();
        }
    }
    if opts.check {
        check_text(&check(p), &mut out);
    }
    sink.write_all(out.as_bytes())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The human view: a timeline per Operation, then its state at the end (or the moment asked).
pub fn text(view: &Value) -> String {
    let mut out = String::new();
    head_text(view, &mut out);
    for op in view["operations"].as_array().into_iter().flatten() {
        op_text(op, &mut out);
    }
    if let Some(c) = view.get("check") {
        check_text(c, &mut out);
    }
    out
}

fn head_text(view: &Value, out: &mut String) {
    let _ = writeln!(
        out,
        "journal {}: {} records folded, seq {}..={}{}",
        s(&view["journal"]),
        view["records"],
        view["firstSeq"],
        view["lastSeq"],
        if view["stoppedEarly"] == true { " (stopped at the moment asked)" } else { "" }
    );
}

fn op_text(op: &Value, out: &mut String) {
    let _ = writeln!(out, "\n== {}  {}  uid {}", s(&op["operation"]), s(&op["phase"]), s(&op["uid"]));
    for i in op["timeline"].as_array().into_iter().flatten() {
        let at = s(&i["at"]);
        let _ =
            writeln!(out, "{:>8}  {at:<27}  {:<10}  {}", i["seq"].as_u64().unwrap_or(0), s(&i["kind"]), s(&i["text"]));
    }
    let _ = writeln!(out, "   state:");
    for c in op["conditions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "     {:<16} {:<7} {:<22} {}",
            s(&c["type"]),
            s(&c["status"]),
            s(&c["reason"]),
            s(&c["message"])
        );
    }
    for c in op["children"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "     child {} {} {}/{} create={} seen={} done={}",
            c["step"],
            s(&c["kind"]),
            s(&c["namespace"]),
            s(&c["name"]),
            s(&c["create"]),
            c["seen"],
            c["done"]
        );
    }
    for c in op["inFlight"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "     pending {} (issued at seq {}): {}", s(&c["id"]), c["issuedAt"], s(&c["command"]));
    }
    if let Some(o) = op["outputs"].as_object().filter(|o| !o.is_empty()) {
        let list: Vec<String> = o.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
        let _ = writeln!(out, "     outputs {}", list.join(" "));
    }
}

/// `op_text(&op_view(..))` straight from the pass: building each Operation's view as JSON
/// first took an eighth of a million-record replay.
fn op_text_of(
    p: &Pass,
    k: &OpKey,
    op: &OpState,
    pending: &[(&String, u64, &crate::command::Command)],
    out: &mut String,
) {
    op_heading(k, op, out);
    for i in p.timelines.get(k).into_iter().flatten() {
        item_line(i, out);
    }
    op_state(op, pending, out);
}

fn op_heading(k: &OpKey, op: &OpState, out: &mut String) {
    let _ = writeln!(out, "\n== {k}  {}  uid {}", op.conditions.phase().as_str(), op.uid);
}

fn op_state(op: &OpState, pending: &[(&String, u64, &crate::command::Command)], out: &mut String) {
    let _ = writeln!(out, "   state:");
    for c in op.conditions.map.values() {
        let _ = writeln!(out, "     {:<16} {:<7} {:<22} {}", c.type_, c.status.as_str(), c.reason, c.message);
    }
    for c in &op.steps {
        let _ = writeln!(
            out,
            "     child {} {} {}/{} create={:?} seen={} done={}",
            c.step,
            c.kind.kind(),
            c.namespace,
            c.name,
            c.create,
            c.seen,
            c.done
        );
    }
    for (id, seq, c) in pending {
        let _ = writeln!(out, "     pending {id} (issued at seq {seq}): {}", command_text(c));
    }
    if !op.outputs.is_empty() {
        let list: Vec<String> = op.outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "     outputs {}", list.join(" "));
    }
}

fn check_text(c: &Value, out: &mut String) {
    match c["divergence"].as_object() {
        None => {
            let _ = writeln!(
                out,
                "\ncheck: ok, {} recorded outcomes match the commands this build issues",
                c["outcomesChecked"]
            );
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "\ncheck: DIVERGENCE at seq {} ({}), Operation {}",
                d["seq"],
                s(&d["at"]),
                s(&d["operation"])
            );
            let _ = writeln!(out, "  why:          {}", s(&d["why"]));
            let _ = writeln!(out, "  record:       {}", d["record"]);
            let _ = writeln!(out, "  recorded:     {}", d["recorded"]);
            let _ = writeln!(out, "  this build:   {} (issued at seq {})", d["expected"], d["issuedAt"]);
            let _ = writeln!(out, "  state before: {}", d["stateBefore"]);
        }
    }
}
