//! Folding effect outcomes: what the effector got back decides what happens next.

use chrono::{DateTime, Utc};

use super::op::{CancelState, CreateState, OpState, Pending, RollbackState};
use crate::api::{ConditionStatus as S, ConditionType as C, reason};
use crate::command::Command;
use crate::engine::helm_hook;
use crate::record::{Outcome, OutcomeData, OutcomeResult as R};

/// An outcome that changes nothing the Operation's reconcile reads: an Event sent, a status
/// written (or no longer needed), a finalizer removed, a deletion done.
pub(crate) fn inert(pending: &Pending, result: &R) -> bool {
    match pending {
        Pending::Event | Pending::RemoveFinalizer | Pending::DeleteOperation => true,
        Pending::Status => result.is_success() || *result == R::NotFound || *result == R::Superseded,
        _ => false,
    }
}

/// Folds an outcome; false when it changed nothing the Operation's reconcile reads (an Event
/// sent, a status written), so the fold skips reconciling it: half of all records are these.
pub(crate) fn apply(op: &mut OpState, o: &Outcome, now: DateTime<Utc>, out: &mut Vec<Command>) -> bool {
    // Unknown or repeated outcomes change nothing: the effect was already folded.
    let Some(pending) = op.answered(&o.command_id) else { return false };
    let ok = o.result.is_success();
    if inert(&pending, &o.result) {
        return false;
    }
    match pending {
        Pending::Create { step } => create(op, step, o, now, out),
        Pending::Stop { .. } => {
            if op.cancel == CancelState::Stopping {
                let msg = if ok || o.result == R::NotFound {
                    "cancelled: the child was stopped".to_string()
                } else {
                    format!("cancelled, but stopping the child failed ({:?}): {}", o.result, o.message)
                };
                op.finish(false, reason::CANCELLED, msg, now, out);
            }
        }
        // Send it again on the next reconcile.
        Pending::Status => op.last_status = None,
        Pending::CleanupDelete { .. } => {
            if !ok && o.result != R::NotFound {
                // Keep the finalizer until the child in Velero's namespace is really gone.
                op.cleanup.deletes_sent = false;
            }
        }
        Pending::Event | Pending::RemoveFinalizer | Pending::DeleteOperation => {}
        Pending::AddFinalizer => {
            if ok {
                op.has_finalizer = true;
            } else {
                op.finalizer_requested = false;
            }
        }
        Pending::LoadHooks => match (&o.result, &o.data) {
            (R::Ok, OutcomeData::HelmHooks { release_secret, hooks }) => {
                let mut hooks = hooks.clone();
                hooks.iter_mut().for_each(|h| h.release_secret = release_secret.clone());
                helm_hook::sort_hooks(&mut hooks);
                op.outputs.insert("helmReleaseRecord".into(), release_secret.clone());
                op.outputs.insert("hooks".into(), hooks.len().to_string());
                op.hooks = Some(hooks);
            }
            (R::NotFound, _) => {
                op.finish(false, reason::ENGINE_REJECTED, format!("no Helm release record: {}", o.message), now, out)
            }
            _ => refused_or_retry(op, "reading the Helm release record", o, now, out),
        },
        Pending::PatchTarget { rollback: false } => match (&o.result, &o.data) {
            (R::Ok, OutcomeData::Generation(g)) => {
                if let Some(u) = op.upgrade.as_mut() {
                    u.generation = Some(*g);
                    let (from, to) = (u.previous.clone(), u.version.clone());
                    op.outputs.insert("targetGeneration".into(), g.to_string());
                    op.set(
                        C::Progressing,
                        S::True,
                        reason::CHILD_CREATED,
                        format!("chart version {from} -> {to} patched; waiting for the rollout"),
                        now,
                        out,
                    );
                }
            }
            (R::Conflict, _) => op.finish(
                false,
                reason::ENGINE_REJECTED,
                format!("the target's chart version changed concurrently: {}", o.message),
                now,
                out,
            ),
            (R::NotFound, _) => {
                op.finish(false, reason::CHILD_LOST, format!("the target disappeared: {}", o.message), now, out)
            }
            _ => refused_or_retry(op, "patching the target", o, now, out),
        },
        Pending::PatchTarget { rollback: true } => {
            let restored = if ok { "restored" } else { "could not be restored" };
            let prev = op.upgrade.as_ref().map(|u| u.previous.clone()).unwrap_or_default();
            if op.cancel == CancelState::Stopping {
                op.finish(false, reason::CANCELLED, format!("cancelled: chart version {prev} {restored}"), now, out);
            } else if let Some(RollbackState::Sent { reason: r, message }) =
                op.upgrade.as_ref().map(|u| u.rollback.clone())
            {
                let detail = if ok {
                    format!("rolled back to {prev}")
                } else {
                    format!("rollback to {prev} failed: {}", o.message)
                };
                op.finish(false, &r, format!("{message}; {detail}"), now, out);
            }
        }
    }
    true
}

/// Forbidden or invalid ends the Operation; anything else is retried (the effector backs off).
fn refused_or_retry(op: &mut OpState, what: &str, o: &Outcome, now: DateTime<Utc>, out: &mut Vec<Command>) {
    match o.result {
        R::Forbidden | R::Invalid => {
            op.finish(false, reason::ENGINE_REJECTED, format!("{what} was refused: {}", o.message), now, out)
        }
        _ => op.set(
            C::Progressing,
            S::True,
            reason::RETRYING,
            format!("{what} failed, retrying: {}", o.message),
            now,
            out,
        ),
    }
}

fn create(op: &mut OpState, step: u32, o: &Outcome, now: DateTime<Utc>, out: &mut Vec<Command>) {
    let Some(st) = op.steps.iter_mut().find(|s| s.step == step) else { return };
    let what = st.describe();
    match o.result {
        R::Ok | R::AlreadyExistsOurs => {
            st.create = CreateState::Created;
            // A child already seen has mapped its own status onto Progressing; saying
            // "created" over it would flip the condition there and back, two Events for nothing.
            if !st.seen {
                op.set(C::Progressing, S::True, reason::CHILD_CREATED, format!("created {what}"), now, out);
            }
        }
        R::AlreadyExistsForeign => op.finish(false, reason::REJECTED, super::op::foreign_child(&what), now, out),
        R::Forbidden | R::Invalid | R::NotFound => op.finish(
            false,
            reason::ENGINE_REJECTED,
            format!("the API server refused to create {what}: {}", o.message),
            now,
            out,
        ),
        // Only status patches are ever superseded; were a create, it would be sent again.
        R::Conflict | R::Error | R::Superseded => {
            if st.create != CreateState::Created {
                st.create = CreateState::NotSent;
            }
            op.set(
                C::Progressing,
                S::True,
                reason::RETRYING,
                format!("creating {what} failed, retrying: {}", o.message),
                now,
                out,
            );
        }
    }
}
