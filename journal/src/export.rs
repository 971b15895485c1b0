//! The portable export: one self-describing file to attach to an incident, and what `replay`
//! and `replay-fixtures/` read.
//!
//! ```text
//! 8 bytes  magic "VWJOURNL"
//! u16 LE   export format version
//! u16 LE   reserved (0)
//! frames:  u8 type, u32 LE length, bytes
//!   1 = snapshot: u64 LE seq, lz4 state, u32 LE CRC32C of the frame bytes before it
//!   2 = record:   the record's own bytes (see envelope; carries its CRC)
//!   255 = end:    u64 LE record count, u32 LE CRC32C of the count
//! ```
//! A file without the end frame is truncated, and says so.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::envelope::{self, Entry};
use crate::store::{Journal, SledJournal};
use crate::{Error, Result};

pub const MAGIC: &[u8; 8] = b"VWJOURNL";
pub const EXPORT_VERSION: u16 = 1;
pub(crate) const SNAPSHOT: u8 = 1;
pub(crate) const RECORD: u8 = 2;
pub(crate) const END: u8 = 255;

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Snapshot { seq: u64, state: Vec<u8> },
    Record(Entry),
}

fn frame(out: &mut impl Write, ty: u8, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&[ty])?;
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(bytes)
}

/// Writes the journal (its newest snapshot, then every record) to `path`. Returns the count.
pub fn export(journal: &SledJournal, path: &Path) -> Result<u64> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::new(file);
    let count = export_to(journal, &mut out, path)?;
    out.get_ref().sync_all().map_err(|e| Error::io(path, e))?;
    Ok(count)
}

/// Writes an export to any writer (a file, a socket); `name` is for messages.
pub fn export_to(journal: &SledJournal, out: &mut impl Write, name: &Path) -> Result<u64> {
    let path = name;
    let io = |e| Error::io(path, e);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&EXPORT_VERSION.to_le_bytes()).map_err(io)?;
    out.write_all(&0u16.to_le_bytes()).map_err(io)?;
    if let Some((seq, state)) = journal.latest_snapshot()? {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&lz4_flex::compress_prepend_size(&state));
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        frame(out, SNAPSHOT, &b).map_err(io)?;
    }
    let mut count = 0u64;
    for seq in first_seq(journal)..=journal.last_seq() {
        if let Some(raw) = journal.raw(seq)? {
            envelope::decode_header(seq, &raw)?;
            frame(out, RECORD, &raw).map_err(io)?;
            count += 1;
        }
    }
    let mut end = count.to_le_bytes().to_vec();
    end.extend_from_slice(&crc32c::crc32c(&count.to_le_bytes()).to_le_bytes());
    frame(out, END, &end).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(count)
}

fn first_seq(journal: &SledJournal) -> u64 {
    journal.headers_from(0).next().and_then(|h| h.ok()).map(|h| h.seq).unwrap_or(1)
}

/// Reads an export: every item, in order. Foreign, truncated, newer or damaged files are errors.
pub fn read(path: &Path) -> Result<Vec<Item>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_from(BufReader::new(file), path)
}

/// Reads an export from any reader (a file, a socket, bytes in memory); `name` is for messages.
pub fn read_from(r: impl Read, name: &Path) -> Result<Vec<Item>> {
    let data = read_all(r, name)?;
    let mut items = Vec::new();
    frames(&data, name, |frame| {
        match frame {
            Frame::Snapshot { seq, state } => items.push(Item::Snapshot { seq, state }),
            Frame::Record { n, at } => items.push(Item::Record(envelope::decode(n, &data[at])?)),
        }
        Ok(())
    })?;
    Ok(items)
}

/// The whole export, refused after its first 12 bytes unless they start one: a foreign file is
/// not read into memory whole to find that out.
fn read_all(mut r: impl Read, name: &Path) -> Result<Vec<u8>> {
    let mut data = vec![0u8; 12];
    if r.read_exact(&mut data).is_err() {
        return Err(Error::Foreign { path: name.display().to_string() });
    }
    check_head(&data, name)?;
    // Grown as bytes arrive, never sized from a length the file claims.
    r.read_to_end(&mut data).map_err(|e| Error::io(name, e))?;
    Ok(data)
}

