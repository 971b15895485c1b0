//! The real Helm (built from Go modules) installs a chart with `--no-hooks` against the real
//! API server: a release record Secret exists, with the hooks recorded but not run.

mod support;

use std::io::Read;
use std::process::Command;

use base64::Engine as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::Value;

#[tokio::test]
async fn helm_install_no_hooks_writes_a_release_record() {
    let ns = support::namespace("helm").await;
    let helm = support::helm();
    let install = Command::new(&helm)
        .args(["--kubeconfig"])
        .arg(support::kubeconfig())
        .args(["--kube-context", "admin", "install", "hooked"])
        .arg(support::repo().join("tests/charts/hooked"))
        .args(["--namespace", &ns, "--no-hooks"])
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("vw-helm-cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("vw-helm-config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("vw-helm-data"))
        .output()
        .expect("run helm");
    assert!(install.status.success(), "helm install: {}", String::from_utf8_lossy(&install.stderr));

    let client = support::client("admin").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let list = secrets.list(&ListParams::default().labels("owner=helm,name=hooked")).await.unwrap();
    let record = list
        .items
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("sh.helm.release.v1.hooked.v1"))
        .expect("release record");
    assert_eq!(record.type_.as_deref(), Some("helm.sh/release.v1"));
    // The record is base64 (in data) of base64 of gzip of the release JSON.
    let raw = &record.data.as_ref().unwrap()["release"].0;
    let gz = base64::engine::general_purpose::STANDARD.decode(raw).unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut json).unwrap();
    let release: Value = serde_json::from_str(&json).unwrap();
    let hooks = release["hooks"].as_array().expect("hooks recorded");
    let names: Vec<&str> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"hooked-db-migrate") && names.contains(&"hooked-db-check"), "{names:?}");
    let check = hooks.iter().find(|h| h["name"] == "hooked-db-check").unwrap();
    assert_eq!(check["weight"], -1);
    assert_eq!(check["events"], serde_json::json!(["pre-upgrade"]));
    assert!(check["manifest"].as_str().unwrap().contains("kind: Job"));
    // --no-hooks: recorded, not run.
    let jobs: Api<Job> = Api::namespaced(client, &ns);
    assert!(jobs.list(&ListParams::default()).await.unwrap().items.is_empty(), "no hook Job was created");
}
