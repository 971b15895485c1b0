//! Given/when/then for every rejection reason of `Accepted` and every precondition (DESIGN §2).

mod common;

use common::*;
use serde_json::json;
use vworkspace_operator::fold::reconcile::ACCEPT_GRACE_SECS;
use vworkspace_operator::record::{ChildKind, ResourceKind};

/// Submits and returns (Accepted, Succeeded) as (status, reason) pairs.
fn outcome_of(
    h: &mut vworkspace_operator::harness::Harness,
    op: serde_json::Value,
) -> ((String, String), (String, String)) {
    let name = op["metadata"]["name"].as_str().unwrap().to_string();
    submit(h, op);
    (cond(h, &name, "Accepted"), cond(h, &name, "Succeeded"))
}

fn assert_rejected(h: &mut vworkspace_operator::harness::Harness, op: serde_json::Value, reason: &str, hint: &str) {
    let name = op["metadata"]["name"].as_str().unwrap().to_string();
    let (accepted, succeeded) = outcome_of(h, op);
    assert_eq!(accepted, ("False".to_string(), reason.to_string()), "{}", h.status(NS, &name));
    assert_eq!(succeeded, ("False".to_string(), "Rejected".to_string()));
    assert_eq!(h.phase(NS, &name), "Failed");
    let msg = h.status(NS, &name)["message"].as_str().unwrap().to_string();
    assert!(msg.contains(hint), "message {msg:?} should mention {hint:?}");
    assert!(h.children_of(&format!("uid-{name}")).is_empty(), "a rejected Operation has no child");
    assert!(h.event_reasons(&name).contains(&reason.to_string()), "an Event carries the reason");
}

#[test]
fn unknown_template_waits_then_rejects() {
    let mut h = world();
    let mut op = operation("o", "Backup", Some("velero"), json!({}));
    op["spec"]["template"] = json!("nope");
    submit(&mut h, op);
    assert_eq!(cond(&h, "o", "Accepted"), ("False".into(), "UnknownTemplate".into()));
    assert_eq!(h.phase(NS, "o"), "Pending", "a missing template may still appear");
    h.advance(ACCEPT_GRACE_SECS);
    assert_eq!(cond(&h, "o", "Succeeded"), ("False".into(), "Rejected".into()));
    assert!(h.status(NS, "o")["message"].as_str().unwrap().contains("no OperationTemplate named nope"));
}

#[test]
fn template_that_appears_in_time_is_used() {
    let mut h = world();
    let mut op = operation("o", "RunCommand", None, json!({}));
    op["spec"]["template"] = json!("late-template");
    submit(&mut h, op);
    h.advance(5);
    h.apply(
        ResourceKind::OperationTemplate,
        template("late-template", &["RunCommand"], Some("job"), json!({ "job": { "image": "busybox" } })),
    );
    assert_eq!(cond(&h, "o", "Accepted"), ("True".into(), "Valid".into()));
    assert_eq!(h.children_of("uid-o").len(), 1);
}

#[test]
fn type_not_allowed_by_named_template() {
    let mut h = world();
    let mut op = operation("o", "Restore", None, json!({}));
    op["spec"]["template"] = json!("job-command");
    assert_rejected(&mut h, op, "TypeNotAllowed", "does not allow type Restore");
}

#[test]
fn type_not_allowed_when_no_template_covers_it() {
    let mut h = Harness::new();
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(true)));
    submit(&mut h, operation("o", "Runbook", None, json!({})));
    assert_eq!(cond(&h, "o", "Accepted"), ("False".into(), "TypeNotAllowed".into()));
    h.advance(ACCEPT_GRACE_SECS);
    assert_eq!(cond(&h, "o", "Succeeded"), ("False".into(), "Rejected".into()));
}

use vworkspace_operator::harness::Harness;

#[test]
fn engine_not_allowed_by_named_template() {
    let mut h = world();
    let mut op = operation("o", "Backup", Some("csiSnapshot"), json!({ "pvc": "data" }));
    op["spec"]["template"] = json!("velero-backup");
    assert_rejected(&mut h, op, "EngineNotAllowed", "runs engine velero, not csiSnapshot");
}

#[test]
fn engine_not_allowed_for_the_type() {
    let mut h = world();
    h.apply(ResourceKind::OperationTemplate, template("odd", &["RunCommand"], Some("csiSnapshot"), json!({})));
    let mut op = operation("o", "RunCommand", None, json!({}));
    op["spec"]["template"] = json!("odd");
    assert_rejected(&mut h, op, "EngineNotAllowed", "cannot run RunCommand");
}

