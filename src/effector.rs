//! Commands → API calls → outcome records. Idempotent: creates use deterministic names and
//! count AlreadyExists as done when the object carries this Operation's UID; deletes count
//! NotFound as done. Transient errors are retried with exponential backoff before the outcome
//! is journaled, so the fold never sees a hot loop.

use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use serde_json::{Value, json};

use crate::api::{FIELD_MANAGER, FINALIZER, LABEL_OPERATION_UID};
use crate::command::{Action, Command, EventType, HelmHook};
use crate::record::{Outcome, OutcomeData, OutcomeResult as R};
use crate::sim::controller::api_resource;

pub struct Effector {
    client: kube::Client,
    recorder: Recorder,
}

fn ops_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<crate::api::Operation>(&())
}

fn classify(e: &kube::Error) -> (R, String) {
    match e {
        kube::Error::Api(s) => {
            let r = match s.code {
                404 => R::NotFound,
                409 if s.reason == "AlreadyExists" => R::AlreadyExistsForeign,
                409 => R::Conflict,
                403 => R::Forbidden,
                400 | 422 => R::Invalid,
                _ => R::Error,
            };
            (r, s.message.clone())
        }
        other => (R::Error, other.to_string()),
    }
}

fn transient(r: R) -> bool {
    matches!(r, R::Error | R::Conflict)
}

type Done = Result<OutcomeData, (R, String)>;

impl Effector {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Self { recorder: Recorder::new(client.clone(), reporter), client }
    }

    /// Runs one command, retrying transient failures, and returns its outcome.
    pub async fn run(&self, cmd: &Command, epoch: u64) -> Outcome {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (result, message, data) = match self.execute(cmd, epoch).await {
                Ok(data) => (R::Ok, String::new(), data),
                Err((r, m)) => (r, m, OutcomeData::None),
            };
            if transient(result) && attempt < 6 {
                tracing::debug!(command = %cmd.id, ?result, %message, "transient failure; backing off");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
            return Outcome { command_id: cmd.id.clone(), op: cmd.op.clone(), result, message, data };
        }
    }

    async fn execute(&self, cmd: &Command, epoch: u64) -> Done {
        let op = &cmd.op;
        let err = |e: kube::Error| classify(&e);
        match &cmd.action {
            Action::CreateChild { kind, namespace, name, manifest, .. } => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), namespace, &api_resource(*kind));
                let mut manifest = manifest.clone();
                // The fencing token: which leader's term created this child.
                manifest["metadata"]["annotations"][crate::leader::ANNOTATION_EPOCH] = json!(epoch.to_string());
                let obj: DynamicObject = serde_json::from_value(manifest).map_err(|e| (R::Invalid, e.to_string()))?;
                match api
                    .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &obj)
                    .await
                {
                    Ok(_) => Ok(OutcomeData::None),
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // Ours (an earlier run created it) or someone else's: never overwrite.
                        let existing = api.get(name).await.map_err(err)?;
                        let ours = existing.metadata.labels.as_ref().and_then(|l| l.get(LABEL_OPERATION_UID))
                            == Some(&cmd.uid);
                        if ours {
                            Err((R::AlreadyExistsOurs, "already exists".into()))
                        } else {
                            Err((R::AlreadyExistsForeign, s.message))
                        }
                    }
                    Err(e) => Err(err(e)),
                }
                .or_else(|(r, m)| if r == R::AlreadyExistsOurs { Ok(OutcomeData::None) } else { Err((r, m)) })
            }
            Action::DeleteChild { kind, namespace, name } => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), namespace, &api_resource(*kind));
                api.delete(name, &DeleteParams::background()).await.map(|_| OutcomeData::None).map_err(err)
            }
            Action::PatchChild { kind, namespace, name, patch } => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), namespace, &api_resource(*kind));
                api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(|_| OutcomeData::None)
                    .map_err(err)
            }
            Action::PatchStatus { status } => {
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &op.namespace, &ops_resource());
                let body = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "status": status });
                api.patch_status(&op.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                    .await
                    .map(|_| OutcomeData::None)
                    .map_err(err)
            }
            Action::EmitEvent { event_type, reason, note, action } => {
                let reference = ObjectReference {
                    api_version: Some("ops.vworkspace.io/v1alpha1".into()),
                    kind: Some("Operation".into()),
                    namespace: Some(op.namespace.clone()),
                    name: Some(op.name.clone()),
                    uid: Some(cmd.uid.clone()),
                    ..Default::default()
                };
                let ev = Event {
                    type_: if *event_type == EventType::Warning {
                        KubeEventType::Warning
                    } else {
                        KubeEventType::Normal
                    },
                    reason: reason.clone(),
                    note: Some(note.chars().take(1024).collect()),
                    action: action.clone(),
                    secondary: None,
                };
                self.recorder.publish(&ev, &reference).await.map(|_| OutcomeData::None).map_err(err)
            }
            Action::PatchTargetVersion { target, version, expected_current } => {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    &op.namespace,
                    &kube::api::ApiResource::erase::<crate::api::ApplicationInstance>(&()),
                );
                let patch: json_patch::Patch = serde_json::from_value(json!([
                    { "op": "test", "path": "/spec/chart/version", "value": expected_current },
                    { "op": "replace", "path": "/spec/chart/version", "value": version },
                ]))
                .map_err(|e| (R::Invalid, e.to_string()))?;
                match api.patch(target, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
                    Ok(obj) => Ok(OutcomeData::Generation(obj.metadata.generation.unwrap_or(0))),
                    // The guard failed: the version changed under us.
                    Err(kube::Error::Api(s)) if s.code == 422 => Err((R::Conflict, s.message)),
                    Err(e) => Err(err(e)),
                }
            }
            Action::LoadHelmHooks { release, event } => self.load_hooks(&op.namespace, release, event).await,
            Action::AddFinalizer | Action::RemoveFinalizer => {
                let add = matches!(cmd.action, Action::AddFinalizer);
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &op.namespace, &ops_resource());
                let current = api.get(&op.name).await.map_err(err)?;
                let mut fins = current.metadata.finalizers.clone().unwrap_or_default();
                let has = fins.iter().any(|f| f == FINALIZER);
                if add == has {
                    return Ok(OutcomeData::None);
                }
                fins.retain(|f| f != FINALIZER);
                if add {
                    fins.push(FINALIZER.into());
                }
                // The resourceVersion makes this a compare-and-swap: a Conflict is retried.
                let patch =
                    json!({ "metadata": { "finalizers": fins, "resourceVersion": current.metadata.resource_version } });
                api.patch(&op.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| OutcomeData::None)
                    .map_err(err)
            }
            Action::DeleteOperation => {
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &op.namespace, &ops_resource());
                api.delete(&op.name, &DeleteParams::background()).await.map(|_| OutcomeData::None).map_err(err)
            }
            // Timers are armed by the runtime, never sent here.
            Action::SetTimer { .. } => Ok(OutcomeData::None),
        }
    }

    /// Reads the newest release record and returns the hooks of one event (manifests as JSON).
    async fn load_hooks(&self, namespace: &str, release: &str, event: &str) -> Done {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
            .await
            .map_err(|e| classify(&e))?;
        let newest = list
            .items
            .into_iter()
            .filter_map(|s| {
                let v: u64 = s.metadata.labels.as_ref()?.get("version")?.parse().ok()?;
                Some((v, s))
            })
            .max_by_key(|(v, _)| *v)
            .ok_or((R::NotFound, format!("no Helm release record for release {release} in {namespace}")))?;
        let (_, secret) = newest;
        let name = secret.metadata.name.clone().unwrap_or_default();
        let raw = secret
            .data
            .as_ref()
            .and_then(|d| d.get("release"))
            .ok_or((R::Invalid, format!("{name} has no release key")))?;
        let hooks = decode_release_hooks(&raw.0, event).map_err(|e| (R::Invalid, format!("{name}: {e}")))?;
        Ok(OutcomeData::HelmHooks { release_secret: name, hooks })
    }
}

