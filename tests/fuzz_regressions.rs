//! Every kept fuzz input (`tests/fuzz/corpus/<target>/`) and every past crash
//! (`tests/fuzz/regressions/<target>/`) through the same function the fuzz target calls, so a
//! fixed crash stays fixed without `cargo fuzz`. See tests/fuzz/README.md.

use std::path::{Path, PathBuf};

use vworkspace_operator::fuzz;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir).join(target)).ok())
        .flatten()
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run(target: &str, body: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target} in tests/fuzz/corpus or tests/fuzz/regressions");
    for f in &files {
        let data = std::fs::read(f).expect("readable input");
        // A panic names the input that caused it.
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", f.display());
    }
    eprintln!("{target}: {} inputs", files.len());
}

#[test]
fn journal_decode() {
    run("journal_decode", fuzz::journal_decode);
}

#[test]
fn fold_records() {
    run("fold_records", fuzz::fold_records);
}

#[test]
fn validate() {
    run("validate", fuzz::validate);
}
