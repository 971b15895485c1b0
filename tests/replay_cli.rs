//! `vworkspace-operator replay` on the recorded fixtures: `--check` points at the exact record
//! where a journal and this build part ways; `--until`/`--at` give the state known at that seq;
//! `replay diff`; the HTML page in a real browser; and every bad input is a clear message with a
//! non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vworkspace_journal::export::{self, Item};
use vworkspace_journal::{Journal, NewEntry, SledJournal};
use vworkspace_operator::fold::child::Child;
use vworkspace_operator::fold::{self, State};
use vworkspace_operator::journal_codec;
use vworkspace_operator::replay::pass::{self, op_summary};
use vworkspace_operator::replay::{source, view};

// The benches' journal of Operations through their engines' phases, recorded by the model harness.
#[path = "../benches/workload/mod.rs"]
mod workload;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("replay-fixtures")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name).join("journal.vwj")
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vworkspace-operator")).args(args).output().expect("run the binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(o)))
}

/// A sled journal in `dir` holding `entries`, closed.
fn write_journal(dir: &Path, entries: Vec<NewEntry>) {
    let (j, _) = SledJournal::open(dir).unwrap();
    j.append(entries).unwrap();
    j.durable().unwrap();
    drop(j);
    SledJournal::close(dir);
}

/// A sled journal holding the fixture's records, with `alter` applied to each body.
fn rewrite(src: &Path, dir: &Path, alter: impl Fn(u64, &mut Value)) {
    let mut batch = Vec::new();
    for item in export::read(src).unwrap() {
        let Item::Record(e) = item else { continue };
        let mut body: Value = serde_json::from_slice(&e.body).unwrap();
        alter(e.header.seq, &mut body);
        let h = e.header;
        batch.push(NewEntry {
            recorded_at_micros: h.recorded_at_micros,
            kind: h.kind,
            event: h.event,
            op_key: h.op_key,
            resource: h.resource,
            body,
        });
    }
    write_journal(dir, batch);
}

/// The seqs of an export's records whose header `keep` picks.
fn seqs(src: &Path, keep: impl Fn(&vworkspace_journal::Header) -> bool) -> Vec<u64> {
    let records = export::read(src).unwrap();
    records
        .iter()
        .filter_map(|i| if let Item::Record(e) = i { Some(e) } else { None })
        .filter(|e| keep(&e.header))
        .map(|e| e.header.seq)
        .collect()
}

