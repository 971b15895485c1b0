//! A journal recorded by the model harness, shared by the benches: N Operations of three
//! engines, each through its upstream phases to a terminal outcome.
#![allow(dead_code)] // each bench uses part of it

use serde_json::{Value, json};
use vworkspace_operator::harness::Harness;
use vworkspace_operator::record::{Record, ResourceKind};

fn template(name: &str, ty: &str, engine: &str, extra: Value) -> Value {
    let mut t = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": name },
        "spec": { "types": [ty], "engine": engine, "namespaces": ["*"] } });
    vworkspace_operator::harness::merge(&mut t["spec"], &extra);
    t
}

/// A Ready ApplicationInstance in `bench` offering `engine` for the capability annotation `cap`.
fn ready_target(name: &str, cap: &str, engine: &str) -> Value {
    json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": name, "namespace": "bench", "annotations": { cap: engine } },
        "spec": { "chart": { "name": "c", "version": "1.0.0" } },
        "status": { "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Ready", "message": "" }] } })
}

/// A journal of `n` Operations, each on its own target, run to completion.
pub fn journal(n: usize) -> Vec<Record> {
    journal_from(n, 0)
}

/// The same, with Operations and targets numbered from `first` (for journals built in chunks:
/// the model harness slows down as it holds more objects).
pub fn journal_from(n: usize, first: usize) -> Vec<Record> {
    let mut h = Harness::new();
    h.apply(ResourceKind::OperationTemplate, template("v", "Backup", "velero", json!({})));
    h.apply(
        ResourceKind::OperationTemplate,
        template("j", "RunCommand", "job", json!({ "job": { "image": "busybox" } })),
    );
    h.apply(
        ResourceKind::OperationTemplate,
        template("a", "Runbook", "argoWorkflow", json!({ "argo": { "workflowTemplateRef": "t" } })),
    );
    let kinds = [
        ("Backup", "velero", vec![json!({ "phase": "InProgress" }), json!({ "phase": "Completed" })]),
        (
            "RunCommand",
            "job",
            vec![
                json!({ "active": 1 }),
                json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
            ],
        ),
        (
            "Runbook",
            "argoWorkflow",
            vec![json!({ "phase": "Running", "progress": "1/2" }), json!({ "phase": "Succeeded" })],
        ),
    ];
    for i in first..first + n {
        let (ty, engine, statuses) = &kinds[i % kinds.len()];
        let app = format!("app-{i}");
        let cap = match *ty {
            "Backup" => "ops.vworkspace.io/backup",
            "RunCommand" => "ops.vworkspace.io/run-command",
            _ => "ops.vworkspace.io/runbook",
        };
        h.apply(ResourceKind::ApplicationInstance, ready_target(&app, cap, engine));
        let name = format!("op-{i}");
        h.apply(ResourceKind::Operation, json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": name, "namespace": "bench" }, "spec": { "type": ty, "engine": engine, "target": { "name": app } } }));
        let (k, key) = h.children_of(&format!("uid-{name}"))[0].clone();
        for st in statuses {
            h.set_child_status(k, &key.namespace, &key.name, st.clone());
        }
    }
    h.journal
}

/// `n` exclusive RunCommand Operations submitted at once on one target, then run in turn: the
/// deepest queue a target can have.
pub fn one_target(n: usize) -> Vec<Record> {
    one_target_with(n, false)
}

/// The same, with a template that has a parameters schema (the samples' `job-command`) and
/// Operations that pass parameters: each is checked against it at every revisit while it waits.
pub fn one_target_with(n: usize, schema: bool) -> Vec<Record> {
    let mut h = Harness::new();
    let mut extra = json!({ "job": { "image": "busybox" }, "preconditions": { "exclusive": true } });
    if schema {
        extra["job"]["allowArgs"] = json!(true);
        extra["parametersSchema"] = json!({ "type": "object", "additionalProperties": false,
            "properties": { "args": { "type": "array", "items": { "type": "string" }, "maxItems": 4 } } });
    }
    h.apply(ResourceKind::OperationTemplate, template("j", "RunCommand", "job", extra));
    h.apply(ResourceKind::ApplicationInstance, ready_target("shop", "ops.vworkspace.io/run-command", "job"));
    for i in 0..n {
        let mut op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": format!("op-{i:05}"), "namespace": "bench" },
            "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
        if schema {
            op["spec"]["parameters"] = json!({ "args": ["df", "-h"] });
        }
        h.apply(ResourceKind::Operation, op);
    }
    for i in 0..n {
        let (k, key) = h.children_of(&format!("uid-op-{i:05}"))[0].clone();
        h.set_child_status(
            k,
            &key.namespace,
            &key.name,
            json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
        );
    }
    h.journal
}
