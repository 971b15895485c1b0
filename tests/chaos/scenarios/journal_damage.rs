//! Scenario 7: Journal damage, each injected into a real journal between two runs of the operator (and
//! the full disk while it runs): a torn tail, a flipped byte in the middle, a deleted journal
//! directory, and a full disk (a small tmpfs). Each is reported, the damaged files are set
//! aside, and the operator relists and converges.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vworkspace_journal::{Journal, SledJournal};

use crate::{Rig, load, operator, row};

/// Where a record's stored bytes sit in sled's files: every (file, offset) of a window from
/// its middle (sled may hold a record in more than one place).
fn locate(journal: &Path, seq: u64) -> Vec<(PathBuf, u64)> {
    let j = SledJournal::open_existing(journal).expect("open the killed operator's journal");
    let raw = j.raw(seq).unwrap().expect("the record exists");
    drop(j);
    SledJournal::close(journal);
    let w = 24.min(raw.len());
    let window = &raw[raw.len() / 2 - w / 2..][..w];
    let mut found = Vec::new();
    for f in files(journal) {
        let bytes = std::fs::read(&f).unwrap();
        for (i, win) in bytes.windows(w).enumerate() {
            if win == window {
                found.push((f.clone(), (i + w / 2) as u64));
            }
        }
    }
    assert!(!found.is_empty(), "record {seq} not found in the files of {}", journal.display());
    found
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        // Regular files only: the journal directory also holds the export socket.
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

fn last_seq(journal: &Path) -> u64 {
    let j = SledJournal::open_existing(journal).unwrap();
    let last = j.last_seq();
    drop(j);
    SledJournal::close(journal);
    last
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    TornTail,
    FlippedByte,
    DeletedDir,
}

fn inject(journal: &Path, d: Damage) -> String {
    match d {
        Damage::TornTail => {
            // The newest copy of the last record, cut in its middle, and everything after it.
            let last = last_seq(journal);
            let (f, at) = locate(journal, last).into_iter().max_by_key(|(_, at)| *at).unwrap();
            let len = std::fs::metadata(&f).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(at).unwrap();
            format!("record {last} torn: {} cut at byte {at} of {len}", f.display())
        }
        Damage::FlippedByte => {
            let seq = last_seq(journal) / 2;
            let places = locate(journal, seq);
            for (f, at) in &places {
                let mut file = std::fs::OpenOptions::new().read(true).write(true).open(f).unwrap();
                let mut b = [0u8; 1];
                file.seek(SeekFrom::Start(*at)).unwrap();
                std::io::Read::read_exact(&mut file, &mut b).unwrap();
                file.seek(SeekFrom::Start(*at)).unwrap();
                file.write_all(&[b[0] ^ 0xff]).unwrap();
            }
            format!("record {seq}: one byte flipped in each of its {} stored copies", places.len())
        }
        Damage::DeletedDir => {
            std::fs::remove_dir_all(journal).unwrap();
            format!("{} deleted", journal.display())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_journal_is_reported_set_aside_and_converges() {
    let _turn = super::turn().await;
    let (rig, mut op) = Rig::single("damage", &[]).await;
    let journal = op.journal.clone();
    let mut planned = Vec::new();
    let mut notes = Vec::new();
    for (i, d) in [Damage::TornTail, Damage::FlippedByte, Damage::DeletedDir].into_iter().enumerate() {
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("d{i}"), 7).await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        op.kill();
        let (_, intact) = operator::verify(&journal);
        let what = inject(&journal, d);
        let (code, out) = operator::verify(&journal);
        notes.push(format!("{d:?}: {what}; verify before: {}; after: exit {code}: {}", intact.trim(), out.trim()));
        // `journal verify` reports exactly the damage injected.
        let expected = match d {
            Damage::TornTail | Damage::FlippedByte => "damaged",
            Damage::DeletedDir => "does not exist",
        };
        assert!(code != 0 && out.contains(expected), "{d:?}: {what}: verify said (exit {code}) {out}");
        let quarantined = std::fs::read_to_string(&op.log).unwrap_or_default().matches("quarantined").count();
        op.start();
        assert!(op.ready(Duration::from_secs(90)).await, "{d:?}: not ready after {what}:\n{}", op.log_tail(30));
        let now = std::fs::read_to_string(&op.log).unwrap_or_default().matches("quarantined").count();
        if d != Damage::DeletedDir {
            assert_eq!(now, quarantined + 1, "{d:?}: the damage was not reported and set aside:\n{}", op.log_tail(30));
        }
    }
    planned.extend(load::submit(&rig.cluster.client, &rig.ns, "after", 7).await);
    let report = rig.settle(&planned, Duration::from_secs(180)).await;
    op.kill();
    let (code, out) = operator::verify(&journal);
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    let quarantines = log.matches("quarantined").count();
    row("journal-damage", 3, 3, &report, &format!("quarantined={quarantines} journal_verify_after={code}"));
    for n in &notes {
        eprintln!("  {n}");
    }
    report.assert_clean(&op.log_tail(40));
    assert_eq!(code, 0, "the journal after recovery: {out}");
}

/// A tmpfs of its own, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, mb: u64) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a {mb} MB tmpfs (the full-disk scenario needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the disk to the last byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 1 << 16];
    while f.write_all(&block).is_ok() {}
    let mut small = [0u8; 512];
    while f.write_all(&small[..]).is_ok() {
        small[0] = small[0].wrapping_add(1);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_reported_and_survived() {
    let _turn = super::turn().await;
    let rig = Rig::new("fulldisk", &[]).await;
    let disk = SmallDisk::mount(&rig.dir.path().join("disk"), 64);
    let journal = disk.0.join("journal");
    let mut op = rig.operator(&rig.proxy, "operator", &journal, &["--no-leader-elect"]);
    assert!(op.ready(Duration::from_secs(60)).await, "{}", op.log_tail(30));
    let mut planned = load::submit(&rig.cluster.client, &rig.ns, "before", 7).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let filler = fill(&disk.0);
    planned.extend(load::submit(&rig.cluster.client, &rig.ns, "full", 7).await);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let alive_while_full = op.exited().is_none();
    let log = op.log_tail(200);
    eprintln!("  full disk, the operator's last words:\n{}", op.log_tail(3));
    let said = log
        .lines()
        .find(|l| l.contains("No space left on device") || l.contains("os error 28"))
        .unwrap_or_default()
        .to_string();
    let reported = !said.is_empty();
    eprintln!("  full disk, the operator said: {said}");
    std::fs::remove_file(&filler).unwrap();
    if !alive_while_full {
        // It stopped with a clear error: its supervisor (the StatefulSet) starts it again.
        op.start();
    }
    assert!(op.ready(Duration::from_secs(90)).await, "not ready after the disk was freed:\n{}", op.log_tail(30));
    planned.extend(load::submit(&rig.cluster.client, &rig.ns, "freed", 7).await);
    let report = rig.settle(&planned, Duration::from_secs(180)).await;
    op.kill();
    let (code, out) = operator::verify(&journal);
    row(
        "full-disk",
        1,
        1,
        &report,
        &format!("alive_while_full={alive_while_full} reported={reported} journal_verify={code}"),
    );
    report.assert_clean(&op.log_tail(40));
    assert!(reported, "the full disk was never reported:\n{log}");
    assert_eq!(code, 0, "{out}");
    drop(disk);
}