/// The file's first 12 bytes: the magic, then an export version this build reads.
pub(crate) fn check_head(head: &[u8], name: &Path) -> Result<()> {
    if head.len() < 12 || &head[..8] != MAGIC {
        return Err(Error::Foreign { path: name.display().to_string() });
    }
    let version = u16::from_le_bytes([head[8], head[9]]);
    if version > EXPORT_VERSION {
        return Err(Error::NewerFormat { found: version, supported: EXPORT_VERSION });
    }
    Ok(())
}

/// An end frame's 12 bytes: the record count it gives, and whether its CRC holds (None for
/// another length).
pub(crate) fn end_body(body: &[u8]) -> Option<(u64, bool)> {
    let body: [u8; 12] = body.try_into().ok()?;
    let [count @ .., _, _, _, _] = body;
    Some((u64::from_le_bytes(count), crc32c::crc32c(&count).to_le_bytes() == body[8..]))
}

/// The end frame counts other records than the file holds.
pub(crate) fn count_differs(count: u64, found: u64) -> Error {
    Error::Damaged { seq: 0, why: format!("end frame says {count} records, found {found}") }
}

/// A snapshot's seq and its state's bytes.
pub type Snapshot = (u64, Vec<u8>);

/// A snapshot frame's seq and state, its CRC checked.
pub(crate) fn snapshot_of(bytes: &[u8]) -> Result<Snapshot> {
    let len = bytes.len();
    if len < 12 {
        return Err(Error::Damaged { seq: 0, why: "snapshot frame too short".into() });
    }
    let (body, crc) = bytes.split_at(len - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(Error::Damaged { seq: 0, why: "snapshot checksum mismatch".into() });
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&body[..8]);
    let seq = u64::from_le_bytes(s);
    let state = envelope::decompress(&body[8..])
        .map_err(|e| Error::Damaged { seq, why: format!("snapshot does not decompress: {e}") })?;
    Ok((seq, state))
}

/// One frame of an export as `frames` hands it over.
enum Frame {
    Snapshot {
        seq: u64,
        state: Vec<u8>,
    },
    /// The `n`th record, at this range of the data.
    Record {
        n: u64,
        at: std::ops::Range<usize>,
    },
}

/// Walks an export's frames, checking the magic, versions, lengths, the snapshot's CRC and the
/// end frame's count.
fn frames(data: &[u8], name: &Path, mut each: impl FnMut(Frame) -> Result<()>) -> Result<()> {
    let p = name.display().to_string();
    check_head(data, name)?;
    let mut pos = 12;
    let mut records = 0u64;
    loop {
        let Some(fh) = data.get(pos..pos + 5) else {
            return Err(Error::Truncated { path: p, why: format!("no end frame after {records} records") });
        };
        let len = u32::from_le_bytes([fh[1], fh[2], fh[3], fh[4]]) as usize;
        let ty = fh[0];
        pos += 5;
        let Some(bytes) = data.get(pos..pos + len) else {
            return Err(Error::Truncated { path: p, why: format!("frame cut short after {records} records") });
        };
        let at = pos..pos + len;
        pos += len;
        match ty {
            SNAPSHOT => {
                let (seq, state) = snapshot_of(bytes)?;
                each(Frame::Snapshot { seq, state })?;
            }
            RECORD => {
                records += 1;
                each(Frame::Record { n: records, at })?;
            }
            END => {
                return match end_body(bytes) {
                    None => Err(Error::Damaged { seq: 0, why: "end frame malformed".into() }),
                    Some((count, true)) if count == records => Ok(()),
                    Some((count, _)) => Err(count_differs(count, records)),
                };
            }
            other => return Err(Error::Damaged { seq: records, why: format!("unknown frame type {other}") }),
        }
    }
}

/// Imports an export into a new sled journal at `dir` (which must be empty or absent).
pub fn import(path: &Path, dir: &Path) -> Result<u64> {
    if dir.exists() && std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.next().is_some() {
        return Err(Error::NotEmpty { path: dir.display().to_string() });
    }
    let items = read(path)?;
    let (journal, _) = SledJournal::open(dir)?;
    let mut count = 0;
    for item in items {
        match item {
            Item::Snapshot { seq, state } => journal.write_snapshot(seq, &state)?,
            Item::Record(e) => {
                let raw = envelope::encode_entry(&e)?;
                journal.put_raw(e.header.seq, &raw)?;
                count += 1;
            }
        }
    }
    journal.restore_counters()?;
    journal.durable()?;
    Ok(count)
}
