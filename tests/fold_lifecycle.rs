//! Given/when/then lifecycles of every engine through the pure fold and the in-memory model.

mod common;

use common::*;
use serde_json::json;
use vworkspace_operator::record::{ChildKind, ResourceKind};

fn assert_terminal(h: &vworkspace_operator::harness::Harness, op: &str, status: &str, reason: &str, phase: &str) {
    assert_eq!(cond(h, op, "Succeeded"), (status.to_string(), reason.to_string()), "status: {}", h.status(NS, op));
    assert_eq!(h.phase(NS, op), phase);
    assert_eq!(cond(h, op, "Progressing").0, "False");
}

#[test]
fn velero_backup_succeeds_with_finalizer_outputs_and_events() {
    let mut h = world();
    submit(&mut h, operation("nightly", "Backup", Some("velero"), json!({ "ttl": "72h" })));
    let (kind, ns, name) = only_child(&h, "nightly");
    assert_eq!((kind, ns.as_str()), (ChildKind::VeleroBackup, "velero"));
    let op = h.get(ResourceKind::Operation, NS, "nightly").unwrap();
    assert_eq!(op["metadata"]["finalizers"], json!(["ops.vworkspace.io/cleanup"]));
    let child = h.get(ResourceKind::Child(kind), &ns, &name).unwrap();
    assert_eq!(child["spec"]["includedNamespaces"], json!([NS]));
    assert_eq!(child["spec"]["ttl"], "72h");
    assert!(child["metadata"].get("ownerReferences").is_none(), "cross-namespace child has no owner reference");
    assert_eq!(cond(&h, "nightly", "Progressing"), ("True".into(), "Queued".into()));
    h.set_child_status(
        kind,
        &ns,
        &name,
        json!({ "phase": "InProgress", "progress": { "itemsBackedUp": 3, "totalItems": 10 } }),
    );
    assert_eq!(cond(&h, "nightly", "Progressing"), ("True".into(), "InProgress".into()));
    assert_eq!(h.status(NS, "nightly")["progress"], "3/10");
    assert_eq!(h.phase(NS, "nightly"), "Running");
    h.set_child_status(kind, &ns, &name, json!({ "phase": "Completed", "errors": 0, "warnings": 1, "progress": { "itemsBackedUp": 10, "totalItems": 10 } }));
    assert_terminal(&h, "nightly", "True", "Completed", "Succeeded");
    let st = h.status(NS, "nightly");
    assert_eq!(st["outputs"]["backupName"], name.as_str());
    assert_eq!(st["children"][0]["namespace"], "velero");
    assert!(st["completionTime"].is_string() && st["startTime"].is_string());
    assert_eq!(st["traceID"].as_str().unwrap().len(), 32);
    let events = h.event_reasons("nightly");
    for r in ["Valid", "Met", "ChildCreated", "Queued", "InProgress", "Completed"] {
        assert!(events.contains(&r.to_string()), "missing event {r}: {events:?}");
    }
}

#[test]
fn a_child_seen_before_its_create_outcome_keeps_its_own_progress() {
    let mut h = world();
    h.child_event_first = true;
    submit(&mut h, operation("nightly", "Backup", Some("velero"), json!({})));
    assert_eq!(cond(&h, "nightly", "Progressing"), ("True".into(), "Queued".into()));
    // The late outcome must not flip Progressing to ChildCreated and back to Queued.
    let events = h.event_reasons("nightly");
    assert_eq!(events, ["Valid", "Met", "Queued"], "events: {events:?}");
    let (kind, ns, name) = only_child(&h, "nightly");
    h.set_child_status(kind, &ns, &name, json!({ "phase": "Completed", "errors": 0, "warnings": 0 }));
    assert_terminal(&h, "nightly", "True", "Completed", "Succeeded");
}

