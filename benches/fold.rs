//! Fold throughput: records folded per second, from a journal recorded by the model harness
//! (N Operations of four engines, each through its upstream phases to a terminal outcome).
//! Also one target with 250 and 1,000 Operations queued, run in turn (per-Operation cost by depth),
//! and 250 under a template with a parameters schema.
//! Run: `cargo bench --bench fold` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vworkspace_operator::fold::{self, State};

mod workload;
use workload::journal;

/// Folds every record from an empty state; returns the commands sent.
fn fold_all(records: &[vworkspace_operator::record::Record]) -> usize {
    let mut state = State::default();
    records.iter().map(|r| fold::step(&mut state, black_box(r)).len()).sum()
}

fn bench(c: &mut Criterion) {
    let records = journal(300);
    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function(format!("replay {} records of 300 Operations", records.len()), |b| {
        b.iter(|| black_box(fold_all(&records)))
    });
    g.finish();
    // One target's queue, 250 and 1,000 deep: the cost per Operation should not grow with depth.
    let mut g = c.benchmark_group("fold one target");
    for n in [250, 1000] {
        let records = workload::one_target(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n} Operations queued, {} records", records.len()), |b| {
            b.iter(|| black_box(fold_all(&records)))
        });
    }
    // The same queue under a template with a parameters schema, checked at every revisit.
    let records = workload::one_target_with(250, true);
    g.throughput(Throughput::Elements(250));
    g.bench_function(format!("250 Operations queued, parameters schema, {} records", records.len()), |b| {
        b.iter(|| black_box(fold_all(&records)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
