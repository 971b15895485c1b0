//! The simulator loop: every tick, each of our children that has not reached its end gets its
//! next upstream status, written as its real controller would (status subresource where
//! upstream has one; a whole-object update for Velero and Argo, which have none). Like a real
//! controller it watches (a reflector cache per kind) instead of listing every tick, and leaves
//! a finished child alone until someone changes it (its resourceVersion moves).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::SCENARIO_ANNOTATION;
use super::scenario::{Scenario, status_at};
use crate::api::{LABEL_OPERATION, LABEL_OPERATION_NAMESPACE, LABEL_OPERATION_UID, Operation};
use crate::record::ChildKind;
use crate::run::AbortOnDrop;

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

/// What the simulator keeps per child UID.
#[derive(Default)]
struct Memory {
    steps: BTreeMap<String, usize>,
    scenarios: BTreeMap<String, Scenario>,
    /// Finished children, by the resourceVersion they were last seen at.
    done: BTreeMap<String, String>,
}

/// A reflector cache of our children of one kind (a kind whose CRD is missing stays empty; the
/// watcher retries with backoff).
fn cache(client: &kube::Client, kind: ChildKind) -> (Store<DynamicObject>, AbortOnDrop) {
    let ar = api_resource(kind);
    let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let reader = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let cfg = watcher::Config::default().labels(LABEL_OPERATION_UID);
    let task = tokio::spawn(async move {
        reflector::reflector(writer, watcher(api, cfg).default_backoff()).for_each(|_| async {}).await;
    });
    (reader, AbortOnDrop(task))
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, opts: Options) {
    // The watches stop when this task is dropped (aborted).
    let caches: Vec<(ChildKind, Store<DynamicObject>, AbortOnDrop)> = ChildKind::ALL
        .into_iter()
        .map(|k| {
            let (store, watch) = cache(&client, k);
            (k, store, watch)
        })
        .collect();
    let mut mem = Memory::default();
    loop {
        for (kind, store, _) in &caches {
            tick_kind(&client, *kind, store, opts, &mut mem).await;
        }
        tokio::time::sleep(opts.tick).await;
    }
}

/// The child's scenario: its own annotation, else its Operation's, else Succeed. None when the
/// Operation could not be read (the API server is down): the child waits for the next tick, so
/// an outage never turns a dictated failure into a success.
async fn scenario_of(client: &kube::Client, obj: &Value) -> Option<Scenario> {
    let from = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(SCENARIO_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(Scenario::parse)
    };
    if let Some(s) = from(obj) {
        return Some(s);
    }
    let labels = obj.pointer("/metadata/labels");
    let ns = labels.and_then(|l| l.get(LABEL_OPERATION_NAMESPACE)).and_then(Value::as_str);
    let name = labels.and_then(|l| l.get(LABEL_OPERATION)).and_then(Value::as_str);
    if let (Some(ns), Some(name)) = (ns, name) {
        let ops: Api<Operation> = Api::namespaced(client.clone(), ns);
        match ops.get_opt(name).await {
            Err(_) => return None,
            Ok(Some(op)) => {
                if let Some(s) = serde_json::to_value(&op).ok().as_ref().and_then(from) {
                    return Some(s);
                }
            }
            Ok(None) => {}
        }
    }
    Some(Scenario::Succeed)
}

/// One tick of one kind: the next status of every unfinished child, written up to 16 at a time
/// (a real controller's workers), each child at most once per tick.
async fn tick_kind(
    client: &kube::Client,
    kind: ChildKind,
    store: &Store<DynamicObject>,
    opts: Options,
    mem: &mut Memory,
) {
    let ar = api_resource(kind);
    // Each unfinished child once, as JSON.
    let live: Vec<(String, String, String, Option<String>, Value)> = store
        .state()
        .into_iter()
        .filter_map(|o| {
            let m = &o.metadata;
            let (uid, ns, name) = (m.uid.clone()?, m.namespace.clone()?, m.name.clone()?);
            let fresh = m.deletion_timestamp.is_none() && mem.done.get(&uid) != m.resource_version.as_ref();
            fresh.then(|| (uid, ns, name, m.resource_version.clone(), serde_json::to_value(&*o).unwrap_or_default()))
        })
        .collect();
    // New children's scenarios (one Operation read each), looked up concurrently.
    let unknown: Vec<(String, Value)> =
        live.iter().filter(|c| !mem.scenarios.contains_key(&c.0)).map(|c| (c.0.clone(), c.4.clone())).collect();
    let found: Vec<(String, Option<Scenario>)> = futures::stream::iter(unknown)
        .map(|(uid, v)| async move { (uid, scenario_of(client, &v).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    mem.scenarios.extend(found.into_iter().filter_map(|(uid, s)| Some((uid, s?))));
    let mut writes = Vec::new();
    for (uid, ns, name, rv, v) in live {
        // Its scenario is not known yet (its Operation could not be read): next tick.
        let Some(&scenario) = mem.scenarios.get(&uid) else { continue };
        let step = mem.steps.get(&uid).copied().unwrap_or(0);
        let shutdown = kind == ChildKind::Workflow
            && v.pointer("/spec/shutdown").is_some()
            && v.pointer("/status/phase").and_then(Value::as_str) != Some("Failed");
        let next = if shutdown {
            Some(json!({ "phase": "Failed", "message": "Stopped with strategy 'Terminate'" }))
        } else {
            status_at(kind, scenario, step, &v, opts.instant)
        };
        let Some(status) = next else {
            if let Some(rv) = rv {
                mem.done.insert(uid, rv);
            }
            continue;
        };
        writes.push((uid, ns, name, step, scenario, status));
    }
    let written: Vec<Option<(String, usize)>> = futures::stream::iter(writes)
        .map(|(uid, ns, name, step, scenario, status)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            async move {
                // JSON Patch "add" replaces the whole status, as a controller's update would.
                let patch: Patch<Value> = Patch::Json(
                    serde_json::from_value(json!([{ "op": "add", "path": "/status", "value": status }]))
                        .unwrap_or_default(),
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
                        Some((uid, step + 1))
                    }
                    Err(e) => {
                        tracing::warn!(kind = kind.kind(), namespace = %ns, name = %name, error = %e, "simulator: status write failed");
                        None
                    }
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    mem.steps.extend(written.into_iter().flatten());
}
