//! End-to-end load against the real API server, each figure beside a baseline taken in the same
//! run (the machine is shared and noisy). The operator runs as its own process (the release
//! binary), so its CPU seconds and peak RSS are its own; the engine simulators run here in
//! instant mode (each child reaches its end on its first status write). Runs, in order:
//! 1. **API-server limit**: a minimal client making exactly the calls an Operation needs
//!    (create the Operation, create the child, one status write by the simulator, one status
//!    patch of the Operation, one Event), 64 at a time, as fast as it can.
//! 2. **operator, sled journal**: N Operations (Job, Velero, Argo in turn) submitted at once.
//! 3. **operator, `--journal memory`**: the same; the journal's overhead is the ratio.
//! 4. **operator, offered rate**: N Operations at R per second, for latencies; then again at
//!    `VW_LOW_RATE` (default 10/s), where the API server is not saturated.
//! 5. **operator with every span exported to the real Jaeger** (observability's ≤ 5 %).
//!
//! Latencies are taken from watch events seen by this process: submission → child created,
//! child terminal → Operation terminal, and submission → Operation terminal.
//!
//!
//! **Scale curve** (`VW_SCALE=1000,10000,50000`, alone): Operations retained in one namespace,
//! spread over `VW_TARGETS` targets (default 100; 1 puts every Operation in one target's queue),
//! each stage adding up to the next total; per stage the CPU per Operation added, RSS per
//! retained Operation, journal bytes per Operation, and the restart time to ready on that
//! journal. `VW_CHARTS=docs/benchmarks` draws them as SVG charts.
//!
//! Run: `cargo bench --bench e2e_load` (`VW_OPS=300`, `VW_RATE=100`); with `-- --quick`, or
//! without `--bench` (as `cargo test --all-targets` runs it), a smoke run of 12 Operations and
//! a scale curve of 10 and 20.

mod charts;
mod summary;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use vworkspace_operator::api::Operation;
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim;

const KINDS: [(&str, ChildKind); 3] =
    [("RunCommand", ChildKind::Job), ("Backup", ChildKind::VeleroBackup), ("Runbook", ChildKind::Workflow)];

#[derive(Default, Clone, Copy)]
struct Times {
    submitted: Option<Instant>,
    child: Option<Instant>,
    child_done: Option<Instant>,
    done: Option<Instant>,
}

type Book = Arc<Mutex<BTreeMap<String, Times>>>;

struct Stats {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Stats { p50: f64::NAN, p90: f64::NAN, p99: f64::NAN, max: f64::NAN };
    }
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    Stats { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: *v.last().unwrap() }
}

fn ms(s: &Stats) -> String {
    format!("p50 {:.0} / p90 {:.0} / p99 {:.0} / max {:.0} ms", s.p50, s.p90, s.p99, s.max)
}

struct Figures {
    ops: usize,
    secs: f64,
    to_child: Stats,
    child_run: Stats,
    child_to_done: Stats,
    total: Stats,
    cpu_secs: f64,
    peak_rss_mb: f64,
    journal_bytes_per_op: Option<f64>,
    /// The operator's API calls per Operation, by effector action (superseded status patches,
    /// never sent, are not counted).
    calls: BTreeMap<String, f64>,
    /// Records folded and journal commits (`durable()`), per Operation.
    records_per_op: f64,
    commits_per_op: f64,
    /// Status patches left unsent because a newer one for the same Operation came first.
    superseded_per_op: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    fn print(&self, label: &str) {
        println!(
            "{label}: {} Operations in {:.2} s = {:.1} Operations/s; operator CPU {:.2} s ({:.1} ms per Operation), peak RSS {:.0} MB{}",
            self.ops,
            self.secs,
            self.rate(),
            self.cpu_secs,
            self.cpu_secs * 1000.0 / self.ops as f64,
            self.peak_rss_mb,
            self.journal_bytes_per_op
                .map(|b| format!(", journal {:.1} KB per Operation", b / 1000.0))
                .unwrap_or_default()
        );
        println!("  submission -> child created:       {}", ms(&self.to_child));
        println!("  child created -> child terminal (simulator): {}", ms(&self.child_run));
        println!("  child terminal -> Operation terminal: {}", ms(&self.child_to_done));
        println!("  submission -> Operation terminal:  {}", ms(&self.total));
        let each: Vec<String> = self.calls.iter().map(|(a, n)| format!("{a} {n:.2}")).collect();
        println!("  operator API calls per Operation: {:.2} ({})", self.calls_per_op(), each.join(", "));
        println!(
            "  records per Operation: {:.1}; journal commits per Operation: {:.2}; status patches superseded per Operation: {:.2}",
            self.records_per_op, self.commits_per_op, self.superseded_per_op
        );
    }