#[test]
fn velero_backup_partial_failure_keeps_backup_linked() {
    let mut h = world();
    submit(&mut h, operation("b", "Backup", Some("velero"), json!({})));
    let (k, ns, name) = only_child(&h, "b");
    h.set_child_status(k, &ns, &name, json!({ "phase": "PartiallyFailed", "errors": 2, "warnings": 5 }));
    assert_terminal(&h, "b", "False", "PartiallyFailed", "Failed");
    let st = h.status(NS, "b");
    assert_eq!(st["outputs"]["backupName"], name.as_str());
    assert_eq!(st["engine"]["errors"], 2);
    assert_eq!(st["engine"]["warnings"], 5);
    assert!(st["message"].as_str().unwrap().contains("2 errors, 5 warnings"));
}

#[test]
fn velero_failed_validation_and_failure_and_deleting() {
    for (status, reason) in [
        (
            json!({ "phase": "FailedValidation", "validationErrors": ["backup storage location default not found"] }),
            "EngineRejected",
        ),
        (json!({ "phase": "Failed", "failureReason": "object store unreachable" }), "EngineFailed"),
        (json!({ "phase": "Deleting" }), "ChildLost"),
    ] {
        let mut h = world();
        submit(&mut h, operation("b", "Backup", Some("velero"), json!({})));
        let (k, ns, name) = only_child(&h, "b");
        h.set_child_status(k, &ns, &name, status.clone());
        assert_terminal(&h, "b", "False", reason, "Failed");
        if reason == "EngineRejected" {
            assert!(h.status(NS, "b")["message"].as_str().unwrap().contains("storage location default not found"));
        }
    }
}

#[test]
fn velero_child_deleted_by_hand_is_child_lost() {
    let mut h = world();
    submit(&mut h, operation("b", "Backup", Some("velero"), json!({})));
    let (k, ns, name) = only_child(&h, "b");
    h.set_child_status(k, &ns, &name, json!({ "phase": "InProgress" }));
    h.delete(ResourceKind::Child(k), &vworkspace_operator::key::ObjKey::new(ns, name));
    assert_terminal(&h, "b", "False", "ChildLost", "Failed");
}

#[test]
fn velero_children_are_cleaned_up_through_the_finalizer() {
    let mut h = world();
    submit(&mut h, operation("b", "Backup", Some("velero"), json!({})));
    assert_eq!(h.children_of("uid-b").len(), 1);
    h.request_delete(NS, "b");
    assert!(h.children_of("uid-b").is_empty(), "Velero child must be deleted by the finalizer");
    assert!(h.get(ResourceKind::Operation, NS, "b").is_none(), "finalizer removed, Operation gone");
}

#[test]
fn velero_restore_maps_namespace_only_when_allowed() {
    let mut h = world();
    let mut t = template(
        "velero-xns",
        &["Restore"],
        Some("velero"),
        json!({ "restore": { "allowCrossNamespace": true, "allowedTargetNamespaces": ["shop-staging"] } }),
    );
    t["spec"]["namespaces"] = json!([NS]);
    h.apply(ResourceKind::OperationTemplate, t);
    let mut op = operation(
        "r",
        "Restore",
        Some("velero"),
        json!({ "backupName": "nightly-1", "targetNamespace": "shop-staging" }),
    );
    op["spec"]["template"] = json!("velero-xns");
    submit(&mut h, op);
    let (k, ns, name) = only_child(&h, "r");
    let child = h.get(ResourceKind::Child(k), &ns, &name).unwrap();
    assert_eq!(child["spec"]["namespaceMapping"], json!({ NS: "shop-staging" }));
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "phase": "InProgress", "progress": { "itemsRestored": 1, "totalItems": 4 } }),
    );
    assert_eq!(h.status(NS, "r")["progress"], "1/4");
    h.set_child_status(k, &ns, &name, json!({ "phase": "Completed" }));
    assert_terminal(&h, "r", "True", "Completed", "Succeeded");
    assert_eq!(h.status(NS, "r")["outputs"]["restoreName"], name.as_str());
}

