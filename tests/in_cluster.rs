//! `vworkspace-operator run` as a pod runs it (`support::pod`): in-cluster configuration only,
//! with a token the real API server issued for the operator's ServiceAccount, so the operator
//! has exactly the chart's RBAC and nothing more.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::Api;
use serde_json::json;
use vworkspace_operator::api::Operation;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_from_in_cluster_configuration_with_its_own_rights() {
    let client = support::client("admin").await;
    let kubectl = |args: &[&str]| support::ok(&support::kubectl("admin", args, None));
    let pod = support::pod::PodEnv::new();

    let ns = support::namespace("incluster").await;
    support::job_engine(&client, &ns).await;
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let journal = dir.path().join("journal");
    let mut op = pod.spawn(
        "vworkspace-operator-0",
        &["--journal", journal.to_str().unwrap(), "--http-addr", "127.0.0.1:0"],
        &log,
    );

    support::apply(&client, &support::ar::<Operation>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": "pod-like", "namespace": ns }, "spec": { "type": "RunCommand", "target": { "name": "shop" } } })).await;
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(90);
    while support::phase(&ops, "pod-like").await != "Succeeded" {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(op.try_wait().unwrap().is_none(), "the operator stopped:\n{text}");
        assert!(Instant::now() < deadline, "never succeeded (is {}):\n{text}", support::phase(&ops, "pod-like").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("leading identity=vworkspace-operator-0"), "the Lease, as the pod:\n{text}");
    assert!(!text.contains("Forbidden"), "its own rights sufficed:\n{text}");
    // The child was written by the ServiceAccount, not by the admin of the test.
    let uid = ops.get("pod-like").await.unwrap().metadata.uid.unwrap();
    assert_eq!(support::count_children(&client, ChildKind::Job, &uid).await, 1);
    let who = kubectl(&[
        "get",
        "jobs",
        "-n",
        &ns,
        "-l",
        &format!("ops.vworkspace.io/operation-uid={uid}"),
        "-o",
        "jsonpath={.items[0].metadata.managedFields[*].manager}",
    ]);
    assert!(who.split(' ').any(|m| m == "vworkspace-operator"), "managers: {who}");
    let holder = kubectl(&[
        "get",
        "lease",
        "vworkspace-operator",
        "-n",
        "vworkspace-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "vworkspace-operator-0", "the Lease, taken with the ServiceAccount's token");
    // And nothing more: the same token cannot, for one, create Pods.
    let can = Command::new("kubectl")
        .args(["--server", &format!("https://{}:{}", pod.host, pod.port)])
        .args(["--certificate-authority", pod.ca().to_str().unwrap(), "--token", &pod.token])
        .args(["auth", "can-i", "create", "pods", "-n", &ns])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    op.kill().unwrap();
    let _ = op.wait();
    sims.abort();
    apps.abort();
}
