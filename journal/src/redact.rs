//! Redaction, applied to every record before a byte is written (DESIGN §4). It walks the whole
//! record, so objects inside commands and outcomes are covered too. It cannot be turned off.
//!
//! - Secret `data` / `stringData`: values replaced, keys kept;
//! - `metadata.managedFields`: removed (an Operation keeps each entry's manager and operation);
//! - the `kubectl.kubernetes.io/last-applied-configuration` annotation: removed;
//! - `env[].value` in pod templates (Jobs, Workflows, anything with containers): replaced;
//! - an Operation's `spec.parameters.env` values (they become a Job's env): replaced, names kept.

use serde_json::Value;

pub const REDACTED: &str = "<redacted>";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let is_secret = map.get("kind").and_then(Value::as_str) == Some("Secret") && map.contains_key("metadata");
            if is_secret {
                for field in ["data", "stringData"] {
                    if let Some(Value::Object(d)) = map.get_mut(field) {
                        for val in d.values_mut() {
                            *val = Value::String(REDACTED.into());
                        }
                    }
                }
            }
            if map.get("kind").and_then(Value::as_str) == Some("Operation")
                && let Some(Value::Object(env)) = map.get_mut("spec").and_then(|s| s.pointer_mut("/parameters/env"))
            {
                // Values only: a `secretKeyRef` is a reference, not a secret, and the fold needs it.
                for val in env.values_mut().filter(|v| v.is_string()) {
                    *val = Value::String(REDACTED.into());
                }
            }
            let is_operation = map.get("kind").and_then(Value::as_str) == Some("Operation");
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                let managers = meta.remove("managedFields");
                // An Operation keeps who wrote it (manager and operation, no field sets): audit.
                if is_operation && let Some(Value::Array(entries)) = managers {
                    let kept = entries
                        .iter()
                        .map(|e| serde_json::json!({ "manager": e.get("manager"), "operation": e.get("operation") }))
                        .collect();
                    meta.insert("managedFields".into(), Value::Array(kept));
                }
                if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
                    ann.remove(LAST_APPLIED);
                }
            }
            if let Some(Value::Array(env)) = map.get_mut("env") {
                for e in env.iter_mut() {
                    if let Some(Value::Object(var)) = Some(e)
                        && var.contains_key("name")
                        && let Some(val) = var.get_mut("value")
                    {
                        *val = Value::String(REDACTED.into());
                    }
                }
            }
            for child in map.values_mut() {
                redact(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_operation_keeps_only_who_wrote_it() {
        let mut v = json!({ "kind": "Operation", "metadata": { "name": "a", "managedFields": [
            { "manager": "kubectl-create", "operation": "Update", "fieldsV1": { "f:spec": {} }, "time": "2026-01-01T00:00:00Z" }] } });
        redact(&mut v);
        assert_eq!(v["metadata"]["managedFields"], json!([{ "manager": "kubectl-create", "operation": "Update" }]));
    }

    #[test]
    fn secrets_env_and_metadata_noise_are_gone() {
        let mut v = json!({ "object": {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "db", "managedFields": [{ "manager": "kubectl" }], "annotations": { LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}", "keep": "me" } },
            "data": { "password": "aHVudGVyMg==" }, "stringData": { "token": "hunter2" } },
            "manifest": { "kind": "Job", "spec": { "template": { "spec": { "containers": [{ "name": "c", "env": [{ "name": "PASSWORD", "value": "hunter2" }, { "name": "REF", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } }] }] } } } },
        });
        redact(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("aHVudGVyMg=="), "{text}");
        assert_eq!(v["object"]["data"]["password"], REDACTED, "keys are kept");
        assert!(v["object"]["metadata"].get("managedFields").is_none());
        assert_eq!(v["object"]["metadata"]["annotations"], json!({ "keep": "me" }));
        let env = &v["manifest"]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[0]["value"], REDACTED);
        assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["key"], "password", "references stay");
    }

    #[test]
    fn operation_env_parameters_keep_names_only() {
        let mut v = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "metadata": { "name": "cmd" },
            "spec": { "type": "RunCommand", "parameters": { "args": ["migrate"], "env": { "DB_PASSWORD": "hunter2", "REF": { "secretKeyRef": { "name": "db", "key": "k" } } } } } });
        redact(&mut v);
        assert_eq!(
            v["spec"]["parameters"]["env"],
            json!({ "DB_PASSWORD": REDACTED, "REF": { "secretKeyRef": { "name": "db", "key": "k" } } })
        );
        assert_eq!(v["spec"]["parameters"]["args"], json!(["migrate"]), "other parameters stay");
    }
}
