//! The sled journal: append, durability barrier, reading, snapshots, compaction, damage,
//! redaction and export, on real files.

use std::path::Path;

use serde_json::json;
use vworkspace_journal::export::{self, Item};
use vworkspace_journal::{EntryKind, Error, Journal, NewEntry, ResourceRef, SledJournal};

fn entry(i: u64) -> NewEntry {
    NewEntry {
        recorded_at_micros: 1_700_000_000_000_000 + i as i64,
        kind: EntryKind::Observed,
        event: 3,
        op_key: format!("demo/op-{}", i % 7),
        resource: ResourceRef {
            kind: "Job".into(),
            namespace: "demo".into(),
            name: format!("j{i}"),
            uid: format!("u{i}"),
            resource_version: i.to_string(),
        },
        body: json!({ "i": i, "object": { "kind": "Job", "metadata": { "name": format!("j{i}") } } }),
    }
}

fn open(dir: &Path) -> SledJournal {
    SledJournal::open(dir).expect("open").0
}

#[test]
fn appends_are_contiguous_durable_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    assert_eq!(j.append(vec![entry(1), entry(2), entry(3)]).unwrap(), 1..=3);
    assert_eq!(j.append(vec![entry(4)]).unwrap(), 4..=4);
    assert_eq!(j.durable().unwrap(), 4);
    let seqs: Vec<u64> = j.read_from(2).map(|e| e.unwrap().header.seq).collect();
    assert_eq!(seqs, [2, 3, 4]);
    let h = j.headers_from(0).next().unwrap().unwrap();
    assert_eq!((h.seq, h.op_key.as_str(), h.resource.resource_version.as_str()), (1, "demo/op-1", "1"));
    drop(j);
    let (j, report) = SledJournal::open(tmp.path()).unwrap();
    assert_eq!(report.last_seq, 4);
    assert!(report.truncated.is_empty() && report.quarantined.is_none());
    assert_eq!(j.append(vec![entry(5)]).unwrap(), 5..=5, "seqs continue, never repeat");
    assert!(j.verify().ok());
}

#[test]
fn snapshot_compaction_and_reopen_keep_seqs_and_bound_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let mut sizes = Vec::new();
    for round in 0..30u64 {
        let batch: Vec<NewEntry> = (0..500).map(|i| entry(round * 500 + i)).collect();
        let range = j.append(batch.clone()).unwrap();
        j.durable().unwrap();
        j.write_snapshot(*range.end(), format!("state after {}", range.end()).as_bytes()).unwrap();
        j.compact(range.end().saturating_sub(100)).unwrap();
        sizes.push(j.size_on_disk());
    }
    let (seq, state) = j.latest_snapshot().unwrap().unwrap();
    assert_eq!(seq, 15_000);
    assert_eq!(state, b"state after 15000");
    let report = j.verify();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 101, "only the retained tail (seq 14900..=15000) is left");
    // Disk use does not keep growing with the stream (sled reuses freed segments).
    let late = sizes[20..].iter().max().unwrap();
    assert!(*late < 64 << 20, "journal grew to {late} bytes: {sizes:?}");
    drop(j);
    let (j, report) = SledJournal::open(tmp.path()).unwrap();
    assert_eq!((report.last_seq, report.snapshot_seq), (15_000, Some(15_000)));
    j.compact(15_001).unwrap();
    drop(j);
    let j = open(tmp.path());
    assert_eq!(j.append(vec![entry(0)]).unwrap(), 15_001..=15_001, "seqs continue after compacting everything");
}

