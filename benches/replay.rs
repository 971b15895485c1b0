//! Replay throughput (issue 7's targets), harness-free because a 1M-record run does not fit
//! criterion's sampling. Prints one line per figure:
//! - fold-only replay, warm: records already in memory, decoded and folded, on one thread and
//!   with a second thread reading (`pass::Options::pipeline`, what `replay` does given 2 CPUs);
//! - fold-only replay, cold: the journal directory opened, read, decompressed and folded;
//! - full replay of an export: what `replay FILE` does (read, fold, every timeline, the text
//!   view written to a sink), on one core and as `replay` runs.
//!
//! Run: `cargo bench --bench replay` (`VW_RECORDS=200000` for a shorter run; `-- --quick`, or
//! without `--bench` as `cargo test --all-targets` runs it: a smoke run).

// As the binary runs (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use vworkspace_journal::{Journal, SledJournal, export};
use vworkspace_operator::journal_codec;
use vworkspace_operator::replay::{pass, source, view};

mod workload;

fn main() {
    // As the binary runs: no transparent huge pages for mimalloc's arenas (src/main.rs). With
    // them the full replay here took 15.8 s where the binary took 11.6 s.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it sets a flag on this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0)
    };
    // `cargo test --all-targets` runs this without `--bench`: a smoke run of the same code.
    let smoke = !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--quick");
    let default = if smoke { 2_000 } else { 1_000_000 };
    let want: usize = std::env::var("VW_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let per_op = workload::journal(30).len() / 30;
    let ops = want / per_op + 1;
    let t = Instant::now();
    // Built in chunks of 2000 Operations, renumbered into one journal.
    let mut records = Vec::new();
    for first in (0..ops).step_by(2000) {
        records.extend(workload::journal_from(2000.min(ops - first), first));
    }
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = i as u64 + 1;
    }
    println!("generated {} records of {ops} Operations in {:.1?}", records.len(), t.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let (j, _) = SledJournal::open(&jdir).unwrap();
    for chunk in records.chunks(4096) {
        j.append(chunk.iter().map(journal_codec::to_entry).collect()).unwrap();
    }
    j.durable().unwrap();
    let file = dir.path().join("journal.vwj");
    export::export(&j, &file).unwrap();
    // VW_KEEP=PATH keeps a copy of the export (for profiling a replay of it).
    if let Some(keep) = std::env::var_os("VW_KEEP") {
        std::fs::copy(&file, keep).unwrap();
    }
    drop(j);
    SledJournal::close(&jdir);
    let n = records.len() as f64;
    drop(records);

    // Cold: open, read, decompress, decode and fold.
    let t = Instant::now();
    let src = source::load(&jdir).unwrap();
    let loaded = t.elapsed();
    let p = pass::run(&src, &pass::Options::default()).unwrap();
    let cold = t.elapsed();
    assert_eq!(p.records as f64, n);
    println!(
        "fold-only replay, cold from the journal directory: {:.0} records/s ({cold:.2?}; reading {loaded:.2?})",
        n / cold.as_secs_f64()
    );

    // Warm: the same records already in memory, on one thread, then with a reading thread.
    for (threads, pipeline) in [("one thread", false), ("two threads", true)] {
        let t = Instant::now();
        let p = pass::run(&src, &pass::Options { pipeline: Some(pipeline), ..Default::default() }).unwrap();
        let warm = t.elapsed();
        println!(
            "fold-only replay, warm (in memory), {threads}: {:.0} records/s ({warm:.2?})",
            p.records as f64 / warm.as_secs_f64()
        );
    }
    drop(src);
    SledJournal::close(&jdir);

    // Full: what `replay FILE` does, the text view included (written to a sink, not a
    // terminal): the export read, every timeline kept as the lines it prints. No --check: the
    // chunks were recorded by separate harness runs, so their command IDs need not match one
    // continuous fold.
    for (threads, pipeline) in [("on one core", Some(false)), ("as `replay` runs", None)] {
        let t = Instant::now();
        let src = source::load(&file).unwrap();
        let opts = pass::Options { timeline: true, lines: true, pipeline, ..Default::default() };
        let p = pass::run(&src, &opts).unwrap();
        view::write_text(&src.name, &p, &opts, &mut std::io::sink()).unwrap();
        let full = t.elapsed();
        assert_eq!(p.records as f64, n);
        println!(
            "full replay of a {:.0}-record export ({} MB) with timelines, {threads}: {full:.2?} ({:.0} records/s)",
            n,
            std::fs::metadata(&file).unwrap().len() / 1_000_000,
            n / full.as_secs_f64()
        );
    }
}