#[test]
fn check_points_at_the_exact_record_where_an_outcome_was_altered() {
    let src = fixture("velero-backup-succeeds");
    let view = json(&cli(&["replay", "--format", "json", src.to_str().unwrap()]));
    // The third outcome of the run, wherever it falls.
    let outcomes: Vec<u64> = view["operations"][0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "outcome")
        .map(|i| i["seq"].as_u64().unwrap())
        .collect();
    let target = outcomes[2];
    for (what, alter) in [
        (
            "a changed command",
            Box::new(|b: &mut Value| b["digest"] = "0000000000000000".into()) as Box<dyn Fn(&mut Value)>,
        ),
        ("a command never issued", Box::new(|b: &mut Value| b["commandId"] = "feedfacecafe-9-create".into())),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j");
        rewrite(&src, &j, |seq, body| {
            if seq == target {
                alter(body);
            }
        });
        let out = cli(&["replay", "--check", "--format", "json", j.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{what}: exit 1 at a divergence");
        let v = json(&out);
        let d = &v["check"]["divergence"];
        assert_eq!(d["seq"].as_u64(), Some(target), "{what}: {d}");
        assert_eq!(v["lastSeq"].as_u64(), Some(target - 1), "{what}: the replay stops before the diverging record");
        assert!(d["stateBefore"]["conditions"].is_array(), "{what}: the state before it is shown");
        assert!(d["record"]["commandId"].is_string());
        let text = stdout(&cli(&["replay", "--check", j.to_str().unwrap()]));
        assert!(text.contains(&format!("DIVERGENCE at seq {target}")), "{text}");
        let _ = what;
    }
    // The unaltered fixture passes.
    assert!(cli(&["replay", "--check", src.to_str().unwrap()]).status.success());
}

#[test]
fn until_and_at_give_the_state_known_at_that_seq() {
    let src = fixture("velero-backup-succeeds");
    let items = export::read(&src).unwrap();
    let entries: Vec<_> =
        items.iter().filter_map(|i| if let Item::Record(e) = i { Some(e.clone()) } else { None }).collect();
    let last = entries.last().unwrap().header.seq;
    for until in [last / 3, last / 2, last - 2] {
        // Fold by hand up to `until`: the state replay must report.
        let mut state = State::default();
        for e in entries.iter().filter(|e| e.header.seq <= until) {
            fold::step(&mut state, &journal_codec::from_entry(e).unwrap());
        }
        let (key, op) = state.ops.iter().next().expect("the Operation is known by then");
        let want = op_summary(op);
        let v = json(&cli(&["replay", "--format", "json", "--until", &until.to_string(), src.to_str().unwrap()]));
        assert_eq!(v["lastSeq"].as_u64(), Some(until));
        assert_eq!(v["stoppedEarly"], true);
        let got = &v["operations"][0];
        assert_eq!(got["operation"], key.to_string());
        for field in ["phase", "conditions", "children", "pending", "outputs"] {
            assert_eq!(got[field], want[field], "--until {until}: {field}");
        }
        // --at the time of that record gives the same state when no later record shares it.
        let at_micros = entries.iter().find(|e| e.header.seq == until).unwrap().header.recorded_at_micros;
        if entries.iter().any(|e| e.header.seq == until + 1 && e.header.recorded_at_micros == at_micros) {
            continue;
        }
        let at = chrono::DateTime::from_timestamp_micros(at_micros)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let v = json(&cli(&["replay", "--format", "json", "--at", &at, src.to_str().unwrap()]));
        assert_eq!(v["lastSeq"].as_u64(), Some(until), "--at {at}");
        assert_eq!(v["operations"][0]["conditions"], want["conditions"]);
    }
    // Late in the run the child is known.
    let text = stdout(&cli(&["replay", "--until", &(last - 2).to_string(), src.to_str().unwrap()]));
    assert!(text.contains("child 0 Backup"), "{text}");
}

#[test]
fn diff_shows_where_two_moments_and_two_journals_differ() {
    let ok = fixture("velero-backup-succeeds");
    let partial = fixture("velero-backup-partially-fails");
    let last = {
        let v = json(&cli(&["replay", "--format", "json", ok.to_str().unwrap()]));
        v["lastSeq"].as_u64().unwrap()
    };
    let early = format!("{}@{}", ok.display(), last / 2);
    let v = json(&cli(&["replay", "diff", "--format", "json", &early, ok.to_str().unwrap()]));
    let op = &v["operations"][0];
    assert!(op["transitions"]["b"].as_array().unwrap().len() > op["transitions"]["a"].as_array().unwrap().len());
    let operation =
        op["objects"].as_array().unwrap().iter().find(|o| o["object"] == "Operation").expect("the Operation changed");
    let fields: Vec<&str> =
        operation["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert!(fields.contains(&"/phase"), "{fields:?}");
    // Same Operation name, different outcome: the Succeeded reason differs at field level.
    let out = cli(&["replay", "diff", ok.to_str().unwrap(), partial.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PartiallyFailed") && text.contains("Completed"), "{text}");
    let same = cli(&["replay", "diff", ok.to_str().unwrap(), ok.to_str().unwrap()]);
    assert!(stdout(&same).contains("no difference"));
}

#[test]
fn bad_input_is_a_clear_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture("velero-backup-succeeds");
    let bytes = std::fs::read(&good).unwrap();
    let foreign = dir.path().join("foreign.bin");
    std::fs::write(&foreign, b"PK\x03\x04 this is a zip, not a journal").unwrap();
    let truncated = dir.path().join("truncated.vwj");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let newer = dir.path().join("newer.vwj");
    let mut b = bytes.clone();
    b[8] = 0xff;
    b[9] = 0xff;
    std::fs::write(&newer, &b).unwrap();
    let empty = dir.path().join("empty");
    drop(SledJournal::open(&empty).unwrap());
    SledJournal::close(&empty);
    // A journal directory another process holds (its sled lock, taken here on our own descriptor).
    let held = dir.path().join("held");
    rewrite(&good, &held, |_, _| {});
    let holder = std::fs::File::open(held.join("db")).unwrap();
    holder.lock().unwrap();
    let missing = dir.path().join("nope");
    let g = good.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["replay", missing.to_str().unwrap()], "does not exist"),
        (vec!["replay", foreign.to_str().unwrap()], "not a vworkspace journal export"),
        (vec!["replay", truncated.to_str().unwrap()], "truncated"),
        (vec!["replay", newer.to_str().unwrap()], "format version 65535; this build reads up to"),
        (vec!["replay", empty.to_str().unwrap()], "holds no records"),
        (vec!["replay", held.to_str().unwrap()], "is open in another process"),
        (vec!["replay"], "replay needs a journal"),
        (vec!["replay", "--op", "no-slash", g], "is not NAMESPACE/NAME"),
        (vec!["replay", "--op", "shop/ghost", g], "no Operation shop/ghost"),
        (vec!["replay", "--at", "yesterday", g], "is not an RFC 3339 time"),
        (vec!["replay", "--until", "-3", g], "unexpected argument"),
        (vec!["replay", "--until", "3", "--at", "2026-11-25T00:00:00Z", g], "cannot be used with"),
        (vec!["replay", "--format", "pdf", g], "invalid value 'pdf'"),
        (vec!["replay", "diff", g, missing.to_str().unwrap()], "does not exist"),
    ];
    for (args, want) in cases {
        let out = cli(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.to_lowercase().contains(&want.to_lowercase()), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    drop(holder);
    assert!(cli(&["replay", held.to_str().unwrap()]).status.success(), "released, it replays");
}

/// The page in a real browser (Debian's headless Chromium): it loads with no console error and
/// draws a lane for every Operation.
#[test]
fn the_html_page_is_well_formed_in_a_real_browser() {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("Debian's chromium must be installed (.ci/run installs it)");
    let dir = tempfile::tempdir().unwrap();
    for name in ["two-queued-on-one-target", "velero-backup-succeeds"] {
        let page = dir.path().join(format!("{name}.html"));
        let out =
            cli(&["replay", "--format", "html", "--out", page.to_str().unwrap(), fixture(name).to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"), "no network fetches");
        let ops = json(&cli(&["replay", "--format", "json", fixture(name).to_str().unwrap()]))["operations"]
            .as_array()
            .unwrap()
            .len();
        let run = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=2000",
                "--dump-dom",
            ])
            .arg(format!("file://{}", page.display()))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let dom = stdout(&run);
        let log = stderr(&run);
        assert!(run.status.success(), "chromium failed: {log}");
        let console_errors: Vec<&str> =
            log.lines().filter(|l| l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught"))).collect();
        assert!(console_errors.is_empty(), "{name}: console errors: {console_errors:?}");
        assert_eq!(dom.matches("data-operation=").count(), ops, "{name}: one lane heading per Operation");
        assert!(dom.contains("class=\"item "), "{name}: items were drawn");
    }
}

/// A fold on one thread and on two (`pass::Options::pipeline`: a second thread reads and probes
/// records) of `src` under `opts`: the same records, state, check, stop, signals and views, or
/// the same error.
fn same_on_two_threads(name: &str, src: &source::Source, opts: pass::Options) {
    let run = |pipeline| pass::run(src, &pass::Options { pipeline: Some(pipeline), ..opts.clone() });
    match (run(false), run(true)) {
        (Ok(a), Ok(b)) => {
            let what = format!("{name} with {opts:?}");
            assert_eq!(
                (a.records, a.probed, a.first_seq, a.last_seq, a.stopped, a.checked),
                (b.records, b.probed, b.first_seq, b.last_seq, b.stopped, b.checked),
                "{what}"
            );
            assert_eq!(a.state, b.state, "{what}: the folded state differs");
            assert_eq!(a.divergence, b.divergence, "{what}");
            assert_eq!(a.signals, b.signals, "{what}");
            // The JSON view holds every timeline item with its details and diffs.
            assert_eq!(view::build(name, &a, &opts), view::build(name, &b, &opts), "{what}");
            assert_eq!(view::render_text(name, &a, &opts), view::render_text(name, &b, &opts), "{what}");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
        (a, b) => panic!("{name}: one thread gave {:?}, two gave {:?}", a.err(), b.err()),
    }
}

#[test]
fn a_second_reading_thread_changes_nothing() {
    let mut journals: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path().join("journal.vwj"))
        .filter(|p| p.exists())
        .collect();
    journals.sort();
    assert_eq!(journals.len(), 10);
    let timeline = pass::Options { timeline: true, ..Default::default() };
    for path in &journals {
        let name = path.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let src = source::load(path).unwrap();
        let middle = src.entries().unwrap()[src.len() as usize / 2].header.seq;
        for opts in [
            pass::Options::default(),
            timeline.clone(),
            pass::Options { lines: true, ..timeline.clone() },
            pass::Options { check: true, ..timeline.clone() },
            pass::Options { diffs: true, details: true, ..timeline.clone() },
            pass::Options { signals: true, ..Default::default() },
            pass::Options { until: Some(middle), ..timeline.clone() },
        ] {
            same_on_two_threads(&name, &src, opts);
        }
    }

    // A divergence stops both at the same record.
    let dir = tempfile::tempdir().unwrap();
    let altered = dir.path().join("altered");
    let src = fixture("velero-backup-succeeds");
    let outcomes = seqs(&src, |h| h.kind == vworkspace_journal::EntryKind::Outcome);
    rewrite(&src, &altered, |seq, body| {
        if seq == outcomes[2] {
            body["digest"] = "0000000000000000".into();
        }
    });
    let altered = source::load(&altered).unwrap();
    let check = pass::Options { check: true, timeline: true, ..Default::default() };
    same_on_two_threads("altered", &altered, check.clone());
    let p = pass::run(&altered, &pass::Options { pipeline: Some(true), ..check }).unwrap();
    assert_eq!(p.divergence.map(|d| d.seq), Some(outcomes[2]));

    // A record that does not decode (decoded ahead on the reading thread) is the same error on
    // both, at the same record.
    let undecodable = dir.path().join("undecodable");
    let children = seqs(&src, |h| h.resource.kind == "Backup");
    rewrite(&src, &undecodable, |seq, body| {
        if seq == children[0] {
            body["resource"] = "NoSuchKind".into();
        }
    });
    let undecodable = source::load(&undecodable).unwrap();
    for opts in [pass::Options::default(), pass::Options { timeline: true, ..Default::default() }] {
        let err = pass::run(&undecodable, &pass::Options { pipeline: Some(true), ..opts.clone() }).err();
        let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(text.contains(&format!("record at seq {} does not decode", children[0])), "{err:?}");
        same_on_two_threads("undecodable", &undecodable, opts);
    }

    // A record damaged mid-file (its checksum fails as it is read) is the same error on both.
    let mut bytes = std::fs::read(&src).unwrap();
    let at = bytes.len() * 3 / 5;
    bytes[at] ^= 0x55;
    let damaged = dir.path().join("damaged.vwj");
    std::fs::write(&damaged, &bytes).unwrap();
    let damaged = source::load(&damaged).unwrap();
    for opts in [pass::Options::default(), pass::Options { timeline: true, ..Default::default() }] {
        let err = pass::run(&damaged, &pass::Options { pipeline: Some(true), ..opts.clone() }).err();
        assert!(err.as_ref().is_some_and(|e| e.category() == "damaged"), "{err:?}");
        same_on_two_threads("damaged", &damaged, opts);
    }

    // The fixtures fit in one batch. A journal of many batches: the reader runs ahead and
    // blocks on a full channel, and a stop early in it must stop the reader too.
    let long = dir.path().join("long");
    let records = workload::journal(400);
    assert!(records.len() > 8_000, "{} records", records.len());
    write_journal(&long, records.iter().map(journal_codec::to_entry).collect());
    let long = source::load(&long).unwrap();
    for opts in [
        pass::Options::default(),
        pass::Options { check: true, ..timeline.clone() },
        pass::Options { until: Some(300), ..timeline.clone() },
        pass::Options { until: Some(records.len() as u64 - 100), ..Default::default() },
    ] {
        same_on_two_threads("long", &long, opts);
    }
    let p = pass::run(&long, &pass::Options { pipeline: Some(true), check: true, ..Default::default() }).unwrap();
    assert_eq!((p.last_seq, p.divergence), (records.len() as u64, None), "a harness journal passes --check");
}

/// Replay keeps ended Operations' last statuses whole and their children as plain text
/// (`World::replay`) where the operator keeps digests and compressed text: every record must
/// give the same commands either way, and the same Operations and children.
#[test]
fn keeping_ended_operations_statuses_whole_decides_the_same() {
    let mut journals: Vec<(String, Vec<vworkspace_operator::record::Record>)> =
        vec![("workload".into(), workload::journal(90))];
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path().join("journal.vwj");
        if !path.exists() {
            continue;
        }
        let src = source::load(&path).unwrap();
        assert_eq!(src.start.1, 0, "{path:?} starts from a snapshot");
        let records = src.entries().unwrap().iter().map(|e| journal_codec::from_entry(e).unwrap()).collect();
        journals.push((path.display().to_string(), records));
    }
    let (mut ended, mut settled) = (0, 0);
    for (name, records) in journals {
        let mut compact = State::default();
        let world = fold::world::World { replay: true, ..Default::default() };
        let mut whole = State { world, ..Default::default() };
        for r in &records {
            assert_eq!(fold::step(&mut compact, r), fold::step(&mut whole, r), "{name}: seq {}", r.seq);
        }
        for (key, op) in compact.ops.iter() {
            let other = whole.ops.get(key).unwrap_or_else(|| panic!("{name}: {key} is missing"));
            assert_eq!(op_summary(op), op_summary(other), "{name}: {key}");
            ended += usize::from(op.is_terminal());
        }
        assert_eq!(compact.ops.len(), whole.ops.len(), "{name}");
        for (k, c) in &compact.world.children {
            let other = whole.world.children.get(k);
            assert_eq!(Some(c), other, "{name}: a child differs");
            // Compressed by the operator, plain text in a replay: the same object either way.
            if let Some(other) = other.filter(|o| o.is_settled()) {
                assert!(matches!(c, Child::Packed(_)) && matches!(other, Child::Settled(_)), "{name}: {k:?}");
                settled += 1;
            }
        }
    }
    assert!(ended > 90, "{ended} Operations ended: too few to show anything");
    assert!(settled > 90, "{settled} children settled: too few to show anything");
}