    fn calls_per_op(&self) -> f64 {
        self.calls.values().sum()
    }
}

/// The operator's `/metrics` text ("" when it does not answer).
fn metrics(port: u16) -> String {
    http_get(port, "/metrics", Duration::from_secs(5)).unwrap_or_default()
}

/// The effector's commands so far, by (action, result), from `vworkspace_effector_commands_total`.
fn effector_commands(text: &str) -> BTreeMap<(String, String), u64> {
    let mut commands = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("vworkspace_effector_commands_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).map(|i| i + name.len() + 2)?;
            line[start..].split('"').next().map(str::to_string)
        };
        let (Some(action), Some(result)) = (label("action"), label("result")) else { continue };
        let count = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        *commands.entry((action, result)).or_default() += count;
    }
    commands
}

/// The effector's API calls so far, by action: superseded status patches were never sent.
fn effector_calls(commands: &BTreeMap<(String, String), u64>) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for ((action, result), count) in commands {
        if result != "Superseded" {
            *calls.entry(action.clone()).or_default() += count;
        }
    }
    calls
}

/// One unlabelled sample's value (a counter's total, a histogram's count), 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    support::metric_sample(text, name, &[]).unwrap_or(0.0)
}

fn terminal_child(obj: &Value) -> bool {
    let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    let conds = obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    matches!(phase, "Completed" | "Succeeded" | "Failed" | "PartiallyFailed" | "Error")
        || conds.iter().any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

/// Records, per Operation UID, when its child and its end were first seen.
fn observe(client: &kube::Client, ns: &str, velero_ns: &str, book: Book) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let ops: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &support::ar::<Operation>());
    let b = book.clone();
    tasks.push(tokio::spawn(async move {
        let mut s = watcher(ops, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = s.next().await {
            let objs = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                _ => vec![],
            };
            for o in objs {
                let end = o.data.pointer("/status/completionTime").is_some_and(|v| !v.is_null());
                if let (true, Some(uid)) = (end, o.metadata.uid.clone()) {
                    let now = Instant::now();
                    b.lock().unwrap().entry(uid).or_default().done.get_or_insert(now);
                }
            }
        }
    }));
    for (_, kind) in KINDS {
        let ar = vworkspace_operator::sim::controller::api_resource(kind);
        let in_ns = if kind == ChildKind::VeleroBackup { velero_ns } else { ns };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), in_ns, &ar);
        let b = book.clone();
        tasks.push(tokio::spawn(async move {
            let cfg = watcher::Config::default().labels("ops.vworkspace.io/operation-uid");
            let mut s = watcher(api, cfg).boxed();
            while let Some(Ok(ev)) = s.next().await {
                let (watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev else { continue };
                let labels = o.metadata.labels.clone().unwrap_or_default();
                let Some(uid) = labels.get("ops.vworkspace.io/operation-uid") else { continue };
                let now = Instant::now();
                let mut book = b.lock().unwrap();
                let t = book.entry(uid.clone()).or_default();
                t.child.get_or_insert(now);
                if terminal_child(&serde_json::to_value(&o).unwrap_or(Value::Null)) {
                    t.child_done.get_or_insert(now);
                }
            }
        }));
    }
    tasks
}

fn operation(ns: &str, name: &str, ty: &str, target: &str) -> Operation {
    serde_json::from_value(json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns }, "spec": { "type": ty, "target": { "name": target } } }))
    .unwrap()
}

/// The operator process's CPU seconds (user + system) and peak RSS (MB), from /proc.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    (cpu, status_mb(pid, "VmHWM:"))
}

/// A memory figure of /proc/PID/status (`VmHWM:`, `VmRSS:`), in MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[derive(Clone, Copy, PartialEq)]
enum Journal {
    Sled,
    Memory,
}