#[test]
fn compacting_a_little_at_a_time_removes_the_oldest_first_and_never_lowers_the_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    j.append((1..=1000).map(entry).collect::<Vec<_>>()).unwrap();
    j.durable().unwrap();
    assert_eq!(j.compact_some(601, 250).unwrap(), 250);
    assert_eq!(j.verify().first_seq, Some(251), "the oldest go first");
    assert_eq!(j.compact_some(601, 250).unwrap(), 250);
    assert_eq!(j.compact_some(601, 250).unwrap(), 100, "only what is before the floor");
    assert_eq!(j.compact_some(601, 250).unwrap(), 0, "done");
    // An older floor (a snapshot taken before a newer one) lowers nothing.
    assert_eq!(j.compact_some(300, 250).unwrap(), 0);
    let report = j.verify();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.first_seq, report.last_seq), (400, Some(601), 1000));
    drop(j);
    let (j, report) = SledJournal::open(tmp.path()).unwrap();
    assert_eq!(report.last_seq, 1000);
    assert_eq!(j.append(vec![entry(0)]).unwrap(), 1001..=1001);
}

#[test]
fn the_durable_mark_is_overwritten_in_place_and_reads_as_a_number() {
    let tmp = tempfile::tempdir().unwrap();
    // A mark as an older build wrote it: shorter than the fixed width.
    let j = open(tmp.path());
    j.append((1..=3).map(entry).collect::<Vec<_>>()).unwrap();
    j.durable().unwrap();
    drop(j);
    std::fs::write(tmp.path().join("durable-seq"), "3\n").unwrap();
    let (j, report) = SledJournal::open(tmp.path()).unwrap();
    assert!(report.quarantined.is_none() && report.truncated.is_empty(), "{report:?}");
    let mark = || std::fs::read_to_string(tmp.path().join("durable-seq")).unwrap().trim().parse::<u64>().unwrap();
    for n in [4u64, 1000] {
        j.append((j.last_seq() + 1..=n).map(entry).collect::<Vec<_>>()).unwrap();
        assert_eq!(j.durable().unwrap(), n);
        assert_eq!(mark(), n, "each commit's mark, nothing left of the last");
    }
}

#[test]
fn torn_tail_is_truncated_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    j.append((1..=10).map(entry).collect::<Vec<_>>()).unwrap();
    let mut raw = j.raw(10).unwrap().unwrap();
    raw.truncate(raw.len() / 2);
    j.put_raw(10, &raw).unwrap();
    j.durable().unwrap();
    drop(j);
    let (j, report) = SledJournal::open(tmp.path()).unwrap();
    assert_eq!(report.truncated, [10]);
    assert!(report.quarantined.is_none());
    assert_eq!(j.last_seq(), 9);
    assert_eq!(j.append(vec![entry(10)]).unwrap(), 10..=10);
    assert!(j.verify().ok());
}

#[test]
fn damage_in_the_middle_is_quarantined_never_dropped_silently() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("journal");
    let j = open(&dir);
    j.append((1..=20).map(entry).collect::<Vec<_>>()).unwrap();
    let mut raw = j.raw(7).unwrap().unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0xff;
    j.put_raw(7, &raw).unwrap();
    j.durable().unwrap();
    let v = j.verify();
    assert_eq!(v.first_error.as_ref().map(|e| e.0), Some(7), "{v:?}");
    drop(j);
    let (j, report) = SledJournal::open(&dir).unwrap();
    let (seq, why, aside) = report.quarantined.expect("quarantined");
    assert_eq!(seq, 7);
    assert!(why.contains("checksum"), "{why}");
    assert!(aside.exists() && aside.to_string_lossy().contains("damaged"), "{}", aside.display());
    assert_eq!(j.last_seq(), 0, "a fresh journal; the operator relists from the cluster");
    // The damaged files are kept for the incident, and still show the damage.
    let (old, old_report) = SledJournal::open(&aside.join("..").join(aside.file_name().unwrap())).unwrap();
    assert!(old_report.quarantined.is_some() || old.verify().first_error.is_some());
}

