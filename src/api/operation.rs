//! `Operation`: the one CRD that carries every day-2 action (DESIGN §1, ADR 0004).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// Spec is immutable after creation except `cancel` (DESIGN §1).
const IMMUTABLE_RULE: &str = "self.type == oldSelf.type && self.target == oldSelf.target \
&& has(self.engine) == has(oldSelf.engine) && (!has(self.engine) || self.engine == oldSelf.engine) \
&& has(self.template) == has(oldSelf.template) && (!has(self.template) || self.template == oldSelf.template) \
&& has(self.parameters) == has(oldSelf.parameters) && (!has(self.parameters) || self.parameters == oldSelf.parameters) \
&& has(self.deadlineSeconds) == has(oldSelf.deadlineSeconds) && (!has(self.deadlineSeconds) || self.deadlineSeconds == oldSelf.deadlineSeconds) \
&& (has(self.dryRun) ? self.dryRun : false) == (has(oldSelf.dryRun) ? oldSelf.dryRun : false)";

/// A request to run one day-2 action on an ApplicationInstance.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.vworkspace.io",
    version = "v1alpha1",
    kind = "Operation",
    derive = "PartialEq",
    namespaced,
    status = "OperationStatus",
    shortname = "op",
    shortname = "ops",
    category = "vworkspace",
    doc = "A day-2 action (backup, restore, upgrade, migration, command, runbook) on an ApplicationInstance",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".status.engine.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Requested-By","type":"string","jsonPath":".metadata.annotations.ops\\.vworkspace\\.io/requested-by","priority":1}"#,
    printcolumn = r#"{"name":"Trace","type":"string","jsonPath":".status.traceID","priority":1}"#,
    selectable = ".spec.type",
    selectable = ".spec.target.name"
)]
#[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec is immutable after creation; only spec.cancel may change").reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct OperationSpec {
    /// What to do.
    #[serde(rename = "type")]
    pub type_: OperationType,
    /// The ApplicationInstance, in this Operation's namespace.
    pub target: TargetRef,
    /// The engine that does the work; the template gives the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineName>,
    /// The OperationTemplate to validate against; default: the one matching type and engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub template: Option<String>,
    /// Free-form parameters, validated against the template's JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub parameters: Option<serde_json::Value>,
    /// Time allowed from creation to a terminal outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_592_000))]
    pub deadline_seconds: Option<i64>,
    /// Validate and report `status.plan` without creating children.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// A request to stop the Operation. The only field that may change after creation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OperationType {
    Backup,
    Restore,
    Upgrade,
    Migration,
    RunCommand,
    Runbook,
}

impl OperationType {
    pub const ALL: [OperationType; 6] = [
        OperationType::Backup,
        OperationType::Restore,
        OperationType::Upgrade,
        OperationType::Migration,
        OperationType::RunCommand,
        OperationType::Runbook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationType::Backup => "Backup",
            OperationType::Restore => "Restore",
            OperationType::Upgrade => "Upgrade",
            OperationType::Migration => "Migration",
            OperationType::RunCommand => "RunCommand",
            OperationType::Runbook => "Runbook",
        }
    }

    /// The capability annotation that declares this type: `ops.vworkspace.io/<kebab>`.
    pub fn capability_key(self) -> &'static str {
        match self {
            OperationType::Backup => "ops.vworkspace.io/backup",
            OperationType::Restore => "ops.vworkspace.io/restore",
            OperationType::Upgrade => "ops.vworkspace.io/upgrade",
            OperationType::Migration => "ops.vworkspace.io/migration",
            OperationType::RunCommand => "ops.vworkspace.io/run-command",
            OperationType::Runbook => "ops.vworkspace.io/runbook",
        }
    }
}

/// The engines a user may name in `spec.engine` (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EngineName {
    Velero,
    ArgoWorkflow,
    Job,
    CsiSnapshot,
    VolSync,
    HelmHookJob,
}

impl EngineName {
    pub const ALL: [EngineName; 6] = [
        EngineName::Velero,
        EngineName::ArgoWorkflow,
        EngineName::Job,
        EngineName::CsiSnapshot,
        EngineName::VolSync,
        EngineName::HelmHookJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineName::Velero => "velero",
            EngineName::ArgoWorkflow => "argoWorkflow",
            EngineName::Job => "job",
            EngineName::CsiSnapshot => "csiSnapshot",
            EngineName::VolSync => "volSync",
            EngineName::HelmHookJob => "helmHookJob",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetRef {
    /// Name of the ApplicationInstance in the Operation's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// For display only; derived from the conditions (DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OperationPhase {
    Pending,
    Blocked,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationPhase::Pending => "Pending",
            OperationPhase::Blocked => "Blocked",
            OperationPhase::Running => "Running",
            OperationPhase::Succeeded => "Succeeded",
            OperationPhase::Failed => "Failed",
            OperationPhase::Cancelled => "Cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, OperationPhase::Succeeded | OperationPhase::Failed | OperationPhase::Cancelled)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<OperationPhase>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Summary line shown by `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// "completed/total" from the engine, for the PROGRESS column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Human duration from start to completion (or to the last status write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    /// Position in the per-target queue while Blocked by a conflicting Operation (1 = next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineStatus>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// What a dry run would create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedChild>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "traceID")]
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub step: u32,
}

/// The child's state as its upstream controller reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    /// Resolved engine (`chartUpgrade` for Upgrade).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<i64>,
    /// Upstream detail lines: validation errors, the failing node, and so on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    pub completed: i64,
    pub total: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChild {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub step: u32,
}
