//! The record envelope. Bytes of one record:
//!
//! ```text
//! u16 LE  format version (stable position in every version, so newer records are recognised)
//! u32 LE  header length H
//! H bytes rkyv-archived Header
//! B bytes body: lz4 (size-prepended) of the record's JSON, B = header.body_len
//! u32 LE  CRC32C of everything before it
//! ```
//! Replay reads the header without touching the body; the body is parsed only when needed.

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize, rancor};

use crate::{Error, Result};

/// The format this build writes. Older versions are upcast on read (docs/journal-format.md).
pub const FORMAT_VERSION: u16 = 1;

/// Version (u16) and header length (u32).
const PREFIX: usize = 6;

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum EntryKind {
    /// A watch event on an Operation, template, target, Secret or child.
    Observed = 1,
    /// The outcome of an effector command.
    Outcome = 2,
    /// A timer firing.
    Timer = 3,
    /// The set of installed engine CRDs.
    Discovery = 4,
}

/// The watched object a record concerns.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Header {
    pub version: u16,
    pub seq: u64,
    /// Microseconds since the Unix epoch: the only clock the fold knows.
    pub recorded_at_micros: i64,
    pub kind: EntryKind,
    /// Watch event (Init=0, InitApply=1, InitDone=2, Apply=3, Delete=4) for Observed records.
    pub event: u8,
    /// `namespace/name` of the Operation it concerns, or empty.
    pub op_key: String,
    pub resource: ResourceRef,
    /// Length of the compressed body.
    pub body_len: u32,
}

/// A record to append: the journal assigns `seq` and redacts `body` before encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    pub recorded_at_micros: i64,
    pub kind: EntryKind,
    pub event: u8,
    pub op_key: String,
    pub resource: ResourceRef,
    pub body: serde_json::Value,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub header: Header,
    /// Uncompressed JSON body.
    pub body: Vec<u8>,
}

impl Entry {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Damaged { seq: self.header.seq, why: format!("body is not JSON: {e}") })
    }
}

/// JSON then lz4 (size-prepended): the body as stored.
pub fn compress_body(body: &serde_json::Value) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(body).map_err(|err| Error::Encode(err.to_string()))?;
    Ok(lz4_flex::compress_prepend_size(&json))
}

/// Frames an already compressed body under a header for `seq`.
pub fn frame(seq: u64, e: &NewEntry, body: &[u8]) -> Result<Vec<u8>> {
    let header = Header {
        version: FORMAT_VERSION,
        seq,
        recorded_at_micros: e.recorded_at_micros,
        kind: e.kind,
        event: e.event,
        op_key: e.op_key.clone(),
        resource: e.resource.clone(),
        body_len: body.len() as u32,
    };
    frame_header(&header, body)
}

fn frame_header(header: &Header, body: &[u8]) -> Result<Vec<u8>> {
    let h = rkyv::to_bytes::<rancor::Error>(header).map_err(|err| Error::Encode(err.to_string()))?;
    let mut out = Vec::with_capacity(PREFIX + h.len() + body.len() + 4);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

pub fn encode(seq: u64, e: &NewEntry) -> Result<Vec<u8>> {
    frame(seq, e, &compress_body(&e.body)?)
}

/// Re-encodes a decoded record exactly (same seq, header and body), for import.
pub fn encode_entry(e: &Entry) -> Result<Vec<u8>> {
    let body = lz4_flex::compress_prepend_size(&e.body);
    let mut header = e.header.clone();
    header.body_len = body.len() as u32;
    frame_header(&header, &body)
}

/// Checks length, CRC and version; returns the payload and the header length.
fn check_frame(seq_hint: u64, bytes: &[u8]) -> Result<(&[u8], usize)> {
    frame_parts(seq_hint, bytes, true)
}

/// `check_frame`, with the CRC left out when `crc` is false: for a frame that was checked
/// when it was read (`raw::Checked`). Lengths and version are checked either way.
fn frame_parts(seq_hint: u64, bytes: &[u8], crc: bool) -> Result<(&[u8], usize)> {
    let damaged = |why: &str| Error::Damaged { seq: seq_hint, why: why.to_string() };
    if bytes.len() < PREFIX + 4 {
        return Err(damaged("shorter than a record frame"));
    }
    let (payload, sum) = bytes.split_at(bytes.len() - 4);
    if crc && crc32c::crc32c(payload) != u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]) {
        return Err(damaged("checksum mismatch"));
    }
    supported(u16::from_le_bytes([payload[0], payload[1]]))?;
    let hlen = u32::from_le_bytes([payload[2], payload[3], payload[4], payload[5]]) as usize;
    if PREFIX + hlen > payload.len() {
        return Err(damaged("header length past the end"));
    }
    Ok((payload, hlen))
}

