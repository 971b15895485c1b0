//! Records: the fold's only input. Each is journaled before it is folded (DESIGN §4).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::command::HelmHook;
use crate::key::OpKey;

/// One journal entry as the fold sees it. `at` is the only clock the fold knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub body: RecordBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RecordBody {
    /// A watch event, with the object as seen (redacted).
    Observed(Observed),
    /// What the effector got when it ran a command.
    Outcome(Outcome),
    /// A timer the fold asked for has fired.
    Timer(TimerFired),
    /// The set of child kinds whose CRDs are installed (from API discovery).
    Discovery(Discovery),
    /// The operator (re)started or took over leadership: commands in flight may never have run.
    Restart,
    /// A new operator process, before its watches start: what it restored may be stale (or,
    /// after a change of shard count, no longer its own) until every kind is relisted.
    Started(Started),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The shard this process serves: its journal holds only that shard's Operations.
    #[serde(default)]
    pub shard: crate::shard::Shard,
    /// At most this many Operations run at once (`fold::admission`); none: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u32>,
}

impl RecordBody {
    /// Applies the journal's redaction (DESIGN §4) before the record is folded as well as before
    /// it is written, so the fold sees exactly what a replay will see. Values the effector needs
    /// (env) are filled back from the live source when it runs (`command::EnvSource`).
    pub fn redact(&mut self) {
        match self {
            RecordBody::Observed(o) => {
                if let Some(obj) = o.object.as_mut() {
                    vworkspace_journal::redact::redact(obj);
                }
            }
            RecordBody::Outcome(Outcome { data: OutcomeData::HelmHooks { hooks, .. }, .. }) => {
                hooks.iter_mut().for_each(|h| vworkspace_journal::redact::redact(&mut h.manifest))
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    pub resource: ResourceKind,
    pub event: WatchEvent,
    /// Absent for the Init and InitDone markers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
}

/// kube-runtime's `watcher::Event` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WatchEvent {
    Init,
    InitApply,
    InitDone,
    Apply,
    Delete,
}

/// Everything the operator watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceKind {
    Operation,
    OperationTemplate,
    ApplicationInstance,
    /// Secrets by metadata only: names and keys, never values.
    Secret,
    Child(ChildKind),
}

impl ResourceKind {
    /// What every process watches whatever engines are installed (child kinds follow discovery).
    pub const BASE: [ResourceKind; 4] = [
        ResourceKind::Operation,
        ResourceKind::OperationTemplate,
        ResourceKind::ApplicationInstance,
        ResourceKind::Secret,
    ];

    pub const ALL: [ResourceKind; 11] = [
        ResourceKind::Operation,
        ResourceKind::OperationTemplate,
        ResourceKind::ApplicationInstance,
        ResourceKind::Secret,
        ResourceKind::Child(ChildKind::VeleroBackup),
        ResourceKind::Child(ChildKind::VeleroRestore),
        ResourceKind::Child(ChildKind::Workflow),
        ResourceKind::Child(ChildKind::Job),
        ResourceKind::Child(ChildKind::VolumeSnapshot),
        ResourceKind::Child(ChildKind::ReplicationSource),
        ResourceKind::Child(ChildKind::ReplicationDestination),
    ];

    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Operation => "Operation",
            ResourceKind::OperationTemplate => "OperationTemplate",
            ResourceKind::ApplicationInstance => "ApplicationInstance",
            ResourceKind::Secret => "Secret",
            ResourceKind::Child(c) => c.kind(),
        }
    }
}

/// The kinds of child an engine creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChildKind {
    VeleroBackup,
    VeleroRestore,
    Workflow,
    Job,
    VolumeSnapshot,
    ReplicationSource,
    ReplicationDestination,
}

impl ChildKind {
    pub const ALL: [ChildKind; 7] = [
        ChildKind::VeleroBackup,
        ChildKind::VeleroRestore,
        ChildKind::Workflow,
        ChildKind::Job,
        ChildKind::VolumeSnapshot,
        ChildKind::ReplicationSource,
        ChildKind::ReplicationDestination,
    ];

