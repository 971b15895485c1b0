//! Preconditions on the real API server: a target that becomes Ready, two Operations queued on
//! one target (the second Blocked with its queue position), and a Secret created later. None of
//! them is resubmitted.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use vworkspace_operator::api::{ApplicationInstance, Operation};
use vworkspace_operator::{run, sim};

async fn status(ops: &Api<Operation>, name: &str) -> (String, String, Option<u32>) {
    let st = ops.get(name).await.ok().and_then(|o| o.status).unwrap_or_default();
    let pre =
        st.conditions.iter().find(|c| c.type_ == "PreconditionsMet").map(|c| c.reason.clone()).unwrap_or_default();
    (st.phase.map(|p| p.as_str().to_string()).unwrap_or_default(), pre, st.queue_position)
}

async fn wait_for(
    ops: &Api<Operation>,
    name: &str,
    phase: &str,
    reason: Option<&str>,
) -> (String, String, Option<u32>) {
    for _ in 0..300 {
        let s = status(ops, name).await;
        if s.0 == phase && reason.is_none_or(|r| s.1 == r) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never reached {phase}/{reason:?}: {:?}", status(ops, name).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_operations_start_when_their_preconditions_hold() {
    let client = support::client("admin").await;
    let ns = support::namespace("pre").await;
    support::apply(&client, &support::ar::<vworkspace_operator::api::OperationTemplate>(), None, json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
        "metadata": { "name": format!("job-{ns}") }, "spec": { "types": ["RunCommand"], "engine": "job", "namespaces": [ns], "job": { "image": "busybox:1.36" } } })).await;
    support::apply(&client, &support::ar::<vworkspace_operator::api::OperationTemplate>(), None, json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
        "metadata": { "name": format!("secret-{ns}") }, "spec": { "types": ["RunCommand"], "engine": "job", "namespaces": [ns], "job": { "image": "busybox:1.36" },
            "preconditions": { "requiredSecrets": ["db-credentials"], "exclusive": false } } })).await;
    for app in ["shop", "ledger"] {
        support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
            "metadata": { "name": app, "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job" } }, "spec": { "chart": { "name": app, "version": "1.0.0" } } })).await;
    }
    // No app simulator yet: the targets report no Ready condition.
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(300), instant: false }));
    let journal = tempfile::tempdir().unwrap();
    let opts = support::operator_options(journal.path());
    let operator = tokio::spawn(run::run(client.clone(), opts));
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let op = |name: &str, target: &str, template: &str, scenario: &str| {
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": scenario } },
        "spec": { "type": "RunCommand", "target": { "name": target }, "template": format!("{template}-{ns}") } })
    };
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("first", "shop", "job", "slow")).await;
    wait_for(&ops, "first", "Blocked", Some("TargetNotReady")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("second", "shop", "job", "succeed")).await;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("needs-secret", "ledger", "secret", "succeed"))
        .await;

    // The targets become Ready (the rollout simulator stands in for Flux).
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    wait_for(&ops, "first", "Running", None).await;
    let (_, reason, position) = wait_for(&ops, "second", "Blocked", Some("ConflictingOperation")).await;
    assert_eq!((reason.as_str(), position), ("ConflictingOperation", Some(1)), "queued behind the first");
    let (_, reason, _) = wait_for(&ops, "needs-secret", "Blocked", Some("MissingSecret")).await;
    assert_eq!(reason, "MissingSecret");
    wait_for(&ops, "first", "Succeeded", None).await;
    wait_for(&ops, "second", "Succeeded", None).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let s: Secret =
        serde_json::from_value(json!({ "metadata": { "name": "db-credentials" }, "stringData": { "password": "x" } }))
            .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    wait_for(&ops, "needs-secret", "Succeeded", None).await;
    operator.abort();
    sims.abort();
    apps.abort();
}
