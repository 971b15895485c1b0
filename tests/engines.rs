//! Table tests: each engine's status mapping over every upstream phase (DESIGN §3), using the
//! upstream example objects in `../shared/third-party-crds/examples/` where they fit.

use std::path::PathBuf;

use serde_json::{Value, json};
use vworkspace_operator::api::reason;
use vworkspace_operator::engine::{Verdict, argo, job, snapshot, upgrade, velero, volsync};

fn shared_example(file: &str) -> Value {
    let dir = std::env::var_os("VWORKSPACE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let path = dir.join("third-party-crds/examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("upstream example {} is needed by this test (set VWORKSPACE_SHARED): {e}", path.display())
    });
    if file.ends_with(".json") {
        serde_json::from_str(&text).expect("json")
    } else {
        serde_yaml::from_str(&text).expect("yaml")
    }
}

/// (contract outcome, reason) of a verdict, for table rows.
fn summary(v: &Verdict) -> (&'static str, String) {
    match v {
        Verdict::Progressing { reason, .. } => ("Progressing", reason.to_string()),
        Verdict::Succeeded { .. } => ("Succeeded", reason::COMPLETED.to_string()),
        Verdict::Failed { reason, .. } => ("Failed", reason.clone()),
    }
}

fn velero_obj(phase: &str) -> Value {
    json!({ "metadata": { "name": "shop-nightly-1a2b3c4d", "namespace": "velero" }, "spec": { "backupName": "b1" }, "status": { "phase": phase } })
}

#[test]
fn velero_backup_every_phase() {
    let rows = [
        ("", "Progressing", "Queued"),
        ("New", "Progressing", "Queued"),
        ("Queued", "Progressing", "Queued"),
        ("ReadyToStart", "Progressing", "Queued"),
        ("InProgress", "Progressing", "InProgress"),
        ("WaitingForPluginOperations", "Progressing", "Finalizing"),
        ("WaitingForPluginOperationsPartiallyFailed", "Progressing", "Finalizing"),
        ("Finalizing", "Progressing", "Finalizing"),
        ("FinalizingPartiallyFailed", "Progressing", "Finalizing"),
        ("Completed", "Succeeded", "Completed"),
        ("PartiallyFailed", "Failed", "PartiallyFailed"),
        ("Failed", "Failed", "EngineFailed"),
        ("FailedValidation", "Failed", "EngineRejected"),
        ("Deleting", "Failed", "ChildLost"),
    ];
    for (phase, outcome, reason) in rows {
        let m = velero::map_backup(&velero_obj(phase));
        assert_eq!(summary(&m.verdict), (outcome, reason.to_string()), "phase {phase:?}");
        assert_eq!(m.outputs["backupName"], "shop-nightly-1a2b3c4d", "backup is linked in every phase");
    }
}

#[test]
fn velero_restore_every_phase() {
    let rows = [
        ("New", "Progressing", "Queued"),
        ("InProgress", "Progressing", "InProgress"),
        ("WaitingForPluginOperations", "Progressing", "Finalizing"),
        ("WaitingForPluginOperationsPartiallyFailed", "Progressing", "Finalizing"),
        ("Finalizing", "Progressing", "Finalizing"),
        ("FinalizingPartiallyFailed", "Progressing", "Finalizing"),
        ("Completed", "Succeeded", "Completed"),
        ("PartiallyFailed", "Failed", "PartiallyFailed"),
        ("Failed", "Failed", "EngineFailed"),
        ("FailedValidation", "Failed", "EngineRejected"),
    ];
    for (phase, outcome, reason) in rows {
        let m = velero::map_restore(&velero_obj(phase));
        assert_eq!(summary(&m.verdict), (outcome, reason.to_string()), "phase {phase:?}");
        assert_eq!(m.outputs["backupName"], "b1");
    }
}

#[test]
fn velero_upstream_examples() {
    let done = velero::map_backup(&shared_example("velero.io_backup_completed_velero-backup-json.json"));
    assert!(matches!(done.verdict, Verdict::Succeeded { .. }));
    assert!(done.outputs.contains_key("expiration"));
    let reference = velero::map_backup(&shared_example("velero.io_backup_docs-reference.yaml"));
    assert_eq!(summary(&reference.verdict), ("Progressing", "Queued".into()), "phase \"\" is New");
    assert_eq!((reference.engine.errors, reference.engine.warnings), (Some(0), Some(2)));
    let restore = velero::map_restore(&shared_example("velero.io_restore_docs-reference.yaml"));
    assert_eq!(summary(&restore.verdict), ("Progressing", "Queued".into()));
    assert_eq!(restore.engine.warnings, Some(2));
}

