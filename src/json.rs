//! JSON helpers shared by the effector, the simulators and the test harness.

use serde_json::Value;

/// JSON merge patch (RFC 7386).
pub fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// `Value::pointer` without its allocations: serde_json copies every token to unescape it, and
/// the fold reads children and Operations through pointers on every reconcile. The same result
/// for every pointer (escaped ones are handed to serde_json).
pub fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(v);
    }
    if pointer.contains('~') {
        return v.pointer(pointer);
    }
    pointer.strip_prefix('/')?.split('/').try_fold(v, |v, token| match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => index(token).and_then(|i| a.get(i)),
        _ => None,
    })
}

/// An array index as RFC 6901 writes it (no sign, no leading zero), as serde_json reads it.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn at_reads_what_serde_json_pointer_reads() {
        let v = json!({
            "metadata": { "labels": { "a/b": "slash", "t~n": "tilde", "": "empty" }, "uid": "u" },
            "status": { "conditions": [ { "type": "Ready" }, { "type": "Done" } ], "n": 3 },
            "list": [[1, 2], [3]],
        });
        let pointers = [
            "",
            "/",
            "/metadata",
            "/metadata/uid",
            "/metadata/uid/x",
            "/metadata/labels/a~1b",
            "/metadata/labels/t~0n",
            "/metadata/labels/",
            "/status/conditions/0/type",
            "/status/conditions/1/type",
            "/status/conditions/2",
            "/status/conditions/01",
            "/status/conditions/+1",
            "/status/conditions/-",
            "/status/conditions/x",
            "/status/n/0",
            "/list/0/1",
            "/list/1/0",
            "/list/1/1",
            "metadata",
            "/missing/deeper",
            "//",
        ];
        for p in pointers {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
        assert_eq!(at(&v, "/status/conditions/1/type"), Some(&json!("Done")));
    }
}
