//! `journal_decode`: the record envelope, the export reader and the record codec on any bytes.
//! Errors are expected; a panic, or two decoders that disagree about one record, is a finding.

use std::path::Path;

use vworkspace_journal::envelope::{self, Entry, EntryKind, Header};
use vworkspace_journal::export::{self, Item};
use vworkspace_journal::{FORMAT_VERSION, ResourceRef};

use super::crc;
use crate::fold::observe::OpMeta;
use crate::journal_codec;
use crate::key::{ObjKey, OpKey};
use crate::record::{Record, RecordBody, ResourceKind, WatchEvent};

pub fn journal_decode(data: &[u8]) {
    record(data);
    export(data);
    // The same bytes with their checksums made right, to get past the CRC to the decoders.
    let mut sealed = data.to_vec();
    crc::seal(&mut sealed);
    record(&sealed);
    export(&seal_export(data));
    body(data);
}

/// One record, through each way the journal reads one.
fn record(bytes: &[u8]) {
    // Replay's scan over archived headers must accept whatever the full decoder accepts.
    let mut buf = Default::default();
    let scanned = envelope::with_header(0, bytes, &mut buf, |h| h.op_key.len());
    let header = envelope::decode_header(0, bytes);
    if header.is_ok() {
        assert!(scanned.is_ok(), "decode_header accepts a record with_header refuses");
    }
    let Ok(entry) = envelope::decode(0, bytes) else { return };
    assert!(matches!(&header, Ok(h) if *h == entry.header), "decode and decode_header disagree");
    reencode(&entry);
    codec(&entry);
}

/// Import writes each record back with `encode_entry`: it must read back the same.
fn reencode(entry: &Entry) {
    let Ok(raw) = envelope::encode_entry(entry) else { return };
    let again = envelope::decode(0, &raw).ok();
    let mut want = entry.clone();
    want.header.body_len = again.as_ref().map_or(0, |e| e.header.body_len);
    assert_eq!(again, Some(want), "a re-encoded record reads back differently");
}

/// An export with every frame's checksum (record, snapshot, end) made right.
fn seal_export(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 12;
    while let Some(head) = out.get(at..at + 5) {
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let Some(frame) = out.get_mut(at + 5..at + 5 + len) else { break };
        crc::seal(frame);
        at += 5 + len;
    }
    out
}

fn export(bytes: &[u8]) {
    let Ok(items) = export::read_from(bytes, Path::new("fuzz")) else { return };
    for item in &items {
        if let Item::Record(e) = item {
            codec(e);
        }
    }
}

/// The bytes as a record body under a header the first two bytes choose, to reach the JSON
/// decoders without lz4 and the envelope in the way.
fn body(data: &[u8]) {
    let [k, ev, rest @ ..] = data else { return };
    let kind = match k % 4 {
        0 => EntryKind::Observed,
        1 => EntryKind::Outcome,
        2 => EntryKind::Timer,
        _ => EntryKind::Discovery,
    };
    let micros = [0, 1_767_225_600_000_000, i64::MAX, i64::MIN][usize::from(k / 4 % 4)];
    let resource = if ev & 8 == 0 { "Operation" } else { "Job" };
    let header = Header {
        version: FORMAT_VERSION,
        seq: 1,
        recorded_at_micros: micros,
        kind,
        event: ev % 8,
        op_key: String::new(),
        resource: ResourceRef { kind: resource.into(), ..Default::default() },
        body_len: 0,
    };
    codec(&Entry { header, body: rest.to_vec() });
}

/// The record codec: a decoded record must survive the trip through the journal unchanged.
pub(super) fn codec(e: &Entry) {
    let Ok(rec) = journal_codec::from_entry(e) else { return };
    probe_agrees(e, &rec);
    let new = journal_codec::to_entry(&rec);
    let Ok(raw) = envelope::encode(rec.seq, &new) else { return };
    let back = envelope::decode(rec.seq, &raw).map(|e| journal_codec::from_entry(&e).ok());
    assert!(matches!(&back, Ok(Some(r)) if *r == rec), "record {rec:?} reads back as {back:?} after the journal",);
}

/// Replay and restart skip echoes by `op_meta` alone, and replay skips answered commands by
/// `answer` alone: each must read what the fold reads.
pub(super) fn probe_agrees(e: &Entry, rec: &Record) {
    if let (Some(a), RecordBody::Outcome(o)) = (journal_codec::answer(e), &rec.body) {
        let read = (&a.command_id, &a.op, a.result, &a.message, &a.action);
        assert_eq!(read, (&o.command_id, &o.op, o.result, &o.message, &o.action), "answer misreads {o:?}");
    }
    if let (Some((key, meta)), RecordBody::Observed(o)) = (journal_codec::op_meta(e), &rec.body)
        && o.resource == ResourceKind::Operation
        && o.event == WatchEvent::Apply
        && let Some(obj) = &o.object
    {
        assert_eq!(meta, OpMeta::of(obj), "op_meta and the fold read different things from {obj}");
        let full = ObjKey::of(obj).map(|k| OpKey::new(k.namespace, k.name));
        assert_eq!(full, Some(key), "op_meta and the fold key {obj} differently");
    }
}