/// A journal another process holds is refused as in use, never taken for damage: quarantining
/// it would move a live journal aside. The lock is sled's flock on `db`, taken here on a file
/// descriptor of our own (flocks on two descriptors conflict as between two processes).
#[test]
fn a_journal_held_by_another_process_is_refused_not_set_aside() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("journal");
    let j = open(&dir);
    j.append(vec![entry(1), entry(2)]).unwrap();
    j.durable().unwrap();
    drop(j);
    SledJournal::close(&dir);
    let holder = std::fs::File::open(dir.join("db")).unwrap();
    holder.lock().unwrap();
    for refused in [SledJournal::open(&dir).err(), SledJournal::open_existing(&dir).err()] {
        let e = refused.expect("a held journal does not open");
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        assert_eq!(e.category(), "locked");
        assert!(e.to_string().contains("open in another process"), "{e}");
    }
    let siblings: Vec<_> = std::fs::read_dir(base.path()).unwrap().map(|d| d.unwrap().file_name()).collect();
    assert_eq!(siblings, ["journal"], "nothing was set aside");
    drop(holder);
    let (j, report) = SledJournal::open(&dir).unwrap();
    assert_eq!((report.last_seq, report.quarantined), (2, None), "released, it opens whole");
    drop(j);
}

/// sled reads a damaged log up to the damage and drops the rest silently (the chaos suite's
/// flipped byte): the durable mark beside its files makes that loss damage, not a shorter journal.
#[test]
fn durable_records_that_vanish_are_reported_and_quarantined() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("journal");
    let j = open(&dir);
    j.append((1..=20).map(entry).collect::<Vec<_>>()).unwrap();
    j.durable().unwrap();
    // The store loses its last eight durable records (as sled does past a damaged message).
    for seq in 13..=20 {
        j.remove_raw(seq).unwrap();
    }
    drop(j);
    SledJournal::close(&dir);
    let err = SledJournal::open_existing(&dir).err().expect("verify's open reports it");
    assert!(matches!(&err, Error::Damaged { seq: 13, why } if why.contains("13..=20")), "{err}");
    let (j, report) = SledJournal::open(&dir).unwrap();
    let (seq, why, aside) = report.quarantined.expect("quarantined");
    assert_eq!(seq, 13, "{why}");
    assert!(aside.exists());
    assert_eq!(j.last_seq(), 0);
    j.append((1..=2).map(entry).collect::<Vec<_>>()).unwrap();
    j.durable().unwrap();
    drop(j);
    SledJournal::close(&dir);
    assert_eq!(SledJournal::open(&dir).unwrap().0.last_seq(), 2, "the fresh journal's own mark holds");
}

#[test]
fn garbage_headers_and_newer_versions_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    j.append((1..=3).map(entry).collect::<Vec<_>>()).unwrap();
    j.put_raw(2, b"\x01\x00\xff\xff\xff\xffgarbage-garbage").unwrap();
    assert!(j.verify().first_error.unwrap().1.contains("checksum"));
    let mut newer = j.raw(3).unwrap().unwrap();
    newer[0] = 9;
    let n = newer.len() - 4;
    let crc = crc32c::crc32c(&newer[..n]);
    newer[n..].copy_from_slice(&crc.to_le_bytes());
    j.put_raw(3, &newer).unwrap();
    j.durable().unwrap();
    drop(j);
    match SledJournal::open(tmp.path()) {
        Err(Error::NewerFormat { found: 9, supported: 1 }) => {}
        other => panic!("expected a newer-format error, got {:?}", other.map(|(_, r)| r)),
    }
}