#[test]
fn upgrade_takes_no_engine() {
    let mut h = world();
    let mut op = operation("o", "Upgrade", Some("job"), json!({ "version": "1.2.1" }));
    op["spec"]["template"] = json!("upgrade");
    assert_rejected(&mut h, op, "EngineNotAllowed", "takes no engine");
}

#[test]
fn invalid_parameters_against_the_template_schema() {
    let mut h = world();
    h.apply(
        ResourceKind::OperationTemplate,
        template("job-command", &["RunCommand"], Some("job"), json!({
            "job": { "image": "busybox", "allowArgs": true },
            "parametersSchema": { "type": "object", "properties": { "args": { "type": "array", "items": { "type": "string" }, "maxItems": 2 } }, "additionalProperties": false },
        })),
    );
    assert_rejected(
        &mut h,
        operation("o", "RunCommand", None, json!({ "args": ["a", "b", "c"] })),
        "InvalidParameters",
        "parameters/args",
    );
    assert_rejected(
        &mut h,
        operation("p", "RunCommand", None, json!({ "image": "evil" })),
        "InvalidParameters",
        "image",
    );
}

#[test]
fn invalid_parameters_declared_by_the_engine() {
    let mut h = world();
    assert_rejected(
        &mut h,
        operation("a", "Restore", Some("velero"), json!({})),
        "InvalidParameters",
        "backupName is required",
    );
    assert_rejected(
        &mut h,
        operation("b", "Backup", Some("velero"), json!({ "ttl": "forever" })),
        "InvalidParameters",
        "not a duration",
    );
    assert_rejected(
        &mut h,
        operation("c", "RunCommand", None, json!({ "podSpec": { "hostPID": true } })),
        "InvalidParameters",
        "podSpec is not accepted",
    );
    assert_rejected(
        &mut h,
        operation("d", "Backup", Some("csiSnapshot"), json!({})),
        "InvalidParameters",
        "pvc is required",
    );
    assert_rejected(
        &mut h,
        operation("e", "Runbook", None, json!({ "nested": { "a": 1 } })),
        "InvalidParameters",
        "must be a string",
    );
    assert_rejected(
        &mut h,
        operation("f", "RunCommand", None, json!({ "env": { "1BAD": "x" } })),
        "InvalidParameters",
        "not a valid variable name",
    );
}

#[test]
fn oversized_and_deeply_nested_parameters() {
    let mut h = world();
    let big = "x".repeat(70 * 1024);
    assert_rejected(
        &mut h,
        operation("big", "Runbook", None, json!({ "blob": big })),
        "InvalidParameters",
        "the limit is 65536",
    );
    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!({ "n": deep });
    }
    assert_rejected(
        &mut h,
        operation("deep", "Runbook", None, json!({ "d": deep })),
        "InvalidParameters",
        "nest deeper",
    );
}

#[test]
fn deadline_above_the_template_maximum() {
    let mut h = world();
    h.apply(
        ResourceKind::OperationTemplate,
        template(
            "job-command",
            &["RunCommand"],
            Some("job"),
            json!({ "job": { "image": "busybox" }, "maxDeadlineSeconds": 600 }),
        ),
    );
    let mut op = operation("o", "RunCommand", None, json!({}));
    op["spec"]["deadlineSeconds"] = json!(3600);
    assert_rejected(&mut h, op, "InvalidParameters", "exceeds the template's maximum of 600");
}

#[test]
fn target_not_found_waits_then_rejects() {
    let mut h = world();
    let mut op = operation("o", "RunCommand", None, json!({}));
    op["spec"]["target"]["name"] = json!("ghost");
    submit(&mut h, op);
    assert_eq!(cond(&h, "o", "Accepted"), ("False".into(), "TargetNotFound".into()));
    h.advance(ACCEPT_GRACE_SECS);
    assert_eq!(cond(&h, "o", "Succeeded"), ("False".into(), "Rejected".into()));
}

#[test]
fn target_lacks_capability() {
    let mut h = world();
    let mut a = app("shop", Some(true));
    a["metadata"]["annotations"].as_object_mut().unwrap().remove("ops.vworkspace.io/run-command");
    a["metadata"]["annotations"]["ops.vworkspace.io/backup"] = json!("csiSnapshot");
    h.apply(ResourceKind::ApplicationInstance, a);
    assert_rejected(
        &mut h,
        operation("o", "RunCommand", None, json!({})),
        "TargetLacksCapability",
        "does not declare ops.vworkspace.io/run-command",
    );
    assert_rejected(
        &mut h,
        operation("p", "Backup", Some("velero"), json!({})),
        "TargetLacksCapability",
        "only with [csiSnapshot], not velero",
    );
}

