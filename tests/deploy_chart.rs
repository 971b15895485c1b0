//! The Helm chart in `deploy/helm/vworkspace-operator` with the real Helm: it lints, it renders
//! exactly the plain manifests in `deploy/manifests/` (regenerate them with
//! `VW_UPDATE_MANIFESTS=1 cargo test --test deploy_chart`), and the API server accepts them
//! with the CRDs through server-side apply.

mod support;

use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_cmd(helm: &str) -> Command {
    let mut c = Command::new(helm);
    let tmp = std::env::temp_dir();
    c.env("HELM_CACHE_HOME", tmp.join("vw-helm-cache"))
        .env("HELM_CONFIG_HOME", tmp.join("vw-helm-config"))
        .env("HELM_DATA_HOME", tmp.join("vw-helm-data"));
    c
}

/// The plain manifests: the chart's defaults, the namespace created.
fn render(helm: &str, extra: &[&str]) -> String {
    let chart = support::repo().join("deploy/helm/vworkspace-operator");
    run(helm_cmd(helm)
        .args(["template", "vworkspace-operator"])
        .arg(&chart)
        .args(["--namespace", "vworkspace-system", "--set", "namespace.create=true", "--kube-version", "1.37.2"])
        .args(extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_lints_renders_the_plain_manifests_and_is_accepted() {
    let helm = support::helm();
    let chart = support::repo().join("deploy/helm/vworkspace-operator");
    let lint = run(helm_cmd(&helm).arg("lint").arg(&chart).args(["--kube-version", "1.37.2"]));
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let rendered = render(&helm, &[]);
    let file = support::repo().join("deploy/manifests/vworkspace-operator.yaml");
    if std::env::var_os("VW_UPDATE_MANIFESTS").is_some() {
        std::fs::write(&file, &rendered).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        rendered,
        "deploy/manifests drifted from the chart: VW_UPDATE_MANIFESTS=1 cargo test --test deploy_chart"
    );
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| Value::deserialize(d).unwrap()["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} rendered: {kinds:?}");
    }
    // Optional parts follow their values.
    let lean = render(
        &helm,
        &["--set", "admissionPolicy.enabled=false,networkPolicy.enabled=false,serviceMonitor.enabled=true"],
    );
    assert!(!lean.contains("kind: ValidatingAdmissionPolicy") && !lean.contains("kind: NetworkPolicy"));
    assert!(lean.contains("kind: ServiceMonitor"));
    let sts: Value = serde_yaml::Deserializer::from_str(&render(
        &helm,
        &["--set", "otlpEndpoint=http://j:4317,eventSink=https://cp/events,leaderElection.enabled=false"],
    ))
    .map(|d| Value::deserialize(d).unwrap())
    .find(|v| v["kind"] == "StatefulSet")
    .unwrap();
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--event-sink=https://cp/events") && args.contains(&"--no-leader-elect"), "{args:?}");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT" && e["value"] == "http://j:4317")
    );

    // Replicas are shards; shards without their Leases are refused.
    let three = render(&helm, &["--set", "replicas=3"]);
    assert!(three.contains("replicas: 3") && three.contains("- --shards=3"), "{three}");
    let chart = support::repo().join("deploy/helm/vworkspace-operator");
    let refused = helm_cmd(&helm)
        .args(["template", "vworkspace-operator"])
        .arg(&chart)
        .args(["--set", "replicas=3,leaderElection.enabled=false", "--kube-version", "1.37.2"])
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && why.contains("each shard is fenced by its own Lease"), "{why}");

    // The CRDs, then the manifests, through server-side apply.
    let _client = support::client("admin").await;
    let kc = support::kubeconfig();
    let kubectl = |args: &[&str]| {
        run(Command::new("kubectl").arg("--kubeconfig").arg(kc).args(["--context", "admin"]).args(args))
    };
    kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "install",
        "-f",
        support::repo().join("crds").to_str().unwrap(),
    ]);
    let out = support::install_manifests();
    for what in [
        "statefulset.apps/vworkspace-operator",
        "clusterrole.rbac.authorization.k8s.io/vworkspace-operator",
        "namespace/vworkspace-system",
    ] {
        assert!(out.contains(what), "{what} applied:\n{out}");
    }
    let ns = kubectl(&[
        "get",
        "namespace",
        "vworkspace-system",
        "-o",
        "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
    ]);
    assert_eq!(ns, "restricted");

    // The MutatingAdmissionPolicy stamps who asked, over whatever the client claimed.
    let me = kubectl(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    let target = support::namespace("stamp").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for attempt in 0.. {
        let op = serde_json::json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": format!("stamped-{attempt}"), "namespace": target, "annotations": { "ops.vworkspace.io/requested-by": "mallory" } },
            "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
        let created = support::kubectl("admin", &["create", "-f", "-"], Some(&op.to_string()));
        if !created.status.success() {
            // Re-applying the CRDs just above may leave the kind briefly unserved (503).
            let err = String::from_utf8_lossy(&created.stderr).into_owned();
            assert!(std::time::Instant::now() < deadline && err.contains("ServiceUnavailable"), "creating: {err}");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            continue;
        }
        let who = kubectl(&[
            "get",
            "operation",
            &format!("stamped-{attempt}"),
            "-n",
            &target,
            "-o",
            "jsonpath={.metadata.annotations.ops\\.vworkspace\\.io/requested-by}",
        ]);
        if who == me {
            break;
        }
        // The policy takes a moment to be loaded after it is created.
        assert!(std::time::Instant::now() < deadline, "requested-by is {who:?}, not the creator {me:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
