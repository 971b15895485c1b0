//! `vworkspace-operator run` as a pod runs it: in-cluster configuration only (the
//! ServiceAccount token and CA files at their fixed paths, `KUBERNETES_SERVICE_HOST`/`PORT`),
//! with a token the real API server issued for the operator's ServiceAccount, so the operator
//! has exactly the chart's RBAC and nothing more. The files are mounted in a private mount
//! namespace (`unshare -m`, a tmpfs over /run), so the machine's own /run is untouched.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::api::Api;
use serde_json::json;
use vworkspace_operator::api::Operation;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_from_in_cluster_configuration_with_its_own_rights() {
    let client = support::client("admin").await;
    let kc = support::kubeconfig().to_str().unwrap().to_string();
    let kubectl = |args: &[&str]| support::ok(&support::kubectl("admin", args, None));
    support::install_manifests();
    let token = kubectl(&["create", "token", "vworkspace-operator", "-n", "vworkspace-system", "--duration", "1h"]);

    // The pod's view: token, CA and namespace files; the API server's address in the environment.
    let conf = kube::config::Kubeconfig::read_from(&kc).unwrap();
    let cluster = conf.clusters[0].cluster.clone().unwrap();
    let ca = base64::engine::general_purpose::STANDARD.decode(cluster.certificate_authority_data.unwrap()).unwrap();
    let url: hyper::Uri = cluster.server.unwrap().parse().unwrap();
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), token.trim()).unwrap();
    std::fs::write(sa.path().join("ca.crt"), ca).unwrap();
    std::fs::write(sa.path().join("namespace"), "vworkspace-system").unwrap();

    let ns = support::namespace("incluster").await;
    support::job_engine(&client, &ns).await;
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
         cp {sa}/token {sa}/ca.crt {sa}/namespace /run/secrets/kubernetes.io/serviceaccount/ && \
         exec {bin} run --journal {journal} --http-addr 127.0.0.1:0",
        sa = sa.path().display(),
        bin = env!("CARGO_BIN_EXE_vworkspace-operator"),
        journal = dir.path().join("journal").display(),
    );
    let mut op = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBERNETES_SERVICE_HOST", url.host().unwrap())
        .env("KUBERNETES_SERVICE_PORT", url.port_u16().unwrap().to_string())
        .env("POD_NAME", "vworkspace-operator-0")
        .env("POD_NAMESPACE", "vworkspace-system")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("unshare");

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
        .args(["--server", &format!("https://{}:{}", url.host().unwrap(), url.port_u16().unwrap())])
        .args(["--certificate-authority", sa.path().join("ca.crt").to_str().unwrap(), "--token", token.trim()])
        .args(["auth", "can-i", "create", "pods", "-n", &ns])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    op.kill().unwrap();
    let _ = op.wait();
    sims.abort();
    apps.abort();
}
