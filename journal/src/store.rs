//! The [`Journal`] trait and its sled implementation.
//!
//! sled's own `flush()` is not an fsync: `durable()` follows it with an `fdatasync` of sled's
//! data files, and batches appended meanwhile share that one sync (group commit).

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::envelope::{self, Entry, Header, NewEntry};
use crate::redact::redact;
use crate::snapfile;
use crate::{Error, Result};

/// The journal as the operator uses it; a second store can implement this without touching it.
pub trait Journal: Send + Sync {
    /// Appends a batch atomically; returns the seqs it was given. Nothing is durable yet.
    /// Bodies are redacted in place (hence by value) before any byte is written.
    fn append(&self, batch: Vec<NewEntry>) -> Result<RangeInclusive<u64>>;
    /// Returns once every record appended before the call is on disk; returns that seq.
    fn durable(&self) -> Result<u64>;
    /// Records from `seq` on, decoded.
    fn read_from(&self, seq: u64) -> Box<dyn Iterator<Item = Result<Entry>> + '_>;
    /// Headers from `seq` on, without decompressing bodies.
    fn headers_from(&self, seq: u64) -> Box<dyn Iterator<Item = Result<Header>> + '_>;
    /// The last seq appended (0 when empty).
    fn last_seq(&self) -> u64;
    /// Blocks until a record after `seq` exists or `timeout` passes; returns the last seq.
    fn wait_after(&self, seq: u64, timeout: Duration) -> u64;
    fn write_snapshot(&self, seq: u64, state: &[u8]) -> Result<()>;
    /// The newest snapshot whose checksum holds.
    fn latest_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>>;
    /// Drops records before `before`; returns how many.
    fn compact(&self, before: u64) -> Result<u64> {
        let mut removed = 0;
        loop {
            match self.compact_some(before, 4096)? {
                0 => return Ok(removed),
                n => removed += n,
            }
        }
    }
    /// Drops at most `max` of the records before `before`; returns how many (0: none is left).
    /// A running operator compacts this way a little per group commit: all at once, sled pulled
    /// and copied every old page together (10-20 MB of RSS at each snapshot of 10,000 Operations).
    fn compact_some(&self, before: u64, max: usize) -> Result<u64>;
    fn verify(&self) -> VerifyReport;
}

/// What opening found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub last_seq: u64,
    /// Seqs of a torn tail that were truncated.
    pub truncated: Vec<u64>,
    /// Damage in the middle: the first bad seq, why, and where the damaged files went.
    pub quarantined: Option<(u64, String, PathBuf)>,
    pub snapshot_seq: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: u64,
    pub snapshots: u64,
    /// The first problem, with its seq (0 for snapshot or store problems).
    pub first_error: Option<(u64, String)>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_error.is_none()
    }
}

pub struct SledJournal {
    dir: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    snapshots: sled::Tree,
    meta: sled::Tree,
    writer: Mutex<u64>,
    appended: Condvar,
    last: AtomicU64,
    durable_seq: AtomicU64,
    sync: Mutex<Synced>,
    /// Record bytes written by this process (frames as stored: header, lz4 body, CRC).
    appended_bytes: AtomicU64,
}

/// What `durable()` keeps between commits.
#[derive(Default)]
struct Synced {
    /// sled's data file, open.
    db: Option<File>,
    /// The durable mark, open.
    mark: Option<File>,
    /// Blob files synced so far, sorted: a new one is synced, and its directory with it.
    blobs: Vec<PathBuf>,
    /// Whether the config and the directory have been synced once by this process.
    started: bool,
}

/// The last durable seq, kept beside sled's files. sled reads a damaged log only up to the
/// damage and drops the rest without a word; this file is how that loss is noticed.
const DURABLE_MARK: &str = "durable-seq";

fn read_mark(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(DURABLE_MARK)).ok()?.trim().parse().ok()
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[8 - n..].copy_from_slice(&k[..n]);
    u64::from_be_bytes(b)
}

