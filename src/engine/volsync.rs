//! VolSync `ReplicationSource` / `ReplicationDestination` (volsync.backube/v1alpha1), one-shot
//! through `spec.trigger.manual` set to a token derived from the Operation.

use serde_json::{Map, Value, json};

use super::{ChildSpec, Invalid, Mapped, OpContext, Verdict, naming, str_at};
use crate::api::{EngineStatus, reason};
use crate::record::ChildKind;

const PARAMS: &[&str] = &["pvc"];
const MOVERS: &[&str] = &["restic", "rsync", "rclone", "rsyncTLS", "syncthing", "external"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Source,
    Destination,
}

/// The manual trigger token: stable for the Operation and step, so a retry never re-triggers.
pub fn trigger_token(uid: &str, step: u32) -> String {
    format!("vw-{}", naming::short_hash(&["volsync", uid, &step.to_string()], 8))
}

pub fn check(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    ctx.only_params(PARAMS)?;
    let pvc = ctx.required_str("pvc")?;
    if pvc.contains('/') {
        return Err(Invalid::forbidden(format!("pvc {pvc:?} must name a claim in the Operation's namespace")));
    }
    let mover = ctx.template.vol_sync.as_ref().map(|v| v.mover.as_str()).unwrap_or("restic");
    if !MOVERS.contains(&mover) {
        return Err(Invalid::params(format!("the template names unknown VolSync mover {mover:?}")));
    }
    Ok(())
}

pub fn build(ctx: &OpContext<'_>, step: u32, dir: Direction) -> Result<ChildSpec, Invalid> {
    check(ctx)?;
    let name = naming::child_name(ctx.name, ctx.uid, step);
    let meta = ctx.child_metadata(&name, ctx.namespace, step);
    let settings = ctx.template.vol_sync.clone().unwrap_or_default();
    let mover = if settings.mover.is_empty() { "restic".to_string() } else { settings.mover };
    let mut mover_spec = match settings.mover_spec {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let pvc = ctx.required_str("pvc")?;
    let mut spec = Map::new();
    spec.insert("trigger".into(), json!({ "manual": trigger_token(ctx.uid, step) }));
    let kind = match dir {
        Direction::Source => {
            spec.insert("sourcePVC".into(), json!(pvc));
            ChildKind::ReplicationSource
        }
        Direction::Destination => {
            mover_spec.insert("destinationPVC".into(), json!(pvc));
            ChildKind::ReplicationDestination
        }
    };
    spec.insert(mover, Value::Object(mover_spec));
    Ok(ChildSpec::new(kind, ctx.namespace, name, meta, Value::Object(spec)))
}

pub fn map(obj: &Value, token: &str) -> Mapped {
    let last_manual = str_at(obj, "/status/lastManualSync");
    let result = str_at(obj, "/status/latestMoverStatus/result");
    let logs = str_at(obj, "/status/latestMoverStatus/logs").unwrap_or("");
    let syncing = crate::json::at(obj, "/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == Some("Synchronizing")));
    let mut engine = EngineStatus { name: "volSync".into(), ..Default::default() };
    let verdict = match (last_manual == Some(token), result) {
        (true, Some("Successful")) => {
            engine.phase = Some("Successful".into());
            Verdict::Succeeded { message: "volsync synchronization completed".into() }
        }
        (_, Some("Failed")) => {
            engine.phase = Some("Failed".into());
            engine.message = (!logs.is_empty()).then(|| logs.to_string());
            Verdict::Failed { reason: reason::ENGINE_FAILED.into(), message: format!("volsync mover failed: {logs}") }
        }
        _ => {
            let msg = syncing.and_then(|c| str_at(c, "/message")).unwrap_or("").to_string();
            let running = syncing.and_then(|c| str_at(c, "/status")) == Some("True");
            engine.phase = Some(if running { "Synchronizing" } else { "Pending" }.into());
            engine.message = (!msg.is_empty()).then(|| msg.clone());
            let reason = if running { reason::IN_PROGRESS } else { reason::QUEUED };
            Verdict::Progressing { reason, message: if msg.is_empty() { "waiting for volsync".into() } else { msg } }
        }
    };
    let mut m = Mapped { verdict, engine, outputs: Default::default() };
    if let Some(n) = str_at(obj, "/metadata/name") {
        m.outputs.insert("replicationName".into(), n.into());
    }
    m.outputs.insert("trigger".into(), token.into());
    if let Some(t) = str_at(obj, "/status/lastSyncTime") {
        m.outputs.insert("lastSyncTime".into(), t.into());
    }
    if let Some(img) = str_at(obj, "/status/latestImage/name") {
        m.outputs.insert("latestImage".into(), img.into());
    }
    m
}
