//! Plausible objects for the structure-aware targets: the templates, targets, Operations and
//! upstream child statuses the fold tests use (tests/common, tests/fold_lifecycle.rs), in
//! variants a byte can choose.

use serde_json::{Value, json};

use crate::command::HelmHook;
use crate::record::ChildKind;

pub const NS: &str = "shop";

/// The token placeholder in VolSync statuses: replaced with the child's own trigger.
pub const TOKEN: &str = "$token";

pub fn template(name: &str, types: &[&str], engine: Option<&str>, extra: Value) -> Value {
    let mut t = json!({
        "apiVersion": "ops.vworkspace.io/v1alpha1",
        "kind": "OperationTemplate",
        "metadata": { "name": name },
        "spec": { "types": types, "namespaces": [NS] },
    });
    if let Some(e) = engine {
        t["spec"]["engine"] = json!(e);
    }
    crate::json::merge(&mut t["spec"], &extra);
    t
}

/// One template per engine: a world where every Operation can run.
pub fn base_templates() -> Vec<Value> {
    vec![
        template(
            "velero-backup",
            &["Backup", "Restore"],
            Some("velero"),
            json!({ "velero": { "namespace": "velero", "storageLocation": "default" } }),
        ),
        template(
            "argo-runbook",
            &["Runbook", "Migration"],
            Some("argoWorkflow"),
            json!({ "argo": { "workflowTemplateRef": "db-runbook" }, "rbac": { "serviceAccountName": "runner" } }),
        ),
        template(
            "job-command",
            &["RunCommand"],
            Some("job"),
            json!({ "job": { "image": "busybox:1.36", "command": ["sh", "-c"], "allowArgs": true, "backoffLimit": 1 }, "rbac": { "serviceAccountName": "runner" } }),
        ),
        template(
            "csi-snapshot",
            &["Backup"],
            Some("csiSnapshot"),
            json!({ "snapshot": { "volumeSnapshotClassName": "csi-hostpath" } }),
        ),
        template(
            "volsync",
            &["Backup", "Restore"],
            Some("volSync"),
            json!({ "volSync": { "mover": "restic", "moverSpec": { "repository": "restic-secret", "copyMethod": "Snapshot" } } }),
        ),
        template(
            "helm-hooks",
            &["Migration"],
            Some("helmHookJob"),
            json!({ "helmHook": { "event": "pre-upgrade" }, "rbac": { "serviceAccountName": "migrator" } }),
        ),
        template("upgrade", &["Upgrade"], None, json!({ "upgrade": { "forbiddenVersions": ["1.3.0", "2.*"] } })),
    ]
}

/// The base templates, then variants under the same names (relaxed preconditions, deadlines,
/// retention, a schema with a secret parameter, required Secrets, one that does not parse).
pub fn templates() -> Vec<Value> {
    let mut all = base_templates();
    all.extend([
        template(
            "job-command",
            &["RunCommand", "Migration"],
            Some("job"),
            json!({ "job": { "image": "busybox:1.36", "allowArgs": true }, "preconditions": { "requireTargetReady": false, "exclusive": false },
                "deadlineSeconds": 60, "maxDeadlineSeconds": 120, "retention": { "ttlSecondsAfterFinished": 30 } }),
        ),
        template(
            "job-command",
            &["RunCommand"],
            Some("job"),
            json!({ "job": { "image": "busybox:1.36" }, "preconditions": { "requiredSecrets": ["db-creds"] },
                "parametersSchema": { "type": "object", "additionalProperties": false, "properties": {
                    "args": { "type": "array", "items": { "type": "string" } },
                    "env": { "type": "object", "properties": { "DB_PASSWORD": { "type": "object", "x-vworkspace-secret": true } } } } } }),
        ),
        template(
            "velero-backup",
            &["Backup", "Restore"],
            Some("velero"),
            json!({ "velero": { "namespace": "velero", "ttl": "1h" }, "restore": { "allowCrossNamespace": true, "allowedTargetNamespaces": ["shop-staging"] },
                "maxDeadlineSeconds": 100, "preconditions": { "exclusive": false } }),
        ),
        template("job-command", &["Nope"], Some("job"), json!({})),
        template("upgrade", &["Upgrade"], None, json!({ "preconditions": { "exclusive": false }, "deadlineSeconds": 45 })),
        template(
            "argo-runbook",
            &["Runbook"],
            Some("argoWorkflow"),
            json!({ "namespaces": ["*"], "argo": { "workflowTemplateRef": "db-runbook", "clusterScope": true }, "preconditions": { "requiredSecrets": ["db-creds"] } }),
        ),
    ]);
    all
}

