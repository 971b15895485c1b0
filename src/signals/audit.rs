//! Audit records: one per accepted, rejected, cancelled and finished Operation, as JSON lines
//! in a stream of their own (`run --audit-log`), apart from the operator's logs.

use serde::Serialize;

use super::{OpInfo, Signal};
use crate::api::{ConditionType, reason};

pub const SCHEMA: &str = "vworkspace.audit/v1";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub schema: &'static str,
    pub time: chrono::DateTime<chrono::Utc>,
    /// accepted, rejected, cancelled, succeeded or failed.
    pub event: &'static str,
    pub operation: OpInfo,
    pub requested_by: String,
    pub reason: String,
    pub message: String,
    pub seq: u64,
    #[serde(rename = "traceID")]
    pub trace_id: String,
}

/// The audit records among some signals.
pub fn records(signals: &[Signal]) -> Vec<AuditRecord> {
    signals
        .iter()
        .filter_map(|s| {
            let (event, op, time, why, message, seq) = match s {
                Signal::Transition(t) if t.ty == ConditionType::Accepted.as_str() && t.status == "True" => {
                    ("accepted", &t.op, t.at, &t.reason, &t.message, t.seq)
                }
                Signal::Transition(t) if t.ty == ConditionType::Accepted.as_str() && t.status == "False" => {
                    ("rejected", &t.op, t.at, &t.reason, &t.message, t.seq)
                }
                // A rejection at acceptance already said it all.
                Signal::Finished(f) if rejected(signals, &f.op.uid) => return None,
                Signal::Finished(f) => {
                    let event = match (f.succeeded, f.reason.as_str()) {
                        (_, reason::CANCELLED) => "cancelled",
                        (true, _) => "succeeded",
                        (false, _) => "failed",
                    };
                    (event, &f.op, f.completed, &f.reason, &f.message, f.seq)
                }
                _ => return None,
            };
            Some(AuditRecord {
                schema: SCHEMA,
                time,
                event,
                operation: op.clone(),
                requested_by: op.requested_by.clone(),
                reason: why.clone(),
                message: message.clone(),
                seq,
                trace_id: super::ids::trace_id(&op.uid),
            })
        })
        .collect()
}

fn rejected(signals: &[Signal], uid: &str) -> bool {
    signals.iter().any(|s| {
        matches!(s, Signal::Transition(t) if t.op.uid == uid && t.ty == ConditionType::Accepted.as_str() && t.status == "False")
    })
}