    pub fn api_version(self) -> &'static str {
        match self {
            ChildKind::VeleroBackup | ChildKind::VeleroRestore => "velero.io/v1",
            ChildKind::Workflow => "argoproj.io/v1alpha1",
            ChildKind::Job => "batch/v1",
            ChildKind::VolumeSnapshot => "snapshot.storage.k8s.io/v1",
            ChildKind::ReplicationSource | ChildKind::ReplicationDestination => "volsync.backube/v1alpha1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ChildKind::VeleroBackup => "Backup",
            ChildKind::VeleroRestore => "Restore",
            ChildKind::Workflow => "Workflow",
            ChildKind::Job => "Job",
            ChildKind::VolumeSnapshot => "VolumeSnapshot",
            ChildKind::ReplicationSource => "ReplicationSource",
            ChildKind::ReplicationDestination => "ReplicationDestination",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ChildKind::VeleroBackup => "backups",
            ChildKind::VeleroRestore => "restores",
            ChildKind::Workflow => "workflows",
            ChildKind::Job => "jobs",
            ChildKind::VolumeSnapshot => "volumesnapshots",
            ChildKind::ReplicationSource => "replicationsources",
            ChildKind::ReplicationDestination => "replicationdestinations",
        }
    }

    /// Whether the kind has a status subresource upstream (Velero and Argo do not).
    pub fn has_status_subresource(self) -> bool {
        !matches!(self, ChildKind::VeleroBackup | ChildKind::VeleroRestore | ChildKind::Workflow)
    }

    /// `batch/v1` Job is built in; every other kind needs its CRD installed.
    pub fn is_builtin(self) -> bool {
        matches!(self, ChildKind::Job)
    }
}

/// The result of running one command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub command_id: String,
    pub op: OpKey,
    pub result: OutcomeResult,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "OutcomeData::is_none")]
    pub data: OutcomeData,
    /// The command's action name and digest, so a replay can tell whether this build would
    /// have issued the same command (`replay --check`). Absent in records of format 1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl Outcome {
    /// The outcome of running `cmd`.
    pub fn of(cmd: &crate::command::Command, result: OutcomeResult, message: String, data: OutcomeData) -> Self {
        Self {
            command_id: cmd.id.clone(),
            op: cmd.op.clone(),
            result,
            message,
            data,
            action: cmd.action.name().to_string(),
            digest: cmd.digest(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OutcomeResult {
    Ok,
    /// The object exists and carries this Operation's UID label: the create had already happened.
    AlreadyExistsOurs,
    /// The name is taken by an object that is not ours; nothing was overwritten.
    AlreadyExistsForeign,
    Conflict,
    Forbidden,
    NotFound,
    /// The API server rejected the object (422).
    Invalid,
    Error,
    /// Never sent: a newer command replaced it while it waited (a status patch).
    Superseded,
}

impl OutcomeResult {
    pub fn is_success(self) -> bool {
        matches!(self, OutcomeResult::Ok | OutcomeResult::AlreadyExistsOurs)
    }
}

/// Data an outcome carries back into the fold, so replay needs no cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutcomeData {
    #[default]
    None,
    /// `metadata.generation` after a target patch (Upgrade).
    Generation(i64),
    /// The hooks read from a Helm release record (only the ones used).
    HelmHooks { release_secret: String, hooks: Vec<HelmHook> },
}

impl OutcomeData {
    pub fn is_none(&self) -> bool {
        matches!(self, OutcomeData::None)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerFired {
    pub op: OpKey,
    pub timer: TimerKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TimerKind {
    /// The Operation's deadline.
    Deadline,
    /// Give up waiting for a missing template, target or engine.
    AcceptGrace,
    /// Delete the finished Operation (template retention).
    Retention,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    pub installed: BTreeSet<ChildKind>,
    /// Kinds the runtime watches: each counts as unknown until its first InitDone.
    #[serde(default)]
    pub watched: BTreeSet<ResourceKind>,
}
