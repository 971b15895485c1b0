//! Memory per Operation: the live heap of the folded state (what the operator holds for each
//! Operation it knows: its state machine, target, children as last seen) and its snapshot size.
//! A counting allocator measures the heap exactly; records are dropped after they are folded,
//! as the runtime does.
//! - the model harness's three-engine workload, 20 000 Operations run to their end;
//! - the recorded fixtures (real API server objects, managedFields and all), per Operation.
//!
//! Run: `cargo bench --bench memory` (`VW_OPS=5000` for a shorter run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use vworkspace_operator::fold::{self, State};
use vworkspace_operator::replay::{pass, source};

mod workload;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--quick");
    let n: usize =
        std::env::var("VW_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(if smoke { 200 } else { 20_000 });
    let base = live();
    let mut state = State::default();
    let mut seq = 0;
    for first in (0..n).step_by(1000) {
        let records = workload::journal_from(1000.min(n - first), first);
        for mut r in records {
            seq += 1;
            r.seq = seq;
            fold::step(&mut state, &r);
        }
    }
    let held = live() - base;
    let snapshot = serde_json::to_vec(&state).unwrap().len();
    assert_eq!(state.ops.len(), n);
    println!(
        "model workload: {n} Operations folded ({seq} records): heap {:.1} MiB, {:.1} KiB per Operation; snapshot {:.1} KiB per Operation",
        held as f64 / 1048576.0,
        held as f64 / n as f64 / 1024.0,
        snapshot as f64 / n as f64 / 1024.0
    );
    breakdown(state, n);

    // Real objects: the fixtures recorded against the API server.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.path().is_dir()).collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let src = source::load(&e.path().join("journal.vwj")).unwrap();
        let before = live();
        let p = pass::run(&src, &pass::Options::default()).unwrap();
        let ops = p.state.ops.len().max(1);
        let held = live() - before;
        let snapshot = serde_json::to_vec(&p.state).unwrap().len();
        println!(
            "fixture {:<32} {ops} Operation(s): heap {:.1} KiB per Operation (with its targets and children); snapshot {:.1} KiB",
            e.file_name().to_string_lossy(),
            held as f64 / ops as f64 / 1024.0,
            snapshot as f64 / ops as f64 / 1024.0
        );
    }
}

/// Where the held bytes are: each part's share, measured by dropping it.
fn breakdown(mut state: State, n: usize) {
    let mut part = |name: &str, f: &mut dyn FnMut(&mut State)| {
        let before = live();
        f(&mut state);
        println!("  {name:<34} {:>7.1} KiB per Operation", (before - live()) as f64 / n as f64 / 1024.0);
    };
    part("children (as last seen)", &mut |s| s.world.children.clear());
    part("templates frozen in each Operation", &mut |s| s.ops.for_each_mut(|o| o.template = None));
    part("last status sent", &mut |s| s.ops.for_each_mut(|o| o.last_status = None));
    part("conditions", &mut |s| s.ops.for_each_mut(|o| o.conditions = Default::default()));
    part("specs", &mut |s| s.ops.for_each_mut(|o| o.spec = None));
    part("steps, outputs, engine status", &mut |s| {
        s.ops.for_each_mut(|o| {
            o.steps.clear();
            o.outputs.clear();
            o.engine = None;
        })
    });
    part("the rest of each Operation", &mut |s| s.ops.clear());
    part("targets", &mut |s| s.world.apps.clear());
    part("relists in progress", &mut |s| s.world.relists.clear());
    part("indexes by UID, by target, queues", &mut |s| {
        s.by_uid.clear();
        s.by_target.clear();
        s.queues = Default::default();
    });
    part("the rest of the world", &mut |s| *s = State::default());
}
