//! `batch/v1` Job for RunCommand (and the status mapping the helm hook Jobs share).

use serde_json::{Map, Value, json};

use super::{ChildSpec, Invalid, Mapped, OpContext, Verdict, int_at, naming, object, str_at};
use vworkspace_journal::redact::REDACTED;

use crate::api::{EngineStatus, Progress, reason};
use crate::command::EnvSource;
use crate::record::ChildKind;

const PARAMS: &[&str] = &["args", "env"];

pub fn check(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    let Some(job) = ctx.template.job.as_ref() else {
        return Err(Invalid::params("the template has no job settings (image, command)".into()));
    };
    ctx.only_params(PARAMS)?;
    let args = ctx.param_strings("args")?;
    if !args.is_empty() && !job.allow_args {
        return Err(Invalid::params("parameter args is not allowed by the template (job.allowArgs is false)".into()));
    }
    env_vars(ctx)?;
    Ok(())
}

/// `env` parameters as `[{name, value}]`, sorted by name.
fn env_vars(ctx: &OpContext<'_>) -> Result<Vec<Value>, Invalid> {
    match ctx.params.get("env") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let valid = !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit());
                let reference = v.get("secretKeyRef");
                match (valid, v.as_str(), reference) {
                    (true, Some(s), _) => Ok(json!({ "name": k, "value": s })),
                    // Only a reference reaches the Job; acceptance checked it against the template.
                    (true, None, Some(r)) => Ok(json!({ "name": k, "valueFrom": { "secretKeyRef": r } })),
                    (false, ..) => Err(Invalid::params(format!("env name {k:?} is not a valid variable name"))),
                    (_, None, None) => Err(Invalid::params(format!(
                        "env {k} must be a string, or a secretKeyRef where the template marks it secret"
                    ))),
                }
            })
            .collect(),
        Some(_) => Err(Invalid::params("parameter env must be a map of strings".into())),
    }
}

/// The restricted pod settings every Job gets; the template names the ServiceAccount.
pub fn pod_spec(ctx: &OpContext<'_>, containers: Value) -> Map<String, Value> {
    let mut pod = Map::new();
    pod.insert("restartPolicy".into(), json!("Never"));
    if let Some(sa) = ctx.service_account() {
        pod.insert("serviceAccountName".into(), json!(sa));
    }
    pod.insert("automountServiceAccountToken".into(), json!(ctx.template.rbac.automount_service_account_token));
    pod.insert(
        "securityContext".into(),
        json!({ "runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": { "type": "RuntimeDefault" } }),
    );
    // The root filesystem is read-only; commands get a scratch /tmp.
    pod.insert("volumes".into(), json!([{ "name": "tmp", "emptyDir": {} }]));
    pod.insert("containers".into(), containers);
    pod
}

