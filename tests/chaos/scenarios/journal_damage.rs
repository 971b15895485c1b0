//! 7. Journal damage, each injected into a real journal between two runs of the operator (and
//! the full disk while it runs): a torn tail, a flipped byte in the middle, a deleted journal
//! directory, and a full disk (a small tmpfs). Each is reported, the damaged files are set
//! aside, and the operator relists and converges.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Rig, load, operator, row};

/// The largest file under `dir`: sled's log.
fn largest_file(dir: &Path) -> PathBuf {
    let mut best = (0, PathBuf::new());
    for e in walk(dir) {
        let len = std::fs::metadata(&e).map(|m| m.len()).unwrap_or(0);
        if len > best.0 {
            best = (len, e);
        }
    }
    best.1
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    TornTail,
    FlippedByte,
    DeletedDir,
}

fn inject(journal: &Path, d: Damage) -> String {
    match d {
        Damage::TornTail => {
            let f = largest_file(journal);
            let len = std::fs::metadata(&f).unwrap().len();
            let cut = (len / 50).clamp(1, 4096);
            std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len - cut).unwrap();
            format!("{} cut by {cut} of {len} bytes", f.display())
        }
        Damage::FlippedByte => {
            let f = largest_file(journal);
            let len = std::fs::metadata(&f).unwrap().len();
            let at = len / 2;
            let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&f).unwrap();
            let mut b = [0u8; 1];
            file.seek(SeekFrom::Start(at)).unwrap();
            std::io::Read::read_exact(&mut file, &mut b).unwrap();
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(&[b[0] ^ 0xff]).unwrap();
            format!("{} byte {at} of {len} flipped", f.display())
        }
        Damage::DeletedDir => {
            std::fs::remove_dir_all(journal).unwrap();
            format!("{} deleted", journal.display())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_journal_is_reported_set_aside_and_converges() {
    let _turn = super::turn();
    let rig = Rig::new("damage", &[]).await;
    let journal = rig.dir.path().join("journal");
    let mut op = rig.operator(&rig.proxy, "operator", &journal, &["--no-leader-elect"]);
    let mut planned = Vec::new();
    let mut notes = Vec::new();
    for (i, d) in [Damage::TornTail, Damage::FlippedByte, Damage::DeletedDir].into_iter().enumerate() {
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("d{i}"), 7).await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        op.kill();
        let what = inject(&journal, d);
        let (code, out) = operator::verify(&journal);
        notes.push(format!("{d:?}: {what}; verify before restart: exit {code}: {}", out.trim()));
        op.start();
        assert!(op.ready(Duration::from_secs(90)).await, "{d:?}: not ready after {what}:\n{}", op.log_tail(30));
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
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"]).arg(at).output().unwrap();
        assert!(out.status.success(), "mount a {mb} MB tmpfs (the full-disk scenario needs root): {}", String::from_utf8_lossy(&out.stderr));
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
    let _turn = super::turn();
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
    let reported = log.contains("No space left on device") || log.contains("os error 28");
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
    row("full-disk", 1, 1, &report, &format!("alive_while_full={alive_while_full} reported={reported} journal_verify={code}"));
    report.assert_clean(&op.log_tail(40));
    assert!(reported, "the full disk was never reported:\n{log}");
    assert_eq!(code, 0, "{out}");
    drop(disk);
}