#[test]
fn damaged_sled_files_never_panic() {
    for flip_at in [0usize, 100, 4096, 10_000, 50_000] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let j = open(&dir);
        j.append((1..=200).map(entry).collect::<Vec<_>>()).unwrap();
        j.durable().unwrap();
        drop(j);
        SledJournal::close(&dir);
        // Let sled's thread pool finish the old instance's writes before the files are damaged.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let db = dir.join("db");
        let mut bytes = std::fs::read(&db).unwrap();
        if flip_at < bytes.len() {
            let end = (flip_at + 64).min(bytes.len());
            for b in &mut bytes[flip_at..end] {
                *b ^= 0x5a;
            }
            std::fs::write(&db, &bytes).unwrap();
        }
        // Either sled recovers (and our checks hold) or the files are quarantined; no panic.
        let (j, report) = SledJournal::open(&dir).expect("open never fails on damage");
        let v = j.verify();
        assert!(
            v.ok() || report.quarantined.is_some() || !report.truncated.is_empty(),
            "flip at {flip_at}: {v:?} {report:?}"
        );
    }
}

#[test]
fn no_secret_value_reaches_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let secret = NewEntry {
        body: json!({ "object": { "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "db", "namespace": "demo",
            "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{\"stringData\":{\"password\":\"S3cr3t-Passw0rd-XYZ\"}}" } },
            "stringData": { "password": "S3cr3t-Passw0rd-XYZ" }, "data": { "token": "VE9LRU4tVkFMVUUtMTIzNDU2Nzg=" } } }),
        ..entry(1)
    };
    let job = NewEntry {
        body: json!({ "object": { "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j", "managedFields": [{ "manager": "kubectl", "fieldsV1": { "f:spec": {} } }] },
            "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "x", "env": [{ "name": "API_KEY", "value": "AKIA-ENV-VALUE-987654" }] }] } } } } }),
        ..entry(2)
    };
    j.append(vec![secret, job]).unwrap();
    j.durable().unwrap();
    let needles = [
        "S3cr3t-Passw0rd-XYZ",
        "VE9LRU4tVkFMVUUtMTIzNDU2Nzg=",
        "AKIA-ENV-VALUE-987654",
        "managedFields",
        "last-applied-configuration",
    ];
    for e in j.read_from(0) {
        let text = String::from_utf8(e.unwrap().body).unwrap();
        for n in needles {
            assert!(!text.contains(n), "{n} in a decoded record: {text}");
        }
        assert!(text.contains("password") || text.contains("API_KEY"), "keys and names are kept: {text}");
    }
    let out = tmp.path().join("export.vwj");
    export::export(&j, &out).unwrap();
    drop(j);
    let mut files = vec![out];
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() { stack.push(e.path()) } else { files.push(e.path()) }
        }
    }
    for f in files {
        let raw = std::fs::read(&f).unwrap();
        for n in needles.iter().take(3) {
            assert!(!raw.windows(n.len()).any(|w| w == n.as_bytes()), "{n} in raw bytes of {}", f.display());
        }
    }
}

/// A journal of 50 records with a snapshot at 40, and where to export it.
fn incident(dir: &Path) -> (SledJournal, std::path::PathBuf) {
    let j = open(&dir.join("a"));
    j.append((1..=50).map(entry).collect::<Vec<_>>()).unwrap();
    j.write_snapshot(40, b"folded").unwrap();
    j.durable().unwrap();
    (j, dir.join("incident.vwj"))
}

#[test]
fn export_import_round_trip_and_bad_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, file) = incident(tmp.path());
    assert_eq!(export::export(&j, &file).unwrap(), 50);
    let items = export::read(&file).unwrap();
    assert_eq!(items[0], Item::Snapshot { seq: 40, state: b"folded".to_vec() });
    assert_eq!(items.len(), 51);
    assert_eq!(export::import(&file, &tmp.path().join("b")).unwrap(), 50);
    let b = open(&tmp.path().join("b"));
    assert_eq!(b.last_seq(), 50);
    assert!(b.verify().ok());
    assert_eq!(b.latest_snapshot().unwrap().unwrap().0, 40);
    assert_eq!(b.append(vec![entry(51)]).unwrap(), 51..=51);
    assert!(matches!(export::import(&file, &tmp.path().join("b")), Err(Error::NotEmpty { .. })));

    let bytes = std::fs::read(&file).unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    assert!(matches!(export::read(&write("cut", &bytes[..bytes.len() - 30])), Err(Error::Truncated { .. })));
    assert!(matches!(export::read(&write("foreign", b"PK\x03\x04 a zip file")), Err(Error::Foreign { .. })));
    assert!(matches!(export::read(&write("empty", b"")), Err(Error::Foreign { .. })));
    let mut newer = bytes.clone();
    newer[8] = 7;
    assert!(matches!(export::read(&write("newer", &newer)), Err(Error::NewerFormat { found: 7, .. })));
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 0x01;
    assert!(export::read(&write("flipped", &flipped)).is_err());
    assert!(matches!(export::read(&tmp.path().join("missing")), Err(Error::Io { .. })));
}

