//! The probes' fast path. The bodies the journal writes are compact JSON, mostly plain strings:
//! a byte scan reads what a probe needs for a fraction of what serde's derived readers cost
//! (the outcome probe was 6% of a replay's instructions, the echo probe 9%). Anything else (an
//! escape, whitespace, a value of another type, a field given twice, nesting past `DEPTH`)
//! makes it decline, and serde reads the body: whatever it returns is what serde returns.

use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as PlainError, StrDeserializer};

use super::Answer;
use crate::fold::observe::OpMeta;
use crate::key::OpKey;
use crate::record::OutcomeResult;

/// Nesting skipped past before declining (serde_json's own limit is 128).
const DEPTH: u8 = 32;

/// `Answer` as serde reads it from `text`, or None when this scan declines.
pub fn answer(text: &str) -> Option<Answer> {
    let mut s = text;
    let (mut id, mut op, mut result, mut message, mut action) = (None, None, None, None, None);
    let mut f = Fields::open(&mut s)?;
    while let Some(key) = f.next()? {
        match key {
            "commandId" => once(&mut id, string(f.s)?)?,
            "op" => once(&mut op, op_key(f.s)?)?,
            "result" => {
                let name: StrDeserializer<'_, PlainError> = string(f.s)?.into_deserializer();
                once(&mut result, OutcomeResult::deserialize(name).ok()?)?
            }
            "message" => once(&mut message, string(f.s)?)?,
            "action" => once(&mut action, string(f.s)?)?,
            _ => drop(string(f.s)?),
        }
    }
    if !s.is_empty() {
        return None;
    }
    Some(Answer {
        command_id: id?.to_string(),
        op: op?,
        result: result?,
        message: message.unwrap_or_default().to_string(),
        action: action.unwrap_or_default().to_string(),
    })
}

fn op_key(s: &mut &str) -> Option<OpKey> {
    let (mut namespace, mut name) = (None, None);
    let mut f = Fields::open(s)?;
    while let Some(key) = f.next()? {
        match key {
            "namespace" => once(&mut namespace, string(f.s)?)?,
            "name" => once(&mut name, string(f.s)?)?,
            _ => drop(string(f.s)?),
        }
    }
    Some(OpKey::new(namespace?, name?))
}

/// What `journal_codec::op_meta` reads of an Operation watch event body: `object.metadata` and
/// `object.spec`, stopping once both are read (the status after them is most of the body).
/// None when this scan declines, or when either part is missing.
pub fn op_meta(text: &str) -> Option<(OpKey, OpMeta)> {
    let mut s = text;
    let mut body = Fields::open(&mut s)?;
    while let Some(key) = body.next()? {
        if key != "object" {
            skip(body.s, DEPTH)?;
            continue;
        }
        let (mut meta, mut cancel) = (None, None);
        let mut obj = Fields::open(body.s)?;
        while let Some(key) = obj.next()? {
            match key {
                "metadata" => once(&mut meta, metadata(obj.s)?)?,
                "spec" => once(&mut cancel, spec(obj.s)?)?,
                _ => skip(obj.s, DEPTH)?,
            }
            if meta.is_some() && cancel.is_some() {
                break;
            }
        }
        let ((key, meta), cancel) = (meta?, cancel?);
        return Some((key, OpMeta { cancel, ..meta }));
    }
    None
}

/// The Operation's key and `OpMeta` but for `cancel`, from its `metadata`.
fn metadata(s: &mut &str) -> Option<(OpKey, OpMeta)> {
    let (mut name, mut namespace, mut uid, mut generation, mut deleting, mut finalizers) =
        (None, None, None, None, None, None);
    let mut f = Fields::open(s)?;
    while let Some(key) = f.next()? {
        match key {
            "name" => once(&mut name, string(f.s)?)?,
            "namespace" => once(&mut namespace, nullable(f.s, string)?)?,
            "uid" => once(&mut uid, string(f.s)?)?,
            "generation" => once(&mut generation, nullable(f.s, integer)?)?,
            "deletionTimestamp" => once(&mut deleting, nullable(f.s, |s| skip(s, DEPTH))?.is_some())?,
            "finalizers" => once(&mut finalizers, nullable(f.s, ours)?)?,
            _ => skip(f.s, DEPTH)?,
        }
    }
    let meta = OpMeta {
        uid: uid?.to_string(),
        generation: generation.flatten().unwrap_or(1),
        deleting: deleting.unwrap_or(false),
        finalizer: finalizers.flatten().unwrap_or(false),
        cancel: Some(false),
    };
    Some((OpKey::new(namespace.flatten().unwrap_or_default(), name?), meta))
}

