//! Secret parameters. A template marks a parameter secret in its schema with
//! `"x-vworkspace-secret": true`; such a parameter is accepted only as a reference,
//! `{"secretKeyRef": {"name": <Secret in this namespace>, "key": <key>}}`, never as a value, and
//! it reaches the child only as a reference (an env `valueFrom.secretKeyRef`). A reference where
//! the template marks none is refused too, so a user cannot point a Job at any Secret the
//! template did not plan for. Pure: looks only at the schema and the parameters.

use serde_json::{Map, Value};

pub const MARK: &str = "x-vworkspace-secret";

/// A Secret a parameter refers to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    /// Where it was given, e.g. `env.DB_PASSWORD`.
    pub path: String,
    pub name: String,
    pub key: String,
}

/// The parameter paths a schema marks secret, following `properties` (and
/// `additionalProperties`, as `*`).
pub fn marked(schema: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    walk_schema(schema, &mut Vec::new(), &mut out);
    out
}

fn walk_schema(s: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if s.get(MARK).and_then(Value::as_bool) == Some(true) {
        out.push(path.clone());
        return;
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            path.push(k.clone());
            walk_schema(v, path, out);
            path.pop();
        }
    }
    if let Some(extra) = s.get("additionalProperties").filter(|v| v.is_object()) {
        path.push("*".into());
        walk_schema(extra, path, out);
        path.pop();
    }
}

fn matches(pattern: &[String], path: &[String]) -> bool {
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, s)| p == "*" || p == s)
}

/// A DNS-1123 subdomain (a Secret name) and a Secret data key.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 253 && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reads a reference, or says why the value is not one.
fn as_ref(v: &Value) -> Option<Result<(String, String), String>> {
    let r = v.as_object()?.get("secretKeyRef")?;
    let shape = || {
        "a secretKeyRef must be {\"secretKeyRef\": {\"name\": <Secret>, \"key\": <key>}} and nothing else".to_string()
    };
    if v.as_object().map(Map::len) != Some(1) {
        return Some(Err(shape()));
    }
    let Some(obj) = r.as_object().filter(|o| o.len() == 2) else { return Some(Err(shape())) };
    let (Some(name), Some(key)) = (obj.get("name").and_then(Value::as_str), obj.get("key").and_then(Value::as_str))
    else {
        return Some(Err(shape()));
    };
    if !valid_name(name) {
        return Some(Err(format!("{name:?} is not a Secret name (a Secret in this namespace, no namespace prefix)")));
    }
    if !valid_key(key) {
        return Some(Err(format!("{key:?} is not a Secret key")));
    }
    Some(Ok((name.to_string(), key.to_string())))
}

/// Every reference in `params`, checked against the schema's marks.
pub fn check(params: &Map<String, Value>, schema: Option<&Value>) -> Result<Vec<SecretRef>, String> {
    let marks = schema.map(marked).unwrap_or_default();
    let mut refs = Vec::new();
    let mut path = Vec::new();
    for (k, v) in params {
        path.push(k.clone());
        walk_params(v, &mut path, &marks, &mut refs)?;
        path.pop();
    }
    Ok(refs)
}

fn walk_params(
    v: &Value,
    path: &mut Vec<String>,
    marks: &[Vec<String>],
    refs: &mut Vec<SecretRef>,
) -> Result<(), String> {
    let shown = path.join(".");
    let is_marked = marks.iter().any(|m| matches(m, path));
    match (as_ref(v), is_marked) {
        (Some(Ok((name, key))), true) => {
            refs.push(SecretRef { path: shown, name, key });
            Ok(())
        }
        (Some(Err(why)), _) => Err(format!("parameters.{shown}: {why}")),
        (Some(Ok(_)), false) => {
            Err(format!("parameters.{shown} is a secret reference, but the template does not mark it secret ({MARK})"))
        }
        (None, true) if !v.is_null() => Err(format!(
            "parameters.{shown} is secret: give {{\"secretKeyRef\": {{\"name\": <Secret>, \"key\": <key>}}}}, never the value"
        )),
        (None, _) => {
            if let Value::Object(m) = v {
                for (k, child) in m {
                    path.push(k.clone());
                    walk_params(child, path, marks, refs)?;
                    path.pop();
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({ "type": "object", "properties": { "env": { "type": "object",
            "properties": { "DB_PASSWORD": { "type": "object", MARK: true } },
            "additionalProperties": { "type": "string" } } } })
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_marked_parameter_is_a_reference() {
        let p = params(
            json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "db", "key": "password" } }, "LEVEL": "debug" } }),
        );
        let refs = check(&p, Some(&schema())).unwrap();
        assert_eq!(refs, [SecretRef { path: "env.DB_PASSWORD".into(), name: "db".into(), key: "password".into() }]);
    }

    #[test]
    fn values_stray_references_and_odd_shapes_are_refused() {
        let cases = [
            (json!({ "env": { "DB_PASSWORD": "hunter2" } }), "never the value"),
            (
                json!({ "env": { "LEVEL": { "secretKeyRef": { "name": "db", "key": "k" } } } }),
                "does not mark it secret",
            ),
            (json!({ "other": { "secretKeyRef": { "name": "db", "key": "k" } } }), "does not mark it secret"),
            (
                json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "kube-system/db", "key": "k" } } } }),
                "not a Secret name",
            ),
            (
                json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "db", "key": "k/../x" } } } }),
                "not a Secret key",
            ),
            (json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "db" } } } }), "nothing else"),
            (
                json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "db", "key": "k" }, "value": "x" } } }),
                "nothing else",
            ),
        ];
        for (p, want) in cases {
            let err = check(&params(p.clone()), Some(&schema())).unwrap_err();
            assert!(err.contains(want), "{p}: {err}");
        }
        let no_schema = params(json!({ "env": { "X": { "secretKeyRef": { "name": "db", "key": "k" } } } }));
        assert!(check(&no_schema, None).unwrap_err().contains("does not mark it secret"));
    }
}
