//! Watch streams → records. kube-runtime's raw `watcher()` (not `Controller`): the journal needs
//! every event, including the Init/InitApply/InitDone relist markers. Secrets are watched by
//! metadata only. Engine CRDs are discovered, and re-checked, so an engine whose CRD appears
//! later becomes usable without a restart.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource};
use kube::core::GroupVersionKind;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::LABEL_OPERATION_UID;
use crate::inbound::{Inbound, RawObject};
use crate::ownership::Ownership;
use crate::pressure::Pressure;
use crate::record::{ChildKind, Discovery, Observed, RecordBody, ResourceKind, WatchEvent};
use crate::sim::controller::api_resource;

fn project_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("ops.vworkspace.io", "v1alpha1", kind), plural)
}

/// The API resource and watch settings of each watched kind (Secrets are handled apart).
fn resource_of(kind: ResourceKind) -> (ApiResource, watcher::Config) {
    match kind {
        ResourceKind::Operation => (project_resource("Operation", "operations"), watcher::Config::default()),
        ResourceKind::OperationTemplate => {
            (project_resource("OperationTemplate", "operationtemplates"), watcher::Config::default())
        }
        ResourceKind::ApplicationInstance => {
            (project_resource("ApplicationInstance", "applicationinstances"), watcher::Config::default())
        }
        ResourceKind::Secret => {
            (ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()), watcher::Config::default())
        }
        // Only our children: label-selected, so foreign objects never reach the journal.
        ResourceKind::Child(c) => (api_resource(c), watcher::Config::default().labels(LABEL_OPERATION_UID)),
    }
}

fn marker(resource: ResourceKind, event: WatchEvent) -> Inbound {
    Inbound::Record(RecordBody::Observed(Observed { resource, event, object: None }))
}

/// Streams one kind's watch events into `tx` until the receiver is gone; events of objects
/// another shard owns are left out. The Operation watch, where new work enters, is read only
/// while `pressure` admits it.
pub async fn watch_kind(
    client: kube::Client,
    kind: ResourceKind,
    tx: UnboundedSender<Inbound>,
    own: Ownership,
    pressure: Pressure,
) {
    let (ar, cfg) = resource_of(kind);
    let pressure = (kind == ResourceKind::Operation).then_some(pressure);
    if kind == ResourceKind::Secret {
        // Metadata only: values never reach the operator, let alone the journal.
        let api: Api<PartialObjectMeta<k8s_openapi::api::core::v1::Secret>> = Api::all(client);
        let meta_only = |m: PartialObjectMeta<k8s_openapi::api::core::v1::Secret>| {
            json!({ "apiVersion": "v1", "kind": "Secret", "metadata": serde_json::to_value(&m.metadata).unwrap_or(Value::Null) })
                .to_string()
                .into_boxed_str()
        };
        forward(api, cfg, kind, tx, own, pressure, meta_only).await;
    } else {
        let api: Api<RawObject> = Api::all_with(client, &ar);
        forward(api, cfg, kind, tx, own, pressure, |o: RawObject| o.text).await;
    }
}

