//! One pass of the fold over a journal. It collects, per Operation, the timeline (records,
//! condition transitions, commands, outcomes), stops at a moment when asked, and checks each
//! recorded outcome against the command this build issues for it (`--check`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use vworkspace_journal::Entry;

use super::Result;
use super::source::Source;
use crate::command::{Action, Command};
use crate::fold::{self, State};
use crate::journal_codec;
use crate::key::{ObjKey, OpIndex, OpKey, entry};
use crate::record::{OutcomeResult, Record, RecordBody, ResourceKind, WatchEvent};

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this Operation's timeline (the fold still reads every record).
    pub op: Option<OpKey>,
    /// Stop after this seq, or after the last record at or before this time.
    pub until: Option<u64>,
    pub at: Option<DateTime<Utc>>,
    /// Compare recorded outcomes with the commands this build issues.
    pub check: bool,
    /// Collect timelines (off for a fold-only replay).
    pub timeline: bool,
    /// Field-level diffs of each observed object against its previous version.
    pub diffs: bool,
    /// Keep each command's action with its timeline item (JSON and HTML show it; text does
    /// not, and a million-record replay kept gigabytes of statuses and manifests for nothing).
    pub details: bool,
    /// Keep the timelines as the text view prints them (`Pass::lines`) instead of as items: a
    /// million-record replay held three million items, each with its own string.
    pub lines: bool,
    /// Called every 1% of the records when there are more than 100k (a progress bar).
    pub progress: Option<fn(u64, u64)>,
    /// Collect the signals (transitions, commands, waits, ends) the operator reported live.
    pub signals: bool,
    /// Read and probe records on a second thread while this one folds (`pipelined`); None:
    /// when there are many records and more than one CPU. The result is the same either way.
    pub pipeline: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `record`, `outcome`, `transition` or `command`.
    pub kind: &'static str,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
}

/// What clicking an item shows. Kept unserialized until output: most replays print text, and
/// rendering every status and manifest as JSON up front doubled a timeline replay's time.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// A field-level diff of an observed object.
    Diff(Value),
    /// A command this build issued: its ID, digest and action.
    Command(Box<Command>),
}

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Detail::Diff(v) => v.serialize(s),
            Detail::Command(c) => json!({ "id": c.id, "digest": c.digest(), "action": c.action }).serialize(s),
        }
    }
}

/// The first place where this build decides differently from the recorded run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Divergence {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub operation: String,
    pub why: String,
    /// The outcome record as journaled.
    pub record: Value,
    /// What the recording says the effector ran: command ID, action, digest.
    pub recorded: Value,
    /// The command this build issued under that ID, and the seq of the record it came from.
    pub expected: Option<Value>,
    pub issued_at: Option<u64>,
    /// The Operation's folded state just before the diverging record.
    pub state_before: Value,
}

#[derive(Default)]
pub struct Pass {
    pub state: State,
    /// Looked up, never iterated (views walk the folded Operations in order).
    pub timelines: OpIndex<Vec<Item>>,
    /// The same timelines as text lines, when `Options::lines` asks for them instead.
    pub lines: OpIndex<String>,
    pub records: u64,
    /// Of those, folded from a probe of the body (echoes, answered commands), not decoded whole.
    pub probed: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Set when `--until`/`--at` stopped the pass early.
    pub stopped: bool,
    pub checked: u64,
    pub divergence: Option<Divergence>,
    /// Commands issued and not answered yet: ID → (seq of the record, command).
    pub in_flight: BTreeMap<String, (u64, Command)>,
    /// Commands answered: ID → digest, so a repeated outcome is not a divergence.
    answered: BTreeMap<String, String>,
    objects: BTreeMap<(ResourceKind, ObjKey), Value>,
    conditions: OpIndex<Vec<(String, String, String)>>,
    pub signals: Vec<crate::signals::Signal>,
    projector: crate::signals::Projector,
}

/// Journals shorter than this are read on the calling thread: a second thread pays for
/// itself only over many records.
const PIPELINE_MIN: u64 = 20_000;

