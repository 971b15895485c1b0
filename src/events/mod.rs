//! The event stream to the control plane: each Operation condition transition, kept in the
//! journal's outbox (`vworkspace_journal::outbox`) with a stable ID, pushed in coalesced
//! batches (`push`) or streamed from a cursor as Server-Sent Events (`GET /events`).

pub mod push;

use serde::{Deserialize, Serialize};

use crate::signals::{OpInfo, Signal};

pub const SCHEMA: &str = "vworkspace.events/v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub ty: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    /// `status/reason` before the transition; absent for the first value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub schema: String,
    /// `<uid>.<journal seq>.<condition type>`: the same on every delivery (deduplicate by it).
    pub id: String,
    /// The event's position in the outbox (resume from it); set when read.
    #[serde(default)]
    pub cursor: u64,
    pub time: chrono::DateTime<chrono::Utc>,
    pub operation: OpInfo,
    pub condition: Condition,
    /// The Operation's phase after the transition.
    pub phase: String,
    /// Succeeded became True or False. Terminal events are never coalesced away.
    pub terminal: bool,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// How many transitions of this Operation this event stands for (1 unless coalesced).
    pub coalesced: u32,
}

/// The events among some signals.
pub fn of(signals: &[Signal]) -> Vec<Event> {
    signals
        .iter()
        .filter_map(|s| match s {
            Signal::Transition(t) => Some(Event {
                schema: SCHEMA.into(),
                id: t.id(),
                cursor: 0,
                time: t.at,
                operation: t.op.clone(),
                condition: Condition {
                    ty: t.ty.clone(),
                    status: t.status.clone(),
                    reason: t.reason.clone(),
                    message: t.message.clone(),
                    from: t.from.clone(),
                },
                phase: t.phase.clone(),
                terminal: t.terminal,
                trace_id: crate::signals::ids::trace_id(&t.op.uid),
                coalesced: 1,
            }),
            _ => None,
        })
        .collect()
}

/// The events among some signals, as the outbox stores them (JSON).
pub fn encoded(signals: &[Signal]) -> Vec<Vec<u8>> {
    of(signals).iter().filter_map(|e| serde_json::to_vec(e).ok()).collect()
}

/// Merges the non-terminal events of each Operation in a batch into its latest one (which
/// counts what it stands for); terminal events always stay. Order by cursor is kept.
pub fn coalesce(batch: Vec<Event>) -> Vec<Event> {
    use std::collections::BTreeMap;
    // For each Operation, the index of its last non-terminal event and how many it absorbs.
    let mut last: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
    for (i, e) in batch.iter().enumerate() {
        if !e.terminal {
            let entry = last.entry(e.operation.uid.as_str()).or_insert((i, 0));
            entry.0 = i;
            entry.1 += 1;
        }
    }
    let keep: BTreeMap<usize, u32> = last.into_values().collect();
    batch
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut e)| {
            if e.terminal {
                return Some(e);
            }
            let n = keep.get(&i)?;
            e.coalesced = *n;
            Some(e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(uid: &str, n: u64, terminal: bool) -> Event {
        Event {
            schema: SCHEMA.into(),
            id: format!("{uid}.{n}.Progressing"),
            cursor: n,
            time: chrono::DateTime::from_timestamp(n as i64, 0).unwrap(),
            operation: OpInfo {
                namespace: "ns".into(),
                name: uid.into(),
                uid: uid.into(),
                ty: "Backup".into(),
                engine: "velero".into(),
                target: "shop".into(),
                requested_by: String::new(),
            },
            condition: Condition {
                ty: if terminal { "Succeeded" } else { "Progressing" }.into(),
                status: "True".into(),
                reason: "InProgress".into(),
                message: format!("step {n}"),
                from: None,
            },
            phase: "Running".into(),
            terminal,
            trace_id: String::new(),
            coalesced: 1,
        }
    }

    #[test]
    fn a_burst_of_100_transitions_becomes_the_latest_state_and_every_terminal_one() {
        let mut burst: Vec<Event> = (1..=100).map(|n| ev(if n % 2 == 0 { "a" } else { "b" }, n, false)).collect();
        burst.push(ev("a", 101, true));
        burst.push(ev("c", 102, true));
        let out = coalesce(burst);
        let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["b.99.Progressing", "a.100.Progressing", "a.101.Progressing", "c.102.Progressing"]);
        assert_eq!(out[0].coalesced, 50);
        assert_eq!(out[1].coalesced, 50);
        assert_eq!(out[1].condition.message, "step 100", "the latest state wins");
        assert!(out[2].terminal && out[3].terminal, "terminal events are never dropped");
    }
}
