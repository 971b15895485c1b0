//! `replay diff A B`: where two journals, or two moments of one (`PATH@SEQ`), differ. Per
//! Operation: its transitions and outcomes, and its objects (the folded Operation and each
//! child) at field level.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use super::pass::{Item, Pass, op_summary};
use crate::key::OpKey;

/// One field that differs: a JSON pointer and both values (null when absent).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub a: Value,
    pub b: Value,
}

/// Field-level differences between two JSON values, depth first, in key order.
pub fn fields(a: &Value, b: &Value, path: &str, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                fields(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &p, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                fields(u, v, &format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(Change {
            path: if path.is_empty() { "/".into() } else { path.into() },
            a: a.clone(),
            b: b.clone(),
        }),
        _ => {}
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpDiff {
    pub operation: String,
    /// `a` or `b` when the Operation is in one side only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_in: Option<&'static str>,
    /// Transitions and outcomes, each side's list, when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Value>,
    /// Per object (`Operation` or `Kind namespace/name`), the fields that differ.
    pub objects: Vec<Value>,
}

fn texts(items: Option<&Vec<Item>>, kind: &str) -> Vec<String> {
    items.into_iter().flatten().filter(|i| i.kind == kind).map(|i| i.text.clone()).collect()
}

/// The folded objects of one Operation: its own state, then each child as last observed.
fn objects(p: &Pass, key: &OpKey) -> Vec<(String, Value)> {
    let Some(op) = p.state.ops.get(key) else { return Vec::new() };
    let mut out = vec![("Operation".to_string(), op_summary(op))];
    for s in &op.steps {
        let obj =
            p.state.world.child(s.kind, &s.namespace, &s.name).map(std::borrow::Cow::into_owned).unwrap_or(Value::Null);
        out.push((s.describe(), obj));
    }
    out
}

pub fn diff(a: &Pass, b: &Pass, only: Option<&OpKey>) -> Vec<OpDiff> {
    let keys: BTreeSet<&OpKey> =
        a.state.ops.keys().chain(b.state.ops.keys()).filter(|k| only.is_none_or(|o| o == *k)).collect();
    let mut out = Vec::new();
    for k in keys {
        let only_in = match (a.state.ops.contains_key(k), b.state.ops.contains_key(k)) {
            (true, false) => Some("a"),
            (false, true) => Some("b"),
            _ => None,
        };
        let pair = |kind: &str| {
            let (x, y) = (texts(a.timelines.get(k), kind), texts(b.timelines.get(k), kind));
            (x != y).then(|| json!({ "a": x, "b": y }))
        };
        let (oa, ob) = (objects(a, k), objects(b, k));
        let names: BTreeSet<&String> = oa.iter().chain(&ob).map(|(n, _)| n).collect();
        let mut objs = Vec::new();
        for n in names {
            let get = |v: &Vec<(String, Value)>| {
                v.iter().find(|(m, _)| m == n).map(|(_, o)| o.clone()).unwrap_or(Value::Null)
            };
            let mut changes = Vec::new();
            fields(&get(&oa), &get(&ob), "", &mut changes);
            if !changes.is_empty() {
                objs.push(json!({ "object": n, "changes": changes }));
            }
        }
        let d = OpDiff {
            operation: k.to_string(),
            only_in,
            transitions: pair("transition"),
            outcomes: pair("outcome"),
            objects: objs,
        };
        if d.only_in.is_some() || d.transitions.is_some() || d.outcomes.is_some() || !d.objects.is_empty() {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_level_changes_in_key_order() {
        let a = json!({ "status": { "phase": "Running", "conditions": [{ "type": "Succeeded", "status": "Unknown" }] }, "gone": 1 });
        let b = json!({ "status": { "phase": "Failed", "conditions": [{ "type": "Succeeded", "status": "False" }] }, "new/key": true });
        let mut c = Vec::new();
        fields(&a, &b, "", &mut c);
        let paths: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/gone", "/new~1key", "/status/conditions/0/status", "/status/phase"]);
        assert_eq!((c[0].a.clone(), c[0].b.clone()), (json!(1), Value::Null));
    }
}
