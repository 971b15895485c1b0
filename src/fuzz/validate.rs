//! `validate`: Operations, templates and targets as arbitrary JSON, folded as the watch would
//! deliver them, then judged by the acceptance check. A JSON array is a set of objects told
//! apart by `kind`; what the input leaves out is filled in from `objects`.

use std::collections::BTreeSet;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::objects;
use crate::api::{OperationSpec, OperationStatus, OperationTemplateSpec};
use crate::fold::validate::validate as accept;
use crate::fold::{self, State};
use crate::harness::epoch;
use crate::record::{Observed, Record, RecordBody, ResourceKind, WatchEvent};

/// More objects add nothing the first few cannot reach.
const MAX_OBJECTS: usize = 16;

pub fn validate(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else { return };
    let docs = match doc {
        Value::Array(a) => a,
        v => vec![v],
    };
    let (mut templates, mut apps, mut ops) = (Vec::new(), Vec::new(), Vec::new());
    for obj in docs.into_iter().take(MAX_OBJECTS) {
        match obj.get("kind").and_then(Value::as_str) {
            Some("OperationTemplate") => templates.push(obj),
            Some("ApplicationInstance") => apps.push(obj),
            _ => ops.push(obj),
        }
    }
    if templates.is_empty() {
        templates = objects::base_templates();
    }
    if ops.is_empty() {
        ops = objects::SPECS
            .iter()
            .enumerate()
            .map(|(i, s)| objects::operation(objects::NS, &format!("op{i}"), *s))
            .collect();
    }
    if apps.is_empty() {
        let namespaces: BTreeSet<&str> =
            ops.iter().filter_map(|o| o.pointer("/metadata/namespace").and_then(Value::as_str)).collect();
        apps = namespaces.into_iter().map(|ns| objects::app("shop", ns, "1.2.0", Some((true, 1)))).collect();
    }
    for t in &templates {
        round_trip::<OperationTemplateSpec>(t.get("spec"));
    }
    for o in &ops {
        round_trip::<OperationSpec>(o.get("spec"));
        round_trip::<OperationStatus>(o.get("status"));
    }
    let mut state = State::default();
    let mut seq = 0;
    let mut apply = |state: &mut State, resource, object| {
        seq += 1;
        let body = RecordBody::Observed(Observed { resource, event: WatchEvent::Apply, object: Some(object) });
        fold::step_owned(state, Record { seq, at: epoch(), body });
    };
    for t in templates {
        apply(&mut state, ResourceKind::OperationTemplate, t);
    }
    for a in apps {
        apply(&mut state, ResourceKind::ApplicationInstance, a);
    }
    for (i, mut o) in ops.into_iter().enumerate() {
        // The API server always sets a UID; without one the fold ignores the object.
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("uid").or_insert_with(|| json!(format!("uid-{i}")));
        }
        apply(&mut state, ResourceKind::Operation, o);
    }
    for op in state.ops.values() {
        let verdict = accept(op, &state.world);
        assert_eq!(verdict, accept(op, &state.world), "acceptance of {} is not deterministic", op.key);
    }
}

/// What the fold parses it also writes into snapshots, so it must read back as it was.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(v: Option<&Value>) {
    let Some(Ok(first)) = v.map(T::deserialize) else { return };
    let again = serde_json::to_value(&first).map(serde_json::from_value::<T>);
    assert!(matches!(&again, Ok(Ok(t)) if *t == first), "{first:?} reads back as {again:?}");
}