/// `OpMeta::cancel` from `spec`: absent (or a null spec) is false, null or not a boolean None.
fn spec(s: &mut &str) -> Option<Option<bool>> {
    if let Some(rest) = s.strip_prefix("null") {
        *s = rest;
        return Some(Some(false));
    }
    let mut f = Fields::open(s)?;
    let mut cancel = None;
    while let Some(key) = f.next()? {
        if key != "cancel" {
            skip(f.s, DEPTH)?;
            continue;
        }
        let value = match literal(f.s) {
            Some(v) => v,
            None => skip(f.s, DEPTH).map(|()| None)?,
        };
        once(&mut cancel, value)?;
    }
    Some(cancel.unwrap_or(Some(false)))
}

/// Whether an array of strings holds the operator's finalizer.
fn ours(s: &mut &str) -> Option<bool> {
    let mut found = false;
    items(s, |s| {
        found |= string(s)? == crate::api::FINALIZER;
        Some(())
    })?;
    Some(found)
}

/// The items of a JSON array with no whitespace, each read by `item`.
fn items<'a>(s: &mut &'a str, mut item: impl FnMut(&mut &'a str) -> Option<()>) -> Option<()> {
    *s = s.strip_prefix('[')?;
    if let Some(rest) = s.strip_prefix(']') {
        *s = rest;
        return Some(());
    }
    loop {
        item(s)?;
        if let Some(rest) = s.strip_prefix(',') {
            *s = rest;
        } else {
            *s = s.strip_prefix(']')?;
            return Some(());
        }
    }
}

/// A field given twice is an error to serde: decline.
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// `null` as None, else what `read` reads.
fn nullable<'a, T>(s: &mut &'a str, read: impl FnOnce(&mut &'a str) -> Option<T>) -> Option<Option<T>> {
    match s.strip_prefix("null") {
        Some(rest) => {
            *s = rest;
            Some(None)
        }
        None => read(s).map(Some),
    }
}

/// The keys of a JSON object with no whitespace, one by one; the caller reads each value from
/// `s` before asking for the next key.
struct Fields<'a, 'b> {
    s: &'b mut &'a str,
    first: bool,
}

impl<'a, 'b> Fields<'a, 'b> {
    fn open(s: &'b mut &'a str) -> Option<Self> {
        *s = s.strip_prefix('{')?;
        Some(Self { s, first: true })
    }

    /// The next key; Some(None) past the closing brace.
    #[inline]
    fn next(&mut self) -> Option<Option<&'a str>> {
        if let Some(rest) = self.s.strip_prefix('}') {
            *self.s = rest;
            return Some(None);
        }
        if !std::mem::replace(&mut self.first, false) {
            *self.s = self.s.strip_prefix(',')?;
        }
        let key = string(self.s)?;
        *self.s = self.s.strip_prefix(':')?;
        Some(Some(key))
    }
}

/// The bytes that end a plain string: a quote, an escape, a control character.
const ENDS: [bool; 256] = {
    let mut ends = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        ends[b] = true;
        b += 1;
    }
    ends[b'"' as usize] = true;
    ends[b'\\' as usize] = true;
    ends
};

/// A string with no escape or control character: its text is what serde would unescape.
#[inline]
fn string<'a>(s: &mut &'a str) -> Option<&'a str> {
    let rest = s.strip_prefix('"')?;
    // Cut at an ASCII byte of valid UTF-8 text: a char boundary.
    let end = rest.bytes().position(|b| ENDS[usize::from(b)])?;
    let (text, tail) = rest.split_at(end);
    *s = tail.strip_prefix('"')?;
    Some(text)
}

/// `true`, `false` or `null` (as None).
fn literal(s: &mut &str) -> Option<Option<bool>> {
    for (word, v) in [("true", Some(true)), ("false", Some(false)), ("null", None)] {
        if let Some(rest) = s.strip_prefix(word) {
            *s = rest;
            return Some(v);
        }
    }
    None
}

/// A number as JSON's grammar has it (what serde checks of a number it skips), as text.
fn number<'a>(s: &mut &'a str) -> Option<&'a str> {
    let b = s.as_bytes();
    let digits = |i: usize| b[i.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int = digits(i);
    if int == 0 || (int > 1 && b[i] == b'0') {
        return None;
    }
    i += int;
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    let (text, rest) = s.split_at(i);
    *s = rest;
    Some(text)
}

/// An `i64` as serde reads one: an integer in range (a fraction or exponent declines).
fn integer(s: &mut &str) -> Option<i64> {
    let text = number(s)?;
    if text.contains(['.', 'e', 'E']) {
        return None;
    }
    text.parse().ok()
}

