//! SIGKILL the operator process mid-flight, for every engine, then start it again on the same
//! journal: every Operation reaches its outcome and no child is created twice.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim;

fn operator(journal: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["run", "--no-leader-elect", "--http-addr", "127.0.0.1:0", "--journal"])
        .arg(journal)
        .env("KUBECONFIG", support::kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap()))
        .spawn()
        .expect("start the operator binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flight_for_every_engine() {
    let client = support::client("admin").await;
    let ns = support::namespace("kill").await;
    let velero_ns = support::namespace("velero").await;
    let templates = [
        ("velero", json!({ "types": ["Backup"], "engine": "velero", "velero": { "namespace": velero_ns } })),
        ("argo", json!({ "types": ["Runbook"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "t" } })),
        ("job", json!({ "types": ["RunCommand"], "engine": "job", "job": { "image": "busybox:1.36" } })),
        ("volsync", json!({ "types": ["Restore"], "engine": "volSync" })),
    ];
    for (name, spec) in templates {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": false });
        support::apply(&client, &support::ar::<OperationTemplate>(), None,
            json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("{name}-{ns}") }, "spec": spec })).await;
    }
    support::apply(&client, &support::ar::<OperationTemplate>(), None, json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
        "metadata": { "name": format!("snap-{ns}") }, "spec": { "types": ["Backup"], "engine": "csiSnapshot", "namespaces": [ns], "preconditions": { "exclusive": false } } })).await;
    support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/backup": "velero,csiSnapshot", "ops.vworkspace.io/runbook": "argoWorkflow",
            "ops.vworkspace.io/run-command": "job", "ops.vworkspace.io/restore": "volSync" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })).await;
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(400), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let dir = tempfile::tempdir().unwrap();
    let (journal, log) = (dir.path().join("journal"), dir.path().join("operator.log"));
    let cases = [
        ("k-velero", "Backup", Some("velero"), json!({}), ChildKind::VeleroBackup),
        ("k-argo", "Runbook", None, json!({}), ChildKind::Workflow),
        ("k-job", "RunCommand", None, json!({}), ChildKind::Job),
        ("k-snap", "Backup", Some("csiSnapshot"), json!({ "pvc": "data" }), ChildKind::VolumeSnapshot),
        ("k-volsync", "Restore", Some("volSync"), json!({ "pvc": "data" }), ChildKind::ReplicationDestination),
    ];
    let mut op = operator(&journal, &log);
    for (name, ty, engine, params, _) in &cases {
        let mut spec = json!({ "type": ty, "target": { "name": "shop" }, "parameters": params });
        if let Some(e) = engine {
            spec["engine"] = json!(e);
        }
        support::apply(&client, &support::ar::<Operation>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "slow" } }, "spec": spec })).await;
    }
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    // Kill while at least one is Running and none has finished, then twice more while they run.
    for round in 0..3 {
        for _ in 0..300 {
            let mut running = 0;
            for (name, ..) in &cases {
                if support::phase(&ops, name).await == "Running" {
                    running += 1;
                }
            }
            if running >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(150 * round)).await;
        op.kill().unwrap(); // SIGKILL
        op.wait().unwrap();
        op = operator(&journal, &log);
    }
    for (name, ..) in &cases {
        for _ in 0..400 {
            if support::phase(&ops, name).await == "Succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut failures = Vec::new();
    for (name, _, _, _, kind) in &cases {
        let phase = support::phase(&ops, name).await;
        let uid = ops.get(name).await.unwrap().metadata.uid.unwrap();
        let n = support::count_children(&client, *kind, &uid).await;
        if phase != "Succeeded" || n != 1 {
            failures.push(format!("{name}: phase {phase}, {n} children"));
        }
    }
    op.kill().unwrap();
    let _ = op.wait();
    sims.abort();
    apps.abort();
    assert!(
        failures.is_empty(),
        "{failures:?}\noperator log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default().lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
}

/// The operator as a pod runs it: with leader election on a Lease of its own.
fn elected(journal: &std::path::Path, log: &std::path::Path, lease: &str, identity: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["run", "--lease", lease, "--http-addr", "127.0.0.1:0", "--journal"])
        .arg(journal)
        .env("KUBECONFIG", support::kubeconfig())
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", "default")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap()))
        .spawn()
        .expect("start the operator binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_makes_the_journal_clean_and_hands_the_lease_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let client = support::client("admin").await;
    let ns = support::namespace("term").await;
    support::job_engine(&client, &ns).await;
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(300), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let dir = tempfile::tempdir().unwrap();
    let (journal, log) = (dir.path().join("journal"), dir.path().join("operator.log"));
    let lease = format!("lease-{ns}");
    let mut first = elected(&journal, &log, &lease, "pod-a");
    let names: Vec<String> = (0..8).map(|i| format!("t-{i}")).collect();
    for n in &names {
        support::apply(
            &client,
            &support::ar::<Operation>(),
            Some(&ns),
            json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": n, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "slow" } },
            "spec": { "type": "RunCommand", "target": { "name": "shop" } } }),
        )
        .await;
    }
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while support::phase(&ops, &names[0]).await != "Running" {
        assert!(std::time::Instant::now() < deadline, "never running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM under load: the process drains and exits by itself, successfully.
    let pid = first.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(30), "did not stop within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status}:\n{text}");
    for line in ["shutting down: draining the effector", "snapshot written", "lease released", "stopped"] {
        assert!(text.contains(line), "log says {line:?}:\n{text}");
    }
    // The journal is clean, and the Lease has no holder.
    let verify = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["journal", "verify"])
        .arg(&journal)
        .output()
        .unwrap();
    assert!(verify.status.success(), "journal verify: {}", String::from_utf8_lossy(&verify.stdout));
    let held: Lease = Api::namespaced(client.clone(), "default").get(&lease).await.unwrap();
    assert_eq!(held.spec.as_ref().and_then(|s| s.holder_identity.clone()), None, "released");
    let epoch = held.spec.and_then(|s| s.lease_transitions).unwrap_or(0);
    // The replacement (same journal, another pod name) takes over without waiting out the lease.
    let mut second = elected(&journal, &log, &lease, "pod-b");
    let took = std::time::Instant::now();
    loop {
        let l: Lease = Api::namespaced(client.clone(), "default").get(&lease).await.unwrap();
        if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some("pod-b") {
            assert_eq!(l.spec.and_then(|s| s.lease_transitions), Some(epoch + 1), "a new term");
            break;
        }
        assert!(
            took.elapsed() < Duration::from_secs(10),
            "the replacement did not take the lease: {l:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default().lines().rev().take(15).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in &names {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while support::phase(&ops, n).await != "Succeeded" {
            assert!(std::time::Instant::now() < deadline, "{n} never finished (is {})", support::phase(&ops, n).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let uid = ops.get(n).await.unwrap().metadata.uid.unwrap();
        assert_eq!(support::count_children(&client, ChildKind::Job, &uid).await, 1, "{n}: one child");
    }
    second.kill().unwrap();
    let _ = second.wait();
    sims.abort();
    apps.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_is_reported_and_does_not_stop_the_operator() {
    use vworkspace_journal::{Journal, SledJournal};
    let _client = support::client("admin").await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, log) = (dir.path().join("journal"), dir.path().join("operator.log"));
    {
        // What an older build wrote: a snapshot that is not a folded state.
        let (j, _) = SledJournal::open(&journal).unwrap();
        j.write_snapshot(0, b"null").unwrap();
        j.durable().unwrap();
    }
    SledJournal::close(&journal);
    let mut op = operator(&journal, &log);
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("state restored") {
            assert!(text.contains("snapshot ignored"), "{text}");
            break;
        }
        assert!(op.try_wait().unwrap().is_none(), "the operator stopped:\n{text}");
        assert!(started.elapsed() < Duration::from_secs(30), "not restored:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(op.try_wait().unwrap().is_none(), "still running");
    op.kill().unwrap();
    let _ = op.wait();
}