/// The export read a record at a time (`stream`, what replay folds) reads what `export::read`
/// reads, and refuses each bad file `export::read` refuses, plus a frame cut out of the middle
/// (the end frame is still there, so its count no longer matches).
#[test]
fn the_streamed_export_reads_as_the_whole_one_and_refuses_the_same_files() {
    use vworkspace_journal::raw::Decoder;
    use vworkspace_journal::stream::ExportFile;
    type Read = (Option<export::Snapshot>, Vec<vworkspace_journal::Entry>);
    fn all(path: &std::path::Path) -> Result<Read, Error> {
        let f = ExportFile::open(path)?;
        let mut r = f.records()?;
        let (mut d, mut out) = (Decoder::default(), Vec::new());
        while let Some(raw) = r.next_record()? {
            out.push(d.decode(0, raw)?.clone());
        }
        assert_eq!(out.len() as u64, f.len());
        Ok((f.snapshot().cloned(), out))
    }
    let tmp = tempfile::tempdir().unwrap();
    let (j, file) = incident(tmp.path());
    export::export(&j, &file).unwrap();
    let whole = export::read(&file).unwrap();
    let (snapshot, records) = all(&file).unwrap();
    assert_eq!(Item::Snapshot { seq: 40, state: snapshot.unwrap().1 }, whole[0]);
    assert_eq!(records.into_iter().map(Item::Record).collect::<Vec<_>>(), whole[1..]);
    assert_eq!(ExportFile::open(&file).unwrap().first_seq(), Some(1));

    let bytes = std::fs::read(&file).unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    assert!(matches!(all(&write("cut", &bytes[..bytes.len() - 30])), Err(Error::Truncated { .. })));
    assert!(matches!(all(&write("half", &bytes[..bytes.len() / 2])), Err(Error::Truncated { .. })));
    assert!(matches!(all(&write("foreign", b"PK\x03\x04 a zip file")), Err(Error::Foreign { .. })));
    assert!(matches!(all(&write("empty", b"")), Err(Error::Foreign { .. })));
    let mut newer = bytes.clone();
    newer[8] = 7;
    assert!(matches!(all(&write("newer", &newer)), Err(Error::NewerFormat { found: 7, .. })));
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    assert!(all(&write("flipped", &flipped)).is_err());
    assert!(matches!(all(&tmp.path().join("missing")), Err(Error::Io { .. })));
    // The 20th record frame cut out: every frame is whole, the count is one short.
    let mut pos = 12;
    let mut frames = Vec::new();
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 1..pos + 5].try_into().unwrap()) as usize;
        frames.push(pos..pos + 5 + len);
        pos += 5 + len;
    }
    let mut gap = bytes[..frames[20].start].to_vec();
    gap.extend_from_slice(&bytes[frames[20].end..]);
    let err = all(&write("gap", &gap)).unwrap_err();
    assert!(err.to_string().contains("end frame says 50 records, found 49"), "{err}");
    // A record frame claiming more bytes than the file holds.
    let mut long = bytes.clone();
    long[frames[5].start + 1..frames[5].start + 5].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(all(&write("long", &long)), Err(Error::Truncated { .. })));
}