/// Any value, unread: strings as `string` takes them, nesting to `depth`.
fn skip(s: &mut &str, depth: u8) -> Option<()> {
    match s.as_bytes().first()? {
        b'"' => string(s).map(drop),
        b'{' => {
            let mut f = Fields::open(s)?;
            while f.next()?.is_some() {
                skip(f.s, depth.checked_sub(1)?)?;
            }
            Some(())
        }
        b'[' => items(s, |s| skip(s, depth.checked_sub(1)?)),
        b'-' | b'0'..=b'9' => number(s).map(drop),
        _ => literal(s).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::record::{Outcome, OutcomeData};

    fn serde(text: &str) -> Option<Answer> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn reads_what_the_journal_writes_and_declines_the_rest() {
        let written = r#"{"kind":"outcome","commandId":"cad-c1-emitevent","op":{"namespace":"bench","name":"op-0"},"result":"Ok","action":"EmitEvent","digest":"1c28"}"#;
        let got = answer(written).expect("the journal's own form");
        assert_eq!(Some(&got), serde(written).as_ref());
        assert_eq!((got.command_id.as_str(), got.op.name.as_str()), ("cad-c1-emitevent", "op-0"));
        let failed = r#"{"commandId":"x","op":{"name":"n","namespace":"ns"},"result":"Forbidden","message":"no"}"#;
        assert_eq!(answer(failed), serde(failed));
        assert!(answer(failed).is_some());
        // Declined: serde reads these (or rejects them) itself.
        for text in [
            r#"{"commandId":"a\"b","op":{"namespace":"n","name":"o"},"result":"Ok"}"#,
            r#"{ "commandId":"a","op":{"namespace":"n","name":"o"},"result":"Ok"}"#,
            r#"{"commandId":"a","op":{"namespace":"n","name":"o"},"result":"Ok","data":{"hooks":[]}}"#,
            r#"{"commandId":"a","commandId":"b","op":{"namespace":"n","name":"o"},"result":"Ok"}"#,
            r#"{"commandId":"a","op":{"namespace":"n","name":"o","name":"p"},"result":"Ok"}"#,
            r#"{"commandId":"a","op":{"namespace":"n"},"result":"Ok"}"#,
            r#"{"commandId":"a","op":{"namespace":"n","name":"o"},"result":"Fine"}"#,
            r#"{"commandId":"a","op":{"namespace":"n","name":"o"},"result":"Ok"}x"#,
            r#"{"commandId":"a","op":{"namespace":"n","name":"o"},"message":null,"result":"Ok"}"#,
            "{\"commandId\":\"a\tb\",\"op\":{\"namespace\":\"n\",\"name\":\"o\"},\"result\":\"Ok\"}",
            r#"{"commandId":"a","op":{"namespace":"n","name":"o"}"#,
            "",
        ] {
            assert_eq!(answer(text), None, "{text}");
        }
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        let text = "[a-z\"\\\\ \t\u{e9}-]{0,6}";
        let results =
            prop::sample::select(vec![OutcomeResult::Ok, OutcomeResult::Forbidden, OutcomeResult::Superseded]);
        (text, text, text, results, text, text, any::<bool>()).prop_map(
            |(id, ns, name, result, message, action, data)| Outcome {
                command_id: id,
                op: OpKey::new(ns, name),
                result,
                message,
                data: if data { OutcomeData::Generation(3) } else { OutcomeData::None },
                action,
                digest: "d".into(),
            },
        )
    }

    fn body(meta: &serde_json::Value, spec: Option<&serde_json::Value>) -> String {
        let mut object = serde_json::json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": meta, "status": { "phase": "Running", "conditions": [{ "type": "Ready", "message": "a \"quoted\" word" }] } });
        if let Some(spec) = spec {
            object["spec"] = spec.clone();
        }
        serde_json::to_string(
            &serde_json::json!({ "event": "Apply", "kind": "observed", "object": object, "resource": "operation" }),
        )
        .unwrap()
    }

    #[test]
    fn reads_operation_metadata_as_serde_does_and_declines_the_rest() {
        use serde_json::json;
        let serde_meta = super::super::op_meta_text;
        let meta = json!({ "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": [crate::api::FINALIZER], "generation": 2,
            "labels": { "a": "b" }, "managedFields": [{ "manager": "m", "fieldsV1": { "f:spec": {} } }], "name": "op-0", "namespace": "bench", "uid": "u" });
        let spec = json!({ "cancel": true, "engine": "velero", "target": { "name": "app" }, "type": "Backup" });
        let text = body(&meta, Some(&spec));
        let got = op_meta(&text).expect("the journal's own form");
        assert_eq!(Some(&got), serde_meta(&text).as_ref());
        assert_eq!(got.0, OpKey::new("bench", "op-0"));
        assert_eq!((got.1.generation, got.1.finalizer, got.1.cancel, got.1.deleting), (2, true, Some(true), false));
        // The status after both parts is never read: the scan stops there, as serde's probe does.
        let cut = text.find("\"status\"").unwrap();
        assert_eq!(op_meta(&format!("{}\"status\":{{not json", &text[..cut])), Some(got));
        // Declined, for serde to read: no spec, an escape, whitespace, a float generation, a
        // repeated field, a cancel given twice, too deep.
        let deep = (0..40).fold(json!(1), |v, _| json!([v]));
        for text in [
            body(&meta, None),
            body(&json!({ "name": "a\"b", "uid": "u" }), Some(&spec)),
            text.replacen(':', ": ", 1),
            body(&json!({ "name": "a", "uid": "u", "generation": 2.0 }), Some(&spec)),
            body(&json!({ "name": "a", "uid": "u", "deep": deep }), Some(&spec)),
            text.replacen("\"name\":\"op-0\"", "\"name\":\"op-0\",\"name\":\"op-1\"", 1),
            text.replacen("\"cancel\":true", "\"cancel\":true,\"cancel\":false", 1),
        ] {
            assert_eq!(op_meta(&text), None, "{text}");
        }
        // serde reads a struct from an array too: declined, and serde reads it.
        let array = body(&meta, Some(&json!([])));
        assert_eq!(op_meta(&array), None);
        assert_eq!(serde_meta(&array).map(|(_, m)| m.cancel), Some(Some(false)));
    }

    /// A JSON value of any type, some of them what a field expects.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::json;
        prop::sample::select(vec![
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(3),
            json!(-7),
            json!(-0),
            json!(01.5),
            json!(1e30),
            json!(i64::MAX),
            json!(u64::MAX),
            json!("x"),
            json!("a\"b"),
            json!("\u{e9}\t"),
            json!([]),
            json!({}),
            json!([crate::api::FINALIZER]),
            json!(["a", crate::api::FINALIZER]),
            json!(["a", 1]),
            json!({ "k": { "n": [1, { "m": null }] } }),
        ])
    }

    fn operation() -> impl Strategy<Value = String> {
        use serde_json::json;
        // Each field mostly as the journal writes it, else absent or any value.
        let fields = [
            ("name", json!("op")),
            ("namespace", json!("ns")),
            ("uid", json!("u")),
            ("generation", json!(2)),
            ("deletionTimestamp", json!("2026-01-01T00:00:00Z")),
            ("finalizers", json!([crate::api::FINALIZER])),
            ("labels", json!({ "a": "b" })),
        ];
        let field = |good: serde_json::Value| prop_oneof![3 => Just(Some(good)), 1 => prop::option::of(value())];
        let keys = fields.each_ref().map(|(k, _)| k.to_string());
        let meta = fields.map(|(_, good)| field(good)).to_vec().prop_map(move |vs| {
            let m = keys.iter().zip(vs).filter_map(|(k, v)| Some((k.clone(), v?))).collect();
            serde_json::Value::Object(m)
        });
        let spec = prop_oneof![
            3 => prop::option::of(value()).prop_map(|c| Some(json!({ "cancel": c, "type": "Backup" }))),
            1 => prop::option::of(value()),
        ];
        (meta, spec).prop_map(|(m, s)| body(&m, s.as_ref()))
    }

    proptest! {
        /// Whatever the scan reads of an Operation, serde reads the same.
        #[test]
        fn operation_metadata_agrees_with_serde(text in operation()) {
            let serde = super::super::op_meta_text(&text);
            match op_meta(&text) {
                Some(fast) => prop_assert_eq!(Some(fast), serde),
                    // What it declines, serde rejects too, or it holds an escape, or a spec as an
                // array (serde reads a struct from a sequence too).
                None => {
                    let head = &text[..text.find("\"status\"").unwrap()];
                    let odd = head.contains('\\') || head.contains("\"spec\":[") || !head.contains("\"spec\"");
                    prop_assert!(serde.is_none() || odd, "declined {}", text);
                }
            }
        }

        /// Whatever the scan reads, serde reads the same; the journal's plain bodies it reads.
        #[test]
        fn agrees_with_serde(o in outcome()) {
            let text = serde_json::to_string(&o).unwrap();
            let fast = answer(&text);
            if fast.is_some() {
                prop_assert_eq!(&fast, &serde(&text));
            }
            let plain = |s: &str| !s.contains(['"', '\\', '\t']);
            if matches!(o.data, OutcomeData::None) && [&o.command_id, &o.op.namespace, &o.op.name, &o.message, &o.action].iter().all(|s| plain(s)) {
                prop_assert!(fast.is_some(), "declined {}", text);
            }
        }
    }
}
