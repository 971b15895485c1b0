//! The operator's RBAC in `deploy/manifests/` (rendered from the Helm chart), both ways, on the real API server:
//! - `kubectl auth can-i --list` for its ServiceAccount shows exactly the rules in the file;
//! - the operator, impersonating that ServiceAccount, runs every engine, an Upgrade, env values,
//!   a Helm hook, a cancel, a finalizer cleanup in Velero's namespace, retention and leader
//!   election, and no API call of it is Forbidden.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vworkspace_journal::{Journal, SledJournal};
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::record::{OutcomeResult, RecordBody};
use vworkspace_operator::{journal_codec, leader, run, sim};

const SA: &str = "system:serviceaccount:vworkspace-system:vworkspace-operator";

/// `resource[.group]` → verbs, from the rules of every (Cluster)Role in the file.
fn rules_in(yaml: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc).unwrap();
        if !matches!(v["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for res in rule["resources"].as_array().unwrap() {
                    let (g, r) = (group.as_str().unwrap(), res.as_str().unwrap());
                    // kubectl's spelling: `resource.group/subresource`.
                    let (base, sub) =
                        r.split_once('/').map(|(b, s)| (b, format!("/{s}"))).unwrap_or((r, String::new()));
                    let key = if g.is_empty() { format!("{base}{sub}") } else { format!("{base}.{g}{sub}") };
                    let verbs = rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string());
                    out.entry(key).or_default().extend(verbs);
                }
            }
        }
    }
    out
}

use serde::Deserialize as _;

/// `kubectl auth can-i --list` as the ServiceAccount, minus what every authenticated user has.
fn can_i_list() -> BTreeMap<String, BTreeSet<String>> {
    let out = support::ok(&support::kubectl(
        "admin",
        &["auth", "can-i", "--list", "--as", SA, "-n", "vworkspace-system"],
        None,
    ));
    // system:basic-user and system:public-info-viewer rules that every authenticated user has.
    let everyone = [
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
        "selfsubjectreviews.authentication.k8s.io",
        "clustertrustbundles.certificates.k8s.io",
    ];
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines().skip(1) {
        // Resources  Non-Resource URLs  Resource Names  Verbs; non-resource rows start blank.
        let cols: Vec<&str> = line.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
        if line.starts_with(' ') || cols.len() < 4 || everyone.contains(&cols[0]) {
            continue;
        }
        let verbs = cols[cols.len() - 1].trim_matches(|c| c == '[' || c == ']').split_whitespace().map(str::to_string);
        got.entry(cols[0].to_string()).or_default().extend(verbs);
    }
    got
}

