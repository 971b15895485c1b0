//! The bad-input catalogue: every file in `tests/bad-input/` is a malformed or hostile request
//! with the exact refusal it must get, run against the real API server and the running operator.
//! A case is refused either at admission (`admission:` names the error) or by the operator (an
//! `expect:` condition with reason and message). Afterwards the operator must still be running
//! and still serve a healthy Operation: bad input never stops it.
//!
//! File format (YAML; `${NS}` is the case's own namespace):
//! ```yaml
//! what: one line
//! user: admin                  # kubectl context that creates the objects (default admin)
//! objects: [...]               # created in order; all succeed unless `admission` is set,
//! admission: "substring"       # ... then the last one must be refused with this in the error
//! steps: [...]                 # then: {wait: {op, phase}}, {patch: {op, merge}},
//!                              # {patchFails: {op, merge, error}}, {deleteChild: {op}},
//!                              # {relabelChild: {op}}
//! expect: { op, condition, status, reason, message, phase, events }
//! ```

mod support;

use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::controller::api_resource;
use vworkspace_operator::{run, sim};

fn cases() -> Vec<(String, Value)> {
    let dir = support::repo().join("tests/bad-input");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let case: Value = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, case)
        })
        .collect()
}

fn subst(v: &Value, ns: &str) -> Value {
    let mut v: Value = serde_json::from_str(&v.to_string().replace("${NS}", ns)).unwrap();
    expand(&mut v);
    v
}

/// Large inputs are generated, not stored: `"${BYTES:N}"` is N bytes of `x`, `{"$nest": N}` is
/// an object nested N levels deep.
fn expand(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("${BYTES:") => {
            let n: usize = s.trim_start_matches("${BYTES:").trim_end_matches('}').parse().unwrap();
            *s = "x".repeat(n);
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("$nest") => {
            let mut nested = json!("leaf");
            for _ in 0..m["$nest"].as_u64().unwrap() {
                nested = json!({ "n": nested });
            }
            *v = nested;
        }
        Value::Object(m) => m.values_mut().for_each(expand),
        Value::Array(a) => a.iter_mut().for_each(expand),
        _ => {}
    }
}

fn base_templates() -> Vec<Value> {
    let t = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["namespaces"] = json!(["*"]);
        spec["preconditions"] = json!({ "exclusive": false });
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": name }, "spec": spec })
    };
    vec![
        t(
            "base-argo",
            json!({ "types": ["Runbook"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "t" } }),
        ),
        t("base-csi", json!({ "types": ["Backup"], "engine": "csiSnapshot" })),
        t(
            "base-job",
            json!({ "types": ["RunCommand", "Migration"], "engine": "job", "job": { "image": "busybox:1.36" }, "maxDeadlineSeconds": 3600 }),
        ),
        t("base-upgrade", json!({ "types": ["Upgrade"], "upgrade": { "forbiddenVersions": ["2.*"] } })),
        t(
            "base-velero",
            json!({ "types": ["Backup", "Restore"], "engine": "velero", "velero": { "namespace": "velero" } }),
        ),
    ]
}

fn app(ns: &str) -> Value {
    json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": {
            "ops.vworkspace.io/backup": "velero,csiSnapshot", "ops.vworkspace.io/restore": "velero",
            "ops.vworkspace.io/run-command": "job", "ops.vworkspace.io/migration": "job,helmHookJob",
            "ops.vworkspace.io/runbook": "argoWorkflow", "ops.vworkspace.io/upgrade": "chartUpgrade" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })
}

struct Run {
    client: kube::Client,
}