/// A Helm release record (`data.release`: base64 of gzip of the release JSON) → the Job hooks of
/// `event`, manifests converted from YAML to JSON. Only what is used is kept.
pub fn decode_release_hooks(release_b64: &[u8], event: &str) -> Result<Vec<HelmHook>, String> {
    let gz = base64::engine::general_purpose::STANDARD.decode(release_b64).map_err(|e| format!("base64: {e}"))?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut json).map_err(|e| format!("gzip: {e}"))?;
    let release: Value = serde_json::from_str(&json).map_err(|e| format!("release JSON: {e}"))?;
    let mut hooks = Vec::new();
    for h in release.get("hooks").and_then(Value::as_array).into_iter().flatten() {
        let events: Vec<String> = h
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        if !events.iter().any(|e| e == event) {
            continue;
        }
        let kind = h.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        // Only Job hooks run as children; other hook kinds are the chart's own business.
        if kind != "Job" {
            continue;
        }
        let manifest_yaml = h.get("manifest").and_then(Value::as_str).unwrap_or("");
        let manifest: Value = serde_yaml::from_str(manifest_yaml).map_err(|e| format!("hook manifest: {e}"))?;
        hooks.push(HelmHook {
            name: h.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
            kind,
            weight: h.get("weight").and_then(Value::as_i64).unwrap_or(0),
            events,
            manifest,
        });
    }
    Ok(hooks)
}