#[test]
fn velero_partial_failure_reports_counts() {
    let mut obj = velero_obj("PartiallyFailed");
    obj["status"]["errors"] = json!(3);
    obj["status"]["warnings"] = json!(7);
    let m = velero::map_backup(&obj);
    let Verdict::Failed { message, .. } = &m.verdict else { panic!("{:?}", m.verdict) };
    assert!(message.contains("3 errors, 7 warnings"), "{message}");
    let mut obj = velero_obj("FailedValidation");
    obj["status"]["validationErrors"] = json!(["Invalid included/excluded namespace lists"]);
    let Verdict::Failed { message, .. } = velero::map_backup(&obj).verdict else { panic!() };
    assert!(message.contains("Invalid included/excluded namespace lists"));
}

#[test]
fn argo_every_phase_and_upstream_examples() {
    for (phase, outcome, reason) in [
        ("", "Progressing", "Queued"),
        ("Pending", "Progressing", "Queued"),
        ("Running", "Progressing", "InProgress"),
        ("Succeeded", "Succeeded", "Completed"),
        ("Failed", "Failed", "EngineFailed"),
        ("Error", "Failed", "EngineFailed"),
    ] {
        let m = argo::map(&json!({ "metadata": { "name": "wf" }, "status": { "phase": phase, "progress": "2/5" } }));
        assert_eq!(summary(&m.verdict), (outcome, reason.to_string()), "phase {phase:?}");
        assert_eq!(m.engine.progress.map(|p| (p.completed, p.total)), Some((2, 5)));
    }
    let ok = argo::map(&shared_example("argoproj.io_workflow_succeeded-output-parameters.yaml"));
    assert!(matches!(ok.verdict, Verdict::Succeeded { .. }));
    assert_eq!(ok.engine.progress.map(|p| (p.completed, p.total)), Some((6, 6)));
    let art = argo::map(&shared_example("argoproj.io_workflow_succeeded-artifacts.yaml"));
    assert_eq!(art.engine.progress.map(|p| (p.completed, p.total)), Some((2, 2)));
    let dag = argo::map(&shared_example("argoproj.io_workflow_failed-dag.yaml"));
    let Verdict::Failed { reason, message } = &dag.verdict else { panic!("{:?}", dag.verdict) };
    assert_eq!(reason, "EngineFailed");
    assert!(message.contains("C(0)") && message.contains("exit code 2"), "failing Pod node named first: {message}");
    assert!(dag.engine.details.iter().any(|d| d.contains("No more retries left")));
    let exit = argo::map(&shared_example("argoproj.io_workflow_failed-exit-handler.yaml"));
    let Verdict::Failed { message, .. } = &exit.verdict else { panic!() };
    assert!(message.contains("Error (exit code 1)"), "{message}");
}

#[test]
fn argo_output_parameters_become_outputs() {
    let m = argo::map(&json!({
        "metadata": { "name": "wf" },
        "status": { "phase": "Succeeded", "outputs": { "parameters": [{ "name": "report", "value": "s3://x" }] },
                    "nodes": { "wf": { "outputs": { "parameters": [{ "name": "rows", "value": "42" }] } } } },
    }));
    assert_eq!(m.outputs["param.report"], "s3://x");
    assert_eq!(m.outputs["param.rows"], "42");
}

fn job_obj(status: Value) -> Value {
    json!({ "metadata": { "name": "j" }, "spec": { "completions": 1 }, "status": status })
}

#[test]
fn job_every_condition() {
    let c = |t: &str, r: &str| json!({ "conditions": [{ "type": t, "status": "True", "reason": r, "message": "m" }] });
    let rows = [
        (json!({}), "Progressing", "Queued"),
        (json!({ "active": 1 }), "Progressing", "InProgress"),
        (c("Suspended", "JobSuspended"), "Progressing", "Queued"),
        (c("FailureTarget", "BackoffLimitExceeded"), "Progressing", "Finalizing"),
        (c("SuccessCriteriaMet", "CompletionsReached"), "Progressing", "Finalizing"),
        (c("Complete", "CompletionsReached"), "Succeeded", "Completed"),
        (c("Failed", "BackoffLimitExceeded"), "Failed", "BackoffLimitExceeded"),
        (c("Failed", "DeadlineExceeded"), "Failed", "DeadlineExceeded"),
        (c("Failed", "PodFailurePolicy"), "Failed", "PodFailurePolicy"),
        (c("Failed", "bad reason!"), "Failed", "EngineFailed"),
    ];
    for (status, outcome, reason) in rows {
        let m = job::map(&job_obj(status.clone()));
        assert_eq!(summary(&m.verdict), (outcome, reason.to_string()), "{status}");
    }
}

