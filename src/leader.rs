//! Lease-based leader election (coordination.k8s.io/v1). Only the leader's effector acts; it
//! stops acting as soon as it cannot renew before its deadline. The lease's `leaseTransitions`
//! is the epoch: a fencing token every effect carries (the `ops.vworkspace.io/lease-epoch`
//! annotation on children), so writes can be attributed to exactly one term.
//!
//! With shards, each shard has its own Lease, labelled with the family (the base name) and
//! annotated with the shard count its holder runs with. The barrier: a pod that is not already
//! leading lists the family, writes its Lease, and lists again; if any other Lease is live under
//! a different shard count, it does not take (or releases) its own and waits. Of two pods that
//! race, the later second list sees the other's write, so two shard counts never act at once:
//! during a change of count, the old pods keep their shards until they stop, and the new ones
//! start when the last has gone.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::shard::{ANNOTATION_SHARDS, LABEL_LEASE_FAMILY, Shard};

/// Annotation on every child: the lease epoch of the leader that created it.
pub const ANNOTATION_EPOCH: &str = "ops.vworkspace.io/lease-epoch";

#[derive(Clone, Debug)]
pub struct Options {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// The family's base name (`--lease`); `name` is this shard's Lease in it.
    pub family: String,
    pub shard: Shard,
    /// This process, among the processes of one pod name: a restarted pod takes its Lease over
    /// at once but in a new term, and a previous process still running steps down.
    pub instance: String,
}

/// Annotation on a Lease: the holder's process instance.
pub const ANNOTATION_INSTANCE: &str = "ops.vworkspace.io/holder-instance";

impl Options {
    /// Identity from the Downward API (`POD_NAME`), else host and process id; the Lease is the
    /// shard's in the family `base`.
    pub fn from_env(namespace: &str, base: &str, shard: Shard) -> Self {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()), std::process::id())
        });
        Self::new(namespace, base, &identity, shard)
    }

    pub fn new(namespace: &str, base: &str, identity: &str, shard: Shard) -> Self {
        Self {
            namespace: namespace.into(),
            name: shard.lease_name(base),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            family: base.into(),
            shard,
            instance: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
            ),
        }
    }
}

/// One leadership term: the fencing epoch, and the instant until which acting is safe (the
/// renew deadline after the last successful renewal, which ends before anyone else may take
/// the lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    pub epoch: u64,
    pub valid_until: tokio::time::Instant,
}

impl Term {
    /// Acting alone (no election): epoch 0, never expires.
    pub fn sole() -> Self {
        Self { epoch: 0, valid_until: tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400) }
    }

    pub fn valid(&self) -> bool {
        tokio::time::Instant::now() < self.valid_until
    }
}

/// `Some(term)` while this process leads; refreshed on every renewal.
pub type Leadership = watch::Receiver<Option<Term>>;

/// The current term, if it is still valid.
pub fn current(l: &Leadership) -> Option<Term> {
    (*l.borrow()).filter(Term::valid)
}

fn lease_body(o: &Options, epoch: u64, acquire: Option<&str>, rv: Option<String>) -> Lease {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::from_value(json!({
        "metadata": {
            "name": o.name, "namespace": o.namespace, "resourceVersion": rv,
            "labels": { LABEL_LEASE_FAMILY: o.family },
            "annotations": { ANNOTATION_SHARDS: o.shard.count.to_string(), ANNOTATION_INSTANCE: o.instance },
        },
        "spec": {
            "holderIdentity": o.identity,
            "leaseDurationSeconds": o.lease_duration.as_secs().max(1),
            "acquireTime": acquire.map(str::to_string).unwrap_or_else(|| now.clone()),
            "renewTime": now,
            "leaseTransitions": epoch,
        },
    }))
    .unwrap_or_default()
}

fn expired(l: &Lease) -> bool {
    let Some(spec) = &l.spec else { return true };
    let Some(renew) = spec.renew_time.as_ref() else { return true };
    let renewed = chrono::DateTime::parse_from_rfc3339(&renew.0.to_string()).map(|t| t.with_timezone(&Utc)).ok();
    let secs = spec.lease_duration_seconds.unwrap_or(15) as i64;
    renewed.is_none_or(|t| Utc::now() > t + chrono::Duration::seconds(secs))
}

fn live(l: &Lease) -> bool {
    l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).is_some_and(|h| !h.is_empty()) && !expired(l)
}

/// Another Lease of the family, live, held under a different shard count. The plain `<lease>`
/// of a single replica counts too, even unlabelled (an operator from before shards: count 1).
async fn other_count(api: &Api<Lease>, o: &Options) -> Result<Option<String>, kube::Error> {
    let lp = kube::api::ListParams::default().labels(&format!("{LABEL_LEASE_FAMILY}={}", o.family));
    let mut leases = api.list(&lp).await?.items;
    if o.name != o.family
        && let Some(plain) = api.get_opt(&o.family).await?
    {
        leases.push(plain);
    }
    let mine = o.shard.count.to_string();
    Ok(leases.into_iter().find_map(|l| {
        let count = l.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_SHARDS)).cloned();
        let count = count.unwrap_or_else(|| "1".into());
        let name = l.metadata.name.clone().unwrap_or_default();
        (name != o.name && count != mine && live(&l)).then(|| format!("{name} (shards {count})"))
    }))
}