#[test]
fn engine_unavailable_until_its_crd_appears() {
    let mut h = world();
    h.discovery(&[ChildKind::Workflow]);
    submit(&mut h, operation("o", "Backup", Some("velero"), json!({})));
    assert_eq!(cond(&h, "o", "Accepted"), ("False".into(), "EngineUnavailable".into()));
    h.advance(3600);
    assert_eq!(cond(&h, "o", "Succeeded").0, "Unknown", "EngineUnavailable waits (no deadline set)");
    h.discovery(&[ChildKind::Workflow, ChildKind::VeleroBackup, ChildKind::VeleroRestore]);
    assert_eq!(cond(&h, "o", "Accepted"), ("True".into(), "Valid".into()));
    assert_eq!(h.children_of("uid-o").len(), 1);
}

#[test]
fn forbidden_version() {
    let mut h = world();
    assert_rejected(
        &mut h,
        operation("a", "Upgrade", None, json!({ "version": "1.3.0" })),
        "ForbiddenVersion",
        "matches 1.3.0",
    );
    assert_rejected(
        &mut h,
        operation("b", "Upgrade", None, json!({ "version": "2.0.1" })),
        "ForbiddenVersion",
        "matches 2.*",
    );
}

#[test]
fn forbidden_namespace_and_cross_namespace_restore() {
    let mut h = world();
    let mut t = template("other-ns", &["RunCommand"], Some("job"), json!({ "job": { "image": "busybox" } }));
    t["spec"]["namespaces"] = json!(["payments"]);
    h.apply(ResourceKind::OperationTemplate, t);
    let mut op = operation("a", "RunCommand", None, json!({}));
    op["spec"]["template"] = json!("other-ns");
    assert_rejected(&mut h, op, "Forbidden", "does not allow namespace shop");
    assert_rejected(
        &mut h,
        operation("b", "Restore", Some("velero"), json!({ "backupName": "x", "targetNamespace": "payments" })),
        "Forbidden",
        "restore into namespace payments is not allowed",
    );
}

#[test]
fn restore_of_another_namespaces_backup_is_forbidden() {
    let mut h = world();
    h.apply(
        ResourceKind::Child(ChildKind::VeleroBackup),
        json!({ "apiVersion": "velero.io/v1", "kind": "Backup", "metadata": { "name": "payments-nightly", "namespace": "velero", "labels": { "ops.vworkspace.io/operation-namespace": "payments" } } }),
    );
    assert_rejected(
        &mut h,
        operation("r", "Restore", Some("velero"), json!({ "backupName": "payments-nightly" })),
        "Forbidden",
        "belongs to namespace payments",
    );
}

#[test]
fn bad_template_is_reported_on_the_operation() {
    let mut h = world();
    h.apply(ResourceKind::OperationTemplate, json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": "broken" }, "spec": { "types": ["Nope"] } }));
    h.apply(ResourceKind::OperationTemplate, template("bad-schema", &["RunCommand"], Some("job"), json!({ "job": { "image": "b" }, "parametersSchema": { "type": "object", "properties": { "a": { "type": 12 } } } })));
    let mut op = operation("a", "RunCommand", None, json!({}));
    op["spec"]["template"] = json!("broken");
    submit(&mut h, op);
    assert_eq!(cond(&h, "a", "Accepted"), ("False".into(), "UnknownTemplate".into()));
    assert!(h.status(NS, "a")["message"].as_str().unwrap().contains("OperationTemplate broken is invalid"));
    let mut op = operation("b", "RunCommand", None, json!({}));
    op["spec"]["template"] = json!("bad-schema");
    submit(&mut h, op);
    assert!(h.status(NS, "b")["message"].as_str().unwrap().contains("does not compile"), "{}", h.status(NS, "b"));
}

#[test]
fn unparseable_spec_is_rejected_not_crashed() {
    let mut h = world();
    let mut op = operation("o", "RunCommand", None, json!({}));
    op["spec"]["type"] = json!("Explode");
    assert_rejected(&mut h, op, "InvalidParameters", "spec does not parse");
}

// ---- Preconditions ----

#[test]
fn target_not_ready_blocks_then_starts_without_resubmission() {
    let mut h = world();
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(false)));
    submit(&mut h, operation("o", "RunCommand", None, json!({})));
    assert_eq!(cond(&h, "o", "PreconditionsMet"), ("False".into(), "TargetNotReady".into()));
    assert_eq!(h.phase(NS, "o"), "Blocked");
    assert_eq!(cond(&h, "o", "Succeeded").0, "Unknown", "blocked is not failed");
    assert!(h.children_of("uid-o").is_empty());
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(true)));
    assert_eq!(cond(&h, "o", "PreconditionsMet"), ("True".into(), "Met".into()));
    assert_eq!(h.children_of("uid-o").len(), 1);
}

