//! `vworkspace-operator journal …` on real files: records folded by the core round-trip through
//! the journal, and every bad input is a clear message with a non-zero exit.

mod common;

use std::process::Command;

use serde_json::json;
use vworkspace_journal::{Journal, SledJournal};
use vworkspace_operator::harness::replay;
use vworkspace_operator::journal_codec;

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator")).args(args).output().expect("run the binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_folded_run_round_trips_through_journal_export_and_cli() {
    let mut h = common::world();
    common::submit(&mut h, common::operation("nightly", "Backup", Some("velero"), json!({})));
    let (k, ns, name) = common::only_child(&h, "nightly");
    h.set_child_status(k, &ns, &name, json!({ "phase": "Completed" }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let (j, _) = SledJournal::open(&dir).unwrap();
    let entries: Vec<_> = h.journal.iter().map(journal_codec::to_entry).collect();
    j.append(entries).unwrap();
    j.durable().unwrap();
    // Replaying what came back from disk reproduces every command.
    let back: Vec<_> = j.read_from(0).map(|e| journal_codec::from_entry(&e.unwrap()).unwrap()).collect();
    assert_eq!(back, h.journal);
    assert_eq!(replay(&back).1, h.commands);
    drop(j);
    let release = |dir: &std::path::Path| {
        // Another process (the CLI) opens these files next: let go of them first.
        SledJournal::close(dir);
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    release(&dir);

    let dir_s = dir.to_str().unwrap();
    let (ok, out, err) = cli(&["journal", "verify", dir_s]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("ok: {} records", h.journal.len())), "{out}");
    let (ok, out, _) = cli(&["journal", "inspect", dir_s, "--limit", "3"]);
    assert!(ok && out.contains("OperationTemplate") && out.contains(&format!("{} records", h.journal.len())), "{out}");
    let file = tmp.path().join("incident.vwj");
    let file_s = file.to_str().unwrap();
    assert!(cli(&["journal", "export", dir_s, file_s]).0);
    let (ok, out, _) = cli(&["journal", "verify", file_s]);
    assert!(ok && out.contains("export with"), "{out}");
    let (ok, out, _) = cli(&["journal", "inspect", file_s]);
    assert!(ok && out.contains("shop/nightly"), "{out}");
    let copy = tmp.path().join("copy");
    assert!(cli(&["journal", "import", file_s, copy.to_str().unwrap()]).0);
    assert!(cli(&["journal", "verify", copy.to_str().unwrap()]).0);

    // Bad input: missing, foreign, truncated, corrupt, newer, occupied target.
    let (ok, _, err) = cli(&["journal", "verify", "/nonexistent/journal"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let foreign = tmp.path().join("foreign.txt");
    std::fs::write(&foreign, "hello").unwrap();
    let (ok, _, err) = cli(&["journal", "inspect", foreign.to_str().unwrap()]);
    assert!(!ok && err.contains("not a vworkspace journal export"), "{err}");
    let bytes = std::fs::read(&file).unwrap();
    let cut = tmp.path().join("cut.vwj");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = cli(&["journal", "verify", cut.to_str().unwrap()]);
    assert!(!ok && err.contains("truncated"), "{err}");
    let mut newer = bytes.clone();
    newer[8] = 3;
    let newer_p = tmp.path().join("newer.vwj");
    std::fs::write(&newer_p, &newer).unwrap();
    let (ok, _, err) = cli(&["journal", "verify", newer_p.to_str().unwrap()]);
    assert!(!ok && err.contains("upgrade the operator"), "{err}");
    let empty_dir = tmp.path().join("not-a-journal");
    std::fs::create_dir(&empty_dir).unwrap();
    let (ok, _, err) = cli(&["journal", "verify", empty_dir.to_str().unwrap()]);
    assert!(!ok && err.contains("not a vworkspace journal"), "{err}");
    let (ok, _, err) = cli(&["journal", "import", file_s, dir_s]);
    assert!(!ok && err.contains("already holds a journal"), "{err}");
    let (j, _) = SledJournal::open(&dir).unwrap();
    let mut raw = j.raw(5).unwrap().unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0xff;
    j.put_raw(5, &raw).unwrap();
    j.durable().unwrap();
    drop(j);
    release(&dir);
    let (ok, _, err) = cli(&["journal", "verify", dir_s]);
    assert!(!ok && err.contains("first bad seq 5"), "{err}");
}

#[test]
fn run_rejects_bad_limits_before_touching_anything() {
    for (flag, value) in [
        ("--max-concurrent", "0"),
        ("--api-qps", "0"),
        ("--api-burst", "1e9"),
        ("--max-concurrent", "lots"),
        ("--snapshot-every", "5"),
        ("--journal-retain", "many"),
        ("--event-window-ms", "999999"),
        ("--commit-delay-ms", "5000"),
        ("--commit-delay-ms", "soon"),
        ("--event-sink", "ftp://x"),
        ("--log-format", "xml"),
        ("--shards", "0"),
        ("--shard-ordinal", "first"),
    ] {
        let (ok, _, err) = cli(&["run", "--journal", "memory", flag, value]);
        assert!(!ok, "{flag} {value} was accepted");
        assert!(err.contains(flag) && err.contains("invalid value"), "{flag} {value}: {err}");
    }
    let (ok, _, err) = cli(&["run", "--journal", "memory", "--http-addr", "nonsense"]);
    assert!(!ok && err.contains("--http-addr \"nonsense\" is not HOST:PORT or off"), "{err}");
    // Shards: the ordinal must fit the count, come from somewhere, and have its Lease.
    for (args, why) in [
        (&["--shards", "3", "--shard-ordinal", "3"][..], "shard ordinal 3 is not below the shard count 3"),
        (&["--shards", "2", "--no-leader-elect"][..], "--shards 2 needs leader election"),
    ] {
        let (ok, _, err) = cli(&[&["run", "--journal", "memory"][..], args].concat());
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["run", "--journal", "memory", "--shards", "2"])
        .env("POD_NAME", "laptop")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pod name \"laptop\" does not end in -<ordinal>"), "{err}");
}
