//! Records ↔ journal entries: the header carries what replay filters on (seq, time, kind,
//! Operation, object identity) so it never parses JSON it does not need.

use chrono::{DateTime, Utc};
use vworkspace_journal::{Entry, EntryKind, NewEntry, ResourceRef};

use crate::fold::observe::OpMeta;
use crate::key::{ObjKey, OpKey};
use crate::record::{Record, RecordBody, WatchEvent};

mod flat;
mod probe;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("record at seq {seq} does not decode: {why}")]
    Body { seq: u64, why: String },
    #[error("record at seq {seq} has a time out of range")]
    Time { seq: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn event_code(e: WatchEvent) -> u8 {
    match e {
        WatchEvent::Init => 0,
        WatchEvent::InitApply => 1,
        WatchEvent::InitDone => 2,
        WatchEvent::Apply => 3,
        WatchEvent::Delete => 4,
    }
}

fn meta(obj: &serde_json::Value, field: &str) -> String {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(|v| v.as_str()).unwrap_or_default().to_string()
}

/// The journal entry for a record (the journal assigns the seq and redacts the body).
pub fn to_entry(r: &Record) -> NewEntry {
    let (kind, event, op_key, resource) = match &r.body {
        RecordBody::Observed(o) => {
            let resource = o
                .object
                .as_ref()
                .map(|obj| ResourceRef {
                    kind: o.resource.name().to_string(),
                    namespace: meta(obj, "namespace"),
                    name: meta(obj, "name"),
                    uid: meta(obj, "uid"),
                    resource_version: meta(obj, "resourceVersion"),
                })
                .unwrap_or_else(|| ResourceRef { kind: o.resource.name().to_string(), ..Default::default() });
            let op_key = match (o.resource, o.object.as_ref().and_then(ObjKey::of)) {
                (crate::record::ResourceKind::Operation, Some(k)) => format!("{}/{}", k.namespace, k.name),
                _ => String::new(),
            };
            (EntryKind::Observed, event_code(o.event), op_key, resource)
        }
        RecordBody::Outcome(o) => (EntryKind::Outcome, 0, o.op.to_string(), ResourceRef::default()),
        RecordBody::Timer(t) => (EntryKind::Timer, 0, t.op.to_string(), ResourceRef::default()),
        RecordBody::Discovery(_) | RecordBody::Restart | RecordBody::Started(_) => {
            (EntryKind::Discovery, 0, String::new(), ResourceRef::default())
        }
    };
    NewEntry {
        recorded_at_micros: r.at.timestamp_micros(),
        kind,
        event,
        op_key,
        resource,
        body: serde_json::to_value(&r.body).unwrap_or(serde_json::Value::Null),
    }
}

/// The body as text, checked once as a whole: parsed from bytes, serde_json checks every
/// string again on its own (a tenth of a replay's parsing).
fn text(e: &Entry) -> std::result::Result<&str, std::str::Utf8Error> {
    std::str::from_utf8(&e.body)
}

/// The record a journal entry holds.
pub fn from_entry(e: &Entry) -> Result<Record> {
    let seq = e.header.seq;
    let bad = |err: serde_json::Error| Error::Body { seq, why: err.to_string() };
    let text = text(e).map_err(|err| Error::Body { seq, why: format!("not UTF-8 text: {err}") })?;
    // The header names the variant, so the body parses straight into it (a body of another
    // variant lacks its required fields): the tagged enum would buffer the object first.
    let body = match e.header.kind {
        EntryKind::Observed => RecordBody::Observed(serde_json::from_str(text).map_err(bad)?),
        EntryKind::Outcome => RecordBody::Outcome(serde_json::from_str(text).map_err(bad)?),
        EntryKind::Timer => RecordBody::Timer(serde_json::from_str(text).map_err(bad)?),
        EntryKind::Discovery => serde_json::from_str(text).map_err(bad)?,
    };
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(e.header.recorded_at_micros).ok_or(Error::Time { seq })?;
    Ok(Record { seq, at, body })
}

/// For an Operation watch event, what the fold reads once it knows the Operation, parsed
/// without building the object (unknown fields are skipped, not allocated). None for any
/// other record, or for a body the probe cannot read exactly: then the record is decoded whole.
pub fn op_meta(e: &Entry) -> Option<(OpKey, OpMeta)> {
    let h = &e.header;
    if h.kind != EntryKind::Observed || h.event != event_code(WatchEvent::Apply) || h.resource.kind != "Operation" {
        return None;
    }
    let text = text(e).ok()?;
    let (key, meta) = flat::op_meta(text).or_else(|| op_meta_text(text))?;
    (!meta.uid.is_empty()).then_some((key, meta))
}

/// `op_meta` of a body, read by serde (what `flat::op_meta` reads faster, or declines).
fn op_meta_text(text: &str) -> Option<(OpKey, OpMeta)> {
    use serde::Deserialize;
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: String,
        #[serde(default)]
        namespace: Option<String>,
        uid: String,
        #[serde(default)]
        generation: Option<i64>,
        #[serde(default)]
        deletion_timestamp: Option<IgnoredAny>,
        #[serde(default)]
        finalizers: Option<Vec<String>>,
    }
    #[derive(Deserialize)]
    struct Spec {
        // Present-but-null must stay distinguishable from absent, as in `OpMeta::of`.
        #[serde(default, deserialize_with = "present")]
        cancel: Option<serde_json::Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<serde_json::Value>, D::Error> {
        serde_json::Value::deserialize(d).map(Some)
    }
    let (m, spec) = probe::object::<Meta, Spec>(text)?;
    let key = OpKey::new(m.namespace.unwrap_or_default(), m.name);
    let cancel = match spec.and_then(|s| s.cancel) {
        None => Some(false),
        Some(v) => v.as_bool(),
    };
    let meta = OpMeta {
        uid: m.uid,
        generation: m.generation.unwrap_or(1),
        deleting: m.deletion_timestamp.is_some(),
        finalizer: m.finalizers.is_some_and(|f| f.iter().any(|s| s == crate::api::FINALIZER)),
        cancel,
    };
    Some((key, meta))
}

/// What the fold reads of an outcome, and what a timeline shows of it, parsed without its data
/// or digest. None for any other record, or for a body it cannot read: then it is decoded whole.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub command_id: String,
    pub op: OpKey,
    pub result: crate::record::OutcomeResult,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub action: String,
}