#[test]
fn conflicting_operations_queue_oldest_first() {
    let mut h = world();
    submit(&mut h, operation("first", "RunCommand", None, json!({})));
    h.advance(1);
    submit(&mut h, operation("second", "RunCommand", None, json!({})));
    h.advance(1);
    submit(&mut h, operation("third", "Backup", Some("velero"), json!({})));
    assert_eq!(h.children_of("uid-first").len(), 1);
    assert_eq!(cond(&h, "second", "PreconditionsMet"), ("False".into(), "ConflictingOperation".into()));
    assert_eq!(h.status(NS, "second")["queuePosition"], 1);
    assert_eq!(h.status(NS, "third")["queuePosition"], 2);
    assert_eq!(h.phase(NS, "third"), "Blocked");
    let (k, ns, name) = only_child(&h, "first");
    h.set_child_status(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    assert_eq!(h.children_of("uid-second").len(), 1, "second starts without being resubmitted");
    assert_eq!(h.status(NS, "third")["queuePosition"], 1);
    assert!(h.children_of("uid-third").is_empty());
}

/// A deep queue: places up to 10 are exact and name who is ahead; beyond that they are rounded
/// down (10, 20, 50, …), so a waiting Operation's status is not rewritten on every move.
#[test]
fn a_deep_queue_shows_rounded_places_and_rewrites_each_status_rarely() {
    let mut h = world();
    let n = 30;
    for i in 0..n {
        submit(&mut h, operation(&format!("op-{i:02}"), "RunCommand", None, json!({})));
        h.advance(1);
    }
    let last = format!("op-{:02}", n - 1);
    assert_eq!(h.status(NS, &last)["queuePosition"], 20, "29 ahead is shown as 20+");
    let msg = h.status(NS, &last)["message"].as_str().unwrap().to_string();
    assert!(msg.contains("waiting for 20+ Operations on shop to finish; queue position 20+"), "{msg}");
    assert_eq!(h.status(NS, "op-05")["queuePosition"], 5);
    let named = h.status(NS, "op-03")["message"].as_str().unwrap().to_string();
    assert!(named.contains("(op-00, op-01, op-02); queue position 3"), "{named}");
    for i in 0..n - 1 {
        let (k, ns, name) = only_child(&h, &format!("op-{i:02}"));
        h.set_child_status(
            k,
            &ns,
            &name,
            json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
        );
        let next = format!("op-{:02}", i + 1);
        assert_eq!(h.children_of(&format!("uid-{next}")).len(), 1, "{next} starts when {i} ends");
        // Every waiting Operation shows its place: exact near the front, rounded down behind.
        for j in i + 2..n {
            let ahead = j - i - 1;
            let want = match ahead {
                0..=10 => ahead,
                11..=19 => 10,
                _ => 20,
            };
            assert_eq!(h.status(NS, &format!("op-{j:02}"))["queuePosition"], want, "op-{j:02} with {ahead} ahead");
        }
    }
    let shown: Vec<u64> = h
        .commands
        .iter()
        .filter(|c| c.op.name == last)
        .filter_map(|c| match &c.action {
            vworkspace_operator::command::Action::PatchStatus { status } => status.queue_position.map(u64::from),
            _ => None,
        })
        .collect();
    // One status write per shown place, not one per move: 20+, 10+, then 10 (with names) to 1.
    assert_eq!(shown, [20, 10, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1], "the places the last one was shown");
    assert_eq!(h.phase(NS, &last), "Running");
}

#[test]
fn missing_secret_blocks_until_created() {
    let mut h = world();
    h.apply(
        ResourceKind::OperationTemplate,
        template(
            "job-command",
            &["RunCommand"],
            Some("job"),
            json!({ "job": { "image": "busybox" }, "preconditions": { "requiredSecrets": ["db-credentials"] } }),
        ),
    );
    submit(&mut h, operation("o", "RunCommand", None, json!({})));
    assert_eq!(cond(&h, "o", "PreconditionsMet"), ("False".into(), "MissingSecret".into()));
    assert!(h.status(NS, "o")["message"].as_str().unwrap().contains("db-credentials"));
    h.apply(
        ResourceKind::Secret,
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "db-credentials", "namespace": NS } }),
    );
    assert_eq!(cond(&h, "o", "PreconditionsMet"), ("True".into(), "Met".into()));
    assert_eq!(h.children_of("uid-o").len(), 1);
}