#[test]
fn argo_workflow_success_failure_and_cancel() {
    let mut h = world();
    submit(&mut h, operation("rb", "Runbook", None, json!({ "database": "orders", "dryRun": false })));
    let (k, ns, name) = only_child(&h, "rb");
    let wf = h.get(ResourceKind::Child(k), &ns, &name).unwrap().clone();
    assert_eq!(wf["spec"]["workflowTemplateRef"]["name"], "db-runbook");
    assert_eq!(wf["spec"]["serviceAccountName"], "runner");
    assert_eq!(
        wf["spec"]["arguments"]["parameters"],
        json!([{ "name": "database", "value": "orders" }, { "name": "dryRun", "value": "false" }])
    );
    assert_eq!(wf["metadata"]["ownerReferences"][0]["kind"], "Operation");
    h.set_child_status(k, &ns, &name, json!({ "phase": "Running", "progress": "1/3" }));
    assert_eq!(h.status(NS, "rb")["progress"], "1/3");
    h.set_child_status(k, &ns, &name, json!({ "phase": "Succeeded", "progress": "3/3", "nodes": { name.clone(): { "outputs": { "parameters": [{ "name": "rows", "value": "42" }] } } } }));
    assert_terminal(&h, "rb", "True", "Completed", "Succeeded");
    assert_eq!(h.status(NS, "rb")["outputs"]["param.rows"], "42");

    let mut h = world();
    submit(&mut h, operation("rb", "Runbook", None, json!({})));
    let (k, ns, name) = only_child(&h, "rb");
    h.set_child_status(k, &ns, &name, json!({ "phase": "Failed", "message": "child 'step-2' failed", "nodes": { "n1": { "displayName": "step-2", "type": "Pod", "phase": "Failed", "message": "exit code 2" } } }));
    assert_terminal(&h, "rb", "False", "EngineFailed", "Failed");
    let msg = h.status(NS, "rb")["message"].as_str().unwrap().to_string();
    assert!(msg.contains("step-2") && msg.contains("exit code 2"), "{msg}");

    let mut h = world();
    submit(&mut h, operation("rb", "Runbook", None, json!({})));
    let (k, ns, name) = only_child(&h, "rb");
    h.set_child_status(k, &ns, &name, json!({ "phase": "Running" }));
    cancel(&mut h, "rb");
    assert_eq!(h.get(ResourceKind::Child(k), &ns, &name).unwrap()["spec"]["shutdown"], "Terminate");
    assert_terminal(&h, "rb", "False", "Cancelled", "Cancelled");
}