/// The operator binary with a journal at `jdir` (None: in memory), serving HTTP on `port` (0: any).
fn operator(dir: &std::path::Path, jdir: Option<&std::path::Path>, otlp: Option<&str>, port: u16) -> Child {
    // VW_OPERATOR_WRAP="heaptrack -o /tmp/ht" runs the operator under a profiler (build with
    // `--features system-alloc` so a malloc-hooking heap profiler sees its allocations).
    let wrap = std::env::var("VW_OPERATOR_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(w) => {
            let mut c = std::process::Command::new(w);
            c.args(words).arg(env!("CARGO_BIN_EXE_vworkspace-operator"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_vworkspace-operator")),
    };
    cmd.args(["run", "--no-leader-elect", "--audit-log", "/dev/null"])
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--max-concurrent", "64", "--api-qps", "2000", "--api-burst", "2000"])
        .arg("--journal")
        .arg(jdir.map(|j| j.to_str().unwrap()).unwrap_or("memory"))
        // VW_OPERATOR_ARGS="--commit-delay-ms 0": more flags, for comparing settings.
        .args(std::env::var("VW_OPERATOR_ARGS").unwrap_or_default().split_whitespace())
        .env("KUBECONFIG", support::kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("operator.log")).unwrap());
    if let Some(e) = otlp {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", e);
    }
    cmd.spawn().expect("start the operator")
}

/// One operator run: a fresh namespace and operator process; returns once every Operation has
/// ended, after the process's usage is read. `rate`: Operations per second, or all at once.
async fn load(
    client: &kube::Client,
    n: usize,
    label: &str,
    journal: Journal,
    rate: Option<f64>,
    otlp: Option<&str>,
) -> Figures {
    let ns = support::namespace(&format!("load-{label}")).await;
    let velero_ns = support::namespace(&format!("load-velero-{label}")).await;
    support::three_engines(client, &ns, &velero_ns).await;
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut operator = operator(dir.path(), (journal == Journal::Sled).then_some(&jdir), otlp, port);
    let book: Book = Arc::default();
    let watches = observe(client, &ns, &velero_ns, book.clone());
    // The operator's first lists, and ours.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    submit(&api, &ns, &book, 0..n, rate, 1).await;
    await_ended(&book, n, &mut operator).await;
    let last = book.lock().unwrap().values().filter_map(|t| t.done).max().unwrap();
    let secs = (last - start).as_secs_f64();
    let (cpu_secs, peak_rss_mb) = usage(operator.id());
    let journal_bytes_per_op = (journal == Journal::Sled).then(|| support::dir_size(&jdir) as f64 / n as f64);
    let text = metrics(port);
    let commands = effector_commands(&text);
    let calls = effector_calls(&commands).into_iter().map(|(a, c)| (a, c as f64 / n as f64)).collect();
    let records_per_op = metric(&text, "vworkspace_journal_records_total") / n as f64;
    let commits_per_op = metric(&text, "vworkspace_journal_durable_seconds_count") / n as f64;
    let superseded: u64 = commands.iter().filter(|((_, r), _)| r == "Superseded").map(|(_, c)| c).sum();
    let superseded_per_op = superseded as f64 / n as f64;
    // Clean up while the operator still runs (it holds the finalizers), so the next run's
    // operator does not relist this one's Operations.
    let _ = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    let cleanup = Instant::now() + Duration::from_secs(60);
    while !api.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(true)
        && Instant::now() < cleanup
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = operator.kill();
    let _ = operator.wait();
    // And their children: a cluster's garbage collector would remove those owned by the
    // Operations; this control plane runs none, and the next operator would relist them all.
    clear(client, &[&ns, &velero_ns]).await;
    watches.iter().for_each(|w| w.abort());
    // VW_KEEP_JOURNALS=1 keeps each run's journal for `vworkspace-operator replay` (path printed).
    if journal == Journal::Sled && std::env::var_os("VW_KEEP_JOURNALS").is_some() {
        println!("  journal kept: {}", dir.keep().join("journal").display());
    }
    let book = book.lock().unwrap();
    let secs_between = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_duration_since(a).as_secs_f64() * 1000.0),
        _ => None,
    };
    let mine: Vec<&Times> = book.values().filter(|t| t.submitted.is_some()).collect();
    Figures {
        ops: n,
        secs,
        to_child: stats(mine.iter().filter_map(|t| secs_between(t.submitted, t.child)).collect()),
        child_run: stats(mine.iter().filter_map(|t| secs_between(t.child, t.child_done)).collect()),
        child_to_done: stats(mine.iter().filter_map(|t| secs_between(t.child_done, t.done)).collect()),
        total: stats(mine.iter().filter_map(|t| secs_between(t.submitted, t.done)).collect()),
        cpu_secs,
        peak_rss_mb,
        journal_bytes_per_op,
        calls,
        records_per_op,
        commits_per_op,
        superseded_per_op,
    }
}

