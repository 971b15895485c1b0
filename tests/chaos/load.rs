//! The mixed load every scenario runs: four engines, each simulator scenario with the terminal
//! phase it must end in.

use serde_json::json;
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};

use crate::support;

/// (type, engine, parameters, simulator scenario, the phase it must end in)
const CASES: &[(&str, &str, &str, &str, &str)] = &[
    ("Backup", "velero", "{}", "succeed", "Succeeded"),
    ("RunCommand", "job", "{}", "succeed", "Succeeded"),
    ("Runbook", "argoWorkflow", "{}", "succeed", "Succeeded"),
    ("Backup", "csiSnapshot", r#"{"pvc":"data"}"#, "snapshot-error-then-ready", "Succeeded"),
    ("Backup", "velero", "{}", "partially-fail", "Failed"),
    ("RunCommand", "job", "{}", "fail", "Failed"),
    ("Runbook", "argoWorkflow", "{}", "fail", "Failed"),
];

#[derive(Clone, Debug)]
pub struct Planned {
    pub name: String,
    pub expect: &'static str,
}

/// A fresh namespace with templates for the four engines (not exclusive) and a Ready-able target.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let ns = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let obj: Namespace = serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &obj).await.unwrap();
    let velero_ns = format!("{ns}-velero");
    let obj: Namespace = serde_json::from_value(json!({ "metadata": { "name": velero_ns } })).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &obj).await.unwrap();
    for (name, spec) in [
        ("velero", json!({ "types": ["Backup"], "engine": "velero", "velero": { "namespace": velero_ns } })),
        ("argo", json!({ "types": ["Runbook"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "t" } })),
        ("job", json!({ "types": ["RunCommand"], "engine": "job", "job": { "image": "busybox:1.36" } })),
        ("snap", json!({ "types": ["Backup"], "engine": "csiSnapshot" })),
    ] {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": false });
        let t = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
            "metadata": { "name": format!("{name}-{ns}") }, "spec": spec });
        support::apply(client, &support::ar::<OperationTemplate>(), None, t).await;
    }
    let app = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/backup": "velero,csiSnapshot",
            "ops.vworkspace.io/runbook": "argoWorkflow", "ops.vworkspace.io/run-command": "job" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } });
    support::apply(client, &support::ar::<ApplicationInstance>(), Some(&ns), app).await;
    ns
}

/// Submits `n` Operations named `<prefix>-<i>`, cycling through the cases.
pub async fn submit(client: &kube::Client, ns: &str, prefix: &str, n: usize) -> Vec<Planned> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (ty, engine, params, scenario, expect) = CASES[i % CASES.len()];
        let name = format!("{prefix}-{i}");
        let params: serde_json::Value = serde_json::from_str(params).unwrap();
        let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": scenario } },
            "spec": { "type": ty, "engine": engine, "target": { "name": "shop" }, "parameters": params } });
        submit_one(client, ns, op).await;
        out.push(Planned { name, expect });
    }
    out
}

/// Creates one Operation, retrying while the API server is away (a scenario may be restarting it).
async fn submit_one(client: &kube::Client, ns: &str, op: serde_json::Value) {
    use kube::api::{Api, PostParams};
    let api: Api<Operation> = Api::namespaced(client.clone(), ns);
    let obj: Operation = serde_json::from_value(op).unwrap();
    for _ in 0..600 {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    panic!("could not create {} in 60 s", obj.metadata.name.unwrap_or_default());
}