pub fn answer(e: &Entry) -> Option<Answer> {
    if e.header.kind != EntryKind::Outcome {
        return None;
    }
    let text = text(e).ok()?;
    flat::answer(text).or_else(|| serde_json::from_str(text).ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vworkspace_journal::Header;

    use super::*;
    use crate::record::{Observed, ResourceKind};

    fn entry(obj: serde_json::Value) -> Entry {
        let rec = Record {
            seq: 1,
            at: DateTime::from_timestamp_micros(0).unwrap(),
            body: RecordBody::Observed(Observed {
                resource: ResourceKind::Operation,
                event: WatchEvent::Apply,
                object: Some(obj),
            }),
        };
        let n = to_entry(&rec);
        let header = Header {
            version: vworkspace_journal::FORMAT_VERSION,
            seq: 1,
            recorded_at_micros: 0,
            kind: n.kind,
            event: n.event,
            op_key: n.op_key,
            resource: n.resource,
            body_len: 0,
        };
        Entry { header, body: serde_json::to_vec(&n.body).unwrap() }
    }

    #[test]
    fn the_probe_reads_what_the_fold_reads_or_declines() {
        let base = json!({ "metadata": { "name": "a", "namespace": "ns", "uid": "u", "generation": 2,
            "finalizers": ["x", crate::api::FINALIZER], "managedFields": [{ "manager": "m" }] },
            "spec": { "type": "Backup", "cancel": true }, "status": { "phase": "Running" } });
        let variants = [
            base.clone(),
            json!({ "metadata": { "name": "a", "uid": "u" } }),
            json!({ "metadata": { "name": "a", "uid": "u", "deletionTimestamp": null }, "spec": null }),
            json!({ "metadata": { "name": "a", "uid": "u", "deletionTimestamp": "2026-01-01T00:00:00Z" } }),
            json!({ "metadata": { "name": "a", "uid": "u" }, "spec": { "cancel": null } }),
            json!({ "metadata": { "name": "a", "uid": "u" }, "spec": { "cancel": "yes" } }),
            json!({ "metadata": { "name": "a", "uid": "u", "finalizers": null, "namespace": null } }),
        ];
        for obj in variants {
            let e = entry(obj.clone());
            let (key, meta) = op_meta(&e).unwrap_or_else(|| panic!("probe declined {obj}"));
            assert_eq!(meta, OpMeta::of(&obj), "for {obj}");
            let k = ObjKey::of(&obj).unwrap();
            assert_eq!(key, OpKey::new(k.namespace, k.name));
        }
        // Bodies the probe cannot read exactly are decoded whole instead.
        for obj in [
            json!({ "metadata": { "name": "a", "uid": "" } }),
            json!({ "metadata": { "name": "a", "uid": "u", "generation": "2" } }),
            json!({ "metadata": { "name": "a", "uid": "u", "finalizers": [1] } }),
            json!({ "metadata": { "name": "a", "uid": "u" }, "spec": "x" }),
        ] {
            assert_eq!(op_meta(&entry(obj.clone())), None, "for {obj}");
        }
    }
}