#[test]
fn snapshot_error_is_not_terminal() {
    let rows = [
        (json!(null), "Progressing", "Queued"),
        (json!({ "readyToUse": false, "creationTime": "2026-01-01T00:00:00Z" }), "Progressing", "InProgress"),
        (json!({ "readyToUse": false, "error": { "message": "driver busy" } }), "Progressing", "Retrying"),
        (json!({ "readyToUse": true }), "Progressing", "InProgress"),
        (
            json!({ "readyToUse": true, "boundVolumeSnapshotContentName": "c1", "restoreSize": "1Gi" }),
            "Succeeded",
            "Completed",
        ),
    ];
    for (status, outcome, reason) in rows {
        let m = snapshot::map(&json!({ "metadata": { "name": "s" }, "status": status }));
        assert_eq!(summary(&m.verdict), (outcome, reason.to_string()), "{status}");
    }
    // The upstream describe output (readyToUse, restoreSize 1Gi, bound content) maps to success.
    let m = snapshot::map(
        &json!({ "metadata": { "name": "new-snapshot-demo" }, "status": { "boundVolumeSnapshotContentName": "snapcontent-72d9a1cc", "creationTime": "2020-03-09T21:45:04Z", "readyToUse": true, "restoreSize": "1Gi" } }),
    );
    assert_eq!(m.outputs["restoreSize"], "1Gi");
    assert_eq!(m.outputs["content"], "snapcontent-72d9a1cc");
}

#[test]
fn volsync_token_and_results() {
    let token = volsync::trigger_token("uid-1", 0);
    assert_eq!(token, volsync::trigger_token("uid-1", 0));
    assert_ne!(token, volsync::trigger_token("uid-1", 1));
    let rows = [
        (json!({}), "Progressing", "Queued"),
        (
            json!({ "conditions": [{ "type": "Synchronizing", "status": "True", "message": "Synchronization in-progress" }] }),
            "Progressing",
            "InProgress",
        ),
        (
            json!({ "lastManualSync": "older", "latestMoverStatus": { "result": "Successful" } }),
            "Progressing",
            "Queued",
        ),
        (json!({ "lastManualSync": token, "latestMoverStatus": { "result": "Successful" } }), "Succeeded", "Completed"),
        (json!({ "latestMoverStatus": { "result": "Failed", "logs": "no space left" } }), "Failed", "EngineFailed"),
    ];
    for (status, outcome, reason) in rows {
        let m = volsync::map(&json!({ "metadata": { "name": "r" }, "status": status }), &token);
        assert_eq!(summary(&m.verdict), (outcome, reason.to_string()), "{status}");
    }
}

#[test]
fn upgrade_target_mapping() {
    let app = |status: &str, observed: i64| json!({ "status": { "conditions": [{ "type": "Ready", "status": status, "observedGeneration": observed, "message": "x" }] } });
    assert_eq!(
        summary(&upgrade::map_target(&app("True", 1), 2, "1.1")),
        ("Progressing", "InProgress".into()),
        "old generation"
    );
    assert_eq!(summary(&upgrade::map_target(&app("True", 2), 2, "1.1")), ("Succeeded", "Completed".into()));
    assert_eq!(
        summary(&upgrade::map_target(&app("True", 3), 2, "1.1")),
        ("Succeeded", "Completed".into()),
        "at or after"
    );
    assert_eq!(summary(&upgrade::map_target(&app("False", 2), 2, "1.1")), ("Failed", "EngineFailed".into()));
    assert_eq!(summary(&upgrade::map_target(&app("Unknown", 2), 2, "1.1")), ("Progressing", "InProgress".into()));
    assert_eq!(upgrade::forbidden_match(&["1.3.0".into(), "2.*".into()], "2.4.1"), Some("2.*"));
    assert_eq!(upgrade::forbidden_match(&["1.3.0".into()], "1.3.01"), None);
}