/// One attempt to take or keep the lease; returns the epoch when we hold it. A pod not already
/// leading passes the shard-count barrier before writing (no term is taken in vain while it
/// waits) and again after (see the module's comment).
async fn try_hold(api: &Api<Lease>, o: &Options, leading: bool) -> Result<Option<u64>, kube::Error> {
    if !leading && barred(api, o).await? {
        return Ok(None);
    }
    let held = hold(api, o, leading).await?;
    if leading || held.is_none() {
        return Ok(held);
    }
    if barred(api, o).await? {
        release(api, o).await?;
        return Ok(None);
    }
    Ok(held)
}

/// The barrier: whether a Lease of another shard count is live (then this pod waits).
async fn barred(api: &Api<Lease>, o: &Options) -> Result<bool, kube::Error> {
    let other = other_count(api, o).await?;
    if let Some(other) = &other {
        tracing::info!(lease = %o.name, %other, shards = o.shard.count, "waiting: a shard of another shard count is live");
    }
    Ok(other.is_some())
}

async fn hold(api: &Api<Lease>, o: &Options, leading: bool) -> Result<Option<u64>, kube::Error> {
    match api.get_opt(&o.name).await? {
        None => {
            api.create(&PostParams::default(), &lease_body(o, 0, None, None)).await?;
            Ok(Some(0))
        }
        Some(l) => {
            let spec = l.spec.clone().unwrap_or_default();
            let epoch = spec.lease_transitions.unwrap_or(0) as u64;
            let our_pod = spec.holder_identity.as_deref() == Some(o.identity.as_str());
            let instance = l.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_INSTANCE));
            let ours = our_pod && instance.is_none_or(|i| *i == o.instance);
            let rv = l.metadata.resource_version.clone();
            if our_pod && !ours && !leading {
                // A restart of this pod (one pod per name): take over at once, in a new term, so
                // the previous process's writes, if it still runs, carry the older epoch.
                api.replace(&o.name, &PostParams::default(), &lease_body(o, epoch + 1, None, rv)).await?;
                Ok(Some(epoch + 1))
            } else if ours {
                let acquire = spec.acquire_time.map(|t| t.0.to_string());
                api.replace(&o.name, &PostParams::default(), &lease_body(o, epoch, acquire.as_deref(), rv)).await?;
                Ok(Some(epoch))
            } else if expired(&l) {
                // Take over: a new term. The resourceVersion makes it a compare-and-swap.
                api.replace(&o.name, &PostParams::default(), &lease_body(o, epoch + 1, None, rv)).await?;
                Ok(Some(epoch + 1))
            } else {
                Ok(None)
            }
        }
    }
}

/// Runs the election until the sender is dropped. Renews every third of the lease duration and
/// gives up leadership when two thirds pass without a successful renewal.
pub fn spawn(client: kube::Client, o: Options) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel::<Option<Term>>(None);
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &o.namespace);
        let renew_every = o.lease_duration / 3;
        let renew_deadline = o.lease_duration * 2 / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            let started = tokio::time::Instant::now();
            // A hung API call must not keep us "leading" past the renew deadline.
            let leading = tx.borrow().is_some();
            let attempt = match tokio::time::timeout(renew_every, try_hold(&api, &o, leading)).await {
                Ok(r) => r,
                Err(_) => Err(kube::Error::Service(format!("lease renewal timed out after {renew_every:?}").into())),
            };
            match attempt {
                Ok(Some(epoch)) => {
                    // Measured from before the request: the server may have renewed at any
                    // point during it.
                    last_ok = started;
                    if tx.borrow().map(|t| t.epoch) != Some(epoch) {
                        tracing::info!(identity = %o.identity, epoch, "leading");
                    }
                    tx.send_replace(Some(Term { epoch, valid_until: started + renew_deadline }));
                }
                Ok(None) => {
                    if tx.borrow().is_some() {
                        tracing::warn!(identity = %o.identity, "lost the lease to another holder");
                        let _ = tx.send(None);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if tx.borrow().is_some() && last_ok.elapsed() >= renew_deadline {
                        tracing::warn!(identity = %o.identity, "renew deadline passed: stepping down");
                        let _ = tx.send(None);
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(renew_every).await;
        }
    });
    (rx, task)
}

/// Gives the lease up (stop the election task first): no holder, and a one-second duration
/// that has already run out, so a standby takes over on its next attempt. The epoch stays;
/// the next holder's term is the next one.
pub async fn release_lease(client: &kube::Client, o: &Options) -> Result<(), kube::Error> {
    release(&Api::namespaced(client.clone(), &o.namespace), o).await
}

async fn release(api: &Api<Lease>, o: &Options) -> Result<(), kube::Error> {
    let Some(l) = api.get_opt(&o.name).await? else { return Ok(()) };
    let spec = l.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(o.identity.as_str()) {
        return Ok(());
    }
    let past = (Utc::now() - chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let body: Lease = serde_json::from_value(json!({
        "metadata": {
            "name": o.name, "namespace": o.namespace, "resourceVersion": l.metadata.resource_version,
            "labels": l.metadata.labels, "annotations": l.metadata.annotations,
        },
        "spec": {
            "holderIdentity": null,
            "leaseDurationSeconds": 1,
            "acquireTime": spec.acquire_time,
            "renewTime": past,
            "leaseTransitions": spec.lease_transitions.unwrap_or(0),
        },
    }))
    .unwrap_or_default();
    api.replace(&o.name, &PostParams::default(), &body).await?;
    Ok(())
}
