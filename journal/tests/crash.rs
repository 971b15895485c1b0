//! Crash test: a child process appends and calls `durable()`, reporting each acknowledged seq
//! over a pipe; the parent SIGKILLs it at random moments (at least 50 times), reopens the journal,
//! and checks every acknowledged record is present and intact, with contiguous seqs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use vworkspace_journal::{EntryKind, Journal, NewEntry, ResourceRef, SledJournal};

const CHILD_ENV: &str = "VW_JOURNAL_CRASH_CHILD";

fn big_entry(i: u64) -> NewEntry {
    NewEntry {
        recorded_at_micros: i as i64,
        kind: EntryKind::Observed,
        event: 3,
        op_key: "demo/op".into(),
        resource: ResourceRef { kind: "Job".into(), name: format!("j{i}"), ..Default::default() },
        body: json!({ "i": i, "pad": "x".repeat(2000 + (i as usize % 3000)) }),
    }
}

/// The child: runs only when the parent re-executes this test binary with the env var set.
#[test]
#[ignore = "runs as the crash test's child process"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let (j, _) = SledJournal::open(std::path::Path::new(&dir)).expect("child open");
    let mut out = std::io::stdout().lock();
    let mut n = j.last_seq();
    loop {
        let size = 1 + (n % 37) as usize;
        let batch: Vec<NewEntry> = (0..size).map(|k| big_entry(n + 1 + k as u64)).collect();
        let range = j.append(batch).expect("append");
        let upto = j.durable().expect("durable");
        assert!(upto >= *range.end());
        writeln!(out, "ACK {}", range.end()).expect("pipe");
        out.flush().expect("pipe");
        n = *range.end();
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut acked_max = 0u64;
    let kills = std::env::var("VW_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut truncations = 0;
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(s) = line.strip_prefix("ACK ") {
                    let _ = tx.send(s.trim().parse::<u64>().unwrap_or(0));
                }
            }
        });
        // A random moment: after the first ack, plus 0-60 ms, so kills land mid-batch and mid-sync.
        let _ = rx.recv_timeout(Duration::from_secs(20));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for s in rx.try_iter() {
            acked_max = acked_max.max(s);
        }
        let (j, report) = SledJournal::open(&dir).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        assert!(report.quarantined.is_none(), "round {round}: {report:?}");
        truncations += report.truncated.len();
        assert!(j.last_seq() >= acked_max, "round {round}: acked {acked_max}, journal ends at {}", j.last_seq());
        for (expected, e) in (1u64..).zip(j.read_from(0)) {
            let e = e.unwrap_or_else(|err| panic!("round {round}: {err}"));
            assert_eq!(e.header.seq, expected, "round {round}: seqs are contiguous");
            assert_eq!(e.json().unwrap()["i"], expected, "round {round}: record intact");
        }
        assert!(j.verify().ok());
        // The next round's child opens the files itself: let go of ours, as a dead process would.
        drop(j);
        SledJournal::close(&dir);
    }
    eprintln!(
        "crash test: {kills} SIGKILLs, {acked_max} records acknowledged, {truncations} torn-tail records truncated"
    );
    assert!(acked_max > 0, "the child acknowledged records");
}