pub(crate) fn store_err(e: sled::Error) -> Error {
    match e {
        // sled found its own files damaged: handled as damage (set aside, relist), not a crash.
        sled::Error::Corruption { .. } => Error::Damaged { seq: 0, why: format!("sled: {e}") },
        // A read that ends early: a file of the store was cut short (a torn tail). Writes
        // never report it, so it is damage too, not a failing disk.
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Damaged { seq: 0, why: format!("sled: a file of the store ends early: {e}") }
        }
        e => Error::Store(e.to_string()),
    }
}

/// A free sibling path `<dir>.damaged.<n>`.
fn quarantine_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "journal".into());
    (1..)
        .map(|n| dir.with_file_name(format!("{name}.damaged.{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.with_extension("damaged"))
}

/// One sled instance per directory for the life of the process. sled finishes log writes on
/// its own thread pool after a `Db` is dropped, so a second instance opened on the same files
/// in the same process can recover a half-written state; sharing the instance avoids that.
fn registry() -> &'static Mutex<BTreeMap<PathBuf, sled::Db>> {
    static DBS: OnceLock<Mutex<BTreeMap<PathBuf, sled::Db>>> = OnceLock::new();
    DBS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn open_db(dir: &Path) -> Result<sled::Db> {
    let path = canonical(dir);
    let mut dbs = registry().lock().map_err(|_| Error::Store("journal registry poisoned".into()))?;
    if let Some(db) = dbs.get(&path) {
        return Ok(db.clone());
    }
    // sled may panic on some corrupt files; that is damage, not a crash of the operator.
    // The journal is written far more than read (reads are a restart's one pass and exports),
    // so a small page cache: 64 MB was a fifth of the operator's heap at 5,000 Operations.
    let db = match catch_unwind(AssertUnwindSafe(|| {
        sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).cache_capacity(16 << 20).open()
    })) {
        Ok(Ok(db)) => db,
        // Another process holds the store: not damage, which would set a live journal aside.
        Ok(Err(_)) if locked(dir) => return Err(Error::Locked { path: dir.display().to_string() }),
        Ok(Err(e)) => return Err(Error::Damaged { seq: 0, why: format!("sled cannot open the store: {e}") }),
        Err(_) => return Err(Error::Damaged { seq: 0, why: "sled panicked while opening the store".into() }),
    };
    dbs.insert(path, db.clone());
    Ok(db)
}

/// Whether another open file holds the lock sled takes on `db` (an flock: it conflicts across
/// file descriptors, so an instance in this process counts too).
fn locked(dir: &Path) -> bool {
    File::open(dir.join("db")).is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Forgets the instance of `dir` (before its files are moved aside).
fn evict(dir: &Path) {
    if let Ok(mut dbs) = registry().lock()
        && let Some(db) = dbs.remove(&canonical(dir))
    {
        let _ = db.flush();
    }
}

impl SledJournal {
    /// Writes a snapshot streamed through `write`, as an lz4 frame, into its own file
    /// (`snapfile`): neither the serialised state nor its compressed form is ever held whole.
    /// Returns the snapshot's size before compression. Stored: the frame, that size (so a
    /// reader allocates once), and a checksum of both; the tree keeps a pointer to the file.
    pub fn write_snapshot_with(
        &self,
        seq: u64,
        write: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<u64> {
        let (size, pointer) = snapfile::write(&self.dir, seq, write)?;
        self.snapshots.insert(key(seq), pointer.encode()).map_err(store_err)?;
        // Keep the two newest: one may be torn while the next is written.
        let keys: Vec<u64> = self.snapshots.iter().keys().filter_map(|k| k.ok().map(|k| seq_of(&k))).collect();
        for old in keys.iter().rev().skip(2) {
            self.snapshots.remove(key(*old)).map_err(store_err)?;
        }
        // The pointers on disk before any file goes: a crash then still finds the files it names.
        self.db.flush().map_err(store_err)?;
        snapfile::prune(&self.dir, &keys.iter().rev().take(2).copied().collect::<Vec<_>>());
        Ok(size)
    }

    /// Whether the snapshot stored under `seq` (in the tree, or in its file) is whole.
    fn snapshot_holds(&self, seq: u64, v: &[u8]) -> bool {
        match snapfile::Pointer::decode(v) {
            Some(p) => snapfile::holds(&self.dir, seq, p),
            None => checked_body(v).is_some(),
        }
    }

    /// The state of the snapshot stored under `seq`, if it is whole.
    fn snapshot_state(&self, seq: u64, v: &[u8]) -> Option<Vec<u8>> {
        match snapfile::Pointer::decode(v) {
            // Checked as it was read.
            Some(p) => decompress_snapshot(&snapfile::read(&self.dir, seq, p)?),
            None => snapshot_bytes(v),
        }
    }

    /// The seq of the newest snapshot whose checksum holds, without decompressing it: opening
    /// a journal used to decompress a 211 MB snapshot twice before the restore read it.
    pub fn latest_snapshot_seq(&self) -> Result<Option<u64>> {
        for item in self.snapshots.iter().rev() {
            let (k, v) = item.map_err(store_err)?;
            if self.snapshot_holds(seq_of(&k), &v) {
                return Ok(Some(seq_of(&k)));
            }
        }
        Ok(None)
    }

    /// Opens (or creates) the journal in `dir`. A torn tail is truncated; damage in the middle
    /// moves the files aside and starts a fresh journal (the cluster is the source of truth).
    pub fn open(dir: &Path) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut report = OpenReport::default();
        let journal = match open_db(dir).and_then(|db| Self::from_db(dir, db)) {
            Ok(j) => j,
            Err(Error::Damaged { seq, why }) => {
                let aside = quarantine(dir)?;
                report.quarantined = Some((seq, why, aside));
                Self::from_db(dir, open_db(dir)?)?
            }
            Err(e) => return Err(e),
        };
        let journal = match journal.check_tail(&mut report) {
            Ok(()) => journal,
            Err(Error::Damaged { seq, why }) => {
                drop(journal);
                let aside = quarantine(dir)?;
                report.quarantined = Some((seq, why, aside));
                Self::from_db(dir, open_db(dir)?)?
            }
            Err(e) => return Err(e),
        };
        report.last_seq = journal.last_seq();
        report.snapshot_seq = journal.latest_snapshot_seq()?;
        Ok((journal, report))
    }

    /// Drops this process's sled instance for `dir`, so the next open reads the files again.
    /// Only for tools and tests that change the files underneath; the operator never needs it.
    /// Returns once the store's lock is free, for at most 10 s: sled's flusher thread can hold
    /// the last handle a moment after ours goes, and another process opening the journal then
    /// was refused (a replay test failed that way once in some thirty runs).
    pub fn close(dir: &Path) {
        evict(dir);
        for _ in 0..2000 {
            if !locked(dir) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Opens an existing journal as it is, repairing nothing (for `inspect` and `verify`).
    pub fn open_existing(dir: &Path) -> Result<Self> {
        if !dir.join("conf").is_file() || !dir.join("db").is_file() {
            return Err(Error::Foreign { path: dir.display().to_string() });
        }
        Self::from_db(dir, open_db(dir)?)
    }

    fn from_db(dir: &Path, db: sled::Db) -> Result<Self> {
        let records = db.open_tree("records").map_err(store_err)?;
        let snapshots = db.open_tree("snapshots").map_err(store_err)?;
        let meta = db.open_tree("meta").map_err(store_err)?;
        let last_record = records.last().map_err(store_err)?.map(|(k, _)| seq_of(&k)).unwrap_or(0);
        let floor = meta.get("floor").map_err(store_err)?.map(|v| seq_of(&v)).unwrap_or(1);
        let last_snap = snapshots.last().map_err(store_err)?.map(|(k, _)| seq_of(&k)).unwrap_or(0);
        // Seqs never repeat, even when compaction emptied the records tree.
        let last = last_record.max(floor.saturating_sub(1)).max(last_snap);
        if let Some(mark) = read_mark(dir)
            && mark > last
        {
            return Err(Error::Damaged {
                seq: last + 1,
                why: format!(
                    "records {}..={mark} were durable and are gone: the store now ends at seq {last}",
                    last + 1
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            db,
            records,
            snapshots,
            meta,
            writer: Mutex::new(last),
            appended: Condvar::new(),
            last: AtomicU64::new(last),
            durable_seq: AtomicU64::new(last),
            sync: Mutex::new(Synced::default()),
            appended_bytes: AtomicU64::new(0),
        })
    }

    /// Records `seq` as the last durable one (see `DURABLE_MARK`).
    fn write_mark(&self, seq: u64) -> Result<()> {
        let mut synced = self.sync.lock().map_err(|_| Error::Store("sync lock poisoned".into()))?;
        self.write_mark_with(&mut synced, seq)
    }

    /// Overwrites the mark in place, at a fixed width, through a file kept open: truncated and
    /// rewritten at each commit, ext4 flushed it on close (`auto_da_alloc`).
    fn write_mark_with(&self, synced: &mut Synced, seq: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self.dir.join(DURABLE_MARK);
        let file = match &mut synced.mark {
            Some(f) => f,
            slot => slot.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?,
            ),
        };
        // 21 bytes: never shorter than a mark an older build wrote, so nothing of it is left.
        file.write_all_at(format!("{seq:020}\n").as_bytes(), 0).map_err(|e| Error::io(&path, e))
    }

    /// Checks the records after the newest snapshot: damage only at the end is a torn tail.
    fn check_tail(&self, report: &mut OpenReport) -> Result<()> {
        let from = self.latest_snapshot_seq()?.map(|s| s + 1).unwrap_or(0);
        let mut bad: Vec<(u64, String)> = Vec::new();
        let mut expected: Option<u64> = None;
        for item in self.records.range(key(from)..) {
            let (k, v) = item.map_err(store_err)?;
            let seq = seq_of(&k);
            let problem = match envelope::decode_header(seq, &v) {
                Ok(h) if h.seq != seq => Some(format!("record under key {seq} says seq {}", h.seq)),
                Ok(_) if expected.is_some_and(|e| e != seq) => {
                    Some(format!("gap: expected seq {}", expected.unwrap_or(0)))
                }
                Ok(_) => None,
                Err(Error::NewerFormat { found, supported }) => return Err(Error::NewerFormat { found, supported }),
                Err(e) => Some(e.to_string()),
            };
            match problem {
                Some(why) => bad.push((seq, why)),
                None if !bad.is_empty() => {
                    let (first, why) = bad.remove(0);
                    return Err(Error::Damaged { seq: first, why });
                }
                None => {}
            }
            expected = Some(seq + 1);
        }
        if !bad.is_empty() {
            let mut batch = sled::Batch::default();
            for (seq, _) in &bad {
                batch.remove(&key(*seq));
                report.truncated.push(*seq);
            }
            self.records.apply_batch(batch).map_err(store_err)?;
            let last = self.records.last().map_err(store_err)?.map(|(k, _)| seq_of(&k)).unwrap_or(0);
            *self.writer.lock().map_err(|_| Error::Store("writer lock poisoned".into()))? = last;
            self.last.store(last, Ordering::SeqCst);
            self.durable_seq.store(last, Ordering::SeqCst);
            self.db.flush().map_err(store_err)?;
            // Reported as truncated: the mark follows, so the next open does not count them again.
            self.write_mark(last)?;
        }
        Ok(())
    }

    /// Record bytes this process has appended, as stored (for metrics).
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    /// The event outbox kept in the same store (see `outbox`).
    pub fn outbox(&self) -> Result<crate::outbox::Outbox> {
        Ok(crate::outbox::Outbox::new(self.db.open_tree("outbox").map_err(store_err)?))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes on disk, as sled reports them.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + snapfile::size_on_disk(&self.dir)
    }

    /// fdatasync every sled data file (sled's flush only hands pages to the kernel).
    /// fdatasyncs sled's data file; its config, new blob files and the directories only when
    /// they are new. Each commit used to open, sync and close all of them (kernel time was most
    /// of the journal's CPU in a perf of the 300-Operation run).
    fn sync_files(&self, synced: &mut Synced) -> Result<()> {
        let db = self.dir.join("db");
        match &synced.db {
            Some(f) => f.sync_data().map_err(|e| Error::io(&db, e))?,
            None => match File::open(&db) {
                Ok(f) => {
                    f.sync_data().map_err(|e| Error::io(&db, e))?;
                    synced.db = Some(f);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&db, e)),
            },
        }
        let blobs_dir = self.dir.join("blobs");
        let mut blobs: Vec<PathBuf> = match std::fs::read_dir(&blobs_dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        };
        blobs.sort();
        let mut new_files: Vec<PathBuf> =
            blobs.iter().filter(|b| synced.blobs.binary_search(b).is_err()).cloned().collect();
        if !synced.started {
            new_files.push(self.dir.join("conf"));
        }
        for f in &new_files {
            match File::open(f) {
                Ok(file) => file.sync_data().map_err(|e| Error::io(f, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(f, e)),
            }
        }
        if !synced.started || blobs != synced.blobs {
            if blobs_dir.exists() {
                File::open(&blobs_dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(&blobs_dir, e))?;
            }
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(&self.dir, e))?;
            synced.blobs = blobs;
            synced.started = true;
        }
        Ok(())
    }

    /// Visits every archived header from `from` on without allocating; returns how many.
    pub fn scan_headers(&self, from: u64, mut f: impl FnMut(&envelope::ArchivedHeader)) -> Result<u64> {
        let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(256);
        let mut n = 0;
        for item in self.records.range(key(from)..) {
            let (k, v) = item.map_err(store_err)?;
            envelope::with_header(seq_of(&k), &v, &mut buf, &mut f)?;
            n += 1;
        }
        Ok(n)
    }

    /// Records from `from` on as stored, checked but not decompressed (replay decodes them
    /// one at a time).
    pub fn raw_records(&self, from: u64) -> Result<crate::raw::RawRecords> {
        let mut out = crate::raw::RawRecords::default();
        let mut scratch = rkyv::util::AlignedVec::new();
        for item in self.records.range(key(from)..) {
            let (k, v) = item.map_err(store_err)?;
            out.push(seq_of(&k), &v, &mut scratch)?;
        }
        Ok(out)
    }

    /// Iterates raw values only (the floor under any scan: sled's own iteration cost).
    pub fn count_raw(&self, from: u64) -> Result<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for item in self.records.range(key(from)..) {
            let (_, v) = item.map_err(store_err)?;
            n += 1;
            bytes += v.len() as u64;
        }
        Ok((n, bytes))
    }

    /// Raw record bytes (tests and damage tools).
    pub fn raw(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.records.get(key(seq)).map_err(store_err)?.map(|v| v.to_vec()))
    }

    /// Re-reads the last seq after records were written underneath (import).
    pub(crate) fn restore_counters(&self) -> Result<()> {
        let last_record = self.records.last().map_err(store_err)?.map(|(k, _)| seq_of(&k)).unwrap_or(0);
        let last_snap = self.snapshots.last().map_err(store_err)?.map(|(k, _)| seq_of(&k)).unwrap_or(0);
        let last = last_record.max(last_snap);
        if let Some(first) = self.records.first().map_err(store_err)?.map(|(k, _)| seq_of(&k)) {
            self.meta.insert("floor", &key(first)).map_err(store_err)?;
        }
        *self.writer.lock().map_err(|_| Error::Store("writer lock poisoned".into()))? = last;
        self.last.store(last, Ordering::SeqCst);
        Ok(())
    }

    /// Overwrites raw record bytes (damage injection in tests).
    pub fn put_raw(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.records.insert(key(seq), bytes).map_err(store_err)?;
        Ok(())
    }

    /// Removes a record as a damaged store would lose it (tests of damage only).
    pub fn remove_raw(&self, seq: u64) -> Result<()> {
        self.records.remove(key(seq)).map_err(store_err)?;
        self.db.flush().map_err(store_err)?;
        Ok(())
    }
}

fn quarantine(dir: &Path) -> Result<PathBuf> {
    evict(dir);
    let aside = quarantine_path(dir);
    std::fs::rename(dir, &aside).map_err(|e| Error::io(dir, e))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Ok(aside)
}

impl Journal for SledJournal {
    fn append(&self, mut batch: Vec<NewEntry>) -> Result<RangeInclusive<u64>> {
        if batch.is_empty() {
            let last = self.last_seq();
            #[allow(clippy::reversed_empty_ranges)]
            return Ok(last + 1..=last);
        }
        // The expensive part (redaction, JSON, lz4) runs before the writer lock is taken.
        let bodies = batch
            .iter_mut()
            .map(|e| {
                redact(&mut e.body);
                envelope::compress_body(&e.body)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut last = self.writer.lock().map_err(|_| Error::Store("writer lock poisoned".into()))?;
        let first = *last + 1;
        let mut b = sled::Batch::default();
        let mut bytes = 0;
        for (i, (e, body)) in batch.iter().zip(bodies).enumerate() {
            let seq = first + i as u64;
            let frame = envelope::frame(seq, e, &body)?;
            bytes += frame.len() as u64;
            b.insert(&key(seq), frame);
        }
        self.records.apply_batch(b).map_err(store_err)?;
        self.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
        *last = first + batch.len() as u64 - 1;
        self.last.store(*last, Ordering::SeqCst);
        self.appended.notify_all();
        Ok(first..=*last)
    }

    fn durable(&self) -> Result<u64> {
        let target = self.last.load(Ordering::SeqCst);
        let mut synced = self.sync.lock().map_err(|_| Error::Store("sync lock poisoned".into()))?;
        // Another caller's sync may already have covered us: that is the group commit.
        if self.durable_seq.load(Ordering::SeqCst) >= target {
            return Ok(self.durable_seq.load(Ordering::SeqCst));
        }
        let upto = self.last.load(Ordering::SeqCst);
        self.db.flush().map_err(store_err)?;
        self.sync_files(&mut synced)?;
        self.durable_seq.store(upto, Ordering::SeqCst);
        // Written after the fsync, so it never claims more than the store holds; not synced
        // itself: after a power loss an older mark only makes the check weaker.
        self.write_mark_with(&mut synced, upto)?;
        Ok(upto)
    }

    fn read_from(&self, seq: u64) -> Box<dyn Iterator<Item = Result<Entry>> + '_> {
        Box::new(self.records.range(key(seq)..).map(|item| {
            let (k, v) = item.map_err(store_err)?;
            envelope::decode(seq_of(&k), &v)
        }))
    }

    fn headers_from(&self, seq: u64) -> Box<dyn Iterator<Item = Result<Header>> + '_> {
        Box::new(self.records.range(key(seq)..).map(|item| {
            let (k, v) = item.map_err(store_err)?;
            envelope::decode_header(seq_of(&k), &v)
        }))
    }

    fn last_seq(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }

    fn wait_after(&self, seq: u64, timeout: Duration) -> u64 {
        let Ok(guard) = self.writer.lock() else { return self.last_seq() };
        match self.appended.wait_timeout_while(guard, timeout, |last| *last <= seq) {
            Ok((g, _)) => *g,
            Err(_) => self.last_seq(),
        }
    }

    fn write_snapshot(&self, seq: u64, state: &[u8]) -> Result<()> {
        self.write_snapshot_with(seq, &mut |w| w.write_all(state)).map(|_| ())
    }

    fn latest_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>> {
        for item in self.snapshots.iter().rev() {
            let (k, v) = item.map_err(store_err)?;
            if let Some(state) = self.snapshot_state(seq_of(&k), &v) {
                return Ok(Some((seq_of(&k), state)));
            }
        }
        Ok(None)
    }

    fn compact_some(&self, before: u64, max: usize) -> Result<u64> {
        // The floor goes first, so a crash halfway never lets seqs repeat.
        let floor = self.meta.get("floor").map_err(store_err)?.map(|v| seq_of(&v)).unwrap_or(0);
        if floor < before {
            self.meta.insert("floor", &key(before)).map_err(store_err)?;
        }
        let keys: Vec<sled::IVec> = self.records.range(..key(before)).keys().take(max).filter_map(|k| k.ok()).collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let mut b = sled::Batch::default();
        for k in &keys {
            b.remove(k.clone());
        }
        self.records.apply_batch(b).map_err(store_err)?;
        Ok(keys.len() as u64)
    }

    fn verify(&self) -> VerifyReport {
        let mut r = VerifyReport::default();
        let mut expected: Option<u64> = None;
        for item in self.records.iter() {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    r.first_error.get_or_insert((0, format!("store: {e}")));
                    break;
                }
            };
            let seq = seq_of(&k);
            r.records += 1;
            r.first_seq.get_or_insert(seq);
            r.last_seq = seq;
            if let Some(e) = expected
                && e != seq
                && r.first_error.is_none()
            {
                r.first_error = Some((e, format!("sequence gap: seq {e} missing before {seq}")));
            }
            expected = Some(seq + 1);
            match envelope::decode(seq, &v) {
                Ok(entry) if entry.header.seq != seq && r.first_error.is_none() => {
                    r.first_error = Some((seq, format!("record under key {seq} says seq {}", entry.header.seq)));
                }
                Ok(_) => {}
                Err(e) => {
                    r.first_error.get_or_insert((seq, e.to_string()));
                }
            }
        }
        for item in self.snapshots.iter() {
            match item {
                Ok((k, v)) => {
                    r.snapshots += 1;
                    if self.snapshot_state(seq_of(&k), &v).is_none() {
                        r.first_error
                            .get_or_insert((seq_of(&k), format!("snapshot at seq {} fails its checksum", seq_of(&k))));
                    }
                }
                Err(e) => {
                    r.first_error.get_or_insert((0, format!("store: {e}")));
                }
            }
        }
        r
    }
}

