//! `OperationTemplate`: how a type, an engine, a parameter schema, an RBAC profile and
//! preconditions combine into a runnable Operation. Cluster-scoped: owned by the platform team.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::operation::{EngineName, OperationType};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ops.vworkspace.io",
    version = "v1alpha1",
    kind = "OperationTemplate",
    derive = "PartialEq",
    shortname = "optpl",
    category = "vworkspace",
    doc = "Says which Operation types and engine a set of namespaces may run, with parameter schema, RBAC profile and preconditions",
    printcolumn = r#"{"name":"Types","type":"string","jsonPath":".spec.types"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.types.all(t, t == 'Upgrade') || has(self.engine)").message("engine is required unless every type is Upgrade"))]
#[serde(rename_all = "camelCase")]
pub struct OperationTemplateSpec {
    /// Operation types this template allows.
    #[schemars(length(min = 1, max = 6))]
    pub types: Vec<OperationType>,
    /// Engine that runs these types. Absent for Upgrade (a chart version bump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineName>,
    /// Namespaces where Operations may use this template; `*` allows all.
    #[schemars(
        length(min = 1, max = 256),
        inner(regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"), length(max = 63))
    )]
    pub namespaces: Vec<String>,
    /// JSON Schema (draft 2020-12) that `spec.parameters` must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub parameters_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub rbac: RbacProfile,
    #[serde(default)]
    pub preconditions: PreconditionSettings,
    /// Default deadline for Operations that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_592_000))]
    pub deadline_seconds: Option<i64>,
    /// Largest deadline an Operation may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_592_000))]
    pub max_deadline_seconds: Option<i64>,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub restore: RestoreSettings,
    #[serde(default)]
    pub upgrade: UpgradeSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero: Option<VeleroSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo: Option<ArgoSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vol_sync: Option<VolSyncSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_hook: Option<HelmHookSettings>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Who the work runs as. Users never name a ServiceAccount; the template does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RbacProfile {
    /// ServiceAccount that Jobs and Workflows run as, in the Operation's namespace (a plain
    /// name: never `system:serviceaccount:<ns>:<name>`, so it cannot reach another namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,
    /// Mount the ServiceAccount token into pods (default false).
    #[serde(default)]
    pub automount_service_account_token: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreconditionSettings {
    /// Wait until the target reports Ready=True.
    #[serde(default = "yes")]
    pub require_target_ready: bool,
    /// Run at most one Operation per target at a time (oldest first).
    #[serde(default = "yes")]
    pub exclusive: bool,
    /// Secrets (by name, in the Operation's namespace) that must exist before starting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
            length(max = 253)
        )
    )]
    pub required_secrets: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for PreconditionSettings {
    fn default() -> Self {
        Self { require_target_ready: true, exclusive: true, required_secrets: Vec::new() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSettings {
    /// Delete a finished Operation (and its owned children) after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.allowCrossNamespace) || !self.allowCrossNamespace || (has(self.allowedTargetNamespaces) && size(self.allowedTargetNamespaces) > 0)").message("restore.allowCrossNamespace needs restore.allowedTargetNamespaces: name the namespaces"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSettings {
    /// Whether a Restore may write into another namespace.
    #[serde(default)]
    pub allow_cross_namespace: bool,
    /// The namespaces a cross-namespace restore may target, by name: no wildcard, since
    /// "any namespace" would be cluster-wide write access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63)))]
    pub allowed_target_namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSettings {
    /// Chart versions an Upgrade may not move to; a trailing `*` matches a prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden_versions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VeleroSettings {
    /// Velero's own namespace, where Backup and Restore objects live.
    #[serde(default = "velero_ns")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Default backup TTL, a Go duration such as `720h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

fn velero_ns() -> String {
    "velero".to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoSettings {
    /// WorkflowTemplate the Workflow references.
    #[schemars(length(min = 1, max = 253))]
    pub workflow_template_ref: String,
    /// Reference a ClusterWorkflowTemplate instead.
    #[serde(default)]
    pub cluster_scope: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSettings {
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: Option<i32>,
    /// Whether `spec.parameters.args` may append arguments to the command.
    #[serde(default)]
    pub allow_args: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolSyncSettings {
    /// Mover name (`restic`, `rsync`, `rclone`, `rsyncTLS`, `syncthing`, `external`).
    #[serde(default = "restic")]
    pub mover: String,
    /// Mover settings copied into the child spec (repository secret name and so on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub mover_spec: Option<serde_json::Value>,
}

fn restic() -> String {
    "restic".to_string()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmHookSettings {
    /// Hook event whose Jobs run, e.g. `pre-upgrade` or `post-install`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}