/// One point of the scale curve: the state after a stage brought the retained total to `total`.
struct ScalePoint {
    total: usize,
    /// Operations this stage added, and the operator's CPU seconds spent on them.
    added: usize,
    cpu_secs: f64,
    /// The operator's resident memory at the end of the stage, and its peak.
    rss_mb: f64,
    peak_rss_mb: f64,
    journal_bytes: u64,
    /// From starting the process again on the same journal to `/readyz` answering 200.
    restart_secs: f64,
    /// Resident memory of the restarted process once ready (the journal restored).
    restart_rss_mb: f64,
    /// API calls the restarted process made for retained Operations, until they stopped.
    restart_calls: u64,
}

impl ScalePoint {
    fn cpu_ms_per_op(&self) -> f64 {
        self.cpu_secs * 1000.0 / self.added as f64
    }

    fn rss_kb_per_op(&self) -> f64 {
        self.rss_mb * 1024.0 / self.total as f64
    }

    fn journal_kb_per_op(&self) -> f64 {
        self.journal_bytes as f64 / 1000.0 / self.total as f64
    }
}

fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// The restarted process's API calls, once no new one has come for two seconds (at most 300 s):
/// the Operations are all ended, so whatever it sends is re-sent.
async fn calls_settled(port: u16) -> u64 {
    let total = move || {
        tokio::task::spawn_blocking(move || effector_calls(&effector_commands(&metrics(port))).values().sum::<u64>())
    };
    let start = Instant::now();
    let mut last = total().await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = total().await.unwrap();
        if now == last || start.elapsed() > Duration::from_secs(300) {
            return now;
        }
        last = now;
    }
}

/// Whether `/readyz` answers 200.
fn ready(port: u16) -> bool {
    let buf = http_get(port, "/readyz", Duration::from_secs(2)).unwrap_or_default();
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// The whole response to `GET path` on the operator's HTTP port (raw HTTP/1.0: no client needed).
fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(timeout));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    Some(buf)
}