/// Records handed from the reading thread to the folding one at a time.
const BATCH: usize = 256;

pub fn run(src: &Source, opts: &Options) -> Result<Pass> {
    let mut p = Pass { state: src.start.0.clone(), ..Default::default() };
    p.state.world.replay = true;
    p.projector = crate::signals::Projector::seeded(&p.state);
    let total = src.len();
    let every = (total / 100).max(1);
    let mut i = 0u64;
    let mut fold = |p: &mut Pass, e: &Entry, probes: &mut Probes| {
        i += 1;
        if let Some(f) = opts.progress.filter(|_| total > 100_000 && (i - 1).is_multiple_of(every)) {
            f(i - 1, total);
        }
        p.consume(e, probes, opts)
    };
    // Counting CPUs reads the cgroup's quota: only when the journal is long enough to ask.
    let cpus = || std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if opts.pipeline.unwrap_or_else(|| total >= PIPELINE_MIN && cpus() > 1) {
        let done = pipelined(src, opts, &mut p, fold);
        p.state.world.spent = Default::default();
        done?;
    } else {
        let mut decoder = vworkspace_journal::raw::Decoder::default();
        let mut n = src.start.1;
        src.each(|raw| {
            n += 1;
            let e = decoder.decode(n, raw)?;
            fold(&mut p, e, &mut Probes::of(e, opts, false))
        })?;
    }
    Ok(p)
}

/// What the folding thread hands back to the reading one: the records it has folded and the
/// objects their newer versions replaced. Freed by the thread that built them: mimalloc frees
/// another thread's memory through an atomic list, which cost the folding thread more than
/// parsing there did.
type Spent = (Vec<Result<(Entry, Probes)>>, crate::fold::world::Spent);

/// Reads, decompresses, probes and decodes records on a second thread while this one folds
/// them, in order: the fold sees exactly what a single thread would hand it. Reading stops when
/// the fold does (`--until`, a divergence, an error).
fn pipelined(
    src: &Source,
    opts: &Options,
    p: &mut Pass,
    mut fold: impl FnMut(&mut Pass, &Entry, &mut Probes) -> Result<bool>,
) -> Result<()> {
    p.state.world.spent.on = true;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<(Entry, Probes)>>>(16);
    let (back, freed) = std::sync::mpsc::channel::<Spent>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut decoder = vworkspace_journal::raw::Decoder::default();
            let mut n = src.start.1;
            let mut batch = Vec::with_capacity(BATCH);
            let read = src.each(|raw| {
                n += 1;
                let item = decoder.decode(n, raw).map(|e| (e.clone(), Probes::of(e, opts, true)));
                let failed = item.is_err();
                batch.push(item.map_err(Into::into));
                // Nothing after a record that does not decode is folded: stop reading there.
                if failed {
                    return Ok(false);
                }
                if batch.len() < BATCH {
                    return Ok(true);
                }
                while let Ok(spent) = freed.try_recv() {
                    drop(spent);
                }
                // A send fails only once the fold has stopped.
                Ok(tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_ok())
            });
            if let Err(e) = read {
                batch.push(Err(e));
            }
            let _ = tx.send(batch);
        });
        for mut batch in rx {
            for i in 0..batch.len() {
                let (e, probes) = match &mut batch[i] {
                    Ok(item) => item,
                    Err(_) => return batch.swap_remove(i).map(|_| ()),
                };
                if !fold(p, e, probes)? {
                    return Ok(());
                }
            }
            let _ = back.send((batch, p.state.world.spent.take()));
        }
        Ok(())
    })
}

/// What a record says without the folded state: an Operation event's metadata, an outcome's
/// command ID. Whether that suffices depends on the state, so the fold decodes the record whole
/// when it does not. A record with no probe is always decoded whole: on the reading thread when
/// there is one (`record`).
struct Probes {
    op: Option<(OpKey, fold::observe::OpMeta)>,
    answer: Option<journal_codec::Answer>,
    record: Option<journal_codec::Result<Record>>,
}

