//! One file per scenario of the reliability issue.

mod apiserver;
mod conflicts;
mod gone;
mod journal_damage;
mod kill;
mod split_brain;
mod stale;

/// Scenarios take turns (an async lock: it is held across the whole scenario, and never poisoned
/// by a failed one).
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    crate::ONE_AT_A_TIME.lock().await
}