async fn await_ready(port: u16, operator: &mut Child) -> Duration {
    let start = Instant::now();
    loop {
        if tokio::task::spawn_blocking(move || ready(port)).await.unwrap() {
            return start.elapsed();
        }
        assert!(operator.try_wait().unwrap().is_none(), "the operator stopped before it was ready");
        assert!(start.elapsed() < Duration::from_secs(600), "not ready in 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scale curve: one namespace whose Operations are retained, not deleted; each stage adds
/// Operations up to the next total, then the operator is stopped (SIGTERM) and started again on
/// the same journal, and its time to ready is taken.
async fn scale(
    client: &kube::Client,
    totals: &[usize],
    targets: usize,
    charts_dir: &std::path::Path,
) -> Vec<ScalePoint> {
    let ns = support::namespace("scale").await;
    let velero_ns = support::namespace("scale-velero").await;
    support::three_engines(client, &ns, &velero_ns).await;
    // More targets like `shop`, offering the same three engines.
    if targets > 1 {
        for k in 0..targets {
            support::three_engine_target(client, &ns, &target_name(k, targets)).await;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut op = operator(dir.path(), Some(&jdir), None, port);
    await_ready(port, &mut op).await;
    let book: Book = Arc::default();
    let watches = observe(client, &ns, &velero_ns, book.clone());
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let mut points = Vec::new();
    let mut done = 0;
    for &total in totals {
        let cpu0 = usage(op.id()).0;
        submit(&api, &ns, &book, done..total, None, targets).await;
        await_ended(&book, total, &mut op).await;
        let (cpu1, peak_rss_mb) = usage(op.id());
        let rss = rss_mb(op.id());
        support::pod::terminate(&mut op);
        let journal_bytes = support::dir_size(&jdir);
        op = operator(dir.path(), Some(&jdir), None, port);
        let restart = await_ready(port, &mut op).await;
        let restart_calls = calls_settled(port).await;
        let p = ScalePoint {
            total,
            added: total - done,
            cpu_secs: cpu1 - cpu0,
            rss_mb: rss,
            peak_rss_mb,
            journal_bytes,
            restart_secs: restart.as_secs_f64(),
            restart_rss_mb: rss_mb(op.id()),
            restart_calls,
        };
        println!(
            "scale {total}: +{} Operations, CPU {:.2} ms/Operation, RSS {:.0} MB ({:.1} KB/Operation; peak {:.0} MB), journal {:.1} KB/Operation, restart to ready {:.2} s (RSS then {:.0} MB), {} API calls after the restart",
            p.added,
            p.cpu_ms_per_op(),
            p.rss_mb,
            p.rss_kb_per_op(),
            p.peak_rss_mb,
            p.journal_kb_per_op(),
            p.restart_secs,
            p.restart_rss_mb,
            p.restart_calls
        );
        points.push(p);
        // Drawn after each stage, so a long curve cut short still has its charts.
        charts(&points, charts_dir);
        done = total;
    }
    support::pod::terminate(&mut op);
    watches.iter().for_each(|w| w.abort());
    clear(client, &[&ns, &velero_ns]).await;
    points
}

/// Removes a finished curve's Operations and children, so the next curve's operator (on a new
/// journal) does not list them: the finalizers are taken off (the operator is stopped), then
/// every kind is deleted by collection, a page at a time, until its list is empty.
async fn clear(client: &kube::Client, namespaces: &[&str]) {
    let op_ar = support::ar::<Operation>();
    let mut kinds: Vec<ApiResource> = vec![op_ar.clone()];
    kinds.extend(KINDS.map(|(_, k)| sim::controller::api_resource(k)));
    for ns in namespaces {
        let ops: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &op_ar);
        let names: Vec<String> = ops
            .list_metadata(&ListParams::default())
            .await
            .map(|l| l.items.into_iter().filter_map(|o| o.metadata.name).collect())
            .unwrap_or_default();
        let unfinalize = json!({ "metadata": { "finalizers": null } });
        futures::stream::iter(names)
            .for_each_concurrent(64, |name| {
                let (ops, patch) = (ops.clone(), unfinalize.clone());
                async move {
                    let _ = ops.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                }
            })
            .await;
        for ar in &kinds {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
            // A collection of 10,000 can outlast one request: delete in pages until none is left
            // (the three-run curve of 2026-11-27 saw runs 2 and 3 list what run 1 had left).
            let page = ListParams::default().limit(500);
            for _ in 0..200 {
                // In the background: a Job's default (orphan) adds a finalizer that only a
                // garbage collector removes, and this control plane runs none.
                let _ = api.delete_collection(&DeleteParams::background(), &page).await;
                match api.list_metadata(&ListParams::default().limit(1)).await {
                    Ok(l) if l.items.is_empty() => break,
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
}

/// A scale figure: its name, unit, target, and how to read it from a point.
type Figure = (&'static str, &'static str, &'static str, fn(&ScalePoint) -> f64);

/// Each stage's figures over the runs of the curve: printed as median, min and max, and returned
/// as the curve of medians (for the charts).
fn scale_summary(curves: &[Vec<ScalePoint>]) -> Vec<ScalePoint> {
    let mut table = summary::Summary::default();
    let mut medians = Vec::new();
    for (i, first) in curves[0].iter().enumerate() {
        let total = first.total;
        let stage: Vec<&ScalePoint> = curves.iter().map(|c| &c[i]).collect();
        let median = |f: fn(&ScalePoint) -> f64| {
            let v: Vec<f64> = stage.iter().map(|p| f(p)).collect();
            summary::spread(&v).map(|s| s.0).unwrap_or(f64::NAN)
        };
        let figures: [Figure; 7] = [
            ("CPU per Operation added", "ms", "flat ±20 %", ScalePoint::cpu_ms_per_op),
            ("RSS", "MB", "", |p| p.rss_mb),
            ("peak RSS", "MB", "≤ 150 MB at 10,000", |p| p.peak_rss_mb),
            ("RSS per retained Operation", "KB", "flat 10k → 50k", ScalePoint::rss_kb_per_op),
            ("journal per Operation", "KB", "", ScalePoint::journal_kb_per_op),
            ("restart to ready", "s", "", |p| p.restart_secs),
            ("API calls after the restart", "", "", |p| p.restart_calls as f64),
        ];
        for (name, unit, target, f) in figures {
            for p in &stage {
                table.add(&format!("{total}: {name}"), unit, target, f(p));
            }
        }
        let ops_secs = median(|p| p.cpu_secs);
        medians.push(ScalePoint {
            total,
            added: first.added,
            cpu_secs: ops_secs,
            rss_mb: median(|p| p.rss_mb),
            peak_rss_mb: median(|p| p.peak_rss_mb),
            journal_bytes: median(|p| p.journal_bytes as f64) as u64,
            restart_secs: median(|p| p.restart_secs),
            restart_rss_mb: median(|p| p.restart_rss_mb),
            restart_calls: median(|p| p.restart_calls as f64) as u64,
        });
    }
    println!("\nscale curve, {} runs:\n{}", curves.len(), table.markdown());
    medians
}

/// The scale curve's charts, into `dir` (docs/benchmarks/ when the figures are for the docs).
fn charts(points: &[ScalePoint], dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let series = |f: fn(&ScalePoint) -> f64| points.iter().map(|p| (p.total as f64, f(p))).collect::<Vec<_>>();
    let x = "Operations retained";
    let figs = [
        ("scale-cpu.svg", "Operator CPU per Operation", "ms", series(ScalePoint::cpu_ms_per_op)),
        ("scale-memory.svg", "Operator RSS per retained Operation", "KB", series(ScalePoint::rss_kb_per_op)),
        ("scale-journal.svg", "Journal size per Operation", "KB", series(ScalePoint::journal_kb_per_op)),
        ("scale-restart.svg", "Restart to ready", "s", series(|p| p.restart_secs)),
    ];
    for (file, title, unit, pts) in figs {
        let svg = charts::svg(&charts::Chart { title, x_label: x, y_label: unit, points: &pts });
        std::fs::write(dir.join(file), svg).unwrap();
    }
    println!("charts written to {}", dir.display());
}

/// The target of the k-th of `targets`: `shop` alone, or `shop-{k}`.
fn target_name(k: usize, targets: usize) -> String {
    if targets == 1 { "shop".to_string() } else { format!("shop-{k}") }
}

/// Creates Operations `op-{i}` for each i, spread over `targets` targets, at `rate` per second
/// or all at once.
async fn submit(
    api: &Api<Operation>,
    ns: &str,
    book: &Book,
    range: std::ops::Range<usize>,
    rate: Option<f64>,
    targets: usize,
) {
    let start = Instant::now();
    let first = range.start;
    let mut creates = Vec::new();
    for i in range {
        if let Some(r) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64((i - first) as f64 / r)).into()).await;
        }
        let (api, book, ns) = (api.clone(), book.clone(), ns.to_string());
        creates.push(tokio::spawn(async move {
            let at = Instant::now();
            let op = operation(&ns, &format!("op-{i}"), KINDS[i % KINDS.len()].0, &target_name(i % targets, targets));
            let made = api.create(&PostParams::default(), &op).await.expect("create");
            book.lock().unwrap().entry(made.metadata.uid.unwrap()).or_default().submitted = Some(at);
        }));
        // Bounded in flight, so a large stage does not open thousands of requests at once.
        if creates.len() >= 1024 {
            for c in creates.drain(..) {
                c.await.unwrap();
            }
        }
    }
    for c in creates {
        c.await.unwrap();
    }
}

/// Waits until `n` submitted Operations have ended (a generous deadline for large stages).
async fn await_ended(book: &Book, n: usize, operator: &mut Child) {
    let limit = Duration::from_secs(600.max(n as u64 / 5));
    let deadline = Instant::now() + limit;
    loop {
        let ended = book.lock().unwrap().values().filter(|t| t.submitted.is_some() && t.done.is_some()).count();
        if ended >= n {
            return;
        }
        assert!(operator.try_wait().unwrap().is_none(), "the operator stopped");
        assert!(Instant::now() < deadline, "{ended}/{n} Operations ended in {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API server's limit for the same work: per Operation, exactly the calls it costs (its Job
/// is not labelled as ours, so the simulators leave it to this client's own status write).
async fn api_limit(client: &kube::Client, n: usize) -> f64 {
    let ns = support::namespace("load-limit").await;
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<k8s_openapi::api::batch::v1::Job>(&()));
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (ops, jobs, events, next, ns) = (ops.clone(), jobs.clone(), events.clone(), next.clone(), ns.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let name = format!("op-{i}");
                    let op = ops.create(&PostParams::default(), &operation(&ns, &name, "RunCommand", "shop")).await.unwrap();
                    let job: DynamicObject = serde_json::from_value(json!({ "apiVersion": "batch/v1", "kind": "Job",
                        "metadata": { "name": name, "namespace": ns, "labels": { "load-limit-of": op.metadata.uid } },
                        "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox:1.36" }] } } } }))
                    .unwrap();
                    jobs.create(&PostParams::default(), &job).await.unwrap();
                    let done = json!({ "status": { "succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:01Z",
                        "conditions": [{ "type": "SuccessCriteriaMet", "status": "True" }, { "type": "Complete", "status": "True" }] } });
                    jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&done)).await.unwrap();
                    let status = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
                        "status": { "phase": "Succeeded", "conditions": [{ "type": "Succeeded", "status": "True", "reason": "Completed",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:01Z", "observedGeneration": 1 }] } });
                    ops.patch_status(&name, &PatchParams::apply("limit").force(), &Patch::Apply(&status)).await.unwrap();
                    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
                        "metadata": { "name": format!("{name}.1"), "namespace": ns }, "eventTime": "2026-01-01T00:00:01.000000Z",
                        "reportingController": "limit", "reportingInstance": "limit", "action": "Succeeded", "reason": "Completed",
                        "type": "Normal", "note": "done", "regarding": { "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "namespace": ns, "name": name } }))
                    .unwrap();
                    events.create(&PostParams::default(), &ev).await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let limit = n as f64 / start.elapsed().as_secs_f64();
    // Left behind, these Operations would be relisted by the next operator run (the sled run)
    // and given its status patches: a third more work for that run than for the others.
    let all = (DeleteParams::default(), ListParams::default());
    ops.delete_collection(&all.0, &all.1).await.expect("delete the limit's Operations");
    // Background: a Job's default (orphan) adds a finalizer that only a garbage collector removes.
    jobs.delete_collection(&DeleteParams::background(), &all.1).await.expect("delete the limit's Jobs");
    events.delete_collection(&all.0, &all.1).await.expect("delete the limit's Events");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ops.list(&all.1).await.map(|l| l.items.is_empty()).unwrap_or(true) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    limit
}

/// One round of the measured runs: the API-server limit, then the operator with sled, in memory,
/// at an offered rate, and with spans exported; each printed, and its figures added to `table`.
async fn measured(
    client: &kube::Client,
    n: usize,
    rate: f64,
    jaeger: &vworkspace_operator::cluster::jaeger::Jaeger,
    table: &mut summary::Summary,
) {
    let limit = api_limit(client, n).await;
    println!(
        "API-server limit: {limit:.1} Operations/s (create, child, child status, Operation status, Event; 64 at a time)"
    );
    let sled = load(client, n, "sled", Journal::Sled, None, None).await;
    sled.print("operator, sled journal, all at once");
    let memory = load(client, n, "memory", Journal::Memory, None, None).await;
    memory.print("operator, journal in memory, all at once");
    let paced = load(client, n, "paced", Journal::Sled, Some(rate), None).await;
    paced.print(&format!("operator, sled journal, offered {rate} Operations/s"));
    // The same at a rate this machine's API server keeps up with: the operator's own latency.
    let low = low_rate();
    let slow = load(client, n, "slow", Journal::Sled, Some(low), None).await;
    slow.print(&format!("operator, sled journal, offered {low} Operations/s"));
    let endpoint = format!("http://{}", jaeger.otlp_grpc);
    let traced = load(client, n, "traced", Journal::Sled, None, Some(&endpoint)).await;
    traced.print("operator, sled journal, every span exported to Jaeger");
    let throughput = sled.rate() / limit;
    let overhead = (1.0 - sled.rate() / memory.rate()) * 100.0;
    let trace_overhead = (1.0 - traced.rate() / sled.rate()) * 100.0;
    println!("throughput / API-server limit: {throughput:.3} (target >= 0.7)");
    // The limit's path costs 5 calls (create, child, child status, status patch, Event); the
    // operator's path is the create, the simulator's status write and the operator's own calls.
    let path = 2.0 + sled.calls_per_op();
    println!(
        "API calls per Operation: limit 5, operator path {path:.2}; were the API server the only bottleneck, throughput / limit <= {:.3}",
        LIMIT_CALLS / path
    );
    println!(
        "journal overhead: sled / memory throughput {:.3} (overhead {overhead:.1} %, target <= 10 %)",
        sled.rate() / memory.rate()
    );
    println!(
        "trace export: with / without {:.3} (overhead {trace_overhead:.1} %, target <= 5 %)",
        1.0 - trace_overhead / 100.0
    );
    let per_op = |f: &Figures| f.cpu_secs * 1000.0 / f.ops as f64;
    table.add("API-server limit", "Operations/s", "", limit);
    table.add("operator, sled journal, all at once", "Operations/s", "", sled.rate());
    table.add("throughput / API-server limit", "", "≥ 0.7", throughput);
    table.add("operator, journal in memory, all at once", "Operations/s", "", memory.rate());
    table.add("journal overhead (1 − sled / memory)", "%", "≤ 10 %", overhead);
    table.add("API calls per Operation, operator path (limit: 5)", "", "", path);
    table.add("throughput / limit bound by calls (5 / operator path)", "", "", LIMIT_CALLS / path);
    table.add("operator CPU per Operation, sled", "ms", "", per_op(&sled));
    table.add("operator CPU per Operation, memory", "ms", "", per_op(&memory));
    table.add("operator peak RSS, sled", "MB", "", sled.peak_rss_mb);
    table.add("journal on disk per Operation", "KB", "", sled.journal_bytes_per_op.unwrap_or(f64::NAN) / 1000.0);
    table.add(&format!("submission → child created p99, {rate}/s offered"), "ms", "≤ 100 ms", paced.to_child.p99);
    table.add(&format!("child terminal → Operation terminal p50, {rate}/s offered"), "ms", "", paced.child_to_done.p50);
    table.add(
        &format!("child terminal → Operation terminal p99, {rate}/s offered"),
        "ms",
        "≤ 100 ms",
        paced.child_to_done.p99,
    );
    table.add(&format!("submission → child created p99, {low}/s offered"), "ms", "≤ 100 ms", slow.to_child.p99);
    table.add(
        &format!("child terminal → Operation terminal p99, {low}/s offered"),
        "ms",
        "≤ 100 ms",
        slow.child_to_done.p99,
    );
    table.add("trace export overhead (1 − with / without)", "%", "≤ 5 %", trace_overhead);
}

/// API calls per Operation on the limit's path.
const LIMIT_CALLS: f64 = 5.0;

/// `VW_LOW_RATE`: the second offered rate, low enough not to saturate this machine (default 10/s).
fn low_rate() -> f64 {
    std::env::var("VW_LOW_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(10.0)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--quick");
    let n: usize = std::env::var("VW_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(if smoke { 12 } else { 300 });
    let rate: f64 = std::env::var("VW_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(100.0);
    let jaeger = support::jaeger();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = support::client("admin").await;
        let sims =
            tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(20), instant: true }));
        let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(100)));
        // VW_SCALE=1000,10000,50000: the scale curve alone (a smoke run also draws a small one).
        let scale_totals = std::env::var("VW_SCALE").ok().map(|v| {
            v.split(',')
                .map(|t| t.trim().parse::<usize>().expect("VW_SCALE: totals like 1000,10000"))
                .collect::<Vec<_>>()
        });
        if let Some(totals) = scale_totals.clone().or_else(|| smoke.then(|| vec![10, 20])) {
            // VW_CHARTS=DIR writes the SVG charts there (docs/benchmarks for the docs' figures).
            let dir = std::env::var_os("VW_CHARTS").map(std::path::PathBuf::from);
            let tmp = tempfile::tempdir().unwrap();
            // VW_TARGETS: how many targets share the Operations (1: all on `shop`, one queue).
            let targets =
                std::env::var("VW_TARGETS").ok().map(|v| v.parse().expect("VW_TARGETS: a count")).unwrap_or(100);
            let targets = if smoke { targets.min(4) } else { targets };
            let charts_dir = dir.as_deref().unwrap_or(tmp.path());
            // VW_RUNS=3: the whole curve again, each time in a new namespace on a new journal.
            let runs = if scale_totals.is_some() { summary::runs(1) } else { 1 };
            let mut curves = Vec::new();
            for run in 1..=runs {
                if runs > 1 {
                    println!("--- scale curve, run {run} of {runs}");
                }
                let points = scale(&client, &totals, targets.max(1), charts_dir).await;
                assert_eq!(points.len(), totals.len());
                curves.push(points);
            }
            if runs > 1 {
                let medians = scale_summary(&curves);
                charts(&medians, charts_dir);
            }
            if scale_totals.is_some() {
                sims.abort();
                apps.abort();
                return;
            }
        }
        // A warm-up run, not reported: first watches, caches and connections.
        load(&client, n.min(30), "warmup", Journal::Sled, None, None).await;
        // VW_RUNS=3: every measured run repeated, then each figure's median, min and max.
        let runs = summary::runs(1);
        let mut table = summary::Summary::default();
        for run in 1..=runs {
            if runs > 1 {
                println!("--- run {run} of {runs}");
            }
            measured(&client, n, rate, jaeger, &mut table).await;
        }
        println!("\nsummary of {runs} run(s), {n} Operations each:\n{}", table.markdown());
        sims.abort();
        apps.abort();
    });
}
