//! Leadership on the real API server: two operators share one Lease; only the leader acts and
//! stamps its epoch on children; when it stops, the standby takes over within one lease
//! duration (plus a renewal period) under a new epoch and finishes the work.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::json;
use vworkspace_operator::api::Operation;
use vworkspace_operator::leader::ANNOTATION_EPOCH;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::controller::api_resource;
use vworkspace_operator::{leader, run, sim};

async fn epochs_of(client: &kube::Client, ns: &str, op: &str) -> Vec<String> {
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource(ChildKind::Job));
    jobs.list(&ListParams::default().labels(&format!("ops.vworkspace.io/operation={op}")))
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_EPOCH)).cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_under_a_new_epoch() {
    let client = support::client("admin").await;
    let ns = support::namespace("leader").await;
    support::apply(&client, &support::ar::<vworkspace_operator::api::OperationTemplate>(), None, json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate",
        "metadata": { "name": format!("job-{ns}") }, "spec": { "types": ["RunCommand"], "engine": "job", "namespaces": [ns], "job": { "image": "busybox:1.36" },
            "preconditions": { "exclusive": false } } })).await;
    support::apply(&client, &support::ar::<vworkspace_operator::api::ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job" } }, "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })).await;
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let lease_duration = Duration::from_secs(3);
    let opts = |id: &str, dir: &std::path::Path| run::Options {
        journal: Some(dir.join("j")),
        rediscover: Duration::from_secs(2),
        leader: Some(leader::Options {
            lease_duration,
            ..leader::Options::new(&ns, "vworkspace-operator", id, Default::default())
        }),
        ..Default::default()
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = tokio::spawn(run::run(client.clone(), opts("replica-a", da.path())));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    for _ in 0..100 {
        if leases.get_opt("vworkspace-operator").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = tokio::spawn(run::run(client.clone(), opts("replica-b", db.path())));
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let op = |name: &str| json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "metadata": { "name": name, "namespace": ns }, "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("first")).await;
    for _ in 0..200 {
        if support::phase(&ops, "first").await == "Succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(support::phase(&ops, "first").await, "Succeeded");
    assert_eq!(epochs_of(&client, &ns, "first").await, ["0"], "created once, by the first leader");
    let holder = leases.get("vworkspace-operator").await.unwrap().spec.unwrap().holder_identity.unwrap();
    assert_eq!(holder, "replica-a");

    // The leader stops. Its lease is no longer renewed; the standby must take over.
    a.abort();
    let _ = a.await;
    let stopped = Instant::now();
    let mut took_over = None;
    while stopped.elapsed() < Duration::from_secs(15) {
        let spec = leases.get("vworkspace-operator").await.unwrap().spec.unwrap();
        if spec.holder_identity.as_deref() == Some("replica-b") {
            took_over = Some((stopped.elapsed(), spec.lease_transitions.unwrap_or(0)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (after, epoch) = took_over.expect("the standby took the lease");
    eprintln!("standby took over {after:?} after the leader stopped (lease {lease_duration:?}), epoch {epoch}");
    assert!(after <= lease_duration + lease_duration / 3 + Duration::from_secs(1), "took {after:?}");
    assert_eq!(epoch, 1);
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("second")).await;
    for _ in 0..200 {
        if support::phase(&ops, "second").await == "Succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(support::phase(&ops, "second").await, "Succeeded");
    assert_eq!(epochs_of(&client, &ns, "second").await, ["1"], "the new leader's epoch fences its writes");
    assert_eq!(epochs_of(&client, &ns, "first").await, ["0"], "no duplicate after the takeover");
    b.abort();
    sims.abort();
    apps.abort();
}

/// The effector's client re-checks the term when a write is sent (found by the chaos suite's
/// split brain: a paused leader's write left after the standby took over). Reads always go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fenced_client_sends_no_write_outside_a_term() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::PostParams;
    use vworkspace_operator::effector::fence;
    let client = support::client("admin").await;
    let ns = support::namespace("fence").await;
    let (tx, rx) = tokio::sync::watch::channel(Some(leader::Term::sole()));
    let gate = std::sync::Arc::new(vworkspace_operator::effector::outage::Outage::new(
        Duration::from_millis(100),
        Duration::from_secs(30),
    ));
    let fenced = fence::client(client.clone(), rx, gate);
    let cms: Api<ConfigMap> = Api::namespaced(fenced, &ns);
    let cm = |name: &str| serde_json::from_value::<ConfigMap>(json!({ "metadata": { "name": name } })).unwrap();
    cms.create(&PostParams::default(), &cm("while-leading")).await.expect("a write inside a term is sent");
    tx.send_replace(None);
    let err = cms.create(&PostParams::default(), &cm("after-the-term")).await.expect_err("no term, no write");
    assert!(err.to_string().contains("lease term ended"), "{err}");
    assert!(cms.get("while-leading").await.is_ok(), "reads are not fenced");
    let plain: Api<ConfigMap> = Api::namespaced(client, &ns);
    assert!(plain.get_opt("after-the-term").await.unwrap().is_none(), "the refused write never reached the server");
}

/// A TCP hop to the API server that counts connections and, while `down`, drops each at once
/// (no TLS handshake, no response): the server unreachable, as the client sees it.
struct Hop {
    addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connects: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

async fn hop(upstream: String) -> Hop {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (down, connects) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let (d, c) = (down.clone(), connects.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            if d.load(Ordering::SeqCst) {
                continue;
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
                }
            });
        }
    });
    Hop { addr, down, connects }
}

/// While the API server cannot be reached, the effector's requests wait and one at a time
/// probes it, at doubling intervals from the dispatcher's 100 ms: twenty Operations retrying
/// each on its own backoff connect no more often than one would. The first response lets them
/// all through. (The chaos suite counted 405 attempts in a 60 s outage before this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_probed_once_per_interval_not_by_every_request() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use vworkspace_operator::effector::{fence, outage::Outage};
    let ns = support::namespace("outage").await;
    let kc = Kubeconfig::read_from(support::kubeconfig()).unwrap();
    let opts = KubeConfigOptions { context: Some("admin".into()), ..Default::default() };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &opts).await.unwrap();
    let upstream = config.cluster_url.authority().unwrap().to_string();
    let hop = hop(upstream).await;
    config.cluster_url = format!("https://{}", hop.addr).parse().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(Some(leader::Term::sole()));
    let gate = Arc::new(Outage::new(Duration::from_millis(100), Duration::from_secs(30)));
    let client = fence::client(kube::Client::try_from(config).unwrap(), rx, gate.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        tasks.spawn(async move {
            // The dispatcher's per-Operation backoff: 100 ms doubling.
            let mut delay = Duration::from_millis(100);
            loop {
                match cms.get_opt(&format!("cm-{i}")).await {
                    Ok(found) => return found,
                    Err(_) => tokio::time::sleep(delay).await,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        });
    }
    // The requests already on their way when the server went fail together; from then on
    // only the probes connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let burst = hop.connects.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = hop.connects.load(Ordering::SeqCst) - burst;
    assert!(gate.unreachable());
    let metrics = vworkspace_operator::metrics::get().encode();
    assert_eq!(support::metric_sample(&metrics, "vworkspace_api_unreachable", &[]), Some(1.0));
    // Probes 0.1, 0.3, 0.7, 1.5, 3.1 and 6.3 s after the first failure: in 0.5-4.5 s, three.
    // Each of the 20 retrying on its own would have connected three times in that window.
    assert!(during <= 5, "{during} connections in 4 s of outage from 20 retrying requests (after {burst} at first)");
    hop.down.store(false, Ordering::SeqCst);
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut n = 0;
        while let Some(found) = tasks.join_next().await {
            assert_eq!(found.unwrap(), None, "no such ConfigMap: a 404 is an answer");
            n += 1;
        }
        n
    })
    .await
    .expect("every request is answered once the server is back");
    assert_eq!(answered, 20);
    assert!(!gate.unreachable());
    let metrics = vworkspace_operator::metrics::get().encode();
    assert_eq!(support::metric_sample(&metrics, "vworkspace_api_unreachable", &[]), Some(0.0));
}
