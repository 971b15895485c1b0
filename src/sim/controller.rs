//! The simulator loop: every tick, each of our children that has not reached its end gets its
//! next upstream status, written as its real controller would (status subresource where
//! upstream has one; a whole-object update for Velero and Argo, which have none).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use super::SCENARIO_ANNOTATION;
use super::scenario::{Scenario, status_at};
use crate::api::{LABEL_OPERATION, LABEL_OPERATION_NAMESPACE, LABEL_OPERATION_UID, Operation};
use crate::record::ChildKind;

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Time between two status writes of one child.
    pub tick: Duration,
    /// Each child reaches its end on its first status write (load benchmarks).
    pub instant: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { tick: Duration::from_millis(400), instant: false }
    }
}

pub fn api_resource(kind: ChildKind) -> ApiResource {
    let (group, version) = kind.api_version().split_once('/').unwrap_or(("", kind.api_version()));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind.kind()), kind.plural())
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, opts: Options) {
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        for kind in ChildKind::ALL {
            if let Err(e) = tick_kind(&client, kind, opts, &mut steps).await {
                tracing::debug!(kind = kind.kind(), error = %e, "simulator: cannot list (CRD not installed?)");
            }
        }
        tokio::time::sleep(opts.tick).await;
    }
}

async fn scenario_of(client: &kube::Client, obj: &Value) -> Scenario {
    let from = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(SCENARIO_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(Scenario::parse)
    };
    if let Some(s) = from(obj) {
        return s;
    }
    let labels = obj.pointer("/metadata/labels");
    let ns = labels.and_then(|l| l.get(LABEL_OPERATION_NAMESPACE)).and_then(Value::as_str);
    let name = labels.and_then(|l| l.get(LABEL_OPERATION)).and_then(Value::as_str);
    if let (Some(ns), Some(name)) = (ns, name) {
        let ops: Api<Operation> = Api::namespaced(client.clone(), ns);
        if let Ok(Some(op)) = ops.get_opt(name).await
            && let Ok(v) = serde_json::to_value(&op)
            && let Some(s) = from(&v)
        {
            return s;
        }
    }
    Scenario::Succeed
}

async fn tick_kind(
    client: &kube::Client,
    kind: ChildKind,
    opts: Options,
    steps: &mut BTreeMap<String, usize>,
) -> Result<(), kube::Error> {
    let ar = api_resource(kind);
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = all.list(&ListParams::default().labels(LABEL_OPERATION_UID)).await?;
    for obj in list.items {
        let (Some(uid), Some(ns), Some(name)) =
            (obj.metadata.uid.clone(), obj.metadata.namespace.clone(), obj.metadata.name.clone())
        else {
            continue;
        };
        if obj.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let v = serde_json::to_value(&obj).unwrap_or_default();
        let step = steps.get(&uid).copied().unwrap_or(0);
        let shutdown = kind == ChildKind::Workflow
            && v.pointer("/spec/shutdown").is_some()
            && v.pointer("/status/phase").and_then(Value::as_str) != Some("Failed");
        let scenario = scenario_of(client, &v).await;
        let next = if shutdown {
            Some(json!({ "phase": "Failed", "message": "Stopped with strategy 'Terminate'" }))
        } else {
            status_at(kind, scenario, step, &v, opts.instant)
        };
        let Some(status) = next else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        // JSON Patch "add" replaces the whole status, as a controller's update would.
        let patch: Patch<Value> = Patch::Json(
            serde_json::from_value(json!([{ "op": "add", "path": "/status", "value": status }])).unwrap_or_default(),
        );
        let pp = PatchParams::default();
        let written = if kind.has_status_subresource() {
            api.patch_status(&name, &pp, &patch).await
        } else {
            api.patch(&name, &pp, &patch).await
        };
        match written {
            Ok(_) => {
                tracing::info!(kind = kind.kind(), namespace = %ns, name = %name, step, ?scenario, "simulator: status written");
                steps.insert(uid, step + 1);
            }
            Err(e) => {
                tracing::warn!(kind = kind.kind(), namespace = %ns, name = %name, error = %e, "simulator: status write failed")
            }
        }
    }
    Ok(())
}
