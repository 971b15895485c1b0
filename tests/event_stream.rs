//! The event stream to the control plane, end to end against the real API server: a real HTTP
//! receiver gets every terminal transition (exactly once after deduplication by ID), nothing
//! is lost while it is down or while the operator restarts, and `/events` streams the same
//! events as Server-Sent Events from a cursor.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use serde_json::{Value, json};
use support::receiver::Receiver;
use vworkspace_operator::api::Operation;
use vworkspace_operator::{events, sim};

async fn submit(client: &kube::Client, ns: &str, name: &str) {
    let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "succeed" } },
        "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
    support::apply(client, &support::ar::<Operation>(), Some(ns), op).await;
}

async fn all_succeed(api: &Api<Operation>, names: &[String]) {
    for n in names {
        let deadline = Instant::now() + Duration::from_secs(90);
        while support::phase(api, n).await != "Succeeded" {
            assert!(Instant::now() < deadline, "{n} never succeeded (is {})", support::phase(api, n).await);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

async fn delivered(rx: &Receiver, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = rx.terminal();
        if names.iter().all(|n| t.contains_key(n)) {
            return;
        }
        assert!(Instant::now() < deadline, "terminal events missing; have {t:?}, want {names:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` events of the SSE stream from `cursor` (raw HTTP: the stream never ends by itself).
fn sse(addr: SocketAddr, query: &str, n: usize) -> (u16, Vec<Value>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /events{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(d) = line.strip_prefix("data: ") {
            out.push(serde_json::from_str(d.trim()).unwrap());
        }
        if code != 200 && line.trim().is_empty() {
            break;
        }
    }
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_terminal_transition_reaches_the_control_plane_through_outages_and_restarts() {
    // The operator's logs, shown when the test fails.
    let _logs = vworkspace_operator::telemetry::init(false, false);
    let client = support::client("admin").await;
    let ns = support::namespace("events").await;
    support::job_engine(&client, &ns).await;

    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), Arc::default(), Arc::default());
    let dir = tempfile::tempdir().unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut opts = support::operator_options(dir.path());
    opts.http = Some(http);
    opts.events = Some(events::push::Options {
        window: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..events::push::Options::new(format!("http://{}/v1/events", rx.addr))
    });
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(150), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let mut operator = support::run_operator(&client, &mut opts).await;
    let http = opts.http.unwrap();
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let names = |round: &str| -> Vec<String> { (0..3).map(|i| format!("{round}-{i}")).collect() };

    // 1. Live delivery.
    for n in names("live") {
        submit(&client, &ns, &n).await;
    }
    all_succeed(&api, &names("live")).await;
    delivered(&rx, &names("live")).await;

    // 2. The receiver is down while Operations finish; it comes back and catches up.
    let (addr, got, posts) = rx.stop();
    for n in names("outage") {
        submit(&client, &ns, &n).await;
    }
    all_succeed(&api, &names("outage")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rx = Receiver::start(addr, got, posts);
    delivered(&rx, &names("outage")).await;

    // 3. The operator restarts with events not yet delivered.
    let (addr, got, posts) = rx.stop();
    for n in names("restart") {
        submit(&client, &ns, &n).await;
    }
    all_succeed(&api, &names("restart")).await;
    operator.abort();
    let _ = operator.await;
    let rx = Receiver::start(addr, got, posts);
    support::wait_port_free(http).await;
    operator = support::run_operator(&client, &mut opts).await;
    let http = opts.http.unwrap();
    delivered(&rx, &names("restart")).await;

    // Exactly one terminal transition per Operation after deduplication by ID.
    let all: Vec<String> = ["live", "outage", "restart"].iter().flat_map(|r| names(r)).collect();
    let terminal = rx.terminal();
    for n in &all {
        assert_eq!(terminal.get(n).map(BTreeSet::len), Some(1), "{n}: {:?}", terminal.get(n));
    }
    let got = rx.got.lock().unwrap().clone();
    for e in &got {
        assert_eq!(e["schema"], "vworkspace.events/v1");
        assert!(e["coalesced"].as_u64().unwrap() >= 1);
        assert_eq!(e["traceID"].as_str().unwrap().len(), 32);
    }
    let posts = *rx.posts.lock().unwrap();
    assert!(posts < got.len() as u64, "events travel in batches ({posts} posts for {} events)", got.len());

    // Pull mode: the same events from a cursor, not coalesced.
    let total = got.iter().map(|e| e["cursor"].as_u64().unwrap()).max().unwrap() as usize;
    let (code, pulled) = tokio::task::spawn_blocking(move || sse(http, "?cursor=0", total)).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(pulled.len(), total, "every event since cursor 0");
    let pulled_terminal: BTreeSet<String> = pulled
        .iter()
        .filter(|e| e["terminal"] == true)
        .map(|e| e["operation"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pulled_terminal, all.iter().cloned().collect::<BTreeSet<_>>());
    let cursors: Vec<u64> = pulled.iter().map(|e| e["cursor"].as_u64().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in cursor order");
    // Resuming from a cursor gives only what follows it.
    let mid = cursors[cursors.len() / 2];
    let (_, rest) = tokio::task::spawn_blocking(move || sse(http, &format!("?cursor={mid}"), 1)).await.unwrap();
    assert_eq!(rest[0]["cursor"].as_u64(), Some(mid + 1));
    // A bad cursor is a clear 400.
    let (code, _) = tokio::task::spawn_blocking(move || sse(http, "?cursor=abc", 1)).await.unwrap();
    assert_eq!(code, 400);

    let _ = rx.stop();
    operator.abort();
    sims.abort();
    apps.abort();
}
