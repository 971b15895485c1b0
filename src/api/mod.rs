//! The project's CRD types (DESIGN §1) and the names every layer shares.

pub mod application;
pub mod condition;
pub mod operation;
pub mod reason;
pub mod template;

pub use application::{ApplicationInstance, ApplicationInstanceSpec, ApplicationInstanceStatus, ChartRef};
pub use condition::{Condition, ConditionStatus, ConditionType};
pub use operation::{
    ChildRef, EngineName, EngineStatus, Operation, OperationPhase, OperationSpec, OperationStatus, OperationType,
    PlannedChild, Progress, TargetRef,
};
pub use template::{
    ArgoSettings, JobSettings, OperationTemplate, OperationTemplateSpec, RestoreSettings, VeleroSettings,
    VolSyncSettings,
};

/// API group of every project CRD.
pub const GROUP: &str = "ops.vworkspace.io";
/// Label on every child: the owning Operation's name.
pub const LABEL_OPERATION: &str = "ops.vworkspace.io/operation";
/// Label on every child: the owning Operation's UID (the identity check on AlreadyExists).
pub const LABEL_OPERATION_UID: &str = "ops.vworkspace.io/operation-uid";
/// Label on every child: the owning Operation's namespace (Velero children live elsewhere).
pub const LABEL_OPERATION_NAMESPACE: &str = "ops.vworkspace.io/operation-namespace";
/// Label on every child: which step of the Operation made it.
pub const LABEL_STEP: &str = "ops.vworkspace.io/step";
/// Annotation on every child: the command that created it.
pub const ANNOTATION_COMMAND_ID: &str = "ops.vworkspace.io/command-id";
/// Finalizer that cleans up children an owner reference cannot reach.
/// Who asked for an Operation, when an admission policy or client records it.
pub const ANNOTATION_REQUESTED_BY: &str = "ops.vworkspace.io/requested-by";
/// W3C trace context on every child, pointing at its Operation's root span.
pub const ANNOTATION_TRACEPARENT: &str = "traceparent";
pub const FINALIZER: &str = "ops.vworkspace.io/cleanup";
/// Prefix of the capability annotations on an ApplicationInstance.
pub const CAPABILITY_PREFIX: &str = "ops.vworkspace.io/";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "vworkspace-operator";