#[test]
fn job_success_failure_keeps_reason_and_progressing_states() {
    let mut h = world();
    submit(&mut h, operation("cmd", "RunCommand", None, json!({ "args": ["echo hi"], "env": { "LEVEL": "debug" } })));
    let (k, ns, name) = only_child(&h, "cmd");
    let job = h.get(ResourceKind::Child(k), &ns, &name).unwrap().clone();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "runner");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["containers"][0]["args"], json!(["echo hi"]));
    // The fold never holds env values (nor would a replay): the effector fills them in.
    assert_eq!(pod["containers"][0]["env"], json!([{ "name": "LEVEL", "value": "<redacted>" }]));
    let create = h.commands.iter().find_map(|c| match &c.action {
        vworkspace_operator::command::Action::CreateChild { env_from, .. } => Some(env_from.clone()),
        _ => None,
    });
    assert_eq!(create, Some(Some(vworkspace_operator::command::EnvSource::OperationParameters)));
    assert!(!serde_json::to_string(&h.journal).unwrap().contains("debug"), "no env value in the records");
    h.set_child_status(k, &ns, &name, json!({ "active": 1 }));
    assert_eq!(cond(&h, "cmd", "Progressing"), ("True".into(), "InProgress".into()));
    h.set_child_status(k, &ns, &name, json!({ "failed": 1, "conditions": [{ "type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }] }));
    assert_eq!(cond(&h, "cmd", "Progressing").0, "True", "FailureTarget is not terminal");
    h.set_child_status(k, &ns, &name, json!({ "failed": 2, "conditions": [{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }] }));
    assert_terminal(&h, "cmd", "False", "BackoffLimitExceeded", "Failed");

    let mut h = world();
    submit(&mut h, operation("cmd", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "cmd");
    h.set_child_status(k, &ns, &name, json!({ "conditions": [{ "type": "Suspended", "status": "True" }] }));
    assert_eq!(cond(&h, "cmd", "Progressing"), ("True".into(), "Queued".into()));
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    assert_terminal(&h, "cmd", "True", "Completed", "Succeeded");
    assert_eq!(h.status(NS, "cmd")["outputs"]["exitCode"], "0");
}

#[test]
fn job_cancel_deletes_the_job() {
    let mut h = world();
    submit(&mut h, operation("cmd", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "cmd");
    cancel(&mut h, "cmd");
    assert!(h.get(ResourceKind::Child(k), &ns, &name).is_none());
    assert_terminal(&h, "cmd", "False", "Cancelled", "Cancelled");
}

#[test]
fn snapshot_error_is_retrying_until_ready() {
    let mut h = world();
    submit(&mut h, operation("snap", "Backup", Some("csiSnapshot"), json!({ "pvc": "data-shop-0" })));
    let (k, ns, name) = only_child(&h, "snap");
    let vs = h.get(ResourceKind::Child(k), &ns, &name).unwrap().clone();
    assert_eq!(vs["spec"]["source"]["persistentVolumeClaimName"], "data-shop-0");
    assert_eq!(vs["spec"]["volumeSnapshotClassName"], "csi-hostpath");
    h.set_child_status(k, &ns, &name, json!({ "readyToUse": false, "error": { "message": "rpc error: code = Unavailable", "time": "2026-01-01T00:00:05Z" } }));
    assert_eq!(cond(&h, "snap", "Progressing"), ("True".into(), "Retrying".into()));
    assert_eq!(cond(&h, "snap", "Succeeded").0, "Unknown");
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "readyToUse": true, "boundVolumeSnapshotContentName": "snapcontent-1", "restoreSize": "1Gi" }),
    );
    assert_terminal(&h, "snap", "True", "Completed", "Succeeded");
    let out = &h.status(NS, "snap")["outputs"];
    assert_eq!(
        (out["snapshot"].as_str(), out["content"].as_str(), out["restoreSize"].as_str()),
        (Some(name.as_str()), Some("snapcontent-1"), Some("1Gi"))
    );
}

#[test]
fn snapshot_error_until_deadline_is_deadline_exceeded() {
    let mut h = world();
    let mut op = operation("snap", "Backup", Some("csiSnapshot"), json!({ "pvc": "data" }));
    op["spec"]["deadlineSeconds"] = json!(60);
    submit(&mut h, op);
    let (k, ns, name) = only_child(&h, "snap");
    h.set_child_status(k, &ns, &name, json!({ "readyToUse": false, "error": { "message": "quota exceeded" } }));
    h.advance(59);
    assert_eq!(cond(&h, "snap", "Succeeded").0, "Unknown");
    h.advance(2);
    assert_terminal(&h, "snap", "False", "DeadlineExceeded", "Failed");
    assert!(h.get(ResourceKind::Child(k), &ns, &name).is_none(), "the snapshot is stopped at the deadline");
}

#[test]
fn volsync_uses_manual_trigger_token() {
    let mut h = world();
    submit(&mut h, operation("vs", "Backup", Some("volSync"), json!({ "pvc": "data" })));
    let (k, ns, name) = only_child(&h, "vs");
    assert_eq!(k, ChildKind::ReplicationSource);
    let rs = h.get(ResourceKind::Child(k), &ns, &name).unwrap().clone();
    let token = rs["spec"]["trigger"]["manual"].as_str().unwrap().to_string();
    assert_eq!(rs["spec"]["sourcePVC"], "data");
    assert_eq!(rs["spec"]["restic"]["repository"], "restic-secret");
    // An older sync result does not count.
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "lastManualSync": "other", "latestMoverStatus": { "result": "Successful" } }),
    );
    assert_eq!(cond(&h, "vs", "Succeeded").0, "Unknown");
    h.set_child_status(k, &ns, &name, json!({ "lastManualSync": token, "latestMoverStatus": { "result": "Successful" }, "lastSyncTime": "2026-01-01T00:01:00Z" }));
    assert_terminal(&h, "vs", "True", "Completed", "Succeeded");

    let mut h = world();
    submit(&mut h, operation("vr", "Restore", Some("volSync"), json!({ "pvc": "data" })));
    let (k, ns, name) = only_child(&h, "vr");
    assert_eq!(k, ChildKind::ReplicationDestination);
    assert_eq!(h.get(ResourceKind::Child(k), &ns, &name).unwrap()["spec"]["restic"]["destinationPVC"], "data");
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "latestMoverStatus": { "result": "Failed", "logs": "repository locked" } }),
    );
    assert_terminal(&h, "vr", "False", "EngineFailed", "Failed");
}

