//! `PreconditionsMet` (DESIGN §2): target Ready, no conflicting Operation ahead in the target's
//! queue (oldest first), and the template's prerequisite Secrets exist. Waiting is Blocked, not Failed.

use serde_json::Value;

use super::op::OpState;
use super::queue::Queues;
use super::world::World;
use crate::api::{OperationTemplateSpec, reason};
use crate::key::ObjKey;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preconditions {
    Met,
    Blocked { reason: &'static str, message: String, queue_position: Option<u32> },
}

pub fn target_ready(app: &Value) -> Option<(bool, String)> {
    let c = crate::json::at(app, "/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    let ready = c.get("status").and_then(Value::as_str) == Some("True");
    let msg = c.get("message").and_then(Value::as_str).unwrap_or("").to_string();
    Some((ready, msg))
}

pub fn check(op: &OpState, template: &OperationTemplateSpec, world: &World, queues: &Queues) -> Preconditions {
    let ns = &op.key.namespace;
    let target = op.target_name().unwrap_or_default();
    let place = queues.place(
        &(ns.clone(), target.to_string()),
        &(op.created, op.key.name.clone()),
        template.preconditions.exclusive,
    );
    if let Some(shown) = place.shown() {
        let message = if place.names.is_empty() {
            // A deep queue: the place is rounded down, and naming thousands would not help.
            format!("waiting for {shown}+ Operations on {target} to finish; queue position {shown}+")
        } else {
            format!(
                "waiting for {} on {target} to finish ({}); queue position {}",
                if place.ahead == 1 { "Operation" } else { "Operations" },
                place.names.join(", "),
                place.ahead
            )
        };
        return Preconditions::Blocked { reason: reason::CONFLICTING_OPERATION, message, queue_position: Some(shown) };
    }
    if template.preconditions.require_target_ready {
        match world.apps.get(&ObjKey::new(ns.clone(), target)).and_then(|a| target_ready(&a.raw)) {
            Some((true, _)) => {}
            Some((false, msg)) => {
                return Preconditions::Blocked {
                    reason: reason::TARGET_NOT_READY,
                    message: format!("ApplicationInstance {target} is not Ready: {msg}"),
                    queue_position: None,
                };
            }
            None => {
                return Preconditions::Blocked {
                    reason: reason::TARGET_NOT_READY,
                    message: format!("ApplicationInstance {target} reports no Ready condition yet"),
                    queue_position: None,
                };
            }
        }
    }
    // Secrets the template requires, then those the parameters refer to (validated already).
    let referenced: Vec<String> = op
        .spec
        .as_ref()
        .and_then(|s| super::validate::params_map(s).ok())
        .and_then(|p| super::secret_refs::check(&p, template.parameters_schema.as_ref()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut missing: Vec<&str> = template
        .preconditions
        .required_secrets
        .iter()
        .chain(&referenced)
        .filter(|s| !world.secrets.contains(&ObjKey::new(ns.clone(), s.as_str())))
        .map(String::as_str)
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        return Preconditions::Blocked {
            reason: reason::MISSING_SECRET,
            message: format!("waiting for Secret {} in namespace {ns}", missing.join(", ")),
            queue_position: None,
        };
    }
    Preconditions::Met
}
