//! The operator while the API server cannot be reached, against the real API server behind a
//! TCP hop that counts connections and, while down, drops each at once (no TLS handshake, no
//! response). Nothing may retry at a pace that grows with the work in flight or resets itself.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use vworkspace_operator::effector::{fence, outage::Outage};
use vworkspace_operator::leader;

struct Hop {
    addr: std::net::SocketAddr,
    down: Arc<AtomicBool>,
    connects: Arc<AtomicU32>,
}

async fn hop(upstream: String) -> Hop {
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

/// An admin client that reaches the API server through a hop, down to begin with.
async fn through_hop() -> (kube::Client, Hop) {
    let kc = Kubeconfig::read_from(support::kubeconfig()).unwrap();
    let opts = KubeConfigOptions { context: Some("admin".into()), ..Default::default() };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &opts).await.unwrap();
    let upstream = config.cluster_url.authority().unwrap().to_string();
    let hop = hop(upstream).await;
    config.cluster_url = format!("https://{}", hop.addr).parse().unwrap();
    (kube::Client::try_from(config).unwrap(), hop)
}

/// While the API server cannot be reached, the effector's requests wait and one at a time
/// probes it, at doubling intervals from the dispatcher's 100 ms: twenty Operations retrying
/// each on its own backoff connect no more often than one would. The first response lets them
/// all through. (Before, each Operation in flight retried on its own, about ten times a
/// minute: the attempts grew with the Operations in flight.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_probed_once_per_interval_not_by_every_request() {
    let ns = support::namespace("outage").await;
    let (plain, hop) = through_hop().await;
    let (_tx, rx) = tokio::sync::watch::channel(Some(leader::Term::sole()));
    let gate = Arc::new(Outage::new(Duration::from_millis(100), Duration::from_secs(30)));
    let client = fence::client(plain, rx, gate.clone());
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

/// A watch that must list again while the server is away backs off as any other: kube's
/// `default_backoff()` was reset by the `Init` the watcher emits before each list, so such a
/// watch retried about once a second for a whole outage (the chaos suite's apiserver scenario:
/// two watches that had just seen a 410 made 103 of its 147 attempts in 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_must_relist_while_the_server_is_away_backs_off() {
    use vworkspace_operator::inbound::Inbound;
    use vworkspace_operator::ingest;
    use vworkspace_operator::ownership::Ownership;
    use vworkspace_operator::pressure::{Bounds, Pressure};
    use vworkspace_operator::record::RecordBody;
    use vworkspace_operator::record::{ResourceKind, WatchEvent};
    // Init and InitDone come as object-less records.
    let marker = |item: &Inbound| match item {
        Inbound::Record(RecordBody::Observed(o)) => Some(o.event),
        _ => None,
    };
    let (client, hop) = through_hop().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let own = Ownership::new(client.clone(), Default::default());
    let pressure = Pressure::new(Bounds { commands: 1_000, records: 1_000 });
    let watch = tokio::spawn(ingest::watch_kind(client, ResourceKind::OperationTemplate, tx, own, pressure));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = hop.connects.load(Ordering::SeqCst);
    // 800 ms doubling, jittered up to twice that: at most at 0, 0.8, 2.4 and 5.6 s in 10 s.
    // Reset by each Init, the watch tried every 0.8-1.6 s: 7 to 13 times.
    assert!((1..=4).contains(&during), "{during} connections in 10 s from one relisting watch");
    let mut inits = 0;
    while let Ok(item) = rx.try_recv() {
        if marker(&item) == Some(WatchEvent::Init) {
            inits += 1;
        }
    }
    assert!(inits >= 1, "the watcher announced its list");
    // Back: the list goes through on the next retry (within 30 s of jittered backoff).
    hop.down.store(false, Ordering::SeqCst);
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(item) = rx.recv().await {
            if marker(&item) == Some(WatchEvent::InitDone) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(done, Ok(true), "the watch lists once the server is back");
    watch.abort();
}