/// How an lz4 frame starts (0x184D2204, little-endian).
const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];

/// A stored snapshot's compressed body, if its checksum holds.
fn checked_body(v: &[u8]) -> Option<&[u8]> {
    if v.len() < 4 {
        return None;
    }
    let (body, crc) = v.split_at(v.len() - 4);
    (crc32c::crc32c(body) == u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]])).then_some(body)
}

fn snapshot_bytes(v: &[u8]) -> Option<Vec<u8>> {
    decompress_snapshot(checked_body(v)?)
}

/// A snapshot's state from its stored body (checksum already checked).
fn decompress_snapshot(body: &[u8]) -> Option<Vec<u8>> {
    // Frames since snapshots are streamed; one block with its size before it until then.
    if body.starts_with(&LZ4_FRAME_MAGIC) && body.len() >= 12 {
        let (frame, size) = body.split_at(body.len() - 8);
        let size = u64::from_le_bytes(size.try_into().ok()?);
        // The checksum held, so the size is what was written; still no more than lz4 can expand to.
        let cap = usize::try_from(size).ok()?.min(frame.len().saturating_mul(crate::envelope::LZ4_MAX_RATIO));
        let mut out = Vec::with_capacity(cap);
        std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(frame), &mut out).ok()?;
        (out.len() as u64 == size).then_some(out)
    } else {
        // Records' own decoder, which refuses a size prefix the body cannot expand to.
        crate::envelope::decompress(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store file cut short reads as damage (set aside, relisted), as sled's own corruption
    /// check does; any other I/O error stays a store error. Found when a torn tail in the chaos
    /// suite made `journal verify` say "IO error: failed to fill whole buffer".
    #[test]
    fn a_store_file_that_ends_early_is_damage() {
        let io = |kind| sled::Error::Io(std::io::Error::new(kind, "failed to fill whole buffer"));
        let torn = store_err(io(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(torn.category(), "damaged", "{torn}");
        assert!(torn.to_string().contains("ends early"), "{torn}");
        assert_eq!(store_err(io(std::io::ErrorKind::PermissionDenied)).category(), "store");
        let corrupt = store_err(sled::Error::Corruption { at: None, bt: () });
        assert_eq!(corrupt.category(), "damaged");
    }

    fn stored(body: Vec<u8>) -> Vec<u8> {
        let mut v = body;
        let crc = crc32c::crc32c(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    /// Snapshots written before they were streamed (one lz4 block, its size first) still read,
    /// beside the frames written now; a flipped byte in either fails the checksum.
    #[test]
    fn block_and_frame_snapshots_both_read() {
        let state = br#"{"ops":[],"last_seq":7}"#.repeat(100);
        let block = stored(lz4_flex::compress_prepend_size(&state));
        assert_eq!(snapshot_bytes(&block).as_deref(), Some(&state[..]));
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut enc, &state).unwrap();
        let mut frame = enc.finish().unwrap();
        frame.extend_from_slice(&(state.len() as u64).to_le_bytes());
        let frame = stored(frame);
        assert!(frame.starts_with(&LZ4_FRAME_MAGIC));
        assert_eq!(snapshot_bytes(&frame).as_deref(), Some(&state[..]));
        for mut v in [block, frame] {
            v[6] ^= 0x40;
            assert_eq!(snapshot_bytes(&v), None);
        }
    }

    #[test]
    fn a_streamed_snapshot_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = SledJournal::open(dir.path()).unwrap();
        let parts: Vec<String> = (0..10_000).map(|i| format!("{{\"op\":{i}}},")).collect();
        j.write_snapshot_with(42, &mut |w| parts.iter().try_for_each(|p| w.write_all(p.as_bytes()))).unwrap();
        let (seq, bytes) = j.latest_snapshot().unwrap().unwrap();
        assert_eq!(seq, 42);
        assert_eq!(bytes, parts.concat().into_bytes());
    }

    /// Snapshots live in files named by pointers in the tree; a damaged or missing newest file
    /// falls back to the one before it, verify names it, and a snapshot stored in the tree by an
    /// older build still reads.
    #[test]
    fn snapshot_files_fall_back_and_tree_snapshots_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = SledJournal::open(dir.path()).unwrap();
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut enc, b"old").unwrap();
        let mut legacy = enc.finish().unwrap();
        legacy.extend_from_slice(&3u64.to_le_bytes());
        let crc = crc32c::crc32c(&legacy);
        legacy.extend_from_slice(&crc.to_le_bytes());
        j.snapshots.insert(key(5), legacy).unwrap();
        assert_eq!(j.latest_snapshot().unwrap(), Some((5, b"old".to_vec())));
        j.write_snapshot(10, b"ten").unwrap();
        j.write_snapshot(20, b"twenty").unwrap();
        assert_eq!(j.snapshots.len(), 2, "the two newest are kept");
        assert!(!snapfile::path(dir.path(), 5).exists() && snapfile::path(dir.path(), 10).exists());
        assert_eq!(j.latest_snapshot().unwrap(), Some((20, b"twenty".to_vec())));
        assert!(j.verify().ok());
        let newest = snapfile::path(dir.path(), 20);
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[8] ^= 0x40;
        std::fs::write(&newest, &bytes).unwrap();
        assert_eq!(j.latest_snapshot_seq().unwrap(), Some(10));
        assert_eq!(j.latest_snapshot().unwrap(), Some((10, b"ten".to_vec())));
        assert_eq!(j.verify().first_error.map(|(s, _)| s), Some(20));
        std::fs::remove_file(snapfile::path(dir.path(), 10)).unwrap();
        assert_eq!(j.latest_snapshot().unwrap(), None);
        assert!(j.size_on_disk() > 0);
    }
}
