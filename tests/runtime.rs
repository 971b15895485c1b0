//! The runtime against the real API server with the engine simulators: watch → journal → fold →
//! effector end to end, `kubectl wait` and Events, and a restart mid-flight without duplicates.

mod support;

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use vworkspace_operator::api::Operation;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::{run, sim};

async fn setup(client: &kube::Client, ns: &str) {
    let template = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
        "metadata": { "name": format!("job-{ns}") },
        "spec": { "types": ["RunCommand"], "engine": "job", "namespaces": [ns], "job": { "image": "busybox:1.36" } } });
    support::apply(client, &support::ar::<vworkspace_operator::api::OperationTemplate>(), None, template).await;
    let app = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } });
    support::apply(client, &support::ar::<vworkspace_operator::api::ApplicationInstance>(), Some(ns), app).await;
}

async fn submit(client: &kube::Client, ns: &str, name: &str, scenario: &str) {
    let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": scenario } },
        "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
    support::apply(client, &support::ar::<Operation>(), Some(ns), op).await;
}

async fn phase(client: &kube::Client, ns: &str, name: &str) -> String {
    support::phase(&Api::namespaced(client.clone(), ns), name).await
}

async fn wait_phase(client: &kube::Client, ns: &str, name: &str, want: &str) {
    for _ in 0..300 {
        if phase(client, ns, name).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{ns}/{name} never reached {want} (is {})", phase(client, ns, name).await);
}

async fn jobs_of(client: &kube::Client, _ns: &str, uid: &str) -> usize {
    support::count_children(client, ChildKind::Job, uid).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_run_end_to_end_and_survive_a_restart() {
    let client = support::client("admin").await;
    let ns = support::namespace("runtime").await;
    setup(&client, &ns).await;
    let journal = tempfile::tempdir().unwrap();
    let opts = support::operator_options(journal.path());
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let operator = tokio::spawn(run::run(client.clone(), opts.clone()));

    // Success and failure, read the way users read them.
    submit(&client, &ns, "ok", "succeed").await;
    submit(&client, &ns, "bad", "fail").await;
    let kc = support::kubeconfig().to_str().unwrap().to_string();
    let wait = |cond: &'static str, name: &'static str| {
        let (kc, ns) = (kc.clone(), ns.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .args([
                    "--kubeconfig",
                    &kc,
                    "-n",
                    &ns,
                    "wait",
                    &format!("--for=condition={cond}"),
                    &format!("operation/{name}"),
                    "--timeout=60s",
                ])
                .output()
                .unwrap()
        })
    };
    let out = wait("Succeeded", "ok").await.unwrap();
    assert!(out.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&out.stderr));
    let out = wait("Succeeded=false", "bad").await.unwrap();
    assert!(out.status.success(), "kubectl wait =false: {}", String::from_utf8_lossy(&out.stderr));
    let describe = support::ok(&support::kubectl("admin", &["-n", &ns, "describe", "operation", "ok"], None));
    // ChildCreated only when the create's answer comes before the Job's first watch event;
    // otherwise the Job's own progress is the first word (fold::outcome::create).
    for reason in ["Valid", "Met", "Completed"] {
        assert!(describe.contains(reason), "describe shows the {reason} Event:\n{describe}");
    }
    let ok_op: Operation = Api::namespaced(client.clone(), &ns).get("ok").await.unwrap();
    let st = ok_op.status.unwrap();
    assert_eq!(st.children.len(), 1);
    assert_eq!(st.outputs.get("exitCode").map(String::as_str), Some("0"));
    assert_eq!(st.engine.as_ref().unwrap().name, "job");
    let bad_op: Operation = Api::namespaced(client.clone(), &ns).get("bad").await.unwrap();
    let reason = bad_op.status.unwrap().conditions.iter().find(|c| c.type_ == "Succeeded").unwrap().reason.clone();
    assert_eq!(reason, "BackoffLimitExceeded");

    // Restart mid-flight: a slow Operation is running when the operator stops.
    submit(&client, &ns, "slow", "slow").await;
    wait_phase(&client, &ns, "slow", "Running").await;
    operator.abort();
    let _ = operator.await;
    let uid = Api::<Operation>::namespaced(client.clone(), &ns).get("slow").await.unwrap().metadata.uid.unwrap();
    let operator = tokio::spawn(run::run(client.clone(), opts));
    wait_phase(&client, &ns, "slow", "Succeeded").await;
    assert_eq!(jobs_of(&client, &ns, &uid).await, 1, "no child is created twice across the restart");
    let ok_uid = Api::<Operation>::namespaced(client.clone(), &ns).get("ok").await.unwrap().metadata.uid.unwrap();
    assert_eq!(jobs_of(&client, &ns, &ok_uid).await, 1);
    assert_eq!(phase(&client, &ns, "ok").await, "Succeeded", "a terminal outcome never changes across a restart");
    operator.abort();
    sims.abort();
    apps.abort();
}