fn secret_template(h: &mut vworkspace_operator::harness::Harness) {
    let schema = json!({ "type": "object", "properties": { "env": { "type": "object",
        "properties": { "DB_PASSWORD": { "type": "object", "x-vworkspace-secret": true,
            "properties": { "secretKeyRef": { "type": "object", "properties": { "name": { "enum": ["db-credentials"] } } } } } },
        "additionalProperties": { "type": "string" } } } });
    let t = template(
        "job-command",
        &["RunCommand"],
        Some("job"),
        json!({ "job": { "image": "busybox" }, "parametersSchema": schema }),
    );
    h.apply(ResourceKind::OperationTemplate, t);
}

#[test]
fn secret_parameters_reach_the_job_only_as_references() {
    let mut h = world();
    secret_template(&mut h);
    let reference = json!({ "secretKeyRef": { "name": "db-credentials", "key": "password" } });
    submit(
        &mut h,
        operation("o", "RunCommand", None, json!({ "env": { "DB_PASSWORD": reference, "LEVEL": "debug" } })),
    );
    // The referenced Secret is a precondition.
    assert_eq!(cond(&h, "o", "PreconditionsMet"), ("False".into(), "MissingSecret".into()));
    h.apply(
        ResourceKind::Secret,
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "db-credentials", "namespace": NS } }),
    );
    let (k, ns, name) = only_child(&h, "o");
    let env = &h.get(ResourceKind::Child(k), &ns, &name).unwrap()["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        *env,
        json!([{ "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db-credentials", "key": "password" } } },
               { "name": "LEVEL", "value": "<redacted>" }])
    );
}

#[test]
fn secret_parameters_given_as_values_or_unplanned_references_are_rejected() {
    for (params, want) in [
        (json!({ "env": { "DB_PASSWORD": "hunter2" } }), "never the value"),
        (
            json!({ "env": { "LEVEL": { "secretKeyRef": { "name": "db-credentials", "key": "k" } } } }),
            "does not mark it secret",
        ),
        (
            json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "other-team", "key": "k" } } } }),
            "do not match the template's schema",
        ),
        (json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "x/y", "key": "k" } } } }), "not a Secret name"),
    ] {
        let mut h = world();
        secret_template(&mut h);
        submit(&mut h, operation("o", "RunCommand", None, params.clone()));
        assert_eq!(cond(&h, "o", "Accepted"), ("False".into(), "InvalidParameters".into()), "{params}");
        let msg = h.status(NS, "o")["message"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{params}: {msg}");
        assert!(!msg.contains("hunter2"), "the value is not echoed: {msg}");
        assert!(h.children_of("uid-o").is_empty());
    }
}

#[test]
fn foreign_object_with_the_child_name_is_never_overwritten() {
    let mut h = world();
    // Learn the deterministic name from a dry run with the same UID.
    let child_name = vworkspace_operator::engine::naming::child_name("cmd", "uid-cmd", 0);
    h.apply(
        ResourceKind::Child(ChildKind::Job),
        json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": child_name, "namespace": NS, "labels": { "app": "someone-else" } } }),
    );
    submit(&mut h, operation("cmd", "RunCommand", None, json!({})));
    assert_eq!(cond(&h, "cmd", "Succeeded"), ("False".into(), "Rejected".into()));
    assert!(h.status(NS, "cmd")["message"].as_str().unwrap().contains("does not belong to this Operation"));
    assert!(
        h.get(ResourceKind::Child(ChildKind::Job), NS, &child_name).unwrap()["metadata"]["labels"]
            .get("ops.vworkspace.io/operation-uid")
            .is_none()
    );
}

#[test]
fn every_condition_is_set_from_the_first_reconcile() {
    let mut h = world();
    h.apply(ResourceKind::ApplicationInstance, app("shop", Some(false)));
    submit(&mut h, operation("o", "RunCommand", None, json!({})));
    let st = h.status(NS, "o");
    let types: Vec<&str> = st["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Accepted", "PreconditionsMet", "Progressing", "Succeeded", "Reconciling", "Stalled"]);
    assert_eq!(cond(&h, "o", "Succeeded").0, "Unknown");
    assert_eq!(st["observedGeneration"], 1);
    for c in st["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], 1);
        assert!(c["lastTransitionTime"].is_string());
    }
}
