//! CSI `VolumeSnapshot` (snapshot.storage.k8s.io/v1). `status.error` is not terminal: the
//! snapshotter keeps retrying, so the Operation reports Retrying until its deadline.

use serde_json::{Map, Value, json};

use super::{ChildSpec, Invalid, Mapped, OpContext, Verdict, naming, str_at};
use crate::api::{EngineStatus, reason};
use crate::record::ChildKind;

const PARAMS: &[&str] = &["pvc", "volumeSnapshotClassName"];

pub fn check(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    ctx.only_params(PARAMS)?;
    let pvc = ctx.required_str("pvc")?;
    if pvc.contains('/') {
        return Err(Invalid::forbidden(format!("pvc {pvc:?} must name a claim in the Operation's namespace")));
    }
    ctx.param_str("volumeSnapshotClassName")?;
    Ok(())
}

pub fn build(ctx: &OpContext<'_>, step: u32) -> Result<ChildSpec, Invalid> {
    check(ctx)?;
    let name = naming::child_name(ctx.name, ctx.uid, step);
    let meta = ctx.child_metadata(&name, ctx.namespace, step);
    let mut spec = Map::new();
    spec.insert("source".into(), json!({ "persistentVolumeClaimName": ctx.required_str("pvc")? }));
    let class = ctx.param_str("volumeSnapshotClassName")?.or(ctx
        .template
        .snapshot
        .as_ref()
        .and_then(|s| s.volume_snapshot_class_name.as_deref()));
    if let Some(c) = class {
        spec.insert("volumeSnapshotClassName".into(), json!(c));
    }
    Ok(ChildSpec::new(ChildKind::VolumeSnapshot, ctx.namespace, name, meta, Value::Object(spec)))
}

pub fn map(obj: &Value) -> Mapped {
    let ready = crate::json::at(obj, "/status/readyToUse").and_then(Value::as_bool).unwrap_or(false);
    let content = str_at(obj, "/status/boundVolumeSnapshotContentName");
    let error = str_at(obj, "/status/error/message");
    let mut engine = EngineStatus { name: "csiSnapshot".into(), ..Default::default() };
    let verdict = if ready && content.is_some() {
        engine.phase = Some("ReadyToUse".into());
        Verdict::Succeeded { message: "snapshot is ready to use".into() }
    } else if let Some(e) = error {
        engine.phase = Some("Error".into());
        engine.message = Some(e.to_string());
        Verdict::Progressing {
            reason: reason::RETRYING,
            message: format!("snapshotter reports an error and retries: {e}"),
        }
    } else if crate::json::at(obj, "/status").is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty())) {
        engine.phase = Some(if content.is_some() { "Bound" } else { "Creating" }.into());
        Verdict::Progressing { reason: reason::IN_PROGRESS, message: "snapshot is being taken".into() }
    } else {
        engine.phase = Some("Pending".into());
        Verdict::Progressing { reason: reason::QUEUED, message: "waiting for the snapshotter".into() }
    };
    let mut m = Mapped { verdict, engine, outputs: Default::default() };
    if let Some(n) = str_at(obj, "/metadata/name") {
        m.outputs.insert("snapshot".into(), n.into());
    }
    if let Some(c) = content {
        m.outputs.insert("content".into(), c.into());
    }
    if let Some(size) = crate::json::at(obj, "/status/restoreSize") {
        let s = size.as_str().map(str::to_string).unwrap_or_else(|| size.to_string());
        m.outputs.insert("restoreSize".into(), s);
    }
    m
}