impl Run {
    async fn status(&self, ns: &str, op: &str) -> Option<Value> {
        let ops: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &support::ar::<Operation>());
        ops.get(op).await.ok().map(|o| o.data["status"].clone())
    }

    async fn child(&self, ns: &str, op: &str) -> Option<(ChildKind, DynamicObject)> {
        let uid = Api::<Operation>::namespaced(self.client.clone(), ns).get(op).await.ok()?.metadata.uid?;
        for k in ChildKind::ALL {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &api_resource(k));
            let lp = ListParams::default().labels(&format!("ops.vworkspace.io/operation-uid={uid}"));
            if let Some(o) = api.list(&lp).await.ok()?.items.into_iter().next() {
                return Some((k, o));
            }
        }
        None
    }

    async fn step(&self, ns: &str, step: &Value) -> Result<(), String> {
        let ops: Api<Operation> = Api::namespaced(self.client.clone(), ns);
        if let Some(w) = step.get("wait") {
            let (op, phase) = (w["op"].as_str().unwrap(), w["phase"].as_str().unwrap());
            for _ in 0..300 {
                if support::phase(&ops, op).await == phase {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(format!("{op} never reached {phase}: {:?}", self.status(ns, op).await));
        }
        if let Some(p) = step.get("patch").or_else(|| step.get("patchFails")) {
            let r = ops.patch(p["op"].as_str().unwrap(), &PatchParams::default(), &Patch::Merge(&p["merge"])).await;
            return match (step.get("patch").is_some(), r) {
                (true, Ok(_)) => Ok(()),
                (true, Err(e)) => Err(format!("patch refused: {e}")),
                (false, Ok(_)) => Err("patch was accepted".into()),
                (false, Err(e)) => {
                    let want = p["error"].as_str().unwrap();
                    if e.to_string().contains(want) { Ok(()) } else { Err(format!("patch error {e:?} lacks {want:?}")) }
                }
            };
        }
        if let Some(d) = step.get("deleteChild").or_else(|| step.get("relabelChild")) {
            let op = d["op"].as_str().unwrap();
            let Some((kind, child)) = self.child(ns, op).await else { return Err(format!("{op} has no child")) };
            let api: Api<DynamicObject> = Api::namespaced_with(
                self.client.clone(),
                child.metadata.namespace.as_deref().unwrap(),
                &api_resource(kind),
            );
            let name = child.metadata.name.unwrap();
            let r = if step.get("deleteChild").is_some() {
                api.delete(&name, &DeleteParams::default()).await.map(|_| ())
            } else {
                let patch = json!({ "metadata": { "labels": { "ops.vworkspace.io/operation-uid": null } } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            };
            return r.map_err(|e| e.to_string());
        }
        Err(format!("unknown step {step}"))
    }

    async fn expect(&self, ns: &str, e: &Value) -> Result<(), String> {
        let op = e["op"].as_str().unwrap();
        let ty = e["condition"].as_str().unwrap_or("Accepted");
        let mut last = Value::Null;
        for _ in 0..300 {
            let st = self.status(ns, op).await.unwrap_or(Value::Null);
            let cond = st["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == ty).cloned();
            if let Some(c) = cond.filter(|c| c["status"] == e["status"] && c["reason"] == e["reason"]) {
                let msg = c["message"].as_str().unwrap_or_default();
                if let Some(want) = e["message"].as_str().filter(|w| !msg.contains(w)) {
                    return Err(format!("{ty}={} {}: message {msg:?} lacks {want:?}", c["status"], c["reason"]));
                }
                if let Some(p) = e["phase"].as_str().filter(|p| st["phase"] != *p) {
                    return Err(format!("phase {} instead of {p}", st["phase"]));
                }
                // Events are written after the status: poll for them too.
                let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), ns);
                let all = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
                let missing: Vec<&Value> = e["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|reason| {
                        !all.items.iter().any(|ev| {
                            ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(op)
                                && ev.reason.as_deref() == reason.as_str()
                        })
                    })
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                last = json!({ "status": st, "missingEvents": missing });
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            last = st;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("wanted {ty}={} {}; status was {last}", e["status"], e["reason"]))
    }

    async fn case(&self, name: &str, case: &Value, ns: &str) -> Result<(), String> {
        let case = subst(case, ns);
        let user = case["user"].as_str().unwrap_or("admin");
        let objects = case["objects"].as_array().cloned().unwrap_or_default();
        let admission = case["admission"].as_str();
        for (i, obj) in objects.iter().enumerate() {
            let last = i + 1 == objects.len();
            let out = support::kubectl(user, &["create", "-f", "-"], Some(&obj.to_string()));
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            match (admission.filter(|_| last), out.status.success()) {
                (None, true) => {}
                (None, false) => return Err(format!("object {i} was refused: {err}")),
                (Some(_), true) => return Err("admitted, but admission should refuse it".into()),
                (Some(want), false) if err.contains(want) => {}
                (Some(want), false) => return Err(format!("refused with {err:?}, which lacks {want:?}")),
            }
        }
        for s in case["steps"].as_array().into_iter().flatten() {
            self.step(ns, s).await?;
        }
        if let Some(e) = case.get("expect") {
            self.expect(ns, e).await?;
        }
        if admission.is_none() && case.get("expect").is_none() {
            return Err(format!("{name} checks nothing: give `admission` or `expect`"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_cleanly_and_the_operator_keeps_serving() {
    let client = support::client("admin").await;
    support::ok(&support::kubectl("admin", &["create", "namespace", "velero"], None));
    for t in base_templates() {
        support::apply(&client, &support::ar::<OperationTemplate>(), None, t).await;
    }
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(100), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(100)));
    let journal = tempfile::tempdir().unwrap();
    let opts = support::operator_options(journal.path());
    let operator = tokio::spawn(run::run(client.clone(), opts));

    let cases = cases();
    assert!(cases.len() >= 40, "the catalogue has {} cases; the floor is 40", cases.len());
    let r = Run { client: client.clone() };
    let mut failures = Vec::new();
    for (i, (name, case)) in cases.iter().enumerate() {
        let ns = format!("bad-{i}");
        support::ok(&support::kubectl("admin", &["create", "namespace", &ns], None));
        support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), app(&ns)).await;
        if let Err(e) = r.case(name, case, &ns).await {
            failures.push(format!("{name} ({}): {e}", case["what"].as_str().unwrap_or("")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // Still running, still serving.
    assert!(!operator.is_finished(), "the operator stopped");
    support::ok(&support::kubectl("admin", &["create", "namespace", "healthy"], None));
    support::apply(&client, &support::ar::<ApplicationInstance>(), Some("healthy"), app("healthy")).await;
    let ok = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "metadata": { "name": "after", "namespace": "healthy" },
        "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
    support::apply(&client, &support::ar::<Operation>(), Some("healthy"), ok).await;
    let ops: Api<Operation> = Api::namespaced(client.clone(), "healthy");
    let mut phase = String::new();
    for _ in 0..300 {
        phase = support::phase(&ops, "after").await;
        if phase == "Succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phase, "Succeeded", "an Operation after the whole catalogue still runs");
    assert!(!operator.is_finished(), "the operator stopped");
    operator.abort();
    sims.abort();
    apps.abort();
}
