//! Condition reasons of the contract (DESIGN §2). Stable: dashboards and alerts key on them.

// Accepted
pub const VALID: &str = "Valid";
pub const UNKNOWN_TEMPLATE: &str = "UnknownTemplate";
pub const TYPE_NOT_ALLOWED: &str = "TypeNotAllowed";
pub const ENGINE_NOT_ALLOWED: &str = "EngineNotAllowed";
pub const INVALID_PARAMETERS: &str = "InvalidParameters";
pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
pub const TARGET_LACKS_CAPABILITY: &str = "TargetLacksCapability";
pub const ENGINE_UNAVAILABLE: &str = "EngineUnavailable";
pub const FORBIDDEN_VERSION: &str = "ForbiddenVersion";
pub const FORBIDDEN: &str = "Forbidden";

// PreconditionsMet
pub const PRECONDITIONS_MET: &str = "Met";
pub const TARGET_NOT_READY: &str = "TargetNotReady";
pub const CONFLICTING_OPERATION: &str = "ConflictingOperation";
pub const MISSING_SECRET: &str = "MissingSecret";

// Progressing
pub const CHILD_CREATED: &str = "ChildCreated";
pub const QUEUED: &str = "Queued";
pub const IN_PROGRESS: &str = "InProgress";
pub const FINALIZING: &str = "Finalizing";
pub const RETRYING: &str = "Retrying";
pub const CANCELLING: &str = "Cancelling";
pub const ROLLING_BACK: &str = "RollingBack";
pub const FINISHED: &str = "Finished";

// Succeeded
pub const COMPLETED: &str = "Completed";
pub const DRY_RUN: &str = "DryRun";
pub const ENGINE_FAILED: &str = "EngineFailed";
pub const PARTIALLY_FAILED: &str = "PartiallyFailed";
pub const ENGINE_REJECTED: &str = "EngineRejected";
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const CANCELLED: &str = "Cancelled";
pub const CHILD_LOST: &str = "ChildLost";
pub const REJECTED: &str = "Rejected";

// Shared
pub const PENDING: &str = "Pending";
pub const WAITING: &str = "Waiting";
