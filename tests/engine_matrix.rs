//! Every type and engine through the real runtime and the real API server, with the engine
//! simulators: success, engine failure, partial failure and validation failure where upstream
//! has them, cancel, deadline and dry run. Each case checks the phase, the Succeeded reason and
//! the number of children (counted by UID label).

mod support;

use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use vworkspace_journal::{Journal, SledJournal};
use vworkspace_operator::api::Operation;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::controller::api_resource;
use vworkspace_operator::{run, sim};

const SECRET: &str = "t0p-s3cret-value";

struct Case {
    name: &'static str,
    ty: &'static str,
    engine: Option<&'static str>,
    params: Value,
    scenario: &'static str,
    extra: Value,
    phase: &'static str,
    reason: &'static str,
    children: usize,
}

fn case(
    name: &'static str,
    ty: &'static str,
    engine: Option<&'static str>,
    params: Value,
    scenario: &'static str,
    phase: &'static str,
    reason: &'static str,
) -> Case {
    Case { name, ty, engine, params, scenario, extra: json!({}), phase, reason, children: 1 }
}

async fn children(client: &kube::Client, uid: &str) -> usize {
    let mut n = 0;
    for kind in ChildKind::ALL {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
        n += api
            .list(&ListParams::default().labels(&format!("ops.vworkspace.io/operation-uid={uid}")))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_engine_reaches_its_outcome() {
    let client = support::client("admin").await;
    let ns = support::namespace("matrix").await;
    let velero_ns = support::namespace("velero").await;
    let templates = [
        ("velero", json!({ "types": ["Backup", "Restore"], "engine": "velero", "velero": { "namespace": velero_ns } })),
        (
            "argo",
            json!({ "types": ["Runbook", "Migration", "RunCommand"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "t" }, "rbac": { "serviceAccountName": "runner" } }),
        ),
        ("job", json!({ "types": ["RunCommand", "Migration"], "engine": "job", "job": { "image": "busybox:1.36" } })),
        ("csi", json!({ "types": ["Backup"], "engine": "csiSnapshot" })),
        (
            "volsync",
            json!({ "types": ["Backup", "Restore"], "engine": "volSync", "volSync": { "mover": "restic", "moverSpec": { "repository": "r" } } }),
        ),
        ("upgrade", json!({ "types": ["Upgrade"] })),
    ];
    for (name, spec) in templates {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": false });
        let t = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("{name}-{ns}") }, "spec": spec });
        support::apply(&client, &support::ar::<vworkspace_operator::api::OperationTemplate>(), None, t).await;
    }
    let caps = json!({ "ops.vworkspace.io/backup": "velero,csiSnapshot,volSync", "ops.vworkspace.io/restore": "velero,volSync",
        "ops.vworkspace.io/runbook": "argoWorkflow", "ops.vworkspace.io/migration": "argoWorkflow,job", "ops.vworkspace.io/run-command": "job,argoWorkflow",
        "ops.vworkspace.io/upgrade": "chartUpgrade" });
    for (app, scenario) in
        [("shop", "succeed"), ("broken", "fail"), ("stuck-a", "never-finish"), ("stuck-b", "never-finish")]
    {
        let a = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
            "metadata": { "name": app, "namespace": ns, "annotations": caps.as_object().unwrap().clone().into_iter().chain([("sim.vworkspace.io/scenario".to_string(), json!(scenario))]).collect::<serde_json::Map<_, _>>() },
            "spec": { "chart": { "name": app, "version": "1.0.0" } } });
        support::apply(&client, &support::ar::<vworkspace_operator::api::ApplicationInstance>(), Some(&ns), a).await;
    }
    let mut cases = vec![
        case("velero-backup-ok", "Backup", Some("velero"), json!({}), "succeed", "Succeeded", "Completed"),
        case(
            "velero-backup-partial",
            "Backup",
            Some("velero"),
            json!({}),
            "partially-fail",
            "Failed",
            "PartiallyFailed",
        ),
        case("velero-backup-fail", "Backup", Some("velero"), json!({}), "fail", "Failed", "EngineFailed"),
        case(
            "velero-backup-invalid",
            "Backup",
            Some("velero"),
            json!({}),
            "fail-validation",
            "Failed",
            "EngineRejected",
        ),
        case(
            "velero-restore-ok",
            "Restore",
            Some("velero"),
            json!({ "backupName": "b1" }),
            "succeed",
            "Succeeded",
            "Completed",
        ),
        case(
            "velero-restore-invalid",
            "Restore",
            Some("velero"),
            json!({ "backupName": "b1" }),
            "fail-validation",
            "Failed",
            "EngineRejected",
        ),
        case("argo-runbook-ok", "Runbook", None, json!({ "db": "orders" }), "succeed", "Succeeded", "Completed"),
        case("argo-migration-fail", "Migration", Some("argoWorkflow"), json!({}), "fail", "Failed", "EngineFailed"),
        case("job-command-ok", "RunCommand", Some("job"), json!({}), "succeed", "Succeeded", "Completed"),
        case("job-command-fail", "RunCommand", Some("job"), json!({}), "fail", "Failed", "BackoffLimitExceeded"),
        case("job-migration-ok", "Migration", Some("job"), json!({}), "succeed", "Succeeded", "Completed"),
        case(
            "csi-ok",
            "Backup",
            Some("csiSnapshot"),
            json!({ "pvc": "data" }),
            "snapshot-error-then-ready",
            "Succeeded",
            "Completed",
        ),
        case(
            "volsync-backup-ok",
            "Backup",
            Some("volSync"),
            json!({ "pvc": "data" }),
            "succeed",
            "Succeeded",
            "Completed",
        ),
        case(
            "volsync-restore-fail",
            "Restore",
            Some("volSync"),
            json!({ "pvc": "data" }),
            "fail",
            "Failed",
            "EngineFailed",
        ),
        case("upgrade-ok", "Upgrade", None, json!({ "version": "1.1.0" }), "succeed", "Succeeded", "Completed"),
        case("argo-dry-run", "Runbook", None, json!({}), "succeed", "Succeeded", "DryRun"),
        case("velero-dry-run", "Backup", Some("velero"), json!({}), "succeed", "Succeeded", "DryRun"),
    ];
    for c in cases.iter_mut() {
        if c.name.ends_with("dry-run") {
            c.extra = json!({ "dryRun": true });
            c.children = 0;
        }
    }
    // Deadline and cancel for every type and engine pair: a child that never finishes.
    let pairs: [(&'static str, &'static str, &'static str, serde_json::Value); 10] = [
        ("velero-backup", "Backup", "velero", json!({})),
        ("velero-restore", "Restore", "velero", json!({ "backupName": "b1" })),
        ("csi-backup", "Backup", "csiSnapshot", json!({ "pvc": "data" })),
        ("volsync-backup", "Backup", "volSync", json!({ "pvc": "data" })),
        ("volsync-restore", "Restore", "volSync", json!({ "pvc": "data" })),
        ("argo-runbook", "Runbook", "argoWorkflow", json!({})),
        ("argo-migration", "Migration", "argoWorkflow", json!({})),
        ("argo-command", "RunCommand", "argoWorkflow", json!({})),
        ("job-migration", "Migration", "job", json!({})),
        ("job-command", "RunCommand", "job", json!({})),
    ];
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut cancels = Vec::new();
    for (prefix, ty, engine, params) in &pairs {
        // Stopping deletes the child, except Argo's, which is shut down in place.
        let left = usize::from(*engine == "argoWorkflow");
        let name = leak(format!("{prefix}-deadline"));
        let mut d = case(name, ty, Some(engine), params.clone(), "never-finish", "Failed", "DeadlineExceeded");
        d.extra = json!({ "deadlineSeconds": 4 });
        d.children = left;
        cases.push(d);
        let name = leak(format!("{prefix}-cancel"));
        let mut c = case(name, ty, Some(engine), params.clone(), "never-finish", "Cancelled", "Cancelled");
        c.children = left;
        cancels.push(c);
    }
    // CSI: status.error is not terminal; only the deadline ends it.
    let pvc = json!({ "pvc": "data" });
    let mut csi_error =
        case("csi-error-deadline", "Backup", Some("csiSnapshot"), pvc, "fail", "Failed", "DeadlineExceeded");
    csi_error.extra = json!({ "deadlineSeconds": 4 });
    csi_error.children = 0;
    cases.push(csi_error);
    // RunCommand env values reach the Job, and never the journal.
    let env = json!({ "env": { "API_TOKEN": SECRET } });
    cases.push(case("job-command-env", "RunCommand", Some("job"), env, "succeed", "Succeeded", "Completed"));
    let mut upgrade_fail = case(
        "upgrade-fail-rollback",
        "Upgrade",
        None,
        json!({ "version": "2.0.0", "rollbackOnFailure": true }),
        "",
        "Failed",
        "EngineFailed",
    );
    upgrade_fail.children = 0;
    let mut upgrade_ok = cases.iter().position(|c| c.name == "upgrade-ok").map(|i| cases.remove(i)).unwrap();
    upgrade_ok.children = 0;

    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let journal = tempfile::tempdir().unwrap();
    let opts = support::operator_options(journal.path());
    let operator = tokio::spawn(run::run(client.clone(), opts));

    let op_json = |c: &Case, target: &str| {
        let mut spec = json!({ "type": c.ty, "target": { "name": target }, "parameters": c.params });
        if let Some(e) = c.engine {
            spec["engine"] = json!(e);
        }
        vworkspace_operator::harness::merge(&mut spec, &c.extra);
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": c.name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": c.scenario } }, "spec": spec })
    };
    for c in &cases {
        support::apply(&client, &support::ar::<Operation>(), Some(&ns), op_json(c, "shop")).await;
    }
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op_json(&upgrade_ok, "shop")).await;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op_json(&upgrade_fail, "broken")).await;
    // Cancel: one that never finishes per engine family, cancelled once it runs.
    for c in &cancels {
        support::apply(&client, &support::ar::<Operation>(), Some(&ns), op_json(c, "shop")).await;
    }
    // Upgrade: cancel and deadline while the rollout never becomes Ready; both restore the version.
    let mut upgrade_cancel =
        case("upgrade-cancel", "Upgrade", None, json!({ "version": "1.3.0" }), "", "Cancelled", "Cancelled");
    upgrade_cancel.children = 0;
    let rollback = json!({ "version": "1.3.0", "rollbackOnFailure": true });
    let mut upgrade_deadline = case("upgrade-deadline", "Upgrade", None, rollback, "", "Failed", "DeadlineExceeded");
    upgrade_deadline.extra = json!({ "deadlineSeconds": 4 });
    upgrade_deadline.children = 0;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op_json(&upgrade_cancel, "stuck-a")).await;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op_json(&upgrade_deadline, "stuck-b")).await;
    cancels.push(upgrade_cancel);
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let status = |name: String| {
        let ops = ops.clone();
        async move {
            let o = ops.get(&name).await.ok()?;
            let st = o.status?;
            let reason =
                st.conditions.iter().find(|c| c.type_ == "Succeeded").map(|c| c.reason.clone()).unwrap_or_default();
            Some((
                st.phase.map(|p| p.as_str().to_string()).unwrap_or_default(),
                reason,
                o.metadata.uid.unwrap_or_default(),
            ))
        }
    };
    for name in cancels.iter().map(|c| c.name) {
        for _ in 0..200 {
            if status(name.to_string()).await.is_some_and(|s| s.0 == "Running") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ops.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "cancel": true } }))).await.unwrap();
    }
    let mut expected: Vec<(String, &str, &str, usize)> =
        cases.iter().map(|c| (c.name.to_string(), c.phase, c.reason, c.children)).collect();
    expected.push(("upgrade-ok".into(), "Succeeded", "Completed", 0));
    expected.push(("upgrade-fail-rollback".into(), "Failed", "EngineFailed", 0));
    for c in cancels.iter().chain([&upgrade_deadline]) {
        expected.push((c.name.to_string(), c.phase, c.reason, c.children));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut pending = expected.clone();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for e in pending {
            match status(e.0.clone()).await {
                Some((phase, _, _)) if phase == e.1 => {}
                _ => still.push(e),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut failures = Vec::new();
    for (name, phase, reason, kids) in &expected {
        let Some((p, r, uid)) = status(name.clone()).await else {
            failures.push(format!("{name}: no status"));
            continue;
        };
        if (p.as_str(), r.as_str()) != (*phase, *reason) {
            failures.push(format!("{name}: {p}/{r}, expected {phase}/{reason}"));
        }
        let n = children(&client, &uid).await;
        if *kids != usize::MAX && n != *kids || n > 1 {
            failures.push(format!("{name}: {n} children, expected {kids}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), expected.len(), failures.join("\n"));
    // The failed upgrade was rolled back; the successful one moved the chart.
    let apps_api: Api<vworkspace_operator::api::ApplicationInstance> = Api::namespaced(client.clone(), &ns);
    assert_eq!(apps_api.get("broken").await.unwrap().spec.chart.version, "1.0.0", "rolled back");
    assert_eq!(apps_api.get("shop").await.unwrap().spec.chart.version, "1.1.0");
    assert_eq!(apps_api.get("stuck-a").await.unwrap().spec.chart.version, "1.0.0", "restored on cancel");
    assert_eq!(apps_api.get("stuck-b").await.unwrap().spec.chart.version, "1.0.0", "rolled back at the deadline");
    // Argo children are shut down in place, never left running.
    let wf: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(ChildKind::Workflow));
    for w in wf.list(&ListParams::default()).await.unwrap() {
        let name =
            w.metadata.labels.as_ref().and_then(|l| l.get("ops.vworkspace.io/operation")).cloned().unwrap_or_default();
        if name.ends_with("-cancel") || name.ends_with("-deadline") {
            assert_eq!(w.data.pointer("/spec/shutdown").and_then(|v| v.as_str()), Some("Terminate"), "{name}");
        }
    }
    // The env value reached the Job; the journal holds only its name.
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(ChildKind::Job));
    let job = jobs.list(&ListParams::default().labels("ops.vworkspace.io/operation=job-command-env")).await.unwrap();
    let env = job.items[0].data.pointer("/spec/template/spec/containers/0/env").cloned();
    assert_eq!(env, Some(json!([{ "name": "API_TOKEN", "value": SECRET }])));
    operator.abort();
    let _ = operator.await;
    sims.abort();
    apps.abort();
    let (j, _) = SledJournal::open(&journal.path().join("j")).unwrap();
    let mut records = 0;
    for e in j.read_from(0) {
        let e = e.unwrap();
        records += 1;
        assert!(
            !String::from_utf8_lossy(&e.body).contains(SECRET),
            "an env value in the journal at seq {}",
            e.header.seq
        );
    }
    assert!(records > 100, "the journal was read ({records} records)");
}