/// An ApplicationInstance that declares every engine; `ready` sets its Ready condition.
pub fn app(name: &str, ns: &str, version: &str, ready: Option<(bool, i64)>) -> Value {
    let mut a = json!({
        "apiVersion": "ops.vworkspace.io/v1alpha1",
        "kind": "ApplicationInstance",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {
                "ops.vworkspace.io/backup": "velero,csiSnapshot,volSync",
                "ops.vworkspace.io/restore": "velero,volSync",
                "ops.vworkspace.io/upgrade": "chartUpgrade",
                "ops.vworkspace.io/migration": "helmHookJob,argoWorkflow,job",
                "ops.vworkspace.io/run-command": "job",
                "ops.vworkspace.io/runbook": "argoWorkflow",
            },
        },
        "spec": { "chart": { "name": "shop", "version": version, "repository": "https://charts.example.org" } },
    });
    if let Some((ready, generation)) = ready {
        a["status"] = json!({ "observedGeneration": generation, "conditions": [{
            "type": "Ready", "status": if ready { "True" } else { "False" }, "observedGeneration": generation,
            "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": if ready { "Ready" } else { "Progressing" }, "message": "",
        }] });
    }
    a
}

/// `(type, engine, parameters, template)` of the Operations the fold target submits.
pub const SPECS: &[(&str, Option<&str>, &str, &str)] = &[
    ("Backup", Some("velero"), r#"{}"#, "velero-backup"),
    ("Backup", Some("velero"), r#"{"ttl":"72h"}"#, "velero-backup"),
    ("Restore", Some("velero"), r#"{"backupName":"nightly-1"}"#, "velero-backup"),
    ("Restore", Some("velero"), r#"{"backupName":"nightly-1","targetNamespace":"shop-staging"}"#, "velero-backup"),
    ("Runbook", None, r#"{"database":"orders","dryRun":false}"#, "argo-runbook"),
    ("Migration", Some("argoWorkflow"), r#"{}"#, "argo-runbook"),
    ("RunCommand", None, r#"{"args":["echo hi"],"env":{"LEVEL":"debug"}}"#, "job-command"),
    (
        "RunCommand",
        Some("job"),
        r#"{"env":{"DB_PASSWORD":{"secretKeyRef":{"name":"db-creds","key":"pw"}}}}"#,
        "job-command",
    ),
    ("Backup", Some("csiSnapshot"), r#"{"pvc":"data"}"#, "csi-snapshot"),
    ("Backup", Some("volSync"), r#"{"pvc":"data"}"#, "volsync"),
    ("Restore", Some("volSync"), r#"{"pvc":"data"}"#, "volsync"),
    ("Migration", Some("helmHookJob"), r#"{}"#, "helm-hooks"),
    ("Upgrade", None, r#"{"version":"1.2.1"}"#, "upgrade"),
    ("Upgrade", None, r#"{"version":"1.2.1","rollbackOnFailure":true}"#, "upgrade"),
    ("Upgrade", None, r#"{"version":"2.0.0"}"#, "upgrade"),
    ("RunCommand", None, r#"{"unknown":1}"#, "job-command"),
    ("Backup", Some("job"), r#"{}"#, "job-command"),
    ("Nope", None, r#"{}"#, "nope"),
];

pub fn operation(ns: &str, name: &str, spec: (&str, Option<&str>, &str, &str)) -> Value {
    let (ty, engine, params, _) = spec;
    let params: Value = serde_json::from_str(params).unwrap_or(Value::Null);
    let mut o = json!({
        "apiVersion": "ops.vworkspace.io/v1alpha1",
        "kind": "Operation",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "type": ty, "target": { "name": "shop" }, "parameters": params },
    });
    if let Some(e) = engine {
        o["spec"]["engine"] = json!(e);
    }
    o
}

fn condition(ty: &str, status: &str, reason: &str) -> Value {
    json!({
        "type": ty, "status": status, "observedGeneration": 1,
        "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": reason, "message": "",
    })
}

/// A status as a lost journal would find it in the cluster: terminal or running.
pub fn adopted_status(terminal: bool) -> Value {
    let (succeeded, progressing, phase) = if terminal {
        (condition("Succeeded", "True", "Completed"), condition("Progressing", "False", "Completed"), "Succeeded")
    } else {
        (condition("Succeeded", "Unknown", "Pending"), condition("Progressing", "True", "InProgress"), "Running")
    };
    json!({
        "phase": phase,
        "conditions": [condition("Accepted", "True", "Valid"), condition("PreconditionsMet", "True", "Met"), progressing, succeeded],
        "startTime": "2026-01-01T00:00:00Z",
    })
}

/// Upstream statuses of a child kind, through its phases to each ending, then malformed ones.
pub fn child_statuses(kind: ChildKind) -> Vec<Value> {
    let mut out = match kind {
        ChildKind::VeleroBackup | ChildKind::VeleroRestore => [
            "New",
            "Queued",
            "InProgress",
            "WaitingForPluginOperations",
            "Finalizing",
            "Completed",
            "PartiallyFailed",
            "Failed",
            "FailedValidation",
            "Deleting",
        ]
        .iter()
        .map(|p| json!({ "phase": p, "errors": 1, "progress": { "itemsBackedUp": 3, "itemsRestored": 1, "totalItems": 10 } }))
        .collect(),
        ChildKind::Workflow => vec![
            json!({ "phase": "Running", "progress": "1/3" }),
            json!({ "phase": "Succeeded", "progress": "3/3", "nodes": { "n": { "outputs": { "parameters": [{ "name": "rows", "value": "42" }] } } } }),
            json!({ "phase": "Failed", "message": "child 'step-2' failed", "nodes": { "n1": { "displayName": "step-2", "type": "Pod", "phase": "Failed", "message": "exit code 2" } } }),
            json!({ "phase": "Error", "message": "pod deleted" }),
        ],
        ChildKind::Job => vec![
            json!({ "active": 1 }),
            json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
            json!({ "failed": 1, "conditions": [{ "type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded" }] }),
            json!({ "failed": 2, "conditions": [{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "backoff limit" }] }),
            json!({ "failed": 1, "conditions": [{ "type": "Failed", "status": "True", "reason": "DeadlineExceeded" }] }),
        ],
        ChildKind::VolumeSnapshot => vec![
            json!({ "readyToUse": false, "error": { "message": "busy" } }),
            json!({ "readyToUse": true, "boundVolumeSnapshotContentName": "c" }),
            json!({ "readyToUse": false }),
        ],
        ChildKind::ReplicationSource | ChildKind::ReplicationDestination => vec![
            json!({ "conditions": [{ "type": "Synchronizing", "status": "True", "message": "syncing" }] }),
            json!({ "lastManualSync": TOKEN, "latestMoverStatus": { "result": "Successful" }, "lastSyncTime": "2026-01-01T00:01:00Z" }),
            json!({ "lastManualSync": "other", "latestMoverStatus": { "result": "Successful" } }),
            json!({ "latestMoverStatus": { "result": "Failed", "logs": "repository locked" } }),
        ],
    };
    out.extend([Value::Null, json!("x"), json!({ "phase": 7, "conditions": "no" })]);
    out
}

/// Two hook Jobs in the `shop` release, out of weight order.
pub fn helm_hooks() -> Vec<HelmHook> {
    vec![hook("db-migrate", 5), hook("db-check", -1)]
}

/// A `pre-upgrade` hook Job of the `shop` chart.
pub fn hook(name: &str, weight: i64) -> HelmHook {
    HelmHook {
        name: name.into(),
        kind: "Job".into(),
        weight,
        events: vec!["pre-upgrade".into()],
        manifest: json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": name, "annotations": { "helm.sh/hook": "pre-upgrade" } },
            "spec": { "template": { "spec": { "serviceAccountName": "chart-sa", "containers": [{ "name": "m", "image": "migrate:1" }] } } },
        }),
        release_secret: String::new(),
    }
}
