//! PURE. One file per engine: it turns a validated Operation into a child manifest, and maps the
//! child's observed status onto the condition contract (DESIGN §3).

pub mod argo;
pub mod helm_hook;
pub mod job;
pub mod naming;
pub mod snapshot;
pub mod upgrade;
pub mod velero;
pub mod volsync;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::api::{
    ANNOTATION_COMMAND_ID, ApplicationInstance, EngineName, EngineStatus, LABEL_OPERATION, LABEL_OPERATION_NAMESPACE,
    LABEL_OPERATION_UID, LABEL_STEP, OperationTemplateSpec, OperationType, reason,
};
use crate::command::{Action, HelmHook};
use crate::record::ChildKind;

/// The engine that runs one Operation: `spec.engine` resolved against the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum EngineKind {
    VeleroBackup,
    VeleroRestore,
    Argo,
    Job,
    CsiSnapshot,
    VolSyncSource,
    VolSyncDestination,
    HelmHookJob,
    ChartUpgrade,
}

impl EngineKind {
    /// Which engine runs `type` with `engine`; `None` means the pair is not supported.
    pub fn resolve(ty: OperationType, engine: Option<EngineName>) -> Option<Self> {
        use EngineName as E;
        use OperationType as T;
        Some(match (ty, engine?) {
            (T::Backup, E::Velero) => EngineKind::VeleroBackup,
            (T::Restore, E::Velero) => EngineKind::VeleroRestore,
            (T::Backup, E::CsiSnapshot) => EngineKind::CsiSnapshot,
            (T::Backup, E::VolSync) => EngineKind::VolSyncSource,
            (T::Restore, E::VolSync) => EngineKind::VolSyncDestination,
            (T::Upgrade, _) => return None,
            (_, E::ArgoWorkflow) => EngineKind::Argo,
            (_, E::Job) => EngineKind::Job,
            (T::Migration | T::RunCommand | T::Runbook, E::HelmHookJob) => EngineKind::HelmHookJob,
            _ => return None,
        })
    }

