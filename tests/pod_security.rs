//! The operator's pod in `deploy/manifests/` (the Helm chart rendered) meets Pod Security Standards
//! "restricted", checked by the real API server's PodSecurity admission: the StatefulSet draws no
//! warning in a namespace that warns on restricted, and its pod template is admitted as a Pod in
//! a namespace that enforces it. A weakened copy is refused, so the check is live.

mod support;

use serde::Deserialize;
use serde_json::{Value, json};

fn statefulset() -> Value {
    let text = std::fs::read_to_string(support::repo().join("deploy/manifests/vworkspace-operator.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "StatefulSet")
        .expect("a StatefulSet")
}

fn pod(ns: &str, sts: &Value) -> Value {
    let mut spec = sts["spec"]["template"]["spec"].clone();
    // A bare Pod has no volumeClaimTemplates: the journal volume becomes a claim by name.
    spec["volumes"] =
        json!([{ "name": "journal", "persistentVolumeClaim": { "claimName": "journal-vworkspace-operator-0" } }]);
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "operator", "namespace": ns }, "spec": spec })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_pod_is_restricted() {
    let ns = support::namespace("pss").await;
    support::ok(&support::kubectl(
        "admin",
        &[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    ));
    let mut sts = statefulset();
    sts["metadata"]["namespace"] = json!(ns);
    let out = support::kubectl("admin", &["create", "--dry-run=server", "-f", "-"], Some(&sts.to_string()));
    let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
    support::ok(&out);
    assert!(!warnings.contains("violate"), "{warnings}");

    support::ok(&support::kubectl(
        "admin",
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod(&ns, &sts).to_string()),
    ));

    // The same pod with root allowed and capabilities kept is refused: enforcement is on.
    let mut weak = pod(&ns, &sts);
    weak["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
    weak["spec"]["containers"][0]["securityContext"]["capabilities"] = json!({});
    let out = support::kubectl("admin", &["create", "--dry-run=server", "-f", "-"], Some(&weak.to_string()));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("violates PodSecurity \"restricted:latest\""), "{err}");
}