/// Checks the frame; returns the header bytes (aligned) and the body slice.
fn split(seq_hint: u64, bytes: &[u8]) -> Result<(AlignedVec, &[u8])> {
    let (payload, hlen) = check_frame(seq_hint, bytes)?;
    // rkyv needs aligned bytes; the store gives no alignment guarantee.
    let mut aligned = AlignedVec::<16>::with_capacity(hlen);
    aligned.extend_from_slice(&payload[PREFIX..PREFIX + hlen]);
    Ok((aligned, &payload[PREFIX + hlen..]))
}

/// Reads and validates the header only (no body decompression, no JSON).
pub fn decode_header(seq_hint: u64, bytes: &[u8]) -> Result<Header> {
    let (h, body) = split(seq_hint, bytes)?;
    let archived = rkyv::access::<ArchivedHeader, rancor::Error>(&h)
        .map_err(|e| Error::Damaged { seq: seq_hint, why: format!("header does not validate: {e}") })?;
    let mut header: Header = rkyv::deserialize::<Header, rancor::Error>(archived)
        .map_err(|e| Error::Damaged { seq: seq_hint, why: format!("header: {e}") })?;
    upcast(&mut header)?;
    if header.body_len as usize != body.len() {
        return Err(Error::Damaged { seq: seq_hint, why: "body length differs from the header".into() });
    }
    Ok(header)
}

/// Checks a record's CRC and gives its archived header to `f`, reusing `buf` for alignment:
/// no allocation and no deserialisation, for scans over millions of records.
pub fn with_header<R>(
    seq_hint: u64,
    bytes: &[u8],
    buf: &mut AlignedVec,
    f: impl FnOnce(&ArchivedHeader) -> R,
) -> Result<R> {
    with_header_of(seq_hint, bytes, true, buf, f)
}

/// `with_header`, skipping the CRC when `crc` is false (the frame was checked when read).
pub(crate) fn with_header_of<R>(
    seq_hint: u64,
    bytes: &[u8],
    crc: bool,
    buf: &mut AlignedVec,
    f: impl FnOnce(&ArchivedHeader) -> R,
) -> Result<R> {
    let (payload, hlen) = frame_parts(seq_hint, bytes, crc)?;
    buf.clear();
    buf.extend_from_slice(&payload[PREFIX..PREFIX + hlen]);
    let archived = rkyv::access::<ArchivedHeader, rancor::Error>(buf)
        .map_err(|e| Error::Damaged { seq: seq_hint, why: format!("header does not validate: {e}") })?;
    Ok(f(archived))
}

pub fn decode(seq_hint: u64, bytes: &[u8]) -> Result<Entry> {
    let header = decode_header(seq_hint, bytes)?;
    let body = &bytes[bytes.len() - 4 - header.body_len as usize..bytes.len() - 4];
    let json = decompress(body)
        .map_err(|e| Error::Damaged { seq: header.seq, why: format!("body does not decompress: {e}") })?;
    Ok(Entry { header, body: json })
}

