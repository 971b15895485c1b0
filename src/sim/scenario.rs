//! Pure: the sequence of upstream statuses a simulated child goes through, per scenario.

use serde_json::{Value, json};

use crate::record::ChildKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Succeed,
    PartiallyFail,
    Fail,
    FailValidation,
    /// Many progress steps before success.
    Slow,
    /// `status.error` for a while, then ready (snapshots).
    SnapshotErrorThenReady,
    NeverFinish,
}

impl Scenario {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "succeed" => Scenario::Succeed,
            "partially-fail" | "partial-fail" => Scenario::PartiallyFail,
            "fail" => Scenario::Fail,
            "fail-validation" => Scenario::FailValidation,
            "slow" => Scenario::Slow,
            "snapshot-error-then-ready" => Scenario::SnapshotErrorThenReady,
            "never-finish" => Scenario::NeverFinish,
            _ => return None,
        })
    }
}

const T0: &str = "2026-01-01T00:00:00Z";

/// The status to write at `step` (0-based), or `None` when the child has reached its end.
/// `instant` jumps straight to the final status.
pub fn status_at(kind: ChildKind, scenario: Scenario, step: usize, obj: &Value, instant: bool) -> Option<Value> {
    let seq = sequence(kind, scenario, obj);
    let index = if instant && scenario != Scenario::NeverFinish { seq.len().checked_sub(1)? } else { step };
    if instant && step > 0 && scenario != Scenario::NeverFinish {
        return None;
    }
    if scenario == Scenario::NeverFinish && step >= seq.len() {
        return None;
    }
    // No marker field: schemaful upstream CRDs prune unknown status fields, as in a cluster.
    seq.get(index).cloned()
}

fn velero(restore: bool, scenario: Scenario) -> Vec<Value> {
    let done = if restore { "itemsRestored" } else { "itemsBackedUp" };
    let p = |n: i64| json!({ "totalItems": 10, done: n });
    let mut seq = vec![json!({ "phase": "New" })];
    if !restore {
        seq.push(json!({ "phase": "Queued", "queuePosition": 1 }));
    }
    match scenario {
        Scenario::FailValidation => {
            seq.push(json!({ "phase": "FailedValidation", "validationErrors": ["simulator: backup storage location \"default\" is unavailable"] }));
            return seq;
        }
        Scenario::Fail => {
            seq.push(json!({ "phase": "InProgress", "startTimestamp": T0, "progress": p(2) }));
            seq.push(json!({ "phase": "Failed", "failureReason": "simulator: object storage unreachable", "startTimestamp": T0, "completionTimestamp": T0 }));
            return seq;
        }
        Scenario::NeverFinish => {
            seq.push(json!({ "phase": "InProgress", "startTimestamp": T0, "progress": p(1) }));
            return seq;
        }
        _ => {}
    }
    let steps: &[i64] = if scenario == Scenario::Slow { &[0, 2, 4, 6, 8] } else { &[0, 5] };
    for n in steps {
        seq.push(json!({ "phase": "InProgress", "startTimestamp": T0, "progress": p(*n) }));
    }
    seq.push(json!({ "phase": if restore { "Finalizing" } else { "WaitingForPluginOperations" }, "startTimestamp": T0, "progress": p(10) }));
    let (phase, errors, warnings) = match scenario {
        Scenario::PartiallyFail => ("PartiallyFailed", 2, 3),
        _ => ("Completed", 0, 1),
    };
    let mut last = json!({ "phase": phase, "startTimestamp": T0, "completionTimestamp": T0, "progress": p(10), "errors": errors, "warnings": warnings });
    if !restore {
        last["expiration"] = json!("2026-02-01T00:00:00Z");
        last["version"] = json!(1);
    }
    seq.push(last);
    seq
}

