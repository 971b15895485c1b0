//! Backpressure against the real API server: with a small effector queue bound, the Operation
//! watch pauses while commands wait, and every Operation still ends, with one Job each. Its own
//! test binary, so its own control plane: no other operator acts on these Operations.

mod support;

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::{run, sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_effector_queue_pauses_the_operation_watch_and_everything_still_ends() {
    let client = support::client("admin").await;
    let ns = support::namespace("pressure").await;
    // Not exclusive: all forty start together, so their commands pile up.
    let template = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
        "metadata": { "name": format!("job-{ns}") },
        "spec": { "types": ["RunCommand"], "engine": "job", "namespaces": [ns], "job": { "image": "busybox:1.36" },
                  "preconditions": { "exclusive": false } } });
    support::apply(&client, &support::ar::<OperationTemplate>(), None, template).await;
    let app = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } });
    support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), app).await;
    let journal = tempfile::tempdir().unwrap();
    let opts = run::Options {
        limits: vworkspace_operator::dispatch::Limits {
            concurrency: 2,
            rate_per_sec: 200,
            burst: 10,
            ..Default::default()
        },
        bounds: vworkspace_operator::pressure::Bounds { commands: 6, records: 2_048 },
        ..support::operator_options(journal.path())
    };
    let sims = tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(100), instant: true }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let names: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    // Submitted before the operator starts: its first list brings all forty at once.
    for n in &names {
        let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": n, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "succeed" } },
            "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
        support::apply(&client, &support::ar::<Operation>(), Some(&ns), op).await;
    }
    let paused = vworkspace_operator::metrics::get().ingest_paused.get();
    let operator = tokio::spawn(run::run(client.clone(), opts));
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    for n in &names {
        let mut phase = String::new();
        for _ in 0..600 {
            phase = support::phase(&api, n).await;
            if phase == "Succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(phase, "Succeeded", "{n} ends");
        let uid = api.get(n).await.unwrap().metadata.uid.unwrap();
        assert_eq!(support::count_children(&client, ChildKind::Job, &uid).await, 1, "{n}: exactly one Job");
    }
    let now = vworkspace_operator::metrics::get().ingest_paused.get();
    assert!(now > paused, "the Operation watch paused at least once ({paused} → {now})");
    operator.abort();
    sims.abort();
    apps.abort();
}
