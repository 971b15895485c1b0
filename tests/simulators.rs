//! The ENGINE SIMULATORS move real children on the real API server through the upstream phases,
//! and the engines' own mappings read their final statuses as the scenario says.

mod support;

use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use vworkspace_operator::engine::{self, Verdict};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::{self, SCENARIO_ANNOTATION, controller::api_resource};

fn child(kind: ChildKind, ns: &str, name: &str, scenario: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": kind.api_version(), "kind": kind.kind(),
        "metadata": { "name": name, "namespace": ns,
            "labels": { "ops.vworkspace.io/operation-uid": format!("uid-{name}"), "ops.vworkspace.io/operation": name, "ops.vworkspace.io/operation-namespace": ns },
            "annotations": { SCENARIO_ANNOTATION: scenario } },
        "spec": spec,
    }))
    .unwrap()
}

async fn wait_for(
    client: &kube::Client,
    kind: ChildKind,
    ns: &str,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource(kind));
    for _ in 0..200 {
        let v = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} {ns}/{name} never reached its end", kind.kind());
}

#[tokio::test]
async fn simulators_drive_children_through_upstream_phases() {
    let client = support::client("admin").await;
    let ns = support::namespace("sim").await;
    let job_spec = json!({ "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } } });
    let cases = [
        (ChildKind::VeleroBackup, "b-ok", "succeed", json!({ "includedNamespaces": [ns] })),
        (ChildKind::VeleroBackup, "b-partial", "partially-fail", json!({ "includedNamespaces": [ns] })),
        (ChildKind::VeleroRestore, "r-invalid", "fail-validation", json!({ "backupName": "b-ok" })),
        (ChildKind::Workflow, "wf-fail", "fail", json!({ "workflowTemplateRef": { "name": "t" } })),
        (ChildKind::Job, "job-ok", "succeed", job_spec.clone()),
        (ChildKind::Job, "job-fail", "fail", job_spec),
        (
            ChildKind::VolumeSnapshot,
            "snap",
            "snapshot-error-then-ready",
            json!({ "source": { "persistentVolumeClaimName": "data" } }),
        ),
        (
            ChildKind::ReplicationSource,
            "rs",
            "succeed",
            json!({ "sourcePVC": "data", "trigger": { "manual": "tok-1" } }),
        ),
    ];
    for (kind, name, scenario, spec) in &cases {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(*kind));
        api.create(&PostParams::default(), &child(*kind, &ns, name, scenario, spec.clone())).await.unwrap();
    }
    let task = tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(50), instant: false }));
    let phase = |p: &'static str| move |v: &Value| v.pointer("/status/phase").and_then(Value::as_str) == Some(p);
    let b = wait_for(&client, ChildKind::VeleroBackup, &ns, "b-ok", phase("Completed")).await;
    assert!(matches!(engine::velero::map_backup(&b).verdict, Verdict::Succeeded { .. }));
    assert_eq!(b["status"]["progress"]["itemsBackedUp"], 10, "the upstream schema keeps the simulated progress");
    let p = wait_for(&client, ChildKind::VeleroBackup, &ns, "b-partial", phase("PartiallyFailed")).await;
    assert_eq!(p["status"]["errors"], 2);
    let r = wait_for(&client, ChildKind::VeleroRestore, &ns, "r-invalid", phase("FailedValidation")).await;
    assert!(matches!(engine::velero::map_restore(&r).verdict, Verdict::Failed { .. }));
    let wf = wait_for(&client, ChildKind::Workflow, &ns, "wf-fail", phase("Failed")).await;
    let Verdict::Failed { message, .. } = engine::argo::map(&wf).verdict else { panic!("{wf}") };
    assert!(message.contains("migrate"), "{message}");
    let cond = |t: &'static str| {
        move |v: &Value| {
            v.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == t))
        }
    };
    let j = wait_for(&client, ChildKind::Job, &ns, "job-ok", cond("Complete")).await;
    assert!(matches!(engine::job::map(&j).verdict, Verdict::Succeeded { .. }));
    let jf = wait_for(&client, ChildKind::Job, &ns, "job-fail", cond("Failed")).await;
    assert_eq!(
        engine::job::map(&jf).verdict,
        Verdict::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "job failed: Job has reached the specified backoff limit".into()
        }
    );
    let s = wait_for(&client, ChildKind::VolumeSnapshot, &ns, "snap", |v| {
        v.pointer("/status/readyToUse") == Some(&json!(true))
    })
    .await;
    assert!(matches!(engine::snapshot::map(&s).verdict, Verdict::Succeeded { .. }));
    let rs =
        wait_for(&client, ChildKind::ReplicationSource, &ns, "rs", |v| v.pointer("/status/lastManualSync").is_some())
            .await;
    assert!(matches!(engine::volsync::map(&rs, "tok-1").verdict, Verdict::Succeeded { .. }));
    task.abort();
}
