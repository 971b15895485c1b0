//! Filling env values back into a child manifest just before it is created. The fold and the
//! journal only ever hold `<redacted>`; the values come from the live source (DESIGN §4).

use std::collections::BTreeMap;

use serde_json::Value;
use vworkspace_journal::redact::REDACTED;

/// Every redacted `env[].value` in `target` whose name is in `values`. Returns the names that
/// stayed unfilled.
pub fn from_map(target: &mut Value, values: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing = Vec::new();
    walk_env(target, &mut |var| {
        let name = var.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        match values.get(&name) {
            Some(v) => var["value"] = Value::String(v.clone()),
            None => missing.push(name),
        }
    });
    missing
}

/// Every redacted `env[].value` in `target` from the same place in `source` (same path, same
/// variable name): the hook manifest the child was built from.
pub fn from_manifest(target: &mut Value, source: &Value) -> Vec<String> {
    let mut values = BTreeMap::new();
    collect(source, "", &mut values);
    let mut missing = Vec::new();
    fill_paths(target, "", &values, &mut missing);
    missing
}

/// The values that filling put in: where `before` had the placeholder and `after` has a value.
pub fn values(before: &Value, after: &Value) -> Vec<String> {
    let mut b = BTreeMap::new();
    let mut a = BTreeMap::new();
    collect(before, "", &mut b);
    collect(after, "", &mut a);
    let mut out: Vec<String> = a
        .into_iter()
        .filter(|(k, v)| b.get(k).is_some_and(|old| old == REDACTED && v != REDACTED && !v.is_empty()))
        .map(|(_, v)| v)
        .collect();
    // Longest first, so a value that contains another is replaced whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

fn walk_env(v: &mut Value, f: &mut impl FnMut(&mut Value)) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(env)) = map.get_mut("env") {
                env.iter_mut().filter(|e| e.get("value").and_then(Value::as_str) == Some(REDACTED)).for_each(&mut *f);
            }
            map.iter_mut().filter(|(k, _)| *k != "env").for_each(|(_, c)| walk_env(c, f));
        }
        Value::Array(items) => items.iter_mut().for_each(|c| walk_env(c, f)),
        _ => {}
    }
}

/// Keys are `<path to the env array>/<variable name>`.
fn collect(v: &Value, path: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, c) in map {
                if k == "env"
                    && let Value::Array(env) = c
                {
                    for e in env {
                        if let (Some(n), Some(val)) =
                            (e.get("name").and_then(Value::as_str), e.get("value").and_then(Value::as_str))
                        {
                            out.insert(format!("{path}/env/{n}"), val.to_string());
                        }
                    }
                } else {
                    collect(c, &format!("{path}/{k}"), out);
                }
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, c)| collect(c, &format!("{path}/{i}"), out)),
        _ => {}
    }
}

fn fill_paths(v: &mut Value, path: &str, values: &BTreeMap<String, String>, missing: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, c) in map.iter_mut() {
                if k == "env"
                    && let Value::Array(env) = c
                {
                    for e in env.iter_mut().filter(|e| e.get("value").and_then(Value::as_str) == Some(REDACTED)) {
                        let n = e.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                        match values.get(&format!("{path}/env/{n}")) {
                            Some(val) => e["value"] = Value::String(val.clone()),
                            None => missing.push(n),
                        }
                    }
                } else {
                    fill_paths(c, &format!("{path}/{k}"), values, missing);
                }
            }
        }
        Value::Array(items) => {
            items.iter_mut().enumerate().for_each(|(i, c)| fill_paths(c, &format!("{path}/{i}"), values, missing))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn map_values_fill_redacted_entries_only() {
        let mut job = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "run",
            "env": [{ "name": "A", "value": REDACTED }, { "name": "B", "value": "plain" }, { "name": "C", "value": REDACTED }] }] } } } });
        let values = BTreeMap::from([("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())]);
        assert_eq!(from_map(&mut job, &values), vec!["C".to_string()]);
        let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[0]["value"], "1");
        assert_eq!(env[1]["value"], "plain", "values that were not redacted are left alone");
        assert_eq!(env[2]["value"], REDACTED, "an unknown name stays redacted and is reported");
    }

    #[test]
    fn the_filled_values_are_known_so_messages_can_be_scrubbed() {
        let before = json!({ "env": [{ "name": "A", "value": REDACTED }, { "name": "B", "value": "plain" }] });
        let mut after = before.clone();
        from_map(&mut after, &BTreeMap::from([("A".to_string(), "s3cret".to_string())]));
        assert_eq!(values(&before, &after), ["s3cret"]);
    }

    #[test]
    fn manifest_values_fill_by_path_and_name() {
        let source = json!({ "spec": { "template": { "spec": {
            "initContainers": [{ "name": "init", "env": [{ "name": "X", "value": "init-x" }] }],
            "containers": [{ "name": "a", "env": [{ "name": "X", "value": "a-x" }] }, { "name": "b", "env": [{ "name": "X", "value": "b-x" }] }] } } } });
        let mut target = source.clone();
        vworkspace_journal::redact::redact(&mut target);
        target["spec"]["template"]["spec"]["serviceAccountName"] = json!("runner");
        assert!(from_manifest(&mut target, &source).is_empty());
        let pod = &target["spec"]["template"]["spec"];
        assert_eq!(pod["initContainers"][0]["env"][0]["value"], "init-x");
        assert_eq!(pod["containers"][0]["env"][0]["value"], "a-x");
        assert_eq!(pod["containers"][1]["env"][0]["value"], "b-x");
    }
}
