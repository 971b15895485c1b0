//! Builders shared by the pure-core tests.
#![allow(dead_code)]

use serde_json::{Value, json};
use vworkspace_operator::harness::Harness;
use vworkspace_operator::record::{ChildKind, ResourceKind};

pub const NS: &str = "shop";

/// The builders the fuzz targets use too (`vworkspace_operator::fuzz::objects`).
#[allow(unused_imports)]
pub use vworkspace_operator::fuzz::objects::template;

/// Every template the engines need, one per engine.
pub fn all_templates() -> Vec<Value> {
    vworkspace_operator::fuzz::objects::base_templates()
}

pub fn app(name: &str, ready: Option<bool>) -> Value {
    let mut a = json!({
        "apiVersion": "ops.vworkspace.io/v1alpha1",
        "kind": "ApplicationInstance",
        "metadata": {
            "name": name,
            "namespace": NS,
            "annotations": {
                "ops.vworkspace.io/backup": "velero,csiSnapshot,volSync",
                "ops.vworkspace.io/restore": "velero,volSync",
                "ops.vworkspace.io/upgrade": "chartUpgrade",
                "ops.vworkspace.io/migration": "helmHookJob,argoWorkflow",
                "ops.vworkspace.io/run-command": "job",
                "ops.vworkspace.io/runbook": "argoWorkflow",
            },
        },
        "spec": { "chart": { "name": "shop", "version": "1.2.0", "repository": "https://charts.example.org" } },
    });
    if let Some(r) = ready {
        a["status"] = json!({ "observedGeneration": 1, "conditions": [ready_condition(r, 1)] });
    }
    a
}

pub fn ready_condition(ready: bool, generation: i64) -> Value {
    json!({
        "type": "Ready", "status": if ready { "True" } else { "False" }, "observedGeneration": generation,
        "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": if ready { "Ready" } else { "Progressing" }, "message": "",
    })
}

pub fn operation(name: &str, ty: &str, engine: Option<&str>, params: Value) -> Value {
    let mut o = json!({
        "apiVersion": "ops.vworkspace.io/v1alpha1",
        "kind": "Operation",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "type": ty, "target": { "name": "shop" }, "parameters": params },
    });
    if let Some(e) = engine {
        o["spec"]["engine"] = json!(e);
    }
    o
}

/// A harness with every template and a Ready target `shop`.
pub fn world() -> Harness {
    let mut h = Harness::new();
    h.check_settled = true;
    for t in all_templates() {
        h.apply(ResourceKind::OperationTemplate, t);
    }
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(true)));
    h
}

pub fn submit(h: &mut Harness, op: Value) {
    h.apply(ResourceKind::Operation, op);
}

/// The single child of an Operation.
pub fn only_child(h: &Harness, op: &str) -> (ChildKind, String, String) {
    let kids = h.children_of(&format!("uid-{op}"));
    assert_eq!(kids.len(), 1, "expected exactly one child, got {kids:?}");
    let (k, key) = kids[0].clone();
    (k, key.namespace, key.name)
}

pub fn cond(h: &Harness, op: &str, ty: &str) -> (String, String) {
    h.condition(NS, op, ty).unwrap_or_else(|| panic!("{op} has no {ty} condition: {}", h.status(NS, op)))
}

pub fn set_op_field(h: &mut Harness, op: &str, pointer_value: (&str, Value)) {
    let mut o = h.get(ResourceKind::Operation, NS, op).cloned().expect("operation exists");
    *o.pointer_mut(pointer_value.0).expect("field exists") = pointer_value.1;
    h.apply(ResourceKind::Operation, o);
}

pub fn cancel(h: &mut Harness, op: &str) {
    let mut o = h.get(ResourceKind::Operation, NS, op).cloned().expect("operation exists");
    o["spec"]["cancel"] = json!(true);
    h.apply(ResourceKind::Operation, o);
}