pub fn restricted_container_security() -> Value {
    json!({ "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] }, "readOnlyRootFilesystem": true })
}

pub fn build(ctx: &OpContext<'_>, step: u32) -> Result<ChildSpec, Invalid> {
    check(ctx)?;
    let settings = ctx.template.job.as_ref().ok_or_else(|| Invalid::params("no job settings".into()))?;
    let name = naming::child_name(ctx.name, ctx.uid, step);
    let meta = ctx.child_metadata(&name, ctx.namespace, step);
    let mut container = Map::new();
    container.insert("name".into(), json!("run"));
    container.insert("image".into(), json!(settings.image));
    if !settings.command.is_empty() {
        container.insert("command".into(), json!(settings.command));
    }
    let args = ctx.param_strings("args")?;
    if !args.is_empty() {
        container.insert("args".into(), Value::from(args));
    }
    // Values stay out of commands (and so out of journals and replays): the effector fills them
    // from the live Operation when it creates the Job.
    let mut env = env_vars(ctx)?;
    let mut plain = false;
    for e in env.iter_mut().filter(|e| e.get("value").is_some()) {
        e["value"] = json!(REDACTED);
        plain = true;
    }
    let env_from = plain.then_some(EnvSource::OperationParameters);
    if !env.is_empty() {
        container.insert("env".into(), Value::Array(env));
    }
    container.insert("securityContext".into(), restricted_container_security());
    container.insert("volumeMounts".into(), json!([{ "name": "tmp", "mountPath": "/tmp" }]));
    let mut spec = Map::new();
    if let Some(b) = settings.backoff_limit {
        spec.insert("backoffLimit".into(), json!(b));
    }
    spec.insert(
        "template".into(),
        object([
            ("metadata", object([("labels", Value::Object(ctx.child_labels(step)))])),
            ("spec", Value::Object(pod_spec(ctx, Value::Array(vec![Value::Object(container)])))),
        ]),
    );
    let mut child = ChildSpec::new(ChildKind::Job, ctx.namespace, name, meta, Value::Object(spec));
    child.env_from = env_from;
    Ok(child)
}

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    crate::json::at(obj, "/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| str_at(c, "/type") == Some(ty) && str_at(c, "/status") == Some("True"))
}

/// A Job condition reason used as our reason only when it is a valid CamelCase reason.
fn job_reason(c: &Value) -> String {
    match str_at(c, "/reason") {
        Some(r)
            if !r.is_empty()
                && r.starts_with(|ch: char| ch.is_ascii_alphabetic())
                && r.chars().all(|ch| ch.is_ascii_alphanumeric()) =>
        {
            r.to_string()
        }
        _ => reason::ENGINE_FAILED.to_string(),
    }
}

pub fn map(obj: &Value) -> Mapped {
    let active = int_at(obj, "/status/active").unwrap_or(0);
    let succeeded = int_at(obj, "/status/succeeded").unwrap_or(0);
    let failed = int_at(obj, "/status/failed").unwrap_or(0);
    let total = int_at(obj, "/spec/completions").unwrap_or(1);
    let mut engine = EngineStatus {
        name: "job".into(),
        phase: None,
        message: None,
        progress: Some(Progress { completed: succeeded, total }),
        errors: (failed > 0).then_some(failed),
        warnings: None,
        details: Vec::new(),
    };
    let cond_msg = |c: &Value| str_at(c, "/message").unwrap_or("").to_string();
    let verdict = if condition(obj, "Complete").is_some() {
        engine.phase = Some("Complete".into());
        Verdict::Succeeded { message: format!("job complete ({succeeded} succeeded)") }
    } else if let Some(c) = condition(obj, "Failed") {
        engine.phase = Some("Failed".into());
        engine.message = Some(cond_msg(c));
        Verdict::Failed { reason: job_reason(c), message: format!("job failed: {}", cond_msg(c)) }
    } else if let Some(c) = condition(obj, "FailureTarget") {
        // Pods are still terminating; the Job is not terminal until Failed is set.
        engine.phase = Some("FailureTarget".into());
        engine.message = Some(cond_msg(c));
        Verdict::Progressing { reason: reason::FINALIZING, message: format!("job failing: {}", cond_msg(c)) }
    } else if condition(obj, "SuccessCriteriaMet").is_some() {
        // Set just before Complete while the remaining pods terminate (Kubernetes 1.31+).
        engine.phase = Some("SuccessCriteriaMet".into());
        Verdict::Progressing { reason: reason::FINALIZING, message: "job met its success criteria; finishing".into() }
    } else if let Some(c) = condition(obj, "Suspended") {
        engine.phase = Some("Suspended".into());
        engine.message = Some(cond_msg(c));
        Verdict::Progressing { reason: reason::QUEUED, message: "job suspended".into() }
    } else if active > 0 || failed > 0 || succeeded > 0 {
        engine.phase = Some("Running".into());
        Verdict::Progressing {
            reason: reason::IN_PROGRESS,
            message: format!("job running ({active} active, {failed} failed)"),
        }
    } else {
        engine.phase = Some("Pending".into());
        Verdict::Progressing { reason: reason::QUEUED, message: "job pending".into() }
    };
    let mut m = Mapped { verdict, engine, outputs: Default::default() };
    if let Some(n) = str_at(obj, "/metadata/name") {
        m.outputs.insert("jobName".into(), n.into());
    }
    if let Some(Verdict::Succeeded { .. }) = Some(&m.verdict) {
        m.outputs.insert("exitCode".into(), "0".into());
        m.outputs.insert("succeeded".into(), succeeded.to_string());
    }
    if let Some(t) = str_at(obj, "/status/completionTime") {
        m.outputs.insert("completionTime".into(), t.into());
    }
    m
}
