//! Records as stored, held in one buffer and decoded one at a time. A replay of a million
//! records held every body decoded (2.4 GB resident for a 517 MB export, and seconds of page
//! faults); this holds the checked, compressed frames and decodes each into reused buffers.

use rkyv::util::AlignedVec;

use crate::envelope::{self, ArchivedEntryKind, ArchivedHeader, Entry, EntryKind, Header, ResourceRef};
use crate::{Error, Result};

/// Checked record frames, in seq order.
#[derive(Debug, Default)]
pub struct RawRecords {
    buf: Vec<u8>,
    /// (start, length) of each frame in `buf`.
    spans: Vec<(usize, usize)>,
    /// The first record's seq (0 when empty).
    first_seq: u64,
}

impl RawRecords {
    /// Checks a frame (CRC, version, header, body length) and keeps a copy of its bytes.
    pub fn push(&mut self, seq_hint: u64, bytes: &[u8], scratch: &mut AlignedVec) -> Result<u64> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.keep(seq_hint, start..self.buf.len(), scratch)
    }

    /// Checks the frame at `at` of the buffer and keeps it.
    fn keep(&mut self, seq_hint: u64, at: std::ops::Range<usize>, scratch: &mut AlignedVec) -> Result<u64> {
        let Some(bytes) = self.buf.get(at.clone()) else {
            return Err(Error::Damaged { seq: seq_hint, why: "frame past the end".into() });
        };
        let seq = envelope::check(seq_hint, bytes, scratch)?;
        if self.spans.is_empty() {
            self.first_seq = seq;
        }
        self.spans.push((at.start, at.len()));
        Ok(seq)
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn first_seq(&self) -> Option<u64> {
        (!self.spans.is_empty()).then_some(self.first_seq)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Checked<'_>> + '_ {
        self.spans.iter().map(|&(s, n)| Checked(&self.buf[s..s + n]))
    }

    /// Drops the records at or before `seq` (a snapshot covers them). Seqs ascend, so they
    /// lead.
    pub fn drop_through(&mut self, seq: u64) -> Result<()> {
        let mut scratch = AlignedVec::new();
        let mut keep = 0;
        for (i, raw) in self.iter().enumerate() {
            if envelope::with_header_of(0, raw.0, false, &mut scratch, |h| h.seq.to_native())? > seq {
                break;
            }
            keep = i + 1;
        }
        self.spans.drain(..keep);
        let first = match self.iter().next() {
            Some(raw) => envelope::with_header_of(0, raw.0, false, &mut scratch, |h| h.seq.to_native())?,
            None => 0,
        };
        self.first_seq = first;
        Ok(())
    }
}

/// A frame whose CRC was checked when it was kept (`RawRecords::keep`): decoding it does not
/// checksum it again (2% of a replay).
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a>(&'a [u8]);

impl<'a> Checked<'a> {
    /// Bytes `envelope::check` accepted.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Checked(bytes)
    }
}

/// Decodes frames into one reused record: the body buffer and the header's strings keep their
/// capacity from record to record.
pub struct Decoder {
    entry: Entry,
    scratch: AlignedVec,
}

impl Default for Decoder {
    fn default() -> Self {
        let header = Header {
            version: envelope::FORMAT_VERSION,
            seq: 0,
            recorded_at_micros: 0,
            kind: EntryKind::Observed,
            event: 0,
            op_key: String::new(),
            resource: ResourceRef::default(),
            body_len: 0,
        };
        Decoder { entry: Entry { header, body: Vec::new() }, scratch: AlignedVec::new() }
    }
}

impl Decoder {
    /// The record in `bytes`, valid until the next call.
    pub fn decode(&mut self, seq_hint: u64, frame: Checked<'_>) -> Result<&Entry> {
        let Decoder { entry, scratch } = self;
        let bytes = frame.0;
        let tail = envelope::with_header_of(seq_hint, bytes, false, scratch, |h| copy_header(h, &mut entry.header))?;
        let Some(start) = bytes.len().checked_sub(tail).filter(|s| *s >= 6) else {
            return Err(Error::Damaged { seq: seq_hint, why: "body length past the frame".into() });
        };
        envelope::decompress_into(&bytes[start..bytes.len() - 4], &mut entry.body)
            .map_err(|e| Error::Damaged { seq: entry.header.seq, why: format!("body does not decompress: {e}") })?;
        envelope::upcast(&mut entry.header)?;
        Ok(&self.entry)
    }
}

/// The archived header into `h`, reusing its strings. Returns where the body starts, counted
/// from the frame's end (the body and the 4-byte CRC follow the header).
fn copy_header(a: &ArchivedHeader, h: &mut Header) -> usize {
    fn set(s: &mut String, from: &str) {
        s.clear();
        s.push_str(from);
    }
    h.version = a.version.to_native();
    h.seq = a.seq.to_native();
    h.recorded_at_micros = a.recorded_at_micros.to_native();
    h.kind = match a.kind {
        ArchivedEntryKind::Observed => EntryKind::Observed,
        ArchivedEntryKind::Outcome => EntryKind::Outcome,
        ArchivedEntryKind::Timer => EntryKind::Timer,
        ArchivedEntryKind::Discovery => EntryKind::Discovery,
    };
    h.event = a.event;
    set(&mut h.op_key, &a.op_key);
    let (r, ar) = (&mut h.resource, &a.resource);
    set(&mut r.kind, &ar.kind);
    set(&mut r.namespace, &ar.namespace);
    set(&mut r.name, &ar.name);
    set(&mut r.uid, &ar.uid);
    set(&mut r.resource_version, &ar.resource_version);
    h.body_len = a.body_len.to_native();
    h.body_len as usize + 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::NewEntry;

    fn record(seq: u64, body: serde_json::Value) -> Vec<u8> {
        let e = NewEntry {
            recorded_at_micros: seq as i64 * 1000,
            kind: EntryKind::Outcome,
            event: 0,
            op_key: format!("ns/op-{seq}"),
            resource: ResourceRef { kind: "Job".into(), name: format!("j{seq}"), ..Default::default() },
            body,
        };
        envelope::encode(seq, &e).unwrap()
    }

    #[test]
    fn decodes_as_the_allocating_decoder_does_and_drops_a_covered_head() {
        let frames: Vec<Vec<u8>> =
            (1..=5).map(|s| record(s, serde_json::json!({ "n": s, "pad": "x".repeat(s as usize * 40) }))).collect();
        let mut raw = RawRecords::default();
        let mut scratch = AlignedVec::new();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(raw.push(i as u64 + 1, f, &mut scratch).unwrap(), i as u64 + 1);
        }
        let mut d = Decoder::default();
        for (i, f) in raw.iter().enumerate() {
            let want = envelope::decode(i as u64 + 1, &frames[i]).unwrap();
            assert_eq!(d.decode(i as u64 + 1, f).unwrap(), &want);
        }
        raw.drop_through(3).unwrap();
        assert_eq!((raw.len(), raw.first_seq()), (2, Some(4)));
        raw.drop_through(9).unwrap();
        assert!(raw.is_empty() && raw.first_seq().is_none());
    }

    #[test]
    fn a_damaged_frame_is_refused_when_kept() {
        let mut f = record(1, serde_json::json!({ "n": 1 }));
        let n = f.len();
        f[n / 2] ^= 1;
        let err = RawRecords::default().push(1, &f, &mut AlignedVec::new()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
