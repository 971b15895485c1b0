//! Snapshots in files beside sled's (`snapshots/<seq>.vws`), each named in the snapshots tree by
//! a small pointer. The state streams from the serialiser through lz4 straight to disk: stored
//! as a sled value it was buffered whole (20 MB compressed at 10,000 Operations), copied into
//! sled, and held in sled's page cache after: the operator's peak heap, in a heap profile.
//!
//! A file holds what a tree value held (lz4 frame, u64 LE size, u32 LE CRC32C of both), so one
//! reader checks both; trees written before this keep their values and still read.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A pointer's first bytes; a stored snapshot starts with an lz4 frame or block instead.
const MAGIC: &[u8; 8] = b"VWSNAPF1";
const DIR: &str = "snapshots";

/// What the tree keeps for a snapshot in a file: its length and checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub len: u64,
    pub crc: u32,
}

impl Pointer {
    pub fn encode(self) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&self.len.to_le_bytes());
        v.extend_from_slice(&self.crc.to_le_bytes());
        v
    }

    /// None for a value that is not a pointer (a snapshot stored in the tree).
    pub fn decode(v: &[u8]) -> Option<Self> {
        let rest = v.strip_prefix(MAGIC)?;
        let (len, crc) = (rest.get(..8)?, rest.get(8..12)?);
        (rest.len() == 12).then(|| Self {
            len: u64::from_le_bytes(len.try_into().unwrap_or_default()),
            crc: u32::from_le_bytes(crc.try_into().unwrap_or_default()),
        })
    }
}

pub(crate) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(DIR).join(format!("{seq:020}.vws"))
}

/// Writes the snapshot of `seq` through `write` into its file, durably (written to a temporary
/// name, fsynced, renamed, the directory fsynced). Returns the state's size before compression
/// and the pointer to store.
pub(crate) fn write(
    dir: &Path,
    seq: u64,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(u64, Pointer)> {
    let snaps = dir.join(DIR);
    std::fs::create_dir_all(&snaps).map_err(|e| Error::io(&snaps, e))?;
    let tmp = snaps.join(format!("{seq:020}.tmp"));
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let out = Counted { inner: Crc { inner: BufWriter::with_capacity(1 << 16, file), crc: 0 }, n: 0 };
    let mut enc = Counted { inner: lz4_flex::frame::FrameEncoder::new(out), n: 0 };
    // The serialiser's failure is the state's (Encode); the disk's is I/O.
    write(&mut enc).map_err(|e| match e.kind() {
        std::io::ErrorKind::Other => Error::Encode(format!("snapshot: {e}")),
        _ => Error::io(&tmp, e),
    })?;
    let size = enc.n;
    let mut out = enc.inner.finish().map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
    out.write_all(&size.to_le_bytes()).map_err(|e| Error::io(&tmp, e))?;
    let (crc, len) = (out.inner.crc, out.n + 4);
    let mut file = out.inner.inner.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
    file.write_all(&crc.to_le_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    let to = path(dir, seq);
    std::fs::rename(&tmp, &to).map_err(|e| Error::io(&to, e))?;
    File::open(&snaps).and_then(|d| d.sync_all()).map_err(|e| Error::io(&snaps, e))?;
    Ok((size, Pointer { len, crc }))
}

/// The stored bytes of the snapshot of `seq` without their checksum, if the file is there with
/// the length and checksum its pointer names.
pub(crate) fn read(dir: &Path, seq: u64, p: Pointer) -> Option<Vec<u8>> {
    let mut f = File::open(path(dir, seq)).ok()?;
    let len = usize::try_from(p.len).ok()?;
    if f.metadata().ok()?.len() != p.len || len < 4 {
        return None;
    }
    let mut v = Vec::with_capacity(len);
    f.read_to_end(&mut v).ok()?;
    let crc = v.split_off(len - 4);
    (crc32c::crc32c(&v) == p.crc && crc == p.crc.to_le_bytes()).then_some(v)
}

/// Whether the file is there and its checksum holds, read in blocks (nothing held whole).
pub(crate) fn holds(dir: &Path, seq: u64, p: Pointer) -> bool {
    let Ok(f) = File::open(path(dir, seq)) else { return false };
    if f.metadata().map(|m| m.len()).ok() != Some(p.len) || p.len < 4 {
        return false;
    }
    let mut body = f.take(p.len - 4);
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => crc = crc32c::crc32c_append(crc, &buf[..n]),
            Err(_) => return false,
        }
    }
    let mut tail = [0u8; 4];
    crc == p.crc && body.into_inner().read_exact(&mut tail).is_ok() && tail == p.crc.to_le_bytes()
}

/// Removes snapshot files whose seq is not in `keep` (older ones, and any a crash left behind
/// before its pointer was stored).
pub(crate) fn prune(dir: &Path, keep: &[u64]) {
    let Ok(rd) = std::fs::read_dir(dir.join(DIR)) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let seq = name.to_str().and_then(|n| n.split('.').next()).and_then(|s| s.parse::<u64>().ok());
        if seq.is_none_or(|s| !keep.contains(&s)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The bytes of every snapshot file.
pub(crate) fn size_on_disk(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir.join(DIR)) else { return 0 };
    rd.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

/// Checksums the bytes written through it.
struct Crc<W> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the bytes written through it.
struct Counted<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_round_trips_and_nothing_else_reads_as_one() {
        let p = Pointer { len: 1234, crc: 0xdead_beef };
        assert_eq!(Pointer::decode(&p.encode()), Some(p));
        assert_eq!(Pointer::decode(b"VWSNAPF1short"), None);
        assert_eq!(Pointer::decode(&[0x04, 0x22, 0x4D, 0x18, 0, 0, 0, 0]), None);
    }

    #[test]
    fn a_file_is_read_only_while_its_length_and_checksum_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (size, p) = write(dir.path(), 7, &mut |w| w.write_all(&b"state".repeat(1000))).unwrap();
        assert_eq!(size, 5000);
        assert!(holds(dir.path(), 7, p));
        let body = read(dir.path(), 7, p).unwrap();
        assert_eq!(body.len() as u64, p.len - 4);
        let mut bytes = body.clone();
        bytes.extend_from_slice(&p.crc.to_le_bytes());
        assert!(!holds(dir.path(), 8, p), "no file");
        assert!(!holds(dir.path(), 7, Pointer { crc: p.crc ^ 1, ..p }));
        let mut damaged = bytes.clone();
        damaged[10] ^= 0x40;
        std::fs::write(path(dir.path(), 7), &damaged).unwrap();
        assert!(!holds(dir.path(), 7, p));
        assert_eq!(read(dir.path(), 7, p), None);
        std::fs::write(path(dir.path(), 7), &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(read(dir.path(), 7, p), None, "truncated");
    }

    #[test]
    fn a_failing_serialiser_is_an_encode_error_and_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let e =
            write(dir.path(), 3, &mut |_| Err(std::io::Error::other("a map key that is not a string"))).unwrap_err();
        assert!(matches!(e, Error::Encode(_)), "{e}");
        assert!(!path(dir.path(), 3).exists());
        prune(dir.path(), &[]);
        assert_eq!(std::fs::read_dir(dir.path().join(DIR)).unwrap().count(), 0, "the temporary file is pruned");
    }
}
