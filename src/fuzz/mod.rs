//! Fuzz target bodies. `tests/fuzz/` runs them under libFuzzer (`cargo fuzz`), and
//! `tests/fuzz_regressions.rs` runs them over the kept corpus and every past crash, so each one
//! stays a plain function of bytes without a fuzzing dependency. A panic is a finding: they
//! panic only when an invariant breaks, never on bad input.

mod bytes;
mod crc;
mod journal;
/// Builders the fuzz targets and the fold tests share.
pub mod objects;
mod records;
mod validate;

pub use journal::journal_decode;
pub use records::fold_records;
pub use validate::validate;
