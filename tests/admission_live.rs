//! The admission cap against the real API server: forty Operations listed at once, at most five
//! run at a time, the rest wait (the waiting gauge shows them), and every one still ends with
//! one Job. Its own test binary, so its own control plane: no other operator acts on these.

mod support;

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::{run, sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_operations_wait_and_everything_still_ends() {
    let client = support::client("admin").await;
    let ns = support::namespace("admission").await;
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
        max_active: Some(5),
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
    let waiting = &vworkspace_operator::metrics::get().operations_waiting;
    let mut most_waiting = 0;
    let operator = tokio::spawn(run::run(client.clone(), opts));
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    for n in &names {
        let mut phase = String::new();
        for _ in 0..600 {
            phase = support::phase(&api, n).await;
            most_waiting = most_waiting.max(waiting.get());
            if phase == "Succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(phase, "Succeeded", "{n} ends");
        let uid = api.get(n).await.unwrap().metadata.uid.unwrap();
        assert_eq!(support::count_children(&client, ChildKind::Job, &uid).await, 1, "{n}: exactly one Job");
    }
    assert!(most_waiting >= 20, "most of the forty waited for a slot (at most {most_waiting} seen waiting)");
    assert_eq!(waiting.get(), 0, "none waits at the end");
    operator.abort();
    sims.abort();
    apps.abort();
}