impl Probes {
    fn of(e: &Entry, opts: &Options, decode: bool) -> Self {
        // --check compares whole outcomes, and signals and diffs read whole records.
        let op = if opts.diffs { None } else { journal_codec::op_meta(e) };
        let answer = if opts.diffs || opts.check || opts.signals { None } else { journal_codec::answer(e) };
        let record = (decode && op.is_none() && answer.is_none()).then(|| journal_codec::from_entry(e));
        Probes { op, answer, record }
    }
}

impl Pass {
    /// Folds one record; false to stop (`--until`/`--at`, or a divergence).
    fn consume(&mut self, e: &Entry, probes: &mut Probes, opts: &Options) -> Result<bool> {
        if opts.until.is_some_and(|u| e.header.seq > u)
            || opts.at.is_some_and(|at| e.header.recorded_at_micros > at.timestamp_micros())
        {
            self.stopped = true;
            return Ok(false);
        }
        let probed = probes.op.as_ref().is_some_and(|(key, meta)| self.echo(e, key, meta, opts))
            || probes.answer.as_ref().is_some_and(|a| self.answered(e, a, opts));
        if probed {
            self.count_probed(e.header.seq);
            return Ok(true);
        }
        let rec = match probes.record.take() {
            Some(rec) => rec?,
            None => journal_codec::from_entry(e)?,
        };
        if self.first_seq == 0 {
            self.first_seq = rec.seq;
        }
        if opts.check && !self.check(&rec) {
            return Ok(false);
        }
        let seq = rec.seq;
        self.step(e, rec, opts);
        self.records += 1;
        self.last_seq = seq;
        Ok(true)
    }

    /// Folds an Operation event that only echoes the operator's own write from its header and
    /// a probe of the body, without decoding the object; false when it must be decoded whole.
    fn echo(&mut self, e: &Entry, key: &OpKey, meta: &fold::observe::OpMeta, opts: &Options) -> bool {
        let seq = e.header.seq;
        let Some(at) = DateTime::from_timestamp_micros(e.header.recorded_at_micros) else { return false };
        if !fold::skip_echo(&mut self.state, seq, key, meta) {
            return false;
        }
        if opts.timeline {
            let text = observed_text(e, WatchEvent::Apply, ResourceKind::Operation);
            self.timeline(seq, at, &[], vec![key.clone()], "record", text, None, false, opts);
        }
        true
    }

    /// Folds an outcome that changes nothing the Operation reads from its command ID and result
    /// (`fold::skip_answered`), without decoding it whole; false when it must be. Books it as
    /// `step` would.
    fn answered(&mut self, e: &Entry, a: &journal_codec::Answer, opts: &Options) -> bool {
        let seq = e.header.seq;
        let Some(at) = DateTime::from_timestamp_micros(e.header.recorded_at_micros) else { return false };
        if !fold::skip_answered(&mut self.state, seq, &a.op, &a.command_id, &a.result) {
            return false;
        }
        if opts.timeline {
            self.in_flight.remove(&a.command_id);
            let text = outcome_text(&a.command_id, &a.action, &a.result, &a.message);
            self.timeline(seq, at, &[], vec![a.op.clone()], "outcome", text, None, false, opts);
        }
        true
    }

    /// Counts a record folded from a probe (`echo`, `answered`).
    fn count_probed(&mut self, seq: u64) {
        if self.first_seq == 0 {
            self.first_seq = seq;
        }
        self.records += 1;
        self.probed += 1;
        self.last_seq = seq;
    }