fn hook(name: &str, weight: i64) -> vworkspace_operator::command::HelmHook {
    vworkspace_operator::fuzz::objects::hook(name, weight)
}

#[test]
fn helm_hook_jobs_run_in_weight_order_from_the_release_record() {
    let mut h = world();
    h.helm_hooks.insert("shop".into(), vec![hook("db-migrate", 5), hook("db-check", -1)]);
    submit(&mut h, operation("mig", "Migration", Some("helmHookJob"), json!({})));
    let kids = h.children_of("uid-mig");
    assert_eq!(kids.len(), 1, "one hook at a time");
    let (k, key) = kids[0].clone();
    let job = h.get(ResourceKind::Child(k), &key.namespace, &key.name).unwrap().clone();
    assert_eq!(job["metadata"]["annotations"]["ops.vworkspace.io/helm-hook"], "db-check");
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"], "migrator",
        "the template's SA replaces the chart's"
    );
    h.set_child_status(
        k,
        &key.namespace,
        &key.name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    let kids = h.children_of("uid-mig");
    assert_eq!(kids.len(), 2);
    let second = kids.iter().find(|(_, k2)| k2.name != key.name).unwrap().1.clone();
    assert_eq!(
        h.get(ResourceKind::Child(ChildKind::Job), &second.namespace, &second.name).unwrap()["metadata"]["annotations"]
            ["ops.vworkspace.io/helm-hook"],
        "db-migrate"
    );
    h.set_child_status(
        ChildKind::Job,
        &second.namespace,
        &second.name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    assert_terminal(&h, "mig", "True", "Completed", "Succeeded");
    assert_eq!(h.status(NS, "mig")["outputs"]["hooks"], "2");
}

#[test]
fn helm_hook_without_release_record_is_engine_rejected() {
    let mut h = world();
    submit(&mut h, operation("mig", "Migration", Some("helmHookJob"), json!({})));
    assert_terminal(&h, "mig", "False", "EngineRejected", "Failed");
    assert!(h.children_of("uid-mig").is_empty());
}

fn set_app_ready(h: &mut vworkspace_operator::harness::Harness, ready: bool) {
    let mut a = h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap().clone();
    let g = a["metadata"]["generation"].as_i64().unwrap();
    a["status"] = json!({ "observedGeneration": g, "conditions": [ready_condition(ready, g)] });
    h.apply(ResourceKind::ApplicationInstance, a);
}

#[test]
fn upgrade_succeeds_when_target_ready_at_new_generation() {
    let mut h = world();
    submit(&mut h, operation("up", "Upgrade", None, json!({ "version": "1.2.1" })));
    let app = h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap();
    assert_eq!(app["spec"]["chart"]["version"], "1.2.1");
    assert_eq!(cond(&h, "up", "Succeeded").0, "Unknown", "Ready at the old generation does not count");
    set_app_ready(&mut h, true);
    assert_terminal(&h, "up", "True", "Completed", "Succeeded");
    let out = &h.status(NS, "up")["outputs"];
    assert_eq!((out["previousVersion"].as_str(), out["version"].as_str()), (Some("1.2.0"), Some("1.2.1")));
}

#[test]
fn upgrade_failure_rolls_back_only_when_asked() {
    let mut h = world();
    submit(&mut h, operation("up", "Upgrade", None, json!({ "version": "1.2.1" })));
    set_app_ready(&mut h, false);
    assert_terminal(&h, "up", "False", "EngineFailed", "Failed");
    assert_eq!(
        h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap()["spec"]["chart"]["version"],
        "1.2.1",
        "no rollback unless asked"
    );

    let mut h = world();
    submit(&mut h, operation("up", "Upgrade", None, json!({ "version": "1.2.1", "rollbackOnFailure": true })));
    set_app_ready(&mut h, false);
    assert_terminal(&h, "up", "False", "EngineFailed", "Failed");
    assert_eq!(h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap()["spec"]["chart"]["version"], "1.2.0");
    assert!(h.status(NS, "up")["message"].as_str().unwrap().contains("rolled back to 1.2.0"));
    assert!(h.event_reasons("up").contains(&"RollingBack".to_string()));
}

#[test]
fn dry_run_plans_without_children() {
    for (name, ty, engine, params) in [
        ("d1", "Backup", Some("velero"), json!({})),
        ("d2", "RunCommand", None, json!({})),
        ("d3", "Upgrade", None, json!({ "version": "1.2.5" })),
    ] {
        let mut h = world();
        let mut op = operation(name, ty, engine, params);
        op["spec"]["dryRun"] = json!(true);
        submit(&mut h, op);
        assert_terminal(&h, name, "True", "DryRun", "Succeeded");
        assert!(h.children_of(&format!("uid-{name}")).is_empty());
        assert_eq!(h.status(NS, name)["plan"].as_array().unwrap().len(), 1, "{}", h.status(NS, name));
        assert_eq!(h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap()["spec"]["chart"]["version"], "1.2.0");
    }
}

#[test]
fn cancel_before_start_and_cancel_after_finish() {
    let mut h = world();
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(false)));
    submit(&mut h, operation("c", "RunCommand", None, json!({})));
    assert_eq!(h.phase(NS, "c"), "Blocked");
    cancel(&mut h, "c");
    assert_terminal(&h, "c", "False", "Cancelled", "Cancelled");
    assert!(h.children_of("uid-c").is_empty());

    let mut h = world();
    submit(&mut h, operation("c", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "c");
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    cancel(&mut h, "c");
    assert_terminal(&h, "c", "True", "Completed", "Succeeded");
    assert!(h.event_reasons("c").contains(&"CancelIgnored".to_string()));
}

