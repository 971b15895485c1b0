//! End-to-end load against the real API server: N Operations of three engines (Job, Velero,
//! Argo) submitted at once to the operator running in this process, the engine simulators in
//! instant mode (each child reaches its end on its next status write). It prints the sustained
//! Operations per second and latency percentiles, twice in the same run and on the same control
//! plane: without trace export, then with every span exported to the real Jaeger, and the ratio
//! (the observability issue's "tracing adds at most 5%").
//!
//! Run: `cargo bench --bench e2e_load` (`VW_OPS=300` by default; without `--bench`, as
//! `cargo test --all-targets` runs it, a smoke run of 12 Operations).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use serde_json::json;
use vworkspace_operator::api::Operation;
use vworkspace_operator::{run, sim};

struct Figures {
    ops: usize,
    secs: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One run: a fresh namespace and operator; returns when every Operation has ended.
async fn load(client: &kube::Client, n: usize, label: &str) -> Figures {
    let ns = support::namespace(&format!("load-{label}")).await;
    let velero_ns = support::namespace(&format!("load-velero-{label}")).await;
    support::three_engines(client, &ns, &velero_ns).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = support::operator_options(dir.path());
    opts.limits.concurrency = 64;
    opts.limits.rate_per_sec = 2_000;
    opts.limits.burst = 2_000;
    let operator = tokio::spawn(run::run(client.clone(), opts));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kinds = [("Backup", "velero"), ("Runbook", "argoWorkflow"), ("RunCommand", "job")];
    let start = Instant::now();
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    for i in 0..n {
        let (ty, _) = kinds[i % kinds.len()];
        let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": format!("op-{i}"), "namespace": ns }, "spec": { "type": ty, "target": { "name": "shop" } } });
        api.create(&Default::default(), &serde_json::from_value(op).unwrap()).await.expect("create");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let totals = loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let done: Vec<f64> = list
            .items
            .iter()
            .filter_map(|o| {
                let st = o.status.as_ref()?;
                let end = st.completion_time?;
                let created = o.metadata.creation_timestamp.as_ref()?.0.as_millisecond();
                Some((end.timestamp_millis() - created) as f64 / 1000.0)
            })
            .collect();
        if done.len() == n {
            break done;
        }
        assert!(Instant::now() < deadline, "{}/{n} Operations ended in 600 s", done.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let secs = start.elapsed().as_secs_f64();
    operator.abort();
    let mut t = totals;
    t.sort_by(f64::total_cmp);
    Figures { ops: n, secs, p50: pct(&t, 0.5), p90: pct(&t, 0.9), p99: pct(&t, 0.99), max: *t.last().unwrap() }
}

fn print(label: &str, f: &Figures) {
    println!(
        "{label}: {} Operations in {:.2} s = {:.1} Operations/s; creation -> terminal p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s",
        f.ops,
        f.secs,
        f.ops as f64 / f.secs,
        f.p50,
        f.p90,
        f.p99,
        f.max
    );
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("VW_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(if smoke { 12 } else { 300 });
    let jaeger = support::jaeger();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = support::client("admin").await;
        let sims =
            tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(20), instant: true }));
        let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(100)));
        // A warm-up run, not reported: first watches, caches and connections.
        load(&client, n.min(30), "warmup").await;
        let off = load(&client, n, "off").await;
        print("trace export off", &off);
        // From here on every signal becomes a span exported to the real Jaeger over OTLP/gRPC.
        let endpoint = format!("http://{}", jaeger.otlp_grpc);
        vworkspace_operator::signals::spans::set_sink(Box::new(
            vworkspace_operator::telemetry::processor(Some(&endpoint)).expect("OTLP processor"),
        ));
        let on = load(&client, n, "on").await;
        print("trace export on (Jaeger)", &on);
        let ratio = (on.ops as f64 / on.secs) / (off.ops as f64 / off.secs);
        println!("throughput with export / without: {ratio:.3} (overhead {:.1} %)", (1.0 - ratio) * 100.0);
        sims.abort();
        apps.abort();
    });
}