fn workflow(scenario: Scenario, obj: &Value) -> Vec<Value> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("wf").to_string();
    let shutdown = obj.pointer("/spec/shutdown").and_then(Value::as_str).is_some();
    let mut seq = vec![
        json!({ "phase": "Pending", "progress": "0/2", "startedAt": T0 }),
        json!({ "phase": "Running", "progress": "0/2", "startedAt": T0 }),
    ];
    if shutdown {
        seq.push(json!({ "phase": "Failed", "progress": "0/2", "message": "Stopped with strategy 'Terminate'", "startedAt": T0, "finishedAt": T0 }));
        return seq;
    }
    match scenario {
        Scenario::Fail | Scenario::PartiallyFail | Scenario::FailValidation => {
            seq.push(json!({
                "phase": "Failed", "progress": "1/2", "message": "child 'migrate' failed", "startedAt": T0, "finishedAt": T0,
                "nodes": {
                    name.clone(): { "id": name, "name": name, "displayName": name, "type": "Steps", "phase": "Failed", "message": "child 'migrate' failed" },
                    format!("{name}-1"): { "id": format!("{name}-1"), "name": format!("{name}[0].migrate"), "displayName": "migrate", "type": "Pod", "phase": "Failed", "message": "Error (exit code 1)" },
                },
            }));
        }
        Scenario::NeverFinish => {}
        _ => {
            if scenario == Scenario::Slow {
                seq.push(json!({ "phase": "Running", "progress": "1/2", "startedAt": T0 }));
            }
            seq.push(json!({
                "phase": "Succeeded", "progress": "2/2", "startedAt": T0, "finishedAt": T0,
                "nodes": { name.clone(): { "id": name, "name": name, "displayName": name, "type": "Steps", "phase": "Succeeded",
                    "outputs": { "parameters": [{ "name": "result", "value": "simulated" }] } } },
            }));
        }
    }
    seq
}

fn job(scenario: Scenario) -> Vec<Value> {
    let mut seq = vec![json!({ "active": 1, "ready": 1, "startTime": T0 })];
    let cond = |t: &str, r: &str, m: &str| json!({ "type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": T0, "lastProbeTime": T0 });
    match scenario {
        Scenario::Fail | Scenario::PartiallyFail | Scenario::FailValidation => {
            let c = cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit");
            seq.push(json!({ "failed": 1, "startTime": T0, "conditions": [c] }));
            let f = cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit");
            seq.push(json!({ "failed": 1, "startTime": T0, "conditions": [c, f] }));
        }
        Scenario::NeverFinish => {}
        _ => {
            let c = cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods");
            seq.push(json!({ "succeeded": 1, "startTime": T0, "conditions": [c] }));
            let done = cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods");
            seq.push(json!({ "succeeded": 1, "startTime": T0, "completionTime": T0, "conditions": [c, done] }));
        }
    }
    seq
}

fn snapshot(scenario: Scenario, obj: &Value) -> Vec<Value> {
    let content = format!("snapcontent-{}", obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("sim"));
    let err = json!({ "readyToUse": false, "error": { "message": "simulator: rpc error: code = Unavailable desc = driver busy", "time": T0 } });
    let mut seq = vec![json!({ "readyToUse": false, "creationTime": T0, "boundVolumeSnapshotContentName": content })];
    match scenario {
        Scenario::SnapshotErrorThenReady => seq.extend([err.clone(), err]),
        Scenario::Fail | Scenario::NeverFinish | Scenario::PartiallyFail | Scenario::FailValidation => {
            seq.push(err);
            return seq;
        }
        _ => {}
    }
    seq.push(json!({ "readyToUse": true, "creationTime": T0, "boundVolumeSnapshotContentName": content, "restoreSize": "1Gi" }));
    seq
}