/// Checks a frame as `decode` would, short of decompressing the body: CRC, version, header
/// and body length. Returns the record's seq.
pub fn check(seq_hint: u64, bytes: &[u8], scratch: &mut AlignedVec) -> Result<u64> {
    let (payload, hlen) = check_frame(seq_hint, bytes)?;
    scratch.clear();
    scratch.extend_from_slice(&payload[PREFIX..PREFIX + hlen]);
    let h = rkyv::access::<ArchivedHeader, rancor::Error>(scratch)
        .map_err(|e| Error::Damaged { seq: seq_hint, why: format!("header does not validate: {e}") })?;
    supported(h.version.to_native())?;
    if h.body_len.to_native() as usize != payload.len() - PREFIX - hlen {
        return Err(Error::Damaged { seq: seq_hint, why: "body length differs from the header".into() });
    }
    Ok(h.seq.to_native())
}

/// `decompress` into `out`, reusing its capacity (one replay buffer for every record).
pub fn decompress_into(bytes: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let [a, b, c, d, rest @ ..] = bytes else { return Err("shorter than its size prefix".into()) };
    let size = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
    if size > rest.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(format!("{size} bytes claimed from {} compressed bytes", rest.len()));
    }
    out.clear();
    out.resize(size, 0);
    let n = lz4_flex::decompress_into(rest, out).map_err(|e| e.to_string())?;
    if n != size {
        return Err(format!("{n} bytes decompressed, {size} claimed"));
    }
    Ok(())
}

/// lz4 expands at most 255-fold: one byte of a match length adds at most 255 bytes.
pub(crate) const LZ4_MAX_RATIO: usize = 255;

/// Undoes `lz4_flex::compress_prepend_size`. The decoder allocates the size prefix up front, so a
/// prefix more than the bytes can expand to is refused first: a damaged or forged record
/// claiming 4 GiB must not make the reader allocate 4 GiB (found by fuzzing, tests/fuzz/).
pub fn decompress(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    decompress_into(bytes, &mut out)?;
    Ok(out)
}

/// Refuses a version this build cannot read.
fn supported(version: u16) -> Result<()> {
    if version > FORMAT_VERSION {
        return Err(Error::NewerFormat { found: version, supported: FORMAT_VERSION });
    }
    Ok(())
}

/// Brings an older header up to the current version, and refuses a newer one. Version 1 is the
/// first; a future v2 adds its conversion here (docs/journal-format.md).
pub(crate) fn upcast(h: &mut Header) -> Result<()> {
    supported(h.version)?;
    h.version = FORMAT_VERSION;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> NewEntry {
        NewEntry {
            recorded_at_micros: 1_700_000_000_000_000,
            kind: EntryKind::Observed,
            event: 3,
            op_key: "demo/nightly".into(),
            resource: ResourceRef {
                kind: "Job".into(),
                namespace: "demo".into(),
                name: "j".into(),
                uid: "u".into(),
                resource_version: "42".into(),
            },
            body: serde_json::json!({ "hello": "world" }),
        }
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        let bytes = encode(7, &entry()).unwrap();
        let e = decode(7, &bytes).unwrap();
        assert_eq!(e.header.seq, 7);
        assert_eq!(e.header.resource.resource_version, "42");
        assert_eq!(e.json().unwrap(), serde_json::json!({ "hello": "world" }));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(7, &bad).is_err(), "flip at byte {i} not caught");
        }
        for cut in 0..bytes.len() {
            assert!(decode(7, &bytes[..cut]).is_err(), "cut at {cut} not caught");
        }
    }

    #[test]
    fn a_size_prefix_the_body_cannot_hold_is_refused_before_allocating() {
        let mut body = lz4_flex::compress_prepend_size(b"{\"hello\":\"world\"}");
        assert!(decompress(&body).is_ok());
        body[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decompress(&body).unwrap_err().contains("claimed"));
        // The most compressible input still decompresses: the bound is lz4's own.
        let zeros = vec![0u8; 1 << 20];
        assert_eq!(decompress(&lz4_flex::compress_prepend_size(&zeros)).unwrap(), zeros);
    }

    #[test]
    fn newer_version_is_named_not_called_damage() {
        let mut bytes = encode(1, &entry()).unwrap();
        bytes[0] = 2;
        let n = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(1, &bytes), Err(Error::NewerFormat { found: 2, supported: 1 })));
    }
}
