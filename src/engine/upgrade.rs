//! Upgrade: bump the ApplicationInstance's `spec.chart.version`; Flux does the rollout. Success is
//! the target reporting Ready=True at or after the patched generation.

use serde_json::Value;

use super::{Invalid, OpContext, Verdict, int_at, str_at};
use crate::api::reason;

const PARAMS: &[&str] = &["version", "rollbackOnFailure"];

pub fn check(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    ctx.only_params(PARAMS)?;
    let version = ctx.required_str("version")?;
    if version.len() > 128 || version.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::params(format!("version {version:?} is not a chart version")));
    }
    ctx.param_bool("rollbackOnFailure")?;
    if let Some(pattern) = forbidden_match(&ctx.template.upgrade.forbidden_versions, version) {
        return Err(Invalid {
            reason: reason::FORBIDDEN_VERSION,
            message: format!(
                "chart version {version} is forbidden by the template (matches {pattern}); pick another version"
            ),
        });
    }
    Ok(())
}

/// The first forbidden pattern that matches; a trailing `*` matches a prefix.
pub fn forbidden_match<'a>(patterns: &'a [String], version: &str) -> Option<&'a str> {
    patterns
        .iter()
        .find(|p| match p.strip_suffix('*') {
            Some(prefix) => version.starts_with(prefix),
            None => p.as_str() == version,
        })
        .map(String::as_str)
}

pub fn target_version(ctx: &OpContext<'_>) -> Result<String, Invalid> {
    ctx.required_str("version").map(str::to_string)
}

pub fn rollback_requested(ctx: &OpContext<'_>) -> bool {
    matches!(ctx.param_bool("rollbackOnFailure"), Ok(Some(true)))
}

/// Maps the target's Ready condition after the patch that produced `generation`.
pub fn map_target(app: &Value, generation: i64, version: &str) -> Verdict {
    let ready = crate::json::at(app, "/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == Some("Ready")));
    let observed = ready
        .and_then(|c| int_at(c, "/observedGeneration"))
        .filter(|g| *g > 0)
        .or_else(|| int_at(app, "/status/observedGeneration"))
        .unwrap_or(0);
    if observed < generation {
        return Verdict::Progressing {
            reason: reason::IN_PROGRESS,
            message: format!("waiting for the rollout of {version} (observed generation {observed} < {generation})"),
        };
    }
    let msg = ready.and_then(|c| str_at(c, "/message")).unwrap_or("").to_string();
    match ready.and_then(|c| str_at(c, "/status")) {
        Some("True") => Verdict::Succeeded { message: format!("target is Ready at chart version {version}") },
        Some("False") => Verdict::Failed {
            reason: reason::ENGINE_FAILED.into(),
            message: format!("target is not Ready at chart version {version}: {msg}"),
        },
        _ => Verdict::Progressing { reason: reason::IN_PROGRESS, message: format!("rolling out {version}: {msg}") },
    }
}