/// Turns one watch stream into records; `text` gives the object as it is journaled.
async fn forward<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: ResourceKind,
    tx: UnboundedSender<Inbound>,
    own: Ownership,
    pressure: Option<Pressure>,
    text: impl Fn(K) -> Box<str>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher(api, cfg).boxed();
    let mut backoff = WatchBackoff::default();
    loop {
        if let Some(p) = &pressure {
            p.admit().await;
        }
        let Some(ev) = stream.next().await else { return };
        let (event, object) = match ev {
            // Emitted before a relist's first request: it says nothing about the server.
            Ok(watcher::Event::Init) => (WatchEvent::Init, None),
            Ok(watcher::Event::InitApply(o)) => (WatchEvent::InitApply, Some(o)),
            Ok(watcher::Event::InitDone) => (WatchEvent::InitDone, None),
            Ok(watcher::Event::Apply(o)) => (WatchEvent::Apply, Some(o)),
            Ok(watcher::Event::Delete(o)) => (WatchEvent::Delete, Some(o)),
            Err(e) => {
                // The watcher relists by itself (410 Gone included) when polled again.
                let delay = backoff.delay();
                tracing::warn!(kind = kind.name(), error = %e, ?delay, "watch error; the watcher retries");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if event != WatchEvent::Init {
            backoff.reset();
        }
        let item = match object.map(&text) {
            None => marker(kind, event),
            Some(text) => {
                // Sharded only: one shard keeps everything without reading the object.
                if own.filters() {
                    let obj: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if !own.keeps(kind, &obj, event == WatchEvent::Delete).await {
                        continue;
                    }
                }
                Inbound::Watched { resource: kind, event, text }
            }
        };
        if tx.send(item).is_err() {
            return;
        }
    }
}

/// One watch's retry delays: exponential with jitter from 800 ms to 30 s, as kube's
/// `default_backoff()`, but reset only by a response from the server. kube's resets on any
/// event, and the watcher emits `Init` before each relist's first request: a watch that had to
/// relist when the server went (after a 410, say) retried about once a second for the whole
/// outage (the chaos suite: two such watches made 103 of 147 connection attempts in 60 s).
/// The delays are built at the first failure and dropped by a response: `reset` runs on every
/// watch event, and building a jittered backoff there would seed a generator per event.
#[derive(Default)]
struct WatchBackoff(Option<backon::ExponentialBackoff>);

impl WatchBackoff {
    /// How long to wait before the next attempt.
    fn delay(&mut self) -> Duration {
        use backon::BackoffBuilder as _;
        let delays = self.0.get_or_insert_with(|| {
            backon::ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(800))
                .with_max_delay(Duration::from_secs(30))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build()
        });
        delays.next().unwrap_or(Duration::from_secs(30))
    }

    /// The server answered: the next failure waits the shortest delay again.
    fn reset(&mut self) {
        self.0 = None;
    }
}

/// Child kinds whose CRDs are installed (Jobs are built in).
pub async fn installed_child_kinds(client: &kube::Client) -> Result<BTreeSet<ChildKind>, kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names: BTreeSet<String> =
        api.list_metadata(&Default::default()).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
    Ok(ChildKind::ALL
        .into_iter()
        .filter(|k| {
            k.is_builtin()
                || names.contains(&format!("{}.{}", k.plural(), k.api_version().split('/').next().unwrap_or("")))
        })
        .collect())
}

/// Starts the watches and keeps discovering engine CRDs; new kinds get a watch when they appear.
pub async fn run(
    client: kube::Client,
    tx: UnboundedSender<Inbound>,
    rediscover: Duration,
    own: Ownership,
    pressure: Pressure,
) {
    let mut watching: BTreeSet<ResourceKind> = BTreeSet::new();
    let mut last: Option<BTreeSet<ChildKind>> = None;
    loop {
        match installed_child_kinds(&client).await {
            Ok(installed) => {
                if last.as_ref() != Some(&installed) {
                    let mut wanted: BTreeSet<ResourceKind> = ResourceKind::BASE.into();
                    wanted.extend(installed.iter().map(|c| ResourceKind::Child(*c)));
                    let new: Vec<ResourceKind> = wanted.difference(&watching).copied().collect();
                    // Announce first, so the fold waits for the new kinds' first lists.
                    let d = Discovery { installed: installed.clone(), watched: wanted.clone() };
                    if tx.send(RecordBody::Discovery(d).into()).is_err() {
                        return;
                    }
                    for kind in new {
                        tracing::info!(kind = kind.name(), "watching");
                        tokio::spawn(watch_kind(client.clone(), kind, tx.clone(), own.clone(), pressure.clone()));
                    }
                    watching = wanted;
                    last = Some(installed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "discovery failed; retrying"),
        }
        tokio::time::sleep(rediscover).await;
        if tx.is_closed() {
            return;
        }
    }
}