    /// False at the first divergence (recorded in `self.divergence`).
    fn check(&mut self, rec: &Record) -> bool {
        let RecordBody::Outcome(o) = &rec.body else { return true };
        self.checked += 1;
        if self.answered.get(&o.command_id).is_some_and(|d| o.digest.is_empty() || *d == o.digest) {
            return true;
        }
        let issued = self.in_flight.get(&o.command_id).cloned();
        let why = match &issued {
            None => {
                Some(format!("the journal has an outcome for command {}, which this build never issued", o.command_id))
            }
            Some((_, c)) if !o.action.is_empty() && o.action != c.action.name() => Some(format!(
                "command {} was {} when recorded; this build issues {}",
                o.command_id,
                o.action,
                c.action.name()
            )),
            // Records of format 1 carry no digest: their IDs are all that can be compared.
            Some((_, c)) if !o.digest.is_empty() && o.digest != c.digest() => Some(format!(
                "command {} ({}) differs: recorded digest {}, this build {}",
                o.command_id,
                c.action.name(),
                o.digest,
                c.digest()
            )),
            Some(_) => None,
        };
        let Some(why) = why else { return true };
        let state_before = self.state.ops.get(&o.op).map(op_summary).unwrap_or(Value::Null);
        self.divergence = Some(Divergence {
            seq: rec.seq,
            at: rec.at,
            operation: o.op.to_string(),
            why,
            record: serde_json::to_value(&rec.body).unwrap_or(Value::Null),
            recorded: json!({ "commandId": o.command_id, "action": o.action, "digest": o.digest }),
            expected: issued.as_ref().map(|(_, c)| serde_json::to_value(c).unwrap_or(Value::Null)),
            issued_at: issued.map(|(s, _)| s),
            state_before,
        });
        false
    }

    fn step(&mut self, e: &Entry, rec: Record, opts: &Options) {
        if !opts.check && !opts.timeline && !opts.signals {
            // A fold-only replay keeps no books on commands.
            fold::step_owned(&mut self.state, rec);
            return;
        }
        let (seq, at) = (rec.seq, rec.at);
        let answer = match &rec.body {
            RecordBody::Outcome(o) => Some(o.command_id.clone()),
            _ => None,
        };
        let (kind, text) = if opts.timeline { record_text(e, &rec) } else { ("record", String::new()) };
        let (cmds, touched, diff) = if opts.signals || opts.diffs {
            // These read the record after the fold.
            let cmds = fold::step(&mut self.state, &rec);
            if opts.signals {
                let s = self.projector.step(&self.state, &rec, &cmds);
                self.signals.extend(s);
            }
            let touched = crate::signals::Projector::touched(&self.state, &rec, &cmds);
            let diff = if opts.diffs { self.diff_object(&rec).map(Detail::Diff) } else { None };
            (cmds, touched, diff)
        } else {
            // The object moves into the folded world. Whom the record touches is read first:
            // folding it does not change an object's owner.
            let mut touched =
                if opts.timeline { crate::signals::Projector::touched(&self.state, &rec, &[]) } else { Vec::new() };
            let cmds = fold::step_owned(&mut self.state, rec);
            touched.extend(cmds.iter().map(|c| c.op.clone()));
            touched.sort();
            touched.dedup();
            (cmds, touched, None)
        };
        self.books(Folded { seq, at, answer, cmds, touched, kind, text, diff }, opts);
    }

    /// Keeps the commands in flight and the timelines up to date with one folded record.
    fn books(&mut self, f: Folded, opts: &Options) {
        if !opts.check && !opts.timeline {
            return;
        }
        let Folded { seq, at, answer, cmds, touched, kind, text, diff } = f;
        if let Some(id) = answer
            && let Some((_, c)) = self.in_flight.remove(&id)
            && opts.check
        {
            self.answered.insert(id, c.digest());
        }
        if opts.timeline {
            self.timeline(seq, at, &cmds, touched, kind, text, diff, true, opts);
        }
        // Moved, not cloned: a status patch carries the whole status.
        for c in cmds {
            if c.action.has_outcome() {
                self.in_flight.insert(c.id.clone(), (seq, c));
            }
        }
    }