/// What `helm install --no-hooks` writes: a release record with one pre-upgrade Job hook.
fn helm_release(ns: &str) -> Value {
    let hook = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: shop-migrate\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: m\n          image: busybox:1.36\n          env:\n            - name: LEVEL\n              value: debug\n";
    let rel = json!({ "name": "shop", "namespace": ns, "version": 1, "info": { "status": "deployed" },
        "hooks": [{ "name": "shop-migrate", "kind": "Job", "events": ["pre-upgrade"], "weight": 0, "manifest": hook }] });
    vworkspace_operator::effector::release_record(ns, "shop", &rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_needs_exactly_the_rights_deploy_grants() {
    let client = support::client("admin").await;
    let file = support::repo().join("deploy/manifests/vworkspace-operator.yaml");
    support::ok(&support::kubectl("admin", &["apply", "-f", file.to_str().unwrap()], None));
    let granted = rules_in(&std::fs::read_to_string(&file).unwrap());
    let mut shown = BTreeMap::new();
    for _ in 0..50 {
        shown = can_i_list();
        if shown == granted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(shown, granted, "kubectl auth can-i --list shows exactly the rules in deploy/manifests");

    // The operator as its ServiceAccount; the simulators stand in for other controllers (admin).
    let kc = kube::config::Kubeconfig::read_from(support::kubeconfig()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(
        kc,
        &kube::config::KubeConfigOptions { context: Some("admin".into()), ..Default::default() },
    )
    .await
    .unwrap();
    cfg.auth_info.impersonate = Some(SA.into());
    let as_operator = kube::Client::try_from(cfg).unwrap();

    let ns = support::namespace("rbac").await;
    let velero_ns = support::namespace("velero").await;
    let t = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": false });
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("{name}-{ns}") }, "spec": spec })
    };
    for tpl in [
        t("velero", json!({ "types": ["Backup"], "engine": "velero", "velero": { "namespace": velero_ns } })),
        t("argo", json!({ "types": ["Runbook"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "t" } })),
        t(
            "job",
            json!({ "types": ["RunCommand"], "engine": "job", "job": { "image": "busybox:1.36" }, "retention": { "ttlSecondsAfterFinished": 1 } }),
        ),
        t("csi", json!({ "types": ["Backup"], "engine": "csiSnapshot" })),
        t(
            "volsync",
            json!({ "types": ["Restore"], "engine": "volSync", "volSync": { "mover": "restic", "moverSpec": { "repository": "r" } } }),
        ),
        t("hooks", json!({ "types": ["Migration"], "engine": "helmHookJob", "helmHook": { "event": "pre-upgrade" } })),
        t("upgrade", json!({ "types": ["Upgrade"] })),
    ] {
        support::apply(&client, &support::ar::<OperationTemplate>(), None, tpl).await;
    }
    let caps = json!({ "ops.vworkspace.io/backup": "velero,csiSnapshot", "ops.vworkspace.io/restore": "volSync", "ops.vworkspace.io/runbook": "argoWorkflow",
        "ops.vworkspace.io/run-command": "job", "ops.vworkspace.io/migration": "helmHookJob", "ops.vworkspace.io/upgrade": "chartUpgrade" });
    support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": caps }, "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    secrets.create(&PostParams::default(), &serde_json::from_value(helm_release(&ns)).unwrap()).await.unwrap();

    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(100), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(100)));
    let journal = tempfile::tempdir().unwrap();
    let lease = leader::Options {
        lease_duration: Duration::from_secs(6),
        ..leader::Options::from_env("vworkspace-system", "vworkspace-operator", Default::default())
    };
    let opts = run::Options {
        journal: Some(journal.path().join("j")),
        rediscover: Duration::from_secs(2),
        leader: Some(lease),
        ..Default::default()
    };
    let operator = tokio::spawn(run::run(as_operator, opts));

    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let op = |name: &str, ty: &str, engine: Option<&str>, scenario: &str, params: Value| {
        let mut spec = json!({ "type": ty, "target": { "name": "shop" }, "parameters": params });
        if let Some(e) = engine {
            spec["engine"] = json!(e);
        }
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": scenario } }, "spec": spec })
    };
    let cases = [
        op("backup", "Backup", Some("velero"), "succeed", json!({})),
        op("runbook", "Runbook", None, "never-finish", json!({})),
        op("command", "RunCommand", None, "succeed", json!({ "env": { "LEVEL": "debug" } })),
        op("snapshot", "Backup", Some("csiSnapshot"), "succeed", json!({ "pvc": "data" })),
        op("restore", "Restore", None, "succeed", json!({ "pvc": "data" })),
        op("hooks", "Migration", None, "succeed", json!({})),
        op("upgrade", "Upgrade", None, "succeed", json!({ "version": "1.1.0" })),
        op("cleanup", "Backup", Some("velero"), "never-finish", json!({})),
    ];
    for c in cases {
        support::apply(&client, &support::ar::<Operation>(), Some(&ns), c).await;
    }
    let wait = async |name: &str, phase: &str| {
        for _ in 0..400 {
            if support::phase(&ops, name).await == phase {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name} did not reach {phase}: {:?}",
            ops.get(name).await.ok().and_then(|o| o.status).and_then(|s| s.message)
        );
    };
    for (name, phase) in [
        ("backup", "Succeeded"),
        ("snapshot", "Succeeded"),
        ("restore", "Succeeded"),
        ("hooks", "Succeeded"),
        ("upgrade", "Succeeded"),
    ] {
        wait(name, phase).await;
    }
    // Retention deletes the finished RunCommand Operation.
    for _ in 0..400 {
        if ops.get_opt("command").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ops.get_opt("command").await.unwrap().is_none(), "retention deleted it");
    // Cancel patches the Workflow; deleting a running Velero Operation deletes its Backup.
    wait("runbook", "Running").await;
    ops.patch("runbook", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "cancel": true } }))).await.unwrap();
    wait("runbook", "Cancelled").await;
    wait("cleanup", "Running").await;
    ops.delete("cleanup", &DeleteParams::default()).await.unwrap();
    for _ in 0..400 {
        if ops.get_opt("cleanup").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ops.get_opt("cleanup").await.unwrap().is_none(), "the finalizer was removed after cleanup");
    operator.abort();
    let _ = operator.await;
    sims.abort();
    apps.abort();

    let (j, _) = SledJournal::open(&journal.path().join("j")).unwrap();
    let mut outcomes = 0;
    let mut forbidden = Vec::new();
    for e in j.read_from(0) {
        let rec = journal_codec::from_entry(&e.unwrap()).unwrap();
        if let RecordBody::Outcome(o) = rec.body {
            outcomes += 1;
            if o.result == OutcomeResult::Forbidden {
                forbidden.push(format!("{}: {}", o.command_id, o.message));
            }
        }
    }
    assert!(outcomes > 30, "{outcomes} outcomes");
    assert!(forbidden.is_empty(), "the operator needed rights deploy/ does not grant:\n{}", forbidden.join("\n"));
}