#[test]
fn upgrade_cancel_restores_the_version() {
    let mut h = world();
    submit(&mut h, operation("up", "Upgrade", None, json!({ "version": "1.2.1" })));
    cancel(&mut h, "up");
    assert_terminal(&h, "up", "False", "Cancelled", "Cancelled");
    assert_eq!(h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap()["spec"]["chart"]["version"], "1.2.0");
}

#[test]
fn upgrade_deadline_rolls_back_only_when_asked() {
    for (rollback, version) in [(false, "1.2.1"), (true, "1.2.0")] {
        let mut h = world();
        let mut op = operation("up", "Upgrade", None, json!({ "version": "1.2.1", "rollbackOnFailure": rollback }));
        op["spec"]["deadlineSeconds"] = json!(60);
        submit(&mut h, op);
        h.advance(60);
        assert_terminal(&h, "up", "False", "DeadlineExceeded", "Failed");
        let app = h.get(ResourceKind::ApplicationInstance, NS, "shop").unwrap();
        assert_eq!(app["spec"]["chart"]["version"], version, "rollbackOnFailure={rollback}");
        assert_eq!(h.event_reasons("up").contains(&"RollingBack".to_string()), rollback);
    }
}

#[test]
fn deadline_while_blocked_is_deadline_exceeded_not_failed_early() {
    let mut h = world();
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(false)));
    let mut op = operation("late", "RunCommand", None, json!({}));
    op["spec"]["deadlineSeconds"] = json!(300);
    submit(&mut h, op);
    h.advance(299);
    assert_eq!(h.phase(NS, "late"), "Blocked");
    assert_eq!(cond(&h, "late", "PreconditionsMet"), ("False".into(), "TargetNotReady".into()));
    h.advance(1);
    assert_terminal(&h, "late", "False", "DeadlineExceeded", "Failed");
}