    /// The name shown in `status.engine.name` and the ENGINE column.
    pub fn display(self) -> &'static str {
        match self {
            EngineKind::VeleroBackup | EngineKind::VeleroRestore => "velero",
            EngineKind::Argo => "argoWorkflow",
            EngineKind::Job => "job",
            EngineKind::CsiSnapshot => "csiSnapshot",
            EngineKind::VolSyncSource | EngineKind::VolSyncDestination => "volSync",
            EngineKind::HelmHookJob => "helmHookJob",
            EngineKind::ChartUpgrade => "chartUpgrade",
        }
    }

    /// The child kind this engine creates (none for Upgrade, which patches the target).
    pub fn child_kind(self) -> Option<ChildKind> {
        Some(match self {
            EngineKind::VeleroBackup => ChildKind::VeleroBackup,
            EngineKind::VeleroRestore => ChildKind::VeleroRestore,
            EngineKind::Argo => ChildKind::Workflow,
            EngineKind::Job | EngineKind::HelmHookJob => ChildKind::Job,
            EngineKind::CsiSnapshot => ChildKind::VolumeSnapshot,
            EngineKind::VolSyncSource => ChildKind::ReplicationSource,
            EngineKind::VolSyncDestination => ChildKind::ReplicationDestination,
            EngineKind::ChartUpgrade => return None,
        })
    }

    /// Velero children live in Velero's namespace and need the cleanup finalizer.
    pub fn needs_finalizer(self) -> bool {
        matches!(self, EngineKind::VeleroBackup | EngineKind::VeleroRestore)
    }

    /// Checks the engine-declared parameters. The template's JSON Schema runs before this.
    pub fn check_params(self, ctx: &OpContext<'_>) -> Result<(), Invalid> {
        match self {
            EngineKind::VeleroBackup => velero::check_backup(ctx),
            EngineKind::VeleroRestore => velero::check_restore(ctx),
            EngineKind::Argo => argo::check(ctx),
            EngineKind::Job => job::check(ctx),
            EngineKind::CsiSnapshot => snapshot::check(ctx),
            EngineKind::VolSyncSource | EngineKind::VolSyncDestination => volsync::check(ctx),
            EngineKind::HelmHookJob => helm_hook::check(ctx),
            EngineKind::ChartUpgrade => upgrade::check(ctx),
        }
    }

    /// Builds the child of `step`. Helm hook Jobs need the hooks loaded from the release first.
    pub fn build(self, ctx: &OpContext<'_>, step: u32, hooks: &[HelmHook]) -> Result<ChildSpec, Invalid> {
        match self {
            EngineKind::VeleroBackup => velero::build_backup(ctx, step),
            EngineKind::VeleroRestore => velero::build_restore(ctx, step),
            EngineKind::Argo => argo::build(ctx, step),
            EngineKind::Job => job::build(ctx, step),
            EngineKind::CsiSnapshot => snapshot::build(ctx, step),
            EngineKind::VolSyncSource => volsync::build(ctx, step, volsync::Direction::Source),
            EngineKind::VolSyncDestination => volsync::build(ctx, step, volsync::Direction::Destination),
            EngineKind::HelmHookJob => {
                let hook =
                    hooks.get(step as usize).ok_or_else(|| Invalid::params(format!("no hook for step {step}")))?;
                helm_hook::build(ctx, step, hook)
            }
            EngineKind::ChartUpgrade => Err(Invalid::params("Upgrade has no child".to_string())),
        }
    }

    /// Maps the child's observed object onto the contract.
    pub fn map(self, ctx: &OpContext<'_>, step: u32, child: &Value) -> Mapped {
        match self {
            EngineKind::VeleroBackup => velero::map_backup(child),
            EngineKind::VeleroRestore => velero::map_restore(child),
            EngineKind::Argo => argo::map(child),
            EngineKind::Job | EngineKind::HelmHookJob => job::map(child),
            EngineKind::CsiSnapshot => snapshot::map(child),
            EngineKind::VolSyncSource | EngineKind::VolSyncDestination => {
                volsync::map(child, &volsync::trigger_token(ctx.uid, step))
            }
            EngineKind::ChartUpgrade => Mapped::progressing(reason::IN_PROGRESS, String::new()),
        }
    }

    /// The command that stops a running child (DESIGN §3, "cancel").
    pub fn cancel(self, child: &ChildSpec) -> Action {
        match self {
            EngineKind::Argo => argo::cancel(child),
            _ => Action::DeleteChild { kind: child.kind, namespace: child.namespace.clone(), name: child.name.clone() },
        }
    }
}

/// What an engine sees of the Operation, template and target.
#[derive(Clone, Copy, Debug)]
pub struct OpContext<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub ty: OperationType,
    pub params: &'a Map<String, Value>,
    pub template: &'a OperationTemplateSpec,
    pub target: &'a ApplicationInstance,
}

