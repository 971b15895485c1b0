//! One file per scenario of the reliability issue.

mod apiserver;
mod conflicts;
mod gone;
mod journal_damage;
mod kill;
mod split_brain;
mod stale;

use std::sync::MutexGuard;

/// Scenarios take turns; a failed one must not poison the others.
fn turn() -> MutexGuard<'static, ()> {
    crate::ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
