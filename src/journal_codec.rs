//! Records ↔ journal entries: the header carries what replay filters on (seq, time, kind,
//! Operation, object identity) so it never parses JSON it does not need.

use chrono::{DateTime, Utc};
use vworkspace_journal::{Entry, EntryKind, NewEntry, ResourceRef};

use crate::key::ObjKey;
use crate::record::{Record, RecordBody, WatchEvent};

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
    obj.pointer(&format!("/metadata/{field}")).and_then(|v| v.as_str()).unwrap_or_default().to_string()
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
        RecordBody::Discovery(_) | RecordBody::Restart => {
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

/// The record a journal entry holds.
pub fn from_entry(e: &Entry) -> Result<Record> {
    let seq = e.header.seq;
    let body: RecordBody = serde_json::from_slice(&e.body).map_err(|err| Error::Body { seq, why: err.to_string() })?;
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(e.header.recorded_at_micros).ok_or(Error::Time { seq })?;
    Ok(Record { seq, at, body })
}