impl OpContext<'_> {
    pub fn param_str(&self, key: &str) -> Result<Option<&str>, Invalid> {
        match self.params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Invalid::params(format!("parameter {key} must be a string"))),
        }
    }

    pub fn required_str(&self, key: &str) -> Result<&str, Invalid> {
        match self.param_str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(Invalid::params(format!("parameter {key} is required"))),
        }
    }

    pub fn param_bool(&self, key: &str) -> Result<Option<bool>, Invalid> {
        match self.params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Invalid::params(format!("parameter {key} must be a boolean"))),
        }
    }

    pub fn param_strings(&self, key: &str) -> Result<Vec<String>, Invalid> {
        match self.params.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Invalid::params(format!("parameter {key} must be a list of strings"))),
            Some(_) => Err(Invalid::params(format!("parameter {key} must be a list of strings"))),
        }
    }

    /// Rejects any parameter the engine does not declare: parameters fill declared fields only.
    pub fn only_params(&self, allowed: &[&str]) -> Result<(), Invalid> {
        match self.params.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Invalid::params(format!(
                "parameter {k} is not accepted by this engine; accepted: {}",
                if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
            ))),
            None => Ok(()),
        }
    }

    /// Labels every child carries (DESIGN §3).
    pub fn child_labels(&self, step: u32) -> Map<String, Value> {
        let mut labels = Map::new();
        labels.insert(LABEL_OPERATION.into(), Value::String(naming::label_value(self.name)));
        labels.insert(LABEL_OPERATION_UID.into(), Value::String(self.uid.to_string()));
        labels.insert(LABEL_OPERATION_NAMESPACE.into(), Value::String(self.namespace.to_string()));
        labels.insert(LABEL_STEP.into(), Value::String(step.to_string()));
        labels
    }

    /// Metadata of a child. A controller owner reference only within the Operation's namespace.
    pub fn child_metadata(&self, name: &str, namespace: &str, step: u32) -> Value {
        let mut meta = object([
            ("name", Value::from(name)),
            ("namespace", Value::from(namespace)),
            ("labels", Value::Object(self.child_labels(step))),
            ("annotations", json!({ ANNOTATION_COMMAND_ID: naming::command_id(self.uid, step, "create") })),
        ]);
        if namespace == self.namespace {
            meta["ownerReferences"] = json!([{
                "apiVersion": "ops.vworkspace.io/v1alpha1",
                "kind": "Operation",
                "name": self.name,
                "uid": self.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }]);
        }
        meta
    }

    pub fn service_account(&self) -> Option<&str> {
        self.template.rbac.service_account_name.as_deref()
    }
}

/// A child to create.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildSpec {
    pub kind: ChildKind,
    pub namespace: String,
    pub name: String,
    pub manifest: Value,
    pub env_from: Option<crate::command::EnvSource>,
}

/// A JSON object of these fields, moved in: `json!` copies each interpolated `Value` through
/// serialization, which was most of the cost of building a child.
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

impl ChildSpec {
    pub fn new(kind: ChildKind, namespace: &str, name: String, metadata: Value, spec: Value) -> Self {
        let manifest = object([
            ("apiVersion", Value::from(kind.api_version())),
            ("kind", Value::from(kind.kind())),
            ("metadata", metadata),
            ("spec", spec),
        ]);
        Self { kind, namespace: namespace.to_string(), name, manifest, env_from: None }
    }
}

/// A request the engine cannot turn into a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn params(message: String) -> Self {
        Self { reason: reason::INVALID_PARAMETERS, message }
    }

    pub fn forbidden(message: String) -> Self {
        Self { reason: reason::FORBIDDEN, message }
    }
}

/// Where the child stands, in contract terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Progressing { reason: &'static str, message: String },
    Succeeded { message: String },
    Failed { reason: String, message: String },
}

/// The child's status mapped onto the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub verdict: Verdict,
    pub engine: EngineStatus,
    pub outputs: BTreeMap<String, String>,
}

impl Mapped {
    pub fn progressing(reason: &'static str, message: String) -> Self {
        Self::new(Verdict::Progressing { reason, message })
    }

    pub fn new(verdict: Verdict) -> Self {
        Self { verdict, engine: EngineStatus::default(), outputs: BTreeMap::new() }
    }
}

/// Reads a string at a JSON pointer.
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    crate::json::at(v, pointer).and_then(Value::as_str)
}

/// Reads an integer at a JSON pointer.
pub(crate) fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    crate::json::at(v, pointer).and_then(Value::as_i64)
}

/// Parses Argo-style "N/M" progress.
pub(crate) fn parse_progress(s: &str) -> Option<crate::api::Progress> {
    let (a, b) = s.split_once('/')?;
    Some(crate::api::Progress { completed: a.trim().parse().ok()?, total: b.trim().parse().ok()? })
}
