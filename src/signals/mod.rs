//! PURE. What an Operation's story looks like from outside, projected from the same records
//! and folded state the operator decides on: condition transitions, commands with their
//! outcomes, waits on children and the end. Traces, metrics, audit records and the event
//! stream are all rendered from these, live and in `replay`, so they tell one story and a
//! replay of an export re-creates them exactly.

pub mod audit;
pub mod ids;
mod project;
pub mod sinks;
#[cfg(feature = "otlp")]
pub mod spans;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::key::OpKey;

pub use project::Projector;

/// Who and what an Operation is, carried on every signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub engine: String,
    pub target: String,
    /// From the `ops.vworkspace.io/requested-by` annotation, else the first field manager.
    pub requested_by: String,
}

impl OpInfo {
    pub fn key(&self) -> OpKey {
        OpKey::new(self.namespace.clone(), self.name.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub op: OpInfo,
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub ty: String,
    /// `status/reason` before, absent for the first value.
    pub from: Option<String>,
    pub status: String,
    pub reason: String,
    pub message: String,
    /// The Operation's phase after the transition.
    pub phase: String,
    /// Succeeded became True or False: the Operation ended.
    pub terminal: bool,
}

impl Transition {
    /// Stable across replays and restarts: the event stream's ID.
    pub fn id(&self) -> String {
        format!("{}.{}.{}", self.op.uid, self.seq, self.ty)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandSpan {
    pub op: OpInfo,
    pub id: String,
    pub action: String,
    pub issued_seq: u64,
    pub issued_at: DateTime<Utc>,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub result: String,
    pub message: String,
    /// The child the command concerns, if any: `Kind namespace/name`.
    pub child: Option<(String, String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub op: OpInfo,
    pub step: u32,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub seq: u64,
    pub phase: Option<String>,
    pub progress: Option<String>,
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finished {
    pub op: OpInfo,
    pub seq: u64,
    pub created: DateTime<Utc>,
    pub completed: DateTime<Utc>,
    pub succeeded: bool,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "signal", rename_all = "camelCase")]
pub enum Signal {
    Transition(Transition),
    Command(CommandSpan),
    Wait(Wait),
    Finished(Finished),
}