    /// The timeline items of one folded record: the record, transitions, commands. `changed`
    /// is false for a record folded from a probe, which changes no condition.
    #[allow(clippy::too_many_arguments)]
    fn timeline(
        &mut self,
        seq: u64,
        at: DateTime<Utc>,
        cmds: &[Command],
        mut touched: Vec<OpKey>,
        kind: &'static str,
        text: String,
        diff: Option<Detail>,
        changed: bool,
        opts: &Options,
    ) {
        touched.retain(|k| opts.op.as_ref().is_none_or(|o| o == k));
        if touched.is_empty() {
            return;
        }
        // Every line of a record starts alike: seq and time are written once.
        let stamp = if opts.lines { stamp(seq, at) } else { String::new() };
        for k in touched {
            let mut line = if opts.lines {
                Line::Text(&stamp, entry(&mut self.lines, &k, String::new))
            } else {
                Line::Items(seq, at, entry(&mut self.timelines, &k, Vec::new))
            };
            line.push_text(kind, &text, || diff.clone());
            if let Some(op) = self.state.ops.get(&k).filter(|_| changed) {
                let before = entry(&mut self.conditions, &k, Vec::new);
                let same = before.len() == op.conditions.map.len()
                    && before
                        .iter()
                        .zip(op.conditions.map.values())
                        .all(|(b, c)| b.0 == c.type_ && b.1 == c.status.as_str() && b.2 == c.reason);
                if !same {
                    let now: Vec<(String, String, String)> = op
                        .conditions
                        .map
                        .values()
                        .map(|c| (c.type_.clone(), c.status.as_str().to_string(), c.reason.clone()))
                        .collect();
                    let before = std::mem::replace(before, now);
                    for c in op.conditions.map.values() {
                        let (ty, status, reason) = (&c.type_, c.status.as_str(), &c.reason);
                        let old = before.iter().find(|b| &b.0 == ty);
                        if old.is_some_and(|o| (o.1.as_str(), &o.2) == (status, reason)) {
                            continue;
                        }
                        let (from_status, from_reason, slash) =
                            old.map(|o| (o.1.as_str(), o.2.as_str(), "/")).unwrap_or(("-", "", ""));
                        let (sep, message) = if c.message.is_empty() { ("", "") } else { (": ", c.message.as_str()) };
                        line.push(
                            "transition",
                            format_args!("{ty}: {from_status}{slash}{from_reason} -> {status}/{reason}{sep}{message}"),
                            || None,
                        );
                    }
                }
            }
            for c in cmds.iter().filter(|c| c.op == k) {
                line.push("command", format_args!("{}", CommandText(c)), || {
                    opts.details.then(|| Detail::Command(Box::new(c.clone())))
                });
            }
        }
    }

    /// Field-level changes of an observed object since its previous version.
    fn diff_object(&mut self, rec: &Record) -> Option<Value> {
        let RecordBody::Observed(o) = &rec.body else { return None };
        let obj = o.object.as_ref()?;
        let key = (o.resource, ObjKey::of(obj)?);
        let before = self.objects.get(&key).cloned().unwrap_or(Value::Null);
        let mut changes = Vec::new();
        super::diff::fields(&before, obj, "", &mut changes);
        self.objects.insert(key, obj.clone());
        Some(json!({ "diff": changes }))
    }
}

fn record_text(e: &Entry, rec: &Record) -> (&'static str, String) {
    match &rec.body {
        RecordBody::Observed(o) => ("record", observed_text(e, o.event, o.resource)),
        RecordBody::Outcome(o) => ("outcome", outcome_text(&o.command_id, &o.action, &o.result, &o.message)),
        RecordBody::Timer(t) => ("record", format!("timer {:?} fired", t.timer)),
        RecordBody::Discovery(d) => ("record", format!("discovery: {} engine CRD(s) installed", d.installed.len())),
        RecordBody::Restart => ("record", "restart: commands in flight are derived again".into()),
        RecordBody::Started(s) => {
            ("record", format!("process started (shard {}): acting once every kind is relisted", s.shard))
        }
    }
}

fn outcome_text(command_id: &str, action: &str, result: &OutcomeResult, message: &str) -> String {
    let (sep, message) = if message.is_empty() { ("", "") } else { (": ", message) };
    format!("outcome {} {result:?}{sep}{message}", if action.is_empty() { command_id } else { action })
}

