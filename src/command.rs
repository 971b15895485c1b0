//! Commands: the fold's only output. The effector runs each one idempotently and journals the outcome.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::OperationStatus;
use crate::key::OpKey;
use crate::record::{ChildKind, TimerKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    /// Derived from the Operation UID, step and a per-Operation counter: stable across replays.
    pub id: String,
    pub op: OpKey,
    /// The Operation's UID: Events and owner checks need it.
    #[serde(default)]
    pub uid: String,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Action {
    /// Create a child; AlreadyExists with our UID label counts as done.
    CreateChild {
        kind: ChildKind,
        namespace: String,
        name: String,
        step: u32,
        /// Env values are `<redacted>` here, as in the journal; the effector fills them from
        /// this source when it creates the child.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env_from: Option<EnvSource>,
        manifest: serde_json::Value,
    },
    /// Delete a child (cancel, cleanup). NotFound counts as done.
    DeleteChild {
        kind: ChildKind,
        namespace: String,
        name: String,
    },
    /// Merge-patch a child (Argo `spec.shutdown`).
    PatchChild {
        kind: ChildKind,
        namespace: String,
        name: String,
        patch: serde_json::Value,
    },
    /// Server-side apply of the whole status, field manager `vworkspace-operator`.
    PatchStatus {
        /// Shared with the fold's last status sent (`LastStatus::Live`): one copy, not two.
        status: std::sync::Arc<OperationStatus>,
    },
    /// One events.k8s.io/v1 Event on the Operation.
    EmitEvent {
        event_type: EventType,
        reason: String,
        note: String,
        action: String,
    },
    /// Set the target's `spec.chart.version` (Upgrade), guarded by the expected current version.
    PatchTargetVersion {
        target: String,
        version: String,
        expected_current: String,
    },
    /// Read hooks of one event from the target's newest Helm release record.
    LoadHelmHooks {
        release: String,
        event: String,
    },
    SetTimer {
        timer: TimerKind,
        at: DateTime<Utc>,
    },
    AddFinalizer,
    RemoveFinalizer,
    /// Delete the Operation itself (template retention).
    DeleteOperation,
}

impl Command {
    /// A stable digest of what the command does (op, UID and action; serde_json maps are
    /// sorted, so equal commands hash alike across builds and machines).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_vec(&(&self.op, &self.uid, &self.action)).unwrap_or_default();
        let hash = Sha256::digest(&body);
        hash[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Action {
    /// Short stable name, for metrics, logs and timelines.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateChild { .. } => "CreateChild",
            Action::DeleteChild { .. } => "DeleteChild",
            Action::PatchChild { .. } => "PatchChild",
            Action::PatchStatus { .. } => "PatchStatus",
            Action::EmitEvent { .. } => "EmitEvent",
            Action::PatchTargetVersion { .. } => "PatchTargetVersion",
            Action::LoadHelmHooks { .. } => "LoadHelmHooks",
            Action::SetTimer { .. } => "SetTimer",
            Action::AddFinalizer => "AddFinalizer",
            Action::RemoveFinalizer => "RemoveFinalizer",
            Action::DeleteOperation => "DeleteOperation",
        }
    }

    /// Whether the command leaves a trace in the cluster (and so an outcome record).
    pub fn has_outcome(&self) -> bool {
        !matches!(self, Action::SetTimer { .. })
    }
}

/// Where the effector reads the env values that redaction kept out of the journal and the fold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "camelCase")]
pub enum EnvSource {
    /// `spec.parameters.env` of the live Operation (its UID must still match).
    OperationParameters,
    /// The hook's manifest in this Helm release record (a Secret in the Operation's namespace).
    HelmHook { release_secret: String, hook: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// A hook Job as recorded in a Helm release, converted to JSON by the effector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmHook {
    pub name: String,
    pub kind: String,
    pub weight: i64,
    pub events: Vec<String>,
    pub manifest: serde_json::Value,
    /// The release record it was read from (set by the fold from the outcome).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_secret: String,
}