fn volsync(scenario: Scenario, obj: &Value) -> Vec<Value> {
    let token = obj.pointer("/spec/trigger/manual").and_then(Value::as_str).unwrap_or("").to_string();
    let syncing = json!({ "type": "Synchronizing", "status": "True", "reason": "SyncInProgress", "message": "Synchronization in-progress", "lastTransitionTime": T0 });
    let idle = json!({ "type": "Synchronizing", "status": "False", "reason": "WaitingForManual", "message": "Waiting for manual trigger", "lastTransitionTime": T0 });
    let mut seq = vec![json!({ "conditions": [syncing], "lastSyncStartTime": T0 })];
    match scenario {
        Scenario::Fail | Scenario::PartiallyFail | Scenario::FailValidation => {
            seq.push(json!({ "conditions": [idle], "latestMoverStatus": { "result": "Failed", "logs": "simulator: repository is locked" } }));
        }
        Scenario::NeverFinish => {}
        _ => {
            let mut last = json!({ "conditions": [idle], "lastManualSync": token, "lastSyncTime": T0, "lastSyncDuration": "12s",
                "latestMoverStatus": { "result": "Successful", "logs": "simulator: snapshot saved" } });
            if obj.get("kind").and_then(Value::as_str) == Some("ReplicationDestination") {
                last["latestImage"] = json!({ "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "volsync-dest-snap" });
            }
            seq.push(last);
        }
    }
    seq
}

fn sequence(kind: ChildKind, scenario: Scenario, obj: &Value) -> Vec<Value> {
    match kind {
        ChildKind::VeleroBackup => velero(false, scenario),
        ChildKind::VeleroRestore => velero(true, scenario),
        ChildKind::Workflow => workflow(scenario, obj),
        ChildKind::Job => job(scenario),
        ChildKind::VolumeSnapshot => snapshot(scenario, obj),
        ChildKind::ReplicationSource | ChildKind::ReplicationDestination => volsync(scenario, obj),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{self, Verdict};

    /// Each simulated sequence ends where the engine mapping says it should.
    #[test]
    fn simulated_endings_map_to_the_contract() {
        let obj = json!({ "metadata": { "name": "c", "uid": "u" }, "spec": { "trigger": { "manual": "tok" } } });
        let end = |k, s| {
            let seq = sequence(k, s, &obj);
            let mut o = obj.clone();
            o["status"] = seq.last().cloned().unwrap_or_default();
            o
        };
        assert!(matches!(
            engine::velero::map_backup(&end(ChildKind::VeleroBackup, Scenario::Succeed)).verdict,
            Verdict::Succeeded { .. }
        ));
        assert!(matches!(
            engine::velero::map_backup(&end(ChildKind::VeleroBackup, Scenario::PartiallyFail)).verdict,
            Verdict::Failed { .. }
        ));
        assert!(matches!(
            engine::velero::map_restore(&end(ChildKind::VeleroRestore, Scenario::FailValidation)).verdict,
            Verdict::Failed { .. }
        ));
        assert!(matches!(
            engine::argo::map(&end(ChildKind::Workflow, Scenario::Succeed)).verdict,
            Verdict::Succeeded { .. }
        ));
        assert!(matches!(engine::argo::map(&end(ChildKind::Workflow, Scenario::Fail)).verdict, Verdict::Failed { .. }));
        assert!(matches!(engine::job::map(&end(ChildKind::Job, Scenario::Succeed)).verdict, Verdict::Succeeded { .. }));
        assert!(matches!(engine::job::map(&end(ChildKind::Job, Scenario::Fail)).verdict, Verdict::Failed { .. }));
        assert!(matches!(
            engine::snapshot::map(&end(ChildKind::VolumeSnapshot, Scenario::SnapshotErrorThenReady)).verdict,
            Verdict::Succeeded { .. }
        ));
        assert!(matches!(
            engine::snapshot::map(&end(ChildKind::VolumeSnapshot, Scenario::Fail)).verdict,
            Verdict::Progressing { .. }
        ));
        assert!(matches!(
            engine::volsync::map(&end(ChildKind::ReplicationSource, Scenario::Succeed), "tok").verdict,
            Verdict::Succeeded { .. }
        ));
        assert!(matches!(
            engine::volsync::map(&end(ChildKind::ReplicationSource, Scenario::Fail), "tok").verdict,
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn instant_mode_writes_only_the_final_status() {
        let obj = json!({ "metadata": { "name": "c" } });
        let first = status_at(ChildKind::VeleroBackup, Scenario::Succeed, 0, &obj, true).unwrap();
        assert_eq!(first["phase"], "Completed");
        assert!(status_at(ChildKind::VeleroBackup, Scenario::Succeed, 1, &obj, true).is_none());
        assert!(status_at(ChildKind::Job, Scenario::NeverFinish, 5, &obj, false).is_none());
    }
}
