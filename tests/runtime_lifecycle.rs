//! Lifecycle on the real API server: Velero children are cleaned up through the finalizer when
//! the Operation is deleted; hook Jobs come from the release record a real `helm install
//! --no-hooks` wrote; and an operator whose journal is lost converges from the cluster alone.

mod support;

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use vworkspace_journal::{Journal, SledJournal};
use vworkspace_operator::api::Operation;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::controller::api_resource;
use vworkspace_operator::{run, sim};

async fn wait_until<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn count(client: &kube::Client, kind: ChildKind, uid: &str) -> usize {
    support::count_children(client, kind, uid).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_cleanup_real_helm_hooks_and_lost_journal() {
    let client = support::client("admin").await;
    let ns = support::namespace("life").await;
    let velero_ns = support::namespace("velero").await;
    for (name, spec) in [
        ("velero", json!({ "types": ["Backup"], "engine": "velero", "velero": { "namespace": velero_ns } })),
        (
            "hooks",
            json!({ "types": ["Migration"], "engine": "helmHookJob", "helmHook": { "event": "pre-upgrade" }, "rbac": { "serviceAccountName": "migrator" } }),
        ),
    ] {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": false });
        support::apply(&client, &support::ar::<vworkspace_operator::api::OperationTemplate>(), None,
            json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("{name}-{ns}") }, "spec": spec })).await;
    }
    support::apply(&client, &support::ar::<vworkspace_operator::api::ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "hooked", "namespace": ns, "annotations": { "ops.vworkspace.io/backup": "velero", "ops.vworkspace.io/migration": "helmHookJob" } },
        "spec": { "chart": { "name": "hooked", "version": "0.1.0" } } })).await;
    // The real Helm writes the release record; hooks are recorded, not run.
    let built = Command::new("bash").arg(support::repo().join("tests/tools/build.sh")).arg("helm").output().unwrap();
    let helm = String::from_utf8_lossy(&built.stdout).lines().last().unwrap().trim().to_string();
    let out = Command::new(&helm)
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .args(["--kube-context", "admin", "install", "hooked"])
        .arg(support::repo().join("tests/charts/hooked"))
        .args(["--namespace", &ns, "--no-hooks"])
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("vw-helm-cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("vw-helm-config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "helm install: {}", String::from_utf8_lossy(&out.stderr));

    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let journal = tempfile::tempdir().unwrap();
    let opts = support::operator_options(journal.path());
    let operator = tokio::spawn(run::run(client.clone(), opts.clone()));
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let op = |name: &str, ty: &str, scenario: &str| {
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": scenario } },
        "spec": { "type": ty, "target": { "name": "hooked" } } })
    };

    // Helm hook Jobs from the real release record, in weight order (db-check -1, db-migrate 5).
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("migrate", "Migration", "succeed")).await;
    wait_until("the migration", async || support::phase(&ops, "migrate").await == "Succeeded").await;
    let st = ops.get("migrate").await.unwrap().status.unwrap();
    assert_eq!(st.outputs.get("hooks").map(String::as_str), Some("2"));
    assert_eq!(st.outputs.get("helmReleaseRecord").map(String::as_str), Some("sh.helm.release.v1.hooked.v1"));
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(ChildKind::Job));
    let mut hooks: Vec<(String, String)> = jobs
        .list(&ListParams::default().labels("ops.vworkspace.io/operation=migrate"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| {
            (
                j.metadata.labels.as_ref().unwrap()["ops.vworkspace.io/step"].clone(),
                j.metadata.annotations.as_ref().unwrap()["ops.vworkspace.io/helm-hook"].clone(),
            )
        })
        .collect();
    hooks.sort();
    assert_eq!(
        hooks,
        [("0".to_string(), "hooked-db-check".to_string()), ("1".to_string(), "hooked-db-migrate".to_string())]
    );
    // The hook's env value came from the release record at create time; the journal has none.
    let migrate = jobs
        .list(&ListParams::default().labels("ops.vworkspace.io/operation=migrate,ops.vworkspace.io/step=1"))
        .await
        .unwrap();
    let env = migrate.items[0].data.pointer("/spec/template/spec/containers/0/env").cloned();
    assert_eq!(env, Some(json!([{ "name": "MIGRATION_TOKEN", "value": HOOK_ENV }])));

    // Hook Jobs are stopped (deleted) on cancel and at the deadline.
    let mut stuck = op("hook-deadline", "Migration", "never-finish");
    stuck["spec"]["deadlineSeconds"] = json!(4);
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), stuck).await;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("hook-cancel", "Migration", "never-finish"))
        .await;
    wait_until("the hook Job to run", async || support::phase(&ops, "hook-cancel").await == "Running").await;
    ops.patch("hook-cancel", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "cancel": true } })))
        .await
        .unwrap();
    for (name, phase, reason) in
        [("hook-cancel", "Cancelled", "Cancelled"), ("hook-deadline", "Failed", "DeadlineExceeded")]
    {
        wait_until(name, async || support::phase(&ops, name).await == phase).await;
        let o = ops.get(name).await.unwrap();
        let st = o.status.unwrap();
        assert_eq!(st.conditions.iter().find(|c| c.type_ == "Succeeded").unwrap().reason, reason);
        assert_eq!(count(&client, ChildKind::Job, &o.metadata.uid.unwrap()).await, 0, "{name}: the Job was deleted");
    }

    // A Velero child in Velero's namespace is removed through the finalizer on deletion.
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("backup", "Backup", "slow")).await;
    wait_until("the backup to run", async || support::phase(&ops, "backup").await == "Running").await;
    let uid = ops.get("backup").await.unwrap().metadata.uid.unwrap();
    assert_eq!(count(&client, ChildKind::VeleroBackup, &uid).await, 1);
    assert!(
        ops.get("backup")
            .await
            .unwrap()
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"ops.vworkspace.io/cleanup".to_string())
    );
    ops.delete("backup", &DeleteParams::default()).await.unwrap();
    wait_until("the Operation to be gone", async || ops.get_opt("backup").await.unwrap().is_none()).await;
    assert_eq!(count(&client, ChildKind::VeleroBackup, &uid).await, 0, "the Velero Backup was cleaned up");

    // The journal is lost: a new operator converges from the cluster alone, without duplicates.
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("late", "Backup", "slow")).await;
    wait_until("the second backup to run", async || support::phase(&ops, "late").await == "Running").await;
    operator.abort();
    let _ = operator.await;
    let fresh = tempfile::tempdir().unwrap();
    let opts = run::Options { journal: Some(fresh.path().join("j")), ..opts };
    let operator = tokio::spawn(run::run(client.clone(), opts));
    wait_until("the second backup to finish", async || support::phase(&ops, "late").await == "Succeeded").await;
    let late_uid = ops.get("late").await.unwrap().metadata.uid.unwrap();
    assert_eq!(count(&client, ChildKind::VeleroBackup, &late_uid).await, 1, "no duplicate after losing the journal");
    assert_eq!(support::phase(&ops, "migrate").await, "Succeeded", "terminal outcomes stand");
    operator.abort();
    let _ = operator.await;
    sims.abort();
    apps.abort();
    for dir in [journal.path().join("j"), fresh.path().join("j")] {
        let (j, _) = SledJournal::open(&dir).unwrap();
        for e in j.read_from(0) {
            let e = e.unwrap();
            assert!(
                !String::from_utf8_lossy(&e.body).contains(HOOK_ENV),
                "hook env in the journal at {}",
                e.header.seq
            );
        }
    }
}

const HOOK_ENV: &str = "chart-env-value-42";
