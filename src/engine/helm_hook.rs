//! A chart's `helm.sh/hook` Job, read from the target's Helm release record, so no chart logic
//! is copied. The Jobs of one hook event run in Helm's order: weight, then name.

use serde_json::{Value, json};

use super::{ChildSpec, Invalid, OpContext, job, naming};
use crate::command::{EnvSource, HelmHook};
use crate::record::ChildKind;

const PARAMS: &[&str] = &["event"];

pub fn check(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    ctx.only_params(PARAMS)?;
    hook_event(ctx)?;
    Ok(())
}

/// The Helm release the target was installed as.
pub fn release_name<'a>(ctx: &OpContext<'a>) -> &'a str {
    ctx.target.spec.release_name.as_deref().unwrap_or(ctx.target.metadata.name.as_deref().unwrap_or(ctx.name))
}

/// The hook event to run: the parameter, else the template's.
pub fn hook_event(ctx: &OpContext<'_>) -> Result<String, Invalid> {
    let from_param = ctx.param_str("event")?.map(str::to_string);
    let from_template = ctx.template.helm_hook.as_ref().and_then(|h| h.event.clone());
    match from_param.or(from_template) {
        Some(e) if !e.is_empty() && e.chars().all(|c| c.is_ascii_lowercase() || c == '-') => Ok(e),
        Some(e) => Err(Invalid::params(format!("hook event {e:?} is not a Helm hook event such as pre-upgrade"))),
        None => Err(Invalid::params("no hook event: set parameters.event or the template's helmHook.event".into())),
    }
}

/// Helm's execution order.
pub fn sort_hooks(hooks: &mut [HelmHook]) {
    hooks.sort_by(|a, b| a.weight.cmp(&b.weight).then_with(|| a.name.cmp(&b.name)));
}

pub fn build(ctx: &OpContext<'_>, step: u32, hook: &HelmHook) -> Result<ChildSpec, Invalid> {
    if hook.kind != "Job" {
        return Err(Invalid::params(format!("hook {} is a {}; only Job hooks can run", hook.name, hook.kind)));
    }
    let name = naming::child_name(ctx.name, ctx.uid, step);
    let meta = ctx.child_metadata(&name, ctx.namespace, step);
    let mut spec = hook.manifest.get("spec").cloned().unwrap_or_else(|| json!({}));
    let Some(pod) = spec.pointer_mut("/template/spec").and_then(Value::as_object_mut) else {
        return Err(Invalid::params(format!("hook {} has no pod template", hook.name)));
    };
    // The template decides who the pod runs as, never the chart or the user.
    pod.remove("serviceAccount");
    match ctx.service_account() {
        Some(sa) => pod.insert("serviceAccountName".into(), json!(sa)),
        None => pod.remove("serviceAccountName"),
    };
    pod.insert("automountServiceAccountToken".into(), json!(ctx.template.rbac.automount_service_account_token));
    pod.entry("restartPolicy").or_insert(json!("Never"));
    let labels = spec
        .pointer_mut("/template/metadata")
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert(json!({})));
    match labels.and_then(Value::as_object_mut) {
        Some(l) => l.extend(ctx.child_labels(step)),
        None => {
            spec["template"]["metadata"] = super::object([("labels", Value::Object(ctx.child_labels(step)))]);
        }
    }
    // As for RunCommand: env values are filled by the effector from the release record.
    vworkspace_journal::redact::redact(&mut spec);
    let has_env = spec.to_string().contains(vworkspace_journal::redact::REDACTED);
    let mut child = ChildSpec::new(ChildKind::Job, ctx.namespace, name, meta, spec);
    child.manifest["metadata"]["annotations"]["ops.vworkspace.io/helm-hook"] = json!(hook.name);
    if has_env {
        child.env_from =
            Some(EnvSource::HelmHook { release_secret: hook.release_secret.clone(), hook: hook.name.clone() });
    }
    Ok(child)
}

/// Status maps exactly as for a RunCommand Job.
pub use job::map;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_sort_by_weight_then_name() {
        let h = |name: &str, weight| HelmHook {
            name: name.into(),
            kind: "Job".into(),
            weight,
            events: vec![],
            manifest: json!({}),
            release_secret: String::new(),
        };
        let mut hooks = vec![h("b", 0), h("a", 5), h("a", 0), h("z", -1)];
        sort_hooks(&mut hooks);
        let order: Vec<_> = hooks.iter().map(|h| (h.name.as_str(), h.weight)).collect();
        assert_eq!(order, vec![("z", -1), ("a", 0), ("b", 0), ("a", 5)]);
    }
}
