//! Velero `Backup` and `Restore` (velero.io/v1). They live in Velero's namespace, so they are
//! tracked by label and cleaned up by the Operation's finalizer, not by owner reference.

use serde_json::{Map, Value, json};

use super::{ChildSpec, Invalid, Mapped, OpContext, Verdict, int_at, naming, str_at};
use crate::api::{EngineStatus, Progress, reason};
use crate::record::ChildKind;

const BACKUP_PARAMS: &[&str] = &["ttl", "snapshotVolumes", "includedResources", "excludedResources"];
const RESTORE_PARAMS: &[&str] = &["backupName", "targetNamespace", "includedResources", "excludedResources"];

pub fn velero_namespace<'a>(ctx: &OpContext<'a>) -> &'a str {
    ctx.template.velero.as_ref().map(|v| v.namespace.as_str()).unwrap_or("velero")
}

pub fn check_backup(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    ctx.only_params(BACKUP_PARAMS)?;
    if let Some(ttl) = ctx.param_str("ttl")? {
        check_duration(ttl)?;
    }
    ctx.param_bool("snapshotVolumes")?;
    ctx.param_strings("includedResources")?;
    ctx.param_strings("excludedResources")?;
    Ok(())
}

pub fn check_restore(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    ctx.only_params(RESTORE_PARAMS)?;
    ctx.required_str("backupName")?;
    ctx.param_strings("includedResources")?;
    ctx.param_strings("excludedResources")?;
    if let Some(target) = ctx.param_str("targetNamespace")? {
        let rules = &ctx.template.restore;
        if target != ctx.namespace {
            if !rules.allow_cross_namespace {
                return Err(Invalid::forbidden(format!(
                    "restore into namespace {target} is not allowed by the template; restore into {} or use a template with restore.allowCrossNamespace",
                    ctx.namespace
                )));
            }
            if !rules.allowed_target_namespaces.iter().any(|n| n == target) {
                return Err(Invalid::forbidden(format!(
                    "namespace {target} is not in the template's restore.allowedTargetNamespaces ({})",
                    rules.allowed_target_namespaces.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Velero TTLs are Go durations such as `720h0m0s` or `24h`.
fn check_duration(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || matches!(c, 'h' | 'm' | 's' | '.'))
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.ends_with(['h', 'm', 's']);
    if ok { Ok(()) } else { Err(Invalid::params(format!("parameter ttl {s:?} is not a duration such as 720h0m0s"))) }
}

fn name_and_meta(ctx: &OpContext<'_>, step: u32) -> (String, String, Value) {
    let ns = velero_namespace(ctx).to_string();
    // Velero's namespace is shared by every tenant: the name carries the Operation's namespace.
    let name = naming::child_name(&format!("{}-{}", ctx.namespace, ctx.name), ctx.uid, step);
    let meta = ctx.child_metadata(&name, &ns, step);
    (ns, name, meta)
}

fn resource_filters(ctx: &OpContext<'_>, spec: &mut Map<String, Value>) -> Result<(), Invalid> {
    let inc = ctx.param_strings("includedResources")?;
    if !inc.is_empty() {
        spec.insert("includedResources".into(), json!(inc));
    }
    let exc = ctx.param_strings("excludedResources")?;
    if !exc.is_empty() {
        spec.insert("excludedResources".into(), json!(exc));
    }
    Ok(())
}

pub fn build_backup(ctx: &OpContext<'_>, step: u32) -> Result<ChildSpec, Invalid> {
    check_backup(ctx)?;
    let (ns, name, meta) = name_and_meta(ctx, step);
    let mut spec = Map::new();
    // Tenancy: a backup only ever covers the Operation's own namespace.
    spec.insert("includedNamespaces".into(), json!([ctx.namespace]));
    let settings = ctx.template.velero.as_ref();
    if let Some(loc) = settings.and_then(|v| v.storage_location.as_deref()) {
        spec.insert("storageLocation".into(), json!(loc));
    }
    if let Some(ttl) = ctx.param_str("ttl")?.or(settings.and_then(|v| v.ttl.as_deref())) {
        spec.insert("ttl".into(), json!(ttl));
    }
    if let Some(snap) = ctx.param_bool("snapshotVolumes")? {
        spec.insert("snapshotVolumes".into(), json!(snap));
    }
    resource_filters(ctx, &mut spec)?;
    Ok(ChildSpec::new(ChildKind::VeleroBackup, &ns, name, meta, Value::Object(spec)))
}

pub fn build_restore(ctx: &OpContext<'_>, step: u32) -> Result<ChildSpec, Invalid> {
    check_restore(ctx)?;
    let (ns, name, meta) = name_and_meta(ctx, step);
    let mut spec = Map::new();
    spec.insert("backupName".into(), json!(ctx.required_str("backupName")?));
    spec.insert("includedNamespaces".into(), json!([ctx.namespace]));
    if let Some(target) = ctx.param_str("targetNamespace")?.filter(|t| *t != ctx.namespace) {
        spec.insert("namespaceMapping".into(), json!({ ctx.namespace: target }));
    }
    resource_filters(ctx, &mut spec)?;
    Ok(ChildSpec::new(ChildKind::VeleroRestore, &ns, name, meta, Value::Object(spec)))
}

fn engine_status(obj: &Value, done: &str) -> EngineStatus {
    let phase = str_at(obj, "/status/phase").unwrap_or("").to_string();
    let progress = match (int_at(obj, &format!("/status/progress/{done}")), int_at(obj, "/status/progress/totalItems"))
    {
        (Some(c), Some(t)) => Some(Progress { completed: c, total: t }),
        _ => None,
    };
    let mut details: Vec<String> = crate::json::at(obj, "/status/validationErrors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(f) = str_at(obj, "/status/failureReason").filter(|s| !s.is_empty()) {
        details.push(f.to_string());
    }
    EngineStatus {
        name: "velero".into(),
        phase: Some(if phase.is_empty() { "New".to_string() } else { phase }),
        message: str_at(obj, "/status/failureReason").filter(|s| !s.is_empty()).map(str::to_string),
        progress,
        errors: int_at(obj, "/status/errors"),
        warnings: int_at(obj, "/status/warnings"),
        details,
    }
}

fn counts(e: &EngineStatus) -> String {
    format!("{} errors, {} warnings", e.errors.unwrap_or(0), e.warnings.unwrap_or(0))
}

/// Shared by Backup and Restore: the phase table of DESIGN §3.
fn map_phase(obj: &Value, engine: EngineStatus, what: &str) -> Verdict {
    let phase = str_at(obj, "/status/phase").unwrap_or("");
    match phase {
        "" | "New" | "Queued" | "ReadyToStart" => Verdict::Progressing {
            reason: reason::QUEUED,
            message: format!("velero {what} is {}", engine.phase.as_deref().unwrap_or("New")),
        },
        "InProgress" => {
            Verdict::Progressing { reason: reason::IN_PROGRESS, message: format!("velero {what} in progress") }
        }
        p if p.starts_with("WaitingForPluginOperations") || p.starts_with("Finalizing") => {
            Verdict::Progressing { reason: reason::FINALIZING, message: format!("velero {what} is {p}") }
        }
        "Completed" => Verdict::Succeeded { message: format!("velero {what} completed ({})", counts(&engine)) },
        "PartiallyFailed" => Verdict::Failed {
            reason: reason::PARTIALLY_FAILED.into(),
            message: format!("velero {what} partially failed: {}", counts(&engine)),
        },
        "Failed" => Verdict::Failed {
            reason: reason::ENGINE_FAILED.into(),
            message: format!("velero {what} failed: {}", engine.message.as_deref().unwrap_or("no failureReason given")),
        },
        "FailedValidation" => Verdict::Failed {
            reason: reason::ENGINE_REJECTED.into(),
            message: format!("velero rejected the {what}: {}", engine.details.join("; ")),
        },
        "Deleting" => Verdict::Failed {
            reason: reason::CHILD_LOST.into(),
            message: format!("velero {what} is being deleted while the Operation is active"),
        },
        other => Verdict::Progressing {
            reason: reason::IN_PROGRESS,
            message: format!("velero {what} reports unknown phase {other}"),
        },
    }
}

pub fn map_backup(obj: &Value) -> Mapped {
    let engine = engine_status(obj, "itemsBackedUp");
    let verdict = map_phase(obj, engine.clone(), "backup");
    let mut m = Mapped { verdict, engine, outputs: Default::default() };
    if let Some(name) = str_at(obj, "/metadata/name") {
        // Linked even on partial failure, so the usable part can be restored.
        m.outputs.insert("backupName".into(), name.into());
    }
    if let Some(ns) = str_at(obj, "/metadata/namespace") {
        m.outputs.insert("veleroNamespace".into(), ns.into());
    }
    if let Some(exp) = str_at(obj, "/status/expiration") {
        m.outputs.insert("expiration".into(), exp.into());
    }
    if let Some(p) = m.engine.progress {
        m.outputs.insert("itemsBackedUp".into(), p.completed.to_string());
    }
    m
}

pub fn map_restore(obj: &Value) -> Mapped {
    let engine = engine_status(obj, "itemsRestored");
    let verdict = match str_at(obj, "/status/phase") {
        // A Restore has no Queued/ReadyToStart phase.
        Some("Queued" | "ReadyToStart") => {
            Verdict::Progressing { reason: reason::IN_PROGRESS, message: "velero restore in progress".into() }
        }
        _ => map_phase(obj, engine.clone(), "restore"),
    };
    let mut m = Mapped { verdict, engine, outputs: Default::default() };
    if let Some(name) = str_at(obj, "/metadata/name") {
        m.outputs.insert("restoreName".into(), name.into());
    }
    if let Some(b) = str_at(obj, "/spec/backupName") {
        m.outputs.insert("backupName".into(), b.into());
    }
    if let Some(p) = m.engine.progress {
        m.outputs.insert("itemsRestored".into(), p.completed.to_string());
    }
    m
}
