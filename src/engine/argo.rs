//! Argo `Workflow` (argoproj.io/v1alpha1) referencing the template's WorkflowTemplate.

use serde_json::{Map, Value, json};

use super::{ChildSpec, Invalid, Mapped, OpContext, Verdict, naming, object, parse_progress, str_at};
use crate::api::{EngineStatus, reason};
use crate::command::Action;
use crate::record::ChildKind;

/// Parameters become `spec.arguments.parameters`: scalar values only, named like Argo parameters.
pub fn check(ctx: &OpContext<'_>) -> Result<(), Invalid> {
    if ctx.template.argo.is_none() {
        return Err(Invalid::params("the template has no argo.workflowTemplateRef".into()));
    }
    for (k, v) in ctx.params {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Invalid::params(format!("parameter name {k:?} is not a valid workflow parameter name")));
        }
        if !(v.is_string() || v.is_number() || v.is_boolean()) {
            return Err(Invalid::params(format!(
                "parameter {k} must be a string, number or boolean: workflow arguments are strings"
            )));
        }
    }
    Ok(())
}

pub fn build(ctx: &OpContext<'_>, step: u32) -> Result<ChildSpec, Invalid> {
    check(ctx)?;
    let argo = ctx.template.argo.as_ref().ok_or_else(|| Invalid::params("no argo settings".into()))?;
    let name = naming::child_name(ctx.name, ctx.uid, step);
    let meta = ctx.child_metadata(&name, ctx.namespace, step);
    let parameters: Vec<Value> = ctx
        .params
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({ "name": k, "value": value })
        })
        .collect();
    let mut spec = Map::new();
    let mut tref = json!({ "name": argo.workflow_template_ref });
    if argo.cluster_scope {
        tref["clusterScope"] = json!(true);
    }
    spec.insert("workflowTemplateRef".into(), tref);
    spec.insert("arguments".into(), object([("parameters", Value::Array(parameters))]));
    if let Some(sa) = ctx.service_account() {
        spec.insert("serviceAccountName".into(), json!(sa));
    }
    // The steps get no token unless the template allows it. Argo then needs an executor
    // ServiceAccount for its own sidecar: the template's, else the namespace's `default`.
    if !ctx.template.rbac.automount_service_account_token {
        spec.insert("automountServiceAccountToken".into(), json!(false));
        spec.insert("executor".into(), json!({ "serviceAccountName": ctx.service_account().unwrap_or("default") }));
    }
    // Pods of the workflow carry the Operation labels too, for cleanup and audit.
    spec.insert("podMetadata".into(), object([("labels", Value::Object(ctx.child_labels(step)))]));
    Ok(ChildSpec::new(ChildKind::Workflow, ctx.namespace, name, meta, Value::Object(spec)))
}

pub fn cancel(child: &ChildSpec) -> Action {
    Action::PatchChild {
        kind: ChildKind::Workflow,
        namespace: child.namespace.clone(),
        name: child.name.clone(),
        patch: json!({ "spec": { "shutdown": "Terminate" } }),
    }
}

/// Failed or errored nodes, Pod nodes first: "the failing node" of the contract.
fn failing_nodes(obj: &Value) -> Vec<String> {
    let Some(nodes) = crate::json::at(obj, "/status/nodes").and_then(Value::as_object) else { return Vec::new() };
    let mut failed: Vec<(bool, String)> = nodes
        .values()
        .filter(|n| matches!(str_at(n, "/phase"), Some("Failed" | "Error")))
        .map(|n| {
            let name = str_at(n, "/displayName").or(str_at(n, "/name")).unwrap_or("?");
            let msg = str_at(n, "/message").unwrap_or("");
            (str_at(n, "/type") != Some("Pod"), format!("node {name} {}: {msg}", str_at(n, "/phase").unwrap_or("")))
        })
        .collect();
    failed.sort();
    failed.into_iter().map(|(_, s)| s).collect()
}

/// Workflow-level output parameters, and those of the root node.
fn output_parameters(obj: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let wf_name = str_at(obj, "/metadata/name").unwrap_or("");
    let sources = [
        crate::json::at(obj, "/status/outputs/parameters"),
        crate::json::at(obj, "/status/nodes")
            .and_then(|n| n.get(wf_name))
            .and_then(|n| crate::json::at(n, "/outputs/parameters")),
    ];
    for params in sources.into_iter().flatten().filter_map(Value::as_array) {
        for p in params {
            if let (Some(n), Some(v)) = (str_at(p, "/name"), p.get("value")) {
                let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                out.push((n.to_string(), v));
            }
        }
    }
    out
}

pub fn map(obj: &Value) -> Mapped {
    let phase = str_at(obj, "/status/phase").unwrap_or("");
    let message = str_at(obj, "/status/message").unwrap_or("").to_string();
    let details = failing_nodes(obj);
    let engine = EngineStatus {
        name: "argoWorkflow".into(),
        phase: Some(if phase.is_empty() { "Pending".into() } else { phase.into() }),
        message: (!message.is_empty()).then(|| message.clone()),
        progress: str_at(obj, "/status/progress").and_then(parse_progress),
        errors: None,
        warnings: None,
        details: details.clone(),
    };
    let verdict = match phase {
        "" | "Pending" => Verdict::Progressing { reason: reason::QUEUED, message: "workflow pending".into() },
        "Running" => Verdict::Progressing { reason: reason::IN_PROGRESS, message: "workflow running".into() },
        "Succeeded" => Verdict::Succeeded { message: "workflow succeeded".into() },
        "Failed" | "Error" => {
            let mut m = format!("workflow {}", phase.to_lowercase());
            if !message.is_empty() {
                m.push_str(&format!(": {message}"));
            }
            if let Some(first) = details.first() {
                m.push_str(&format!(" ({first})"));
            }
            Verdict::Failed { reason: reason::ENGINE_FAILED.into(), message: m }
        }
        other => Verdict::Progressing { reason: reason::IN_PROGRESS, message: format!("workflow phase {other}") },
    };
    let mut m = Mapped { verdict, engine, outputs: Default::default() };
    if let Some(n) = str_at(obj, "/metadata/name") {
        m.outputs.insert("workflowName".into(), n.into());
    }
    if phase == "Succeeded" {
        for (k, v) in output_parameters(obj) {
            m.outputs.insert(format!("param.{k}"), v);
        }
    }
    m
}
