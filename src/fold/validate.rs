//! Acceptance (DESIGN §2, `Accepted`): the Operation against its template, the target's
//! capabilities and the installed engines. Pure: reads only the folded world.

use serde_json::{Map, Value};

use super::frozen::Frozen;
use super::op::OpState;
use super::world::World;
use crate::api::{OperationSpec, OperationTemplateSpec, OperationType, reason};
use crate::engine::{EngineKind, OpContext, velero};
use crate::key::ObjKey;
use crate::record::ChildKind;

/// Parameters larger than this are refused before schema validation.
pub const MAX_PARAMETER_BYTES: usize = 64 * 1024;
/// Deeper nesting than this is refused.
pub const MAX_PARAMETER_DEPTH: usize = 16;

#[derive(Clone, Debug, PartialEq)]
pub enum Acceptance {
    Accepted(Box<Accepted>),
    /// May resolve as the world changes (a template, target or CRD that appears later).
    Waiting {
        reason: &'static str,
        message: String,
    },
    /// Cannot resolve: the spec is immutable.
    Rejected {
        reason: &'static str,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub template: Frozen,
    pub engine: EngineKind,
}

fn rejected(reason: &'static str, message: String) -> Acceptance {
    Acceptance::Rejected { reason, message }
}

fn waiting(reason: &'static str, message: String) -> Acceptance {
    Acceptance::Waiting { reason, message }
}

pub fn namespace_allowed(t: &OperationTemplateSpec, ns: &str) -> bool {
    t.namespaces.iter().any(|n| n == "*" || n == ns)
}

pub fn params_map(spec: &OperationSpec) -> Result<Map<String, Value>, String> {
    match &spec.parameters {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err("parameters must be an object".into()),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Chooses the template: the named one, else the first by name that allows type, engine and namespace.
fn resolve_template(spec: &OperationSpec, ns: &str, world: &World) -> Result<Frozen, Acceptance> {
    let ty = spec.type_;
    if let Some(name) = &spec.template {
        if let Some(err) = world.bad_templates.get(name) {
            return Err(waiting(reason::UNKNOWN_TEMPLATE, format!("OperationTemplate {name} is invalid: {err}")));
        }
        let Some(t) = world.templates.get(name) else {
            return Err(waiting(
                reason::UNKNOWN_TEMPLATE,
                format!("no OperationTemplate named {name}; create it or name another in spec.template"),
            ));
        };
        if !namespace_allowed(&t.spec, ns) {
            return Err(rejected(reason::FORBIDDEN, format!("OperationTemplate {name} does not allow namespace {ns}")));
        }
        if !t.spec.types.contains(&ty) {
            return Err(rejected(
                reason::TYPE_NOT_ALLOWED,
                format!("OperationTemplate {name} does not allow type {}", ty.as_str()),
            ));
        }
        if let (Some(want), Some(has)) = (spec.engine, t.spec.engine)
            && want != has
        {
            return Err(rejected(
                reason::ENGINE_NOT_ALLOWED,
                format!(
                    "OperationTemplate {name} runs engine {}, not {}; drop spec.engine or pick another template",
                    has.as_str(),
                    want.as_str()
                ),
            ));
        }
        return Ok(Frozen::new(name.clone(), t.clone()));
    }
    let for_type: Vec<_> = world.templates.iter().filter(|(_, t)| t.spec.types.contains(&ty)).collect();
    let in_ns: Vec<_> = for_type.iter().filter(|(_, t)| namespace_allowed(&t.spec, ns)).collect();
    let matching = in_ns.iter().find(|(_, t)| spec.engine.is_none() || t.spec.engine == spec.engine);
    match matching {
        Some((name, t)) => Ok(Frozen::new((*name).clone(), (*t).clone())),
        None if !in_ns.is_empty() => Err(waiting(
            reason::ENGINE_NOT_ALLOWED,
            format!(
                "no OperationTemplate allows {} with engine {} in namespace {ns}",
                ty.as_str(),
                spec.engine.map(|e| e.as_str()).unwrap_or("-")
            ),
        )),
        None => Err(waiting(
            reason::TYPE_NOT_ALLOWED,
            format!("no OperationTemplate allows type {} in namespace {ns}", ty.as_str()),
        )),
    }
}

/// The capability annotation must list the engine (curated, never inferred).
fn check_capability(ty: OperationType, engine: EngineKind, app: &Value, target: &str) -> Result<(), Acceptance> {
    let key = ty.capability_key();
    let declared = crate::json::at(app, "/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str);
    let Some(list) = declared else {
        return Err(rejected(
            reason::TARGET_LACKS_CAPABILITY,
            format!(
                "ApplicationInstance {target} does not declare {key}; its owner must add it to allow {}",
                ty.as_str()
            ),
        ));
    };
    let engines: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if engines.contains(&engine.display()) {
        Ok(())
    } else {
        Err(rejected(
            reason::TARGET_LACKS_CAPABILITY,
            format!(
                "ApplicationInstance {target} allows {} only with [{}], not {}",
                ty.as_str(),
                engines.join(", "),
                engine.display()
            ),
        ))
    }
}

fn check_schema(frozen: &Frozen, params: &Value) -> Result<(), Acceptance> {
    let validator = match frozen.schema() {
        None => return Ok(()),
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            return Err(waiting(
                reason::UNKNOWN_TEMPLATE,
                format!("OperationTemplate {} is invalid: its parametersSchema does not compile: {e}", frozen.name()),
            ));
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(params)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("{}: {e}", if path.is_empty() { "parameters".to_string() } else { format!("parameters{path}") })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(rejected(
            reason::INVALID_PARAMETERS,
            format!("parameters do not match the template's schema: {}", errors.join("; ")),
        ))
    }
}

pub fn validate(op: &OpState, world: &World) -> Acceptance {
    let ns = op.key.namespace.as_str();
    let Some(spec) = &op.spec else {
        return rejected(reason::INVALID_PARAMETERS, op.spec_error.clone().unwrap_or_else(|| "spec is missing".into()));
    };
    let params = match params_map(spec) {
        Ok(p) => p,
        Err(e) => return rejected(reason::INVALID_PARAMETERS, e),
    };
    let raw = Value::Object(params.clone());
    let size = serde_json::to_vec(&raw).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_PARAMETER_BYTES {
        return rejected(
            reason::INVALID_PARAMETERS,
            format!("parameters are {size} bytes; the limit is {MAX_PARAMETER_BYTES}"),
        );
    }
    if depth(&raw) > MAX_PARAMETER_DEPTH {
        return rejected(
            reason::INVALID_PARAMETERS,
            format!("parameters nest deeper than {MAX_PARAMETER_DEPTH} levels"),
        );
    }
    let frozen = match resolve_template(spec, ns, world) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let template = frozen.spec();
    let engine_name = spec.engine.or(template.engine);
    let engine = match (spec.type_, engine_name) {
        (OperationType::Upgrade, None) => EngineKind::ChartUpgrade,
        (OperationType::Upgrade, Some(e)) => {
            return rejected(
                reason::ENGINE_NOT_ALLOWED,
                format!("Upgrade patches the chart version and takes no engine, not {}", e.as_str()),
            );
        }
        (ty, e) => match EngineKind::resolve(ty, e) {
            Some(k) => k,
            None => {
                return rejected(
                    reason::ENGINE_NOT_ALLOWED,
                    format!("engine {} cannot run {}", e.map(|e| e.as_str()).unwrap_or("(none)"), ty.as_str()),
                );
            }
        },
    };
    // Secret marks first: "never the value" says more than a schema type mismatch.
    if let Err(e) = super::secret_refs::check(&params, template.parameters_schema.as_ref()) {
        return rejected(reason::INVALID_PARAMETERS, e);
    }
    if let Err(a) = check_schema(&frozen, &raw) {
        return a;
    }
    if let (Some(d), Some(max)) = (spec.deadline_seconds, template.max_deadline_seconds)
        && d > max
    {
        return rejected(
            reason::INVALID_PARAMETERS,
            format!("deadlineSeconds {d} exceeds the template's maximum of {max}"),
        );
    }
    let target = spec.target.name.as_str();
    let Some((app_raw, app)) = world.app(&ObjKey::new(ns, target)) else {
        return waiting(reason::TARGET_NOT_FOUND, format!("ApplicationInstance {target} not found in namespace {ns}"));
    };
    if let Err(a) = check_capability(spec.type_, engine, app_raw, target) {
        return a;
    }
    if let Some(kind) = engine.child_kind()
        && !world.installed.contains(&kind)
    {
        return waiting(
            reason::ENGINE_UNAVAILABLE,
            format!(
                "the {} CRD ({}) is not installed; the Operation starts when it is",
                kind.kind(),
                kind.api_version()
            ),
        );
    }
    let ctx = OpContext {
        name: &op.key.name,
        namespace: ns,
        uid: &op.uid,
        ty: spec.type_,
        params: &params,
        template,
        target: app,
    };
    if let Err(e) = engine.check_params(&ctx) {
        return rejected(e.reason, e.message);
    }
    if engine == EngineKind::VeleroRestore
        && let Err(a) = check_backup_owner(&ctx, world)
    {
        return a;
    }
    Acceptance::Accepted(Box::new(Accepted { template: frozen, engine }))
}

/// A restore may not use a backup that an Operation in another namespace made.
fn check_backup_owner(ctx: &OpContext<'_>, world: &World) -> Result<(), Acceptance> {
    let Ok(Some(name)) = ctx.param_str("backupName") else { return Ok(()) };
    let Some(backup) = world.child(ChildKind::VeleroBackup, velero::velero_namespace(ctx), name) else { return Ok(()) };
    let owner_ns = crate::json::at(&backup, "/metadata/labels")
        .and_then(|l| l.get(crate::api::LABEL_OPERATION_NAMESPACE))
        .and_then(Value::as_str);
    match owner_ns {
        Some(n) if n != ctx.namespace => Err(rejected(
            reason::FORBIDDEN,
            format!("backup {name} belongs to namespace {n}; a restore may only use backups of {}", ctx.namespace),
        )),
        _ => Ok(()),
    }
}
