//! Scenario 4: Conflicts and foreign writes: another writer on Operation status, children edited and
//! deleted by hand, and a child's name taken by an object this Operation does not own.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use vworkspace_operator::api::Operation;
use vworkspace_operator::engine::naming;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::controller::api_resource;

use crate::load::Planned;
use crate::{Rig, iterations, load, operator, row};

async fn uid(api: &Api<Operation>, name: &str) -> String {
    api.get(name).await.unwrap().metadata.uid.unwrap()
}

/// Jobs of an Operation, by its UID label.
async fn jobs(client: &kube::Client, ns: &str, uid: &str) -> Vec<DynamicObject> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource(ChildKind::Job));
    api.list(&kube::api::ListParams::default().labels(&format!("ops.vworkspace.io/operation-uid={uid}")))
        .await
        .unwrap()
        .items
}

async fn wait_for_job(client: &kube::Client, ns: &str, uid: &str) -> DynamicObject {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(j) = jobs(client, ns, uid).await.into_iter().next() {
            return j;
        }
        assert!(Instant::now() < deadline, "no Job for {uid}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A RunCommand whose simulated Job never finishes on its own.
async fn lingering(client: &kube::Client, ns: &str, name: &str) {
    let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "never-finish" } },
        "spec": { "type": "RunCommand", "engine": "job", "target": { "name": "shop" } } });
    crate::support::apply(client, &crate::support::ar::<Operation>(), Some(ns), op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_writers_and_hand_edits() {
    let _turn = super::turn().await;
    let (rig, mut op) = Rig::single("foreign", &[]).await;
    let (client, ns, journal) = (rig.cluster.client.clone(), rig.ns.clone(), op.journal.clone());
    // Its HTTP port taken between being picked and being bound (as a CI run once saw of the
    // control plane's): the harness starts it again on another.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    op.kill();
    op.start_on(taken.local_addr().unwrap());
    assert!(op.ready(Duration::from_secs(60)).await, "{}", op.log_tail(30));
    assert_ne!(op.http, taken.local_addr().unwrap(), "ready on a port another process holds");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(vworkspace_operator::cluster::port_taken(&log), "{}", op.log_tail(30));
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let rounds = iterations(1, 5);
    let mut planned = Vec::new();
    let mut faults = 0;

    // (a) Another writer on the status of every Operation while the load runs.
    let writer = {
        let (ops, stop) = (ops.clone(), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
        let s = stop.clone();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = n.clone();
        let task = tokio::spawn(async move {
            let pp = PatchParams::apply("intruder").force();
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                for o in ops.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
                    let name = o.metadata.name.unwrap_or_default();
                    let patch = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
                        "status": { "outputs": { "intruder": "was here" } } });
                    if ops.patch_status(&name, &pp, &Patch::Apply(&patch)).await.is_ok() {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        (task, stop, n)
    };
    for i in 0..rounds {
        planned.extend(load::submit(&client, &ns, &format!("w{i}"), 14).await);
    }

    for i in 0..rounds {
        // (b) A child edited by hand: labels and spec it does not read; the Operation goes on.
        let edited = format!("edited{i}");
        lingering(&client, &ns, &edited).await;
        let job = wait_for_job(&client, &ns, &uid(&ops, &edited).await).await;
        let jobs_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(ChildKind::Job));
        let job_name = job.metadata.name.clone().unwrap();
        jobs_api
            .patch(
                &job_name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({ "metadata": { "labels": { "edited-by": "hand" }, "annotations": { "note": "x" } } }),
                ),
            )
            .await
            .unwrap();
        faults += 1;
        // (c) ...then deleted by hand while active: the Operation fails with ChildLost.
        tokio::time::sleep(Duration::from_secs(1)).await;
        // As `kubectl delete job` does. (The API's default for Jobs orphans, through a finalizer
        // that only kube-controller-manager's garbage collector removes, and it does not run here.)
        jobs_api.delete(&job_name, &kube::api::DeleteParams::background()).await.unwrap();
        faults += 1;
        planned.push(Planned { name: edited, expect: "Failed" });

        // (d) The child's name taken first by an object this Operation does not own. The target
        // is not Ready yet, so the name is known before the operator tries it.
        let target = format!("late{i}");
        crate::support::apply(&client, &crate::support::ar::<vworkspace_operator::api::ApplicationInstance>(), Some(&ns),
            json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
                "metadata": { "name": target, "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job", "sim.vworkspace.io/scenario": "never-ready" } },
                "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })).await;
        let taken = format!("taken{i}");
        crate::support::apply(&client, &crate::support::ar::<Operation>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": taken, "namespace": ns }, "spec": { "type": "RunCommand", "engine": "job", "target": { "name": target } } })).await;
        let name = naming::child_name(&taken, &uid(&ops, &taken).await, 0);
        let squatter: DynamicObject = serde_json::from_value(json!({ "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": name, "namespace": ns, "labels": { "owner": "someone-else" } },
            "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox:1.36" }] } } } }))
        .unwrap();
        jobs_api.create(&PostParams::default(), &squatter).await.unwrap();
        faults += 1;
        planned.push(Planned { name: taken.clone(), expect: "Failed" });
        ready(&client, &ns, &target).await;
    }
    let report = rig.settle(&planned, Duration::from_secs(180)).await;
    writer.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = writer.0.await;
    let foreign_writes = writer.2.load(std::sync::atomic::Ordering::SeqCst);
    // The squatters are untouched: never overwritten, never deleted.
    let jobs_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(ChildKind::Job));
    let squatters = jobs_api.list(&kube::api::ListParams::default().labels("owner=someone-else")).await.unwrap().items;
    let reasons: Vec<String> =
        futures::future::join_all((0..rounds).flat_map(|i| [format!("edited{i}"), format!("taken{i}")]).map(|n| {
            let ops = ops.clone();
            async move {
                let o = ops.get(&n).await.unwrap();
                let r = o
                    .status
                    .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Succeeded"))
                    .map(|c| c.reason)
                    .unwrap_or_default();
                format!("{n}={r}")
            }
        }))
        .await;
    op.kill();
    let (code, out) = operator::verify(&journal);
    row(
        "conflicts",
        rounds,
        faults,
        &report,
        &format!("foreign_status_writes={foreign_writes} reasons={reasons:?} journal_verify={code}"),
    );
    report.assert_clean(&op.log_tail(40));
    assert_eq!(squatters.len(), rounds, "a squatter was deleted");
    for s in &squatters {
        assert!(
            !s.metadata.labels.as_ref().unwrap().contains_key("ops.vworkspace.io/operation-uid"),
            "a squatter was overwritten"
        );
    }
    for r in &reasons {
        assert!(r.ends_with("=ChildLost") || r.ends_with("=Rejected"), "{reasons:?}");
    }
    assert!(foreign_writes > 0);
    assert_eq!(code, 0, "{out}");
}

/// Marks a target Ready by hand (the app simulator skips `never-ready` ones).
async fn ready(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<vworkspace_operator::api::ApplicationInstance> = Api::namespaced(client.clone(), ns);
    let status = json!({ "status": { "observedGeneration": 1, "conditions": [{ "type": "Ready", "status": "True", "reason": "Simulated",
        "message": "ready", "lastTransitionTime": "2026-01-01T00:00:00Z" }] } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}
