//! Commands → API calls. One call here is one attempt; `dispatch` decides when to attempt and
//! when to retry. Idempotent: creates use deterministic names and count AlreadyExists as done
//! when the object carries this Operation's UID; deletes count NotFound as done. Every write to
//! a child or a target carries the lease epoch annotation (the fencing token).

mod event;
pub mod fence;
mod fill;
pub mod helm;
pub mod outage;

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::api::{FIELD_MANAGER, FINALIZER, LABEL_OPERATION_UID};
use crate::command::{Action, Command, EnvSource};
use crate::dispatch::Execute;
use crate::leader::ANNOTATION_EPOCH;
use crate::record::{ChildKind, OutcomeData, OutcomeResult as R};
use crate::sim::controller::api_resource;

pub use helm::{decode_release_hooks, release_record};

/// What one attempt got: data for the fold, or a classified failure with the server's message.
pub type Done<T = OutcomeData> = Result<T, (R, String)>;

pub struct Effector {
    client: kube::Client,
    events: event::Events,
    /// The Lease whose terms fence this effector (it names the shard), on every write.
    lease: Option<String>,
}

fn ops_resource() -> ApiResource {
    ApiResource::erase::<crate::api::Operation>(&())
}

pub(crate) fn classify(e: &kube::Error) -> (R, String) {
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

fn epoch_annotation(epoch: u64, lease: Option<&str>) -> Value {
    let mut a = json!({ ANNOTATION_EPOCH: epoch.to_string() });
    if let Some(l) = lease {
        a[crate::shard::ANNOTATION_LEASE] = json!(l);
    }
    json!({ "metadata": { "annotations": a } })
}

impl Execute for Effector {
    async fn execute(&self, cmd: &Command, epoch: u64) -> Done {
        self.attempt(cmd, epoch).await
    }
}

impl Effector {
    pub fn new(client: kube::Client) -> Self {
        let events = event::Events::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok());
        Self { events, client, lease: None }
    }

    /// Names the Lease on every write (`ops.vworkspace.io/lease`), beside its epoch.
    pub fn with_lease(mut self, lease: Option<String>) -> Self {
        self.lease = lease;
        self
    }

    fn child_api(&self, kind: ChildKind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &api_resource(kind))
    }

    fn ops_api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &ops_resource())
    }

    async fn attempt(&self, cmd: &Command, epoch: u64) -> Done {
        let op = &cmd.op;
        let err = |e: kube::Error| classify(&e);
        match &cmd.action {
            Action::CreateChild { kind, namespace, name, manifest, env_from, .. } => {
                let mut manifest = manifest.clone();
                let filled = match env_from {
                    Some(source) => {
                        let before = manifest.clone();
                        self.fill_env(cmd, source, &mut manifest).await?;
                        fill::values(&before, &manifest)
                    }
                    None => Vec::new(),
                };
                crate::json::merge(&mut manifest, &epoch_annotation(epoch, self.lease.as_deref()));
                // Joins the child to its Operation's trace (derived from the UID, like the trace).
                manifest["metadata"]["annotations"][crate::api::ANNOTATION_TRACEPARENT] =
                    json!(crate::signals::ids::traceparent(&cmd.uid));
                // A refusal may quote a filled value back (422 messages do): it must not reach
                // the journal or the logs.
                self.create(*kind, namespace, name, &cmd.uid, manifest).await.map_err(|(r, m)| {
                    (r, filled.iter().fold(m, |m, v| m.replace(v.as_str(), vworkspace_journal::redact::REDACTED)))
                })
            }
            Action::DeleteChild { kind, namespace, name } => self
                .child_api(*kind, namespace)
                .delete(name, &DeleteParams::background())
                .await
                .map(|_| OutcomeData::None)
                .map_err(err),
            Action::PatchChild { kind, namespace, name, patch } => {
                let mut patch = patch.clone();
                crate::json::merge(&mut patch, &epoch_annotation(epoch, self.lease.as_deref()));
                self.child_api(*kind, namespace)
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| OutcomeData::None)
                    .map_err(err)
            }
            Action::PatchStatus { status } => {
                let body = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "status": status });
                self.ops_api(&op.namespace)
                    .patch_status(&op.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                    .await
                    .map(|_| OutcomeData::None)
                    .map_err(err)
            }
            Action::EmitEvent { event_type, reason, note, action } => {
                self.events.emit(cmd, *event_type, reason, note, action).await
            }
            Action::PatchTargetVersion { target, version, expected_current } => {
                self.patch_target_version(&op.namespace, target, version, expected_current, epoch).await
            }
            Action::LoadHelmHooks { release, event } => {
                helm::load_hooks(&self.client, &op.namespace, release, event).await
            }
            Action::AddFinalizer | Action::RemoveFinalizer => {
                self.set_finalizer(&op.namespace, &op.name, matches!(cmd.action, Action::AddFinalizer), epoch).await
            }
            Action::DeleteOperation => self
                .ops_api(&op.namespace)
                .delete(&op.name, &DeleteParams::background())
                .await
                .map(|_| OutcomeData::None)
                .map_err(err),
            // Timers are armed by the runtime, never sent here.
            Action::SetTimer { .. } => Ok(OutcomeData::None),
        }
    }

    async fn create(&self, kind: ChildKind, namespace: &str, name: &str, uid: &str, manifest: Value) -> Done {
        let api = self.child_api(kind, namespace);
        let obj: DynamicObject = serde_json::from_value(manifest).map_err(|e| (R::Invalid, e.to_string()))?;
        let pp = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match api.create(&pp, &obj).await {
            Ok(_) => {
                crate::failpoint::hit(crate::failpoint::AFTER_CREATE);
                Ok(OutcomeData::None)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours (an earlier attempt or process created it) or someone else's: never overwrite.
                let existing = api.get(name).await.map_err(|e| classify(&e))?;
                let owner = existing.metadata.labels.as_ref().and_then(|l| l.get(LABEL_OPERATION_UID));
                if owner.map(String::as_str) == Some(uid) {
                    Err((R::AlreadyExistsOurs, format!("{name} already exists and carries this Operation's UID")))
                } else {
                    Err((R::AlreadyExistsForeign, s.message))
                }
            }
            Err(e) => Err(classify(&e)),
        }
    }

    /// Puts the env values back that redaction took out, from the live source.
    async fn fill_env(&self, cmd: &Command, source: &EnvSource, manifest: &mut Value) -> Done<()> {
        let missing = match source {
            EnvSource::OperationParameters => {
                let live = self.ops_api(&cmd.op.namespace).get(&cmd.op.name).await.map_err(|e| classify(&e))?;
                if live.metadata.uid.as_deref() != Some(cmd.uid.as_str()) {
                    return Err((R::NotFound, format!("Operation {} was replaced before its Job was created", cmd.op)));
                }
                let env: BTreeMap<String, String> = live
                    .data
                    .pointer("/spec/parameters/env")
                    .and_then(Value::as_object)
                    .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                    .unwrap_or_default();
                fill::from_map(manifest, &env)
            }
            EnvSource::HelmHook { release_secret, hook } => {
                let source = helm::hook_manifest(&self.client, &cmd.op.namespace, release_secret, hook).await?;
                fill::from_manifest(manifest, &source)
            }
        };
        if missing.is_empty() {
            Ok(())
        } else {
            Err((R::Invalid, format!("env values for {} are no longer in their source", missing.join(", "))))
        }
    }

    /// Optimistic concurrency: read, check the guard, write with the resourceVersion read. A guard
    /// that fails is a definitive Conflict outcome; a lost race (409) is retried by dispatch.
    async fn patch_target_version(
        &self,
        namespace: &str,
        target: &str,
        version: &str,
        expected_current: &str,
        epoch: u64,
    ) -> Done {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &ApiResource::erase::<crate::api::ApplicationInstance>(&()),
        );
        let current = api.get(target).await.map_err(|e| classify(&e))?;
        let now = current.data.pointer("/spec/chart/version").and_then(Value::as_str).unwrap_or_default();
        // Already there: this command ran before, and its outcome was lost (an attempt abandoned
        // when its lease term changed, then derived again after the Restart). Idempotent.
        if now == version {
            return Ok(OutcomeData::Generation(current.metadata.generation.unwrap_or(0)));
        }
        if now != expected_current {
            return Err((
                R::Conflict,
                format!("spec.chart.version is {now:?}, expected {expected_current:?}: it was changed by someone else"),
            ));
        }
        let mut patch = json!({ "metadata": { "resourceVersion": current.metadata.resource_version },
            "spec": { "chart": { "version": version } } });
        crate::json::merge(&mut patch, &epoch_annotation(epoch, self.lease.as_deref()));
        match api.patch(target, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(obj) => Ok(OutcomeData::Generation(obj.metadata.generation.unwrap_or(0))),
            // Lost a race with another writer: transient, the guard is checked again.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err((R::Error, format!("retrying after a write race: {}", s.message)))
            }
            Err(e) => Err(classify(&e)),
        }
    }

    async fn set_finalizer(&self, namespace: &str, name: &str, add: bool, epoch: u64) -> Done {
        let api = self.ops_api(namespace);
        let current = api.get(name).await.map_err(|e| classify(&e))?;
        let mut fins = current.metadata.finalizers.clone().unwrap_or_default();
        if add == fins.iter().any(|f| f == FINALIZER) {
            return Ok(OutcomeData::None);
        }
        fins.retain(|f| f != FINALIZER);
        if add {
            fins.push(FINALIZER.into());
        }
        // The resourceVersion makes this a compare-and-swap; a lost race is retried.
        let mut patch =
            json!({ "metadata": { "finalizers": fins, "resourceVersion": current.metadata.resource_version } });
        crate::json::merge(&mut patch, &epoch_annotation(epoch, self.lease.as_deref()));
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(OutcomeData::None),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err((R::Error, format!("retrying after a write race: {}", s.message)))
            }
            Err(e) => Err(classify(&e)),
        }
    }
}
