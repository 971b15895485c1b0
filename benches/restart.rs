//! Restart: from process start to a restored state, with a 1M-record journal, with and without
//! a snapshot (the performance issue's "ready in at most 2 s with a snapshot"). Readiness also
//! waits for the first relist, which is the cluster's cost, not the journal's: not included.
//! - without a snapshot: open the journal and fold every record (echoes from their probe);
//! - with a snapshot 5,000 records before the end (the runtime snapshots every 10,000): open,
//!   decode the snapshot, fold the tail.
//!
//! Run: `cargo bench --bench restart` (`VW_RECORDS=200000` for a shorter run).

// As the binary runs (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use vworkspace_journal::{Journal, SledJournal};
use vworkspace_operator::fold::{self, State};
use vworkspace_operator::{journal_codec, run};

mod summary;
mod workload;

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--quick");
    let want: usize =
        std::env::var("VW_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(if smoke { 2_000 } else { 1_000_000 });
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let (j, _) = SledJournal::open(&jdir).unwrap();
    // Written in chunks of 2,000 Operations, folded on the way (for the snapshot).
    let mut state = State::default();
    let (mut seq, mut first, mut snapshot) = (0u64, 0usize, Vec::new());
    let snapshot_at = (want - 5_000.min(want / 2)) as u64;
    while (seq as usize) < want {
        let mut records = workload::journal_from(2000, first);
        first += 2000;
        records.truncate(want - seq as usize);
        for r in records.iter_mut() {
            seq += 1;
            r.seq = seq;
            fold::step(&mut state, r);
            if seq == snapshot_at {
                snapshot = serde_json::to_vec(&state).unwrap();
            }
        }
        j.append(records.iter().map(journal_codec::to_entry).collect()).unwrap();
    }
    // The runtime writes each batch's events with the batch: nothing is left to derive again.
    j.outbox().unwrap().put(seq, &[]).unwrap();
    j.durable().unwrap();
    let ops = state.ops.len();
    drop((j, state));
    SledJournal::close(&jdir);
    println!(
        "{seq} records of {ops} Operations; a snapshot of {:.1} MB at seq {snapshot_at}",
        snapshot.len() as f64 / 1e6
    );

    // VW_RUNS (3 in a full run): each restart repeated, then its median, min and max.
    let runs = summary::runs(if smoke { 1 } else { 3 });
    let mut table = summary::Summary::default();

    // Without a snapshot: every record folded.
    for _ in 0..runs {
        let t = Instant::now();
        let (state, r) = run::restore_dir(&jdir).unwrap();
        let without = t.elapsed();
        assert_eq!(state.last_seq, seq);
        println!("restart without a snapshot: {without:.2?} to a restored state ({} records folded)", r.records);
        table.add("without a snapshot", "s", "", without.as_secs_f64());
        drop(state);
        SledJournal::close(&jdir);
    }

    // The restart's decoder reads the snapshot as a plain decode does.
    if let Err(e) = State::from_snapshot(&snapshot) {
        panic!("the snapshot does not decode: {e}");
    }
    // With the snapshot, as a restart finds it.
    let (j, _) = SledJournal::open(&jdir).unwrap();
    j.write_snapshot(snapshot_at, &snapshot).unwrap();
    j.durable().unwrap();
    drop(j);
    SledJournal::close(&jdir);
    for _ in 0..runs {
        let t = Instant::now();
        let (state, r) = run::restore_dir(&jdir).unwrap();
        let with = t.elapsed();
        assert_eq!(state.last_seq, seq);
        println!(
            "restart with a snapshot: {with:.2?} to a restored state (snapshot read {:.2?}, decoded {:.2?}; {} records folded after it in {:.2?}; target <= 2 s)",
            r.read, r.decode, r.records, r.tail
        );
        table.add("with a snapshot", "s", "≤ 2 s", with.as_secs_f64());
        table.add("with a snapshot: read (store, checksum, decompress)", "s", "", r.read.as_secs_f64());
        table.add("with a snapshot: decode", "s", "", r.decode.as_secs_f64());
        table.add("with a snapshot: tail", "s", "", r.tail.as_secs_f64());
        drop(state);
        SledJournal::close(&jdir);
    }
    println!("\nsummary of {runs} run(s):\n{}", table.markdown());
}