#[test]
fn retention_deletes_finished_operations() {
    let mut h = world();
    h.apply(
        ResourceKind::OperationTemplate,
        template(
            "job-command",
            &["RunCommand"],
            Some("job"),
            json!({ "job": { "image": "busybox" }, "retention": { "ttlSecondsAfterFinished": 600 } }),
        ),
    );
    submit(&mut h, operation("c", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "c");
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    h.advance(599);
    assert!(h.get(ResourceKind::Operation, NS, "c").is_some());
    h.advance(1);
    assert!(h.get(ResourceKind::Operation, NS, "c").is_none());
}

#[test]
fn a_snapshot_of_the_folded_state_round_trips_through_json() {
    // Snapshots are JSON (redacted like records): maps with struct keys must survive it.
    let mut h = world();
    submit(&mut h, operation("snap", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "snap");
    h.set_child_status(k, &ns, &name, json!({ "active": 1 }));
    // A second one waits behind it: the queue index (rebuilt on reading) holds both.
    h.advance(1);
    submit(&mut h, operation("snap-2", "RunCommand", None, json!({})));
    assert_eq!(h.status(NS, "snap-2")["queuePosition"], 1);
    assert!(!h.state.ops.is_empty() && !h.state.world.children.is_empty() && !h.state.by_target.is_empty());
    let bytes = serde_json::to_vec(&h.state).expect("the state serialises");
    let back: vworkspace_operator::fold::State = serde_json::from_slice(&bytes).expect("and reads back");
    assert_eq!(back, h.state);
    // The restart's decoder (world and Operations on two threads) reads exactly the same.
    let parallel = vworkspace_operator::fold::State::from_snapshot(&bytes).expect("decodes in parts");
    assert_eq!(parallel, h.state);
    // A snapshot cut short is an error, not a panic (the restart then folds the journal).
    assert!(vworkspace_operator::fold::State::from_snapshot(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn children_of_ended_operations_are_kept_as_text_and_read_back_the_same() {
    use vworkspace_operator::fold::child::Child;
    let mut h = world();
    submit(&mut h, operation("done", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "done");
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    assert_eq!(h.phase(NS, "done"), "Succeeded");
    h.advance(1);
    submit(&mut h, operation("running", "RunCommand", None, json!({})));
    let (k2, ns2, name2) = only_child(&h, "running");
    h.set_child_status(k2, &ns2, &name2, json!({ "active": 1 }));
    let child = |s: &vworkspace_operator::fold::State, n: &str| {
        s.world.children.iter().find(|((_, key), _)| key.name == n).map(|(_, c)| c.clone()).unwrap()
    };
    assert!(child(&h.state, &name).is_settled(), "the ended Operation's Job is text");
    assert!(matches!(child(&h.state, &name2), Child::Live(_)), "the running one's is a tree");
    // A later event for the settled child keeps it settled, with the new content.
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "ready": 0, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    let settled = child(&h.state, &name);
    assert!(settled.is_settled());
    assert_eq!(settled.value()["status"]["ready"], 0);
    // A snapshot reads back equal, with the same forms.
    let back: vworkspace_operator::fold::State =
        serde_json::from_slice(&serde_json::to_vec(&h.state).unwrap()).unwrap();
    assert_eq!(back, h.state);
    assert!(child(&back, &name).is_settled());
    assert!(matches!(child(&back, &name2), Child::Live(_)));
}