fn observed_text(e: &Entry, event: WatchEvent, resource: ResourceKind) -> String {
    let r = &e.header.resource;
    if r.name.is_empty() {
        format!("observed {event:?} {} relist", resource.name())
    } else {
        format!("observed {event:?} {} {}/{} rv={}", r.kind, r.namespace, r.name, r.resource_version)
    }
}

pub fn command_text(c: &Command) -> String {
    CommandText(c).to_string()
}

/// A command as the timeline shows it, written straight into the line it goes to.
struct CommandText<'a>(&'a Command);

impl std::fmt::Display for CommandText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.action {
            Action::CreateChild { kind, namespace, name, .. } => write!(f, "create {} {namespace}/{name}", kind.kind()),
            Action::DeleteChild { kind, namespace, name } => write!(f, "delete {} {namespace}/{name}", kind.kind()),
            Action::PatchChild { kind, namespace, name, patch } => {
                write!(f, "patch {} {namespace}/{name} {patch}", kind.kind())
            }
            Action::PatchStatus { status } => {
                write!(f, "status: phase {}", status.phase.map(|p| p.as_str()).unwrap_or("-"))?;
                match &status.message {
                    Some(m) => write!(f, ", {m}"),
                    None => Ok(()),
                }
            }
            Action::EmitEvent { event_type, reason, note, .. } => write!(f, "event {event_type:?} {reason}: {note}"),
            Action::PatchTargetVersion { target, version, expected_current } => {
                write!(f, "set {target} chart version {expected_current} -> {version}")
            }
            Action::LoadHelmHooks { release, event } => write!(f, "read {event} hooks of release {release}"),
            Action::SetTimer { timer, at } => write!(f, "timer {timer:?} at {}", at.to_rfc3339()),
            Action::AddFinalizer => f.write_str("add finalizer"),
            Action::RemoveFinalizer => f.write_str("remove finalizer"),
            Action::DeleteOperation => f.write_str("delete the Operation (retention)"),
        }
    }
}

/// Where one Operation's timeline items go: items (JSON, HTML, diffs) or the text view's lines.
enum Line<'a> {
    Items(u64, DateTime<Utc>, &'a mut Vec<Item>),
    /// The stamp (`stamp`) and the Operation's lines.
    Text(&'a str, &'a mut String),
}

impl Line<'_> {
    /// `push` of text already written (a record's line, pushed to each Operation it touches).
    fn push_text(&mut self, kind: &'static str, text: &str, detail: impl FnOnce() -> Option<Detail>) {
        match self {
            Line::Items(..) => self.push(kind, format_args!("{text}"), detail),
            Line::Text(stamp, out) => {
                line_start(out, stamp, kind);
                out.push_str(text);
                out.push('\n');
            }
        }
    }

    fn push(&mut self, kind: &'static str, text: std::fmt::Arguments<'_>, detail: impl FnOnce() -> Option<Detail>) {
        match self {
            Line::Items(seq, at, items) => {
                items.push(Item { seq: *seq, at: *at, kind, text: text.to_string(), detail: detail() })
            }
            Line::Text(stamp, out) => {
                line_start(out, stamp, kind);
                // Writing to a string cannot fail.
                let _ = out.write_fmt(text);
                out.push('\n');
            }
        }
    }
}

