//! An export read one record frame at a time: what `replay` folds. Holding a whole export in
//! memory cost its size in fresh pages (517 MB, a third of a 1M-record replay's page faults)
//! for bytes read once. The end frame is read first, so a truncated file is refused before any
//! record is folded; each record is checked (CRC, header) as it is read.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::envelope;
use crate::export::{END, RECORD, SNAPSHOT, Snapshot, check_head, count_differs, end_body, snapshot_of};
use crate::raw::Checked;
use crate::{Error, Result};

/// Type, length, then 8 bytes of count and 4 of CRC.
const END_FRAME: u64 = 5 + 12;

/// An export file, its head and end checked; its records are read by `records()`, as many
/// times as asked.
#[derive(Debug)]
pub struct ExportFile {
    path: PathBuf,
    snapshot: Option<Snapshot>,
    /// The record count the end frame gives.
    count: u64,
    /// The first record's seq (None when there is none).
    first_seq: Option<u64>,
    /// Where the first record frame starts.
    records_at: u64,
}

impl ExportFile {
    /// Checks the magic, the version, the end frame and a leading snapshot.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |e| Error::io(path, e);
        let p = || path.display().to_string();
        let mut f = File::open(path).map_err(io)?;
        let mut head = [0u8; 12];
        if f.read_exact(&mut head).is_err() {
            return Err(Error::Foreign { path: p() });
        }
        check_head(&head, path)?;
        let len = f.metadata().map_err(io)?.len();
        let count = end_count(&mut f, len).ok_or_else(|| Error::Truncated { path: p(), why: "no end frame".into() })?;
        let mut r = BufReader::new(f);
        r.seek(SeekFrom::Start(12)).map_err(io)?;
        let mut at = 12u64;
        let mut snapshot = None;
        let mut first_seq = None;
        while let Some((ty, n)) = frame_head(&mut r, path)? {
            match ty {
                SNAPSHOT if snapshot.is_some() => {
                    return Err(Error::Damaged { seq: 0, why: "two snapshot frames".into() });
                }
                SNAPSHOT => {
                    let bytes = read_body(&mut r, n, len - at - 5, path)?;
                    snapshot = Some(snapshot_of(&bytes)?);
                    at += 5 + n as u64;
                }
                RECORD => {
                    let bytes = read_body(&mut r, n, len - at - 5, path)?;
                    first_seq = Some(envelope::check(1, &bytes, &mut AlignedVec::new())?);
                    break;
                }
                END if count == 0 => break,
                END => return Err(count_differs(count, 0)),
                other => return Err(Error::Damaged { seq: 0, why: format!("unknown frame type {other} at the head") }),
            }
        }
        Ok(ExportFile { path: path.to_path_buf(), snapshot, count, first_seq, records_at: at })
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Records in the file, as its end frame counts them.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }

    /// A reader over the records, from the first.
    pub fn records(&self) -> Result<RecordReader> {
        let io = |e| Error::io(&self.path, e);
        let f = File::open(&self.path).map_err(io)?;
        let left = f.metadata().map_err(io)?.len().saturating_sub(self.records_at);
        let mut r = BufReader::with_capacity(1 << 20, f);
        r.seek(SeekFrom::Start(self.records_at)).map_err(io)?;
        Ok(RecordReader {
            r,
            path: self.path.clone(),
            left,
            count: self.count,
            n: 0,
            buf: Vec::new(),
            scratch: AlignedVec::new(),
        })
    }
}

/// Record frames one at a time, each checked, in one reused buffer.
pub struct RecordReader {
    r: BufReader<File>,
    path: PathBuf,
    /// Bytes left in the file: no frame may claim more.
    left: u64,
    count: u64,
    n: u64,
    buf: Vec<u8>,
    scratch: AlignedVec,
}

impl RecordReader {
    /// The next record frame, checked; None after the last, once the end frame's count matched.
    pub fn next_record(&mut self) -> Result<Option<Checked<'_>>> {
        let Some((ty, len)) = frame_head(&mut self.r, &self.path)? else {
            return Err(self.truncated("no end frame"));
        };
        self.left = self.left.saturating_sub(5);
        match ty {
            RECORD => {
                if len as u64 > self.left {
                    return Err(self.truncated("frame cut short"));
                }
                self.buf.resize(len, 0);
                if self.r.read_exact(&mut self.buf).is_err() {
                    return Err(self.truncated("frame cut short"));
                }
                self.left -= len as u64;
                self.n += 1;
                envelope::check(self.n, &self.buf, &mut self.scratch)?;
                Ok(Some(Checked::new(&self.buf)))
            }
            END if self.n == self.count => Ok(None),
            END => Err(count_differs(self.count, self.n)),
            SNAPSHOT => Err(Error::Damaged { seq: self.n, why: "a snapshot frame after records".into() }),
            other => Err(Error::Damaged { seq: self.n, why: format!("unknown frame type {other}") }),
        }
    }

    fn truncated(&self, why: &str) -> Error {
        Error::Truncated { path: self.path.display().to_string(), why: format!("{why} after {} records", self.n) }
    }
}

/// The end frame's record count, if the file ends with a well-formed one.
fn end_count(f: &mut File, len: u64) -> Option<u64> {
    if len < 12 + END_FRAME {
        return None;
    }
    f.seek(SeekFrom::Start(len - END_FRAME)).ok()?;
    let mut end = [0u8; END_FRAME as usize];
    f.read_exact(&mut end).ok()?;
    let (ty, n) = (end[0], u32::from_le_bytes([end[1], end[2], end[3], end[4]]));
    let (count, crc_ok) = end_body(&end[5..])?;
    (ty == END && n == 12 && crc_ok).then_some(count)
}

/// A frame's type and length; None at the end of the file.
fn frame_head(r: &mut impl Read, path: &Path) -> Result<Option<(u8, usize)>> {
    let mut h = [0u8; 5];
    match r.read_exact(&mut h) {
        Ok(()) => Ok(Some((h[0], u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A frame's bytes, refused when it claims more than the file holds.
fn read_body(r: &mut impl Read, n: usize, left: u64, path: &Path) -> Result<Vec<u8>> {
    let cut = || Error::Truncated { path: path.display().to_string(), why: "frame cut short at the head".into() };
    if n as u64 > left {
        return Err(cut());
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b).map_err(|_| cut())?;
    Ok(b)
}