/// The start of a text line: seq and time as the JSON view writes them, padded.
/// Written by hand: `format!` with chrono's RFC 3339 writer was 2% of a timeline replay.
/// Years outside 0..=9999 and leap seconds go through chrono (test: `stamps_as_chrono_writes`).
fn stamp(seq: u64, at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    /// `n` right-aligned to `width`, filled with `fill` (`'0'` pads a date field, `' '` the seq).
    fn number(out: &mut String, mut n: u64, width: usize, fill: u8) {
        let mut buf = [fill; 20];
        let mut i = buf.len();
        while n > 0 || i == buf.len() {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let len = (buf.len() - i).max(width);
        out.extend(buf[buf.len() - len..].iter().map(|&b| b as char));
    }
    let digits = |out: &mut String, n: u64, width: usize| number(out, n, width, b'0');
    let mut out = String::with_capacity(48);
    number(&mut out, seq, 8, b' ');
    out.push_str("  ");
    let start = out.len();
    let (year, nanos) = (at.year(), at.nanosecond());
    if (0..=9999).contains(&year) && nanos < 1_000_000_000 {
        digits(&mut out, year as u64, 4);
        for (sep, v) in [('-', at.month()), ('-', at.day()), ('T', at.hour()), (':', at.minute()), (':', at.second())] {
            out.push(sep);
            digits(&mut out, v as u64, 2);
        }
        if nanos != 0 {
            out.push('.');
            match (nanos % 1_000_000, nanos % 1_000) {
                (0, _) => digits(&mut out, (nanos / 1_000_000) as u64, 3),
                (_, 0) => digits(&mut out, (nanos / 1_000) as u64, 6),
                _ => digits(&mut out, nanos as u64, 9),
            }
        }
        out.push('Z');
    } else {
        out.push_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    let wide = out.len() - start;
    out.push_str(&PAD[..27usize.saturating_sub(wide).min(PAD.len())]);
    out.push_str("  ");
    out
}

/// Padding, sliced (pushing spaces a char at a time showed in profiles).
const PAD: &str = "                           ";

/// A text line up to its text: the stamp, and the kind padded to ten by hand (a formatter's
/// padding goes through `Formatter::pad` on every line).
fn line_start(out: &mut String, stamp: &str, kind: &str) {
    out.push_str(stamp);
    out.push_str(kind);
    out.push_str(&PAD[..10usize.saturating_sub(kind.len()) + 2]);
}

/// An item as a text line (the text view of items, `view`).
pub fn item_line(i: &Item, out: &mut String) {
    line_start(out, &stamp(i.seq, i.at), i.kind);
    out.push_str(&i.text);
    out.push('\n');
}

/// What the books keep of one folded record.
struct Folded {
    seq: u64,
    at: DateTime<Utc>,
    /// The command an outcome answers.
    answer: Option<String>,
    cmds: Vec<Command>,
    /// The Operations it touched.
    touched: Vec<OpKey>,
    kind: &'static str,
    text: String,
    diff: Option<Detail>,
}

/// What a reader needs of an Operation's folded state.
pub fn op_summary(op: &crate::fold::op::OpState) -> Value {
    json!({
        "uid": op.uid,
        "phase": op.conditions.phase().as_str(),
        "conditions": op.conditions.map.values().map(|c| json!({ "type": c.type_, "status": c.status.as_str(), "reason": c.reason, "message": c.message })).collect::<Vec<_>>(),
        "children": op.steps.iter().map(|s| json!({ "step": s.step, "kind": s.kind.kind(), "namespace": s.namespace, "name": s.name, "create": format!("{:?}", s.create), "seen": s.seen, "done": s.done })).collect::<Vec<_>>(),
        "pending": op.pending.keys().collect::<Vec<_>>(),
        "outputs": op.outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_as_chrono_writes() {
        let times = [
            0,
            1_000,
            1_000_000,
            123_456,
            1_764_000_000_123_000,
            1_764_000_000_000_001,
            -1,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            -62_135_596_800_000_001,
        ];
        let mut ats: Vec<DateTime<Utc>> = times.iter().map(|&t| DateTime::from_timestamp_micros(t).unwrap()).collect();
        ats.push(DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap());
        ats.push(DateTime::from_timestamp(1_699_999_979, 1_500_000_000).unwrap());
        for at in ats {
            for seq in [0, 7, 12_345_678, 123_456_789, u64::MAX] {
                let chrono = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                assert_eq!(stamp(seq, at), format!("{seq:>8}  {chrono:<27}  "), "{seq} {at:?}");
            }
        }
    }
}
