//! Test support for every integration test: one real control plane per test binary (built from
//! `tests/controlplane/` when the cache lacks it), the CRDs installed, a namespace per test.
//! A missing prerequisite (Go, kubectl) fails the test with a clear message; nothing is skipped.
#![allow(dead_code)]

pub mod pod;
pub mod receiver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use vworkspace_operator::cluster::controlplane::{self, ControlPlane};
use vworkspace_operator::cluster::install;
use vworkspace_operator::cluster::third_party::Source;

pub struct Env {
    pub cp: ControlPlane,
    pub crds: Source,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane of this test binary, started on first use.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    // Started on its own thread: a test's async runtime cannot block on another one.
    ENV.get_or_init(|| match std::thread::spawn(start).join() {
        Ok(Ok(e)) => e,
        Ok(Err(msg)) => panic!("cannot start the test control plane: {msg}"),
        Err(_) => panic!("the control plane start-up thread panicked"),
    })
}

fn start() -> Result<Env, String> {
    let binary = controlplane::build(&repo()).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("vworkspace-test-{}-{}", std::process::id(), test_binary_name()));
    let cp = ControlPlane::start(&binary, &dir, &["--cleanup"]).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let crds = rt.block_on(async {
        let client = cp.client("admin").await.map_err(|e| e.to_string())?;
        install::install_all(&client, &repo()).await.map_err(|e| e.to_string())
    })?;
    match &crds {
        Source::Upstream(d) => eprintln!("test control plane: upstream third-party CRDs from {}", d.display()),
        Source::Minimal => eprintln!("test control plane: ../shared absent; minimal third-party CRDs installed"),
    }
    Ok(Env { cp, crds })
}

fn test_binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into())
}

pub fn kubeconfig() -> &'static Path {
    &env().cp.kubeconfig
}

/// The config of `admin`, `alice` or `bob` (what the operator's binary infers from a kubeconfig).
pub async fn config(context: &str) -> kube::Config {
    env().cp.config(context).await.expect("config from the test kubeconfig")
}

/// A client for `admin`, `alice` or `bob`, bound to the calling test's runtime.
pub async fn client(context: &str) -> kube::Client {
    env().cp.client(context).await.expect("client from the test kubeconfig")
}

/// A fresh namespace for one test.
pub async fn namespace(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let api: Api<Namespace> = Api::all(client("admin").await);
    let ns: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("namespace");
    api.create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

/// Runs the real kubectl against the test control plane.
pub fn kubectl(context: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig()).arg("--context").arg(context).args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl must be installed to run this test");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Jaeger of this test binary, started on first use.
pub fn jaeger() -> &'static vworkspace_operator::cluster::jaeger::Jaeger {
    use vworkspace_operator::cluster::jaeger::{self, Jaeger};
    static J: OnceLock<Jaeger> = OnceLock::new();
    J.get_or_init(|| {
        let binary = jaeger::build(&repo()).unwrap_or_else(|e| panic!("cannot build Jaeger: {e}"));
        let log = std::env::temp_dir().join(format!("vworkspace-jaeger-{}.log", std::process::id()));
        Jaeger::start(&binary, &repo(), &log).unwrap_or_else(|e| panic!("cannot start Jaeger: {e}"))
    })
}

/// Server-side apply of any object (field manager `test`).
pub async fn apply(client: &kube::Client, ar: &kube::api::ApiResource, ns: Option<&str>, obj: serde_json::Value) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let name = obj["metadata"]["name"].as_str().expect("a name").to_string();
    api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&obj)).await.expect("server-side apply");
}

/// The API resource of a typed kind.
pub fn ar<K: kube::Resource<DynamicType = ()>>() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<K>(&())
}

/// An Operation's `status.phase`, or empty while it has none.
pub async fn phase(ops: &Api<vworkspace_operator::api::Operation>, name: &str) -> String {
    ops.get(name)
        .await
        .ok()
        .and_then(|o| o.status)
        .and_then(|s| s.phase)
        .map(|p| p.as_str().to_string())
        .unwrap_or_default()
}

/// Children of an Operation of one kind, counted by the UID label across all namespaces.
pub async fn count_children(client: &kube::Client, kind: vworkspace_operator::record::ChildKind, uid: &str) -> usize {
    use kube::api::{DynamicObject, ListParams};
    let ar = vworkspace_operator::sim::controller::api_resource(kind);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let selector = format!("ops.vworkspace.io/operation-uid={uid}");
    api.list(&ListParams::default().labels(&selector)).await.map(|l| l.items.len()).unwrap_or(0)
}

/// Children of an Operation of every kind, counted by the UID label across all namespaces.
pub async fn count_children_anywhere(client: &kube::Client, uid: &str) -> usize {
    let mut n = 0;
    for kind in vworkspace_operator::record::ChildKind::ALL {
        n += count_children(client, kind, uid).await;
    }
    n
}

/// How tests run the operator in process: its journal under `dir`, engines rediscovered every 2 s.
pub fn operator_options(dir: &Path) -> vworkspace_operator::run::Options {
    vworkspace_operator::run::Options {
        journal: Some(dir.join("j")),
        rediscover: std::time::Duration::from_secs(2),
        ..Default::default()
    }
}

/// The real Helm, built from `tests/tools/` (cached); its path.
pub fn helm() -> String {
    let out = Command::new("bash").arg(repo().join("tests/tools/build.sh")).arg("helm").output().expect("build helm");
    assert!(out.status.success(), "building helm: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
}

/// The plain manifests (`deploy/manifests`, the chart rendered) through server-side apply, as
/// an install would; returns kubectl's report.
pub fn install_manifests() -> String {
    let dir = repo().join("deploy/manifests");
    ok(&kubectl("admin", &["apply", "--server-side", "--field-manager", "install", "-k", dir.to_str().unwrap()], None))
}

/// Templates for Velero Backups, Argo Runbooks and Job RunCommands in `ns` (not exclusive), and
/// a target `shop` that offers all three.
pub async fn three_engines(client: &kube::Client, ns: &str, velero_ns: &str) {
    use serde_json::json;
    for (name, spec) in [
        ("velero", json!({ "types": ["Backup"], "engine": "velero", "velero": { "namespace": velero_ns } })),
        ("argo", json!({ "types": ["Runbook"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "t" } })),
        ("job", json!({ "types": ["RunCommand"], "engine": "job", "job": { "image": "busybox:1.36" } })),
    ] {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": false });
        let t = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("{name}-{ns}") }, "spec": spec });
        apply(client, &ar::<vworkspace_operator::api::OperationTemplate>(), None, t).await;
    }
    three_engine_target(client, ns, "shop").await;
}

/// A target `name` in `ns` that offers the three engines of `three_engines`.
pub async fn three_engine_target(client: &kube::Client, ns: &str, name: &str) {
    let app = serde_json::json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": name, "namespace": ns, "annotations": { "ops.vworkspace.io/backup": "velero",
            "ops.vworkspace.io/runbook": "argoWorkflow", "ops.vworkspace.io/run-command": "job" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } });
    apply(client, &ar::<vworkspace_operator::api::ApplicationInstance>(), Some(ns), app).await;
}

/// A Job template for RunCommand in `ns` (not exclusive), and a target `shop` that offers it.
pub async fn job_engine(client: &kube::Client, ns: &str) {
    use serde_json::json;
    let t = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("job-{ns}") },
        "spec": { "types": ["RunCommand"], "engine": "job", "namespaces": [ns], "job": { "image": "busybox:1.36" }, "preconditions": { "exclusive": false } } });
    apply(client, &ar::<vworkspace_operator::api::OperationTemplate>(), None, t).await;
    let app = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } });
    apply(client, &ar::<vworkspace_operator::api::ApplicationInstance>(), Some(ns), app).await;
}

/// `operator_options` with a slow effector (two at a time, 200/s), so commands pile up.
pub fn slow_effector_options(dir: &Path) -> vworkspace_operator::run::Options {
    vworkspace_operator::run::Options {
        limits: vworkspace_operator::dispatch::Limits {
            concurrency: 2,
            rate_per_sec: 200,
            burst: 10,
            ..Default::default()
        },
        ..operator_options(dir)
    }
}

/// The engine and target simulators in instant mode; abort them when done.
pub fn instant_simulators(client: &kube::Client) -> Vec<tokio::task::AbortHandle> {
    use std::time::Duration;
    let opts = vworkspace_operator::sim::Options { tick: Duration::from_millis(100), instant: true };
    vec![
        tokio::spawn(vworkspace_operator::sim::run(client.clone(), opts)).abort_handle(),
        tokio::spawn(vworkspace_operator::sim::app::run(client.clone(), Duration::from_millis(150))).abort_handle(),
    ]
}

/// RunCommand Operations `names` in `ns`, on target `shop`, that the simulators run to success.
pub async fn submit_runcommands(client: &kube::Client, ns: &str, names: &[String]) {
    for n in names {
        let op = serde_json::json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": n, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "succeed" } },
            "spec": { "type": "RunCommand", "target": { "name": "shop" } } });
        apply(client, &ar::<vworkspace_operator::api::Operation>(), Some(ns), op).await;
    }
}

/// Waits (up to a minute each) until every one of `names` has Succeeded, and asserts it has
/// exactly one Job; `poll` runs at every look.
pub async fn await_succeeded_with_one_job(client: &kube::Client, ns: &str, names: &[String], mut poll: impl FnMut()) {
    let api: Api<vworkspace_operator::api::Operation> = Api::namespaced(client.clone(), ns);
    for n in names {
        let mut now = String::new();
        for _ in 0..600 {
            now = phase(&api, n).await;
            poll();
            if now == "Succeeded" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(now, "Succeeded", "{n} ends");
        let uid = api.get(n).await.unwrap().metadata.uid.unwrap();
        let jobs = count_children(client, vworkspace_operator::record::ChildKind::Job, &uid).await;
        assert_eq!(jobs, 1, "{n}: exactly one Job");
    }
}

/// Waits until nothing listens on `addr`: an aborted in-process operator's HTTP task lets go of
/// its port on its own schedule, and a replacement on the same address must be able to bind.
pub async fn wait_port_free(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "{addr} still held by the stopped operator");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The value of a sample line `name{labels…} value` in a `/metrics` text, summed over the lines
/// whose labels include all of `has` (a counter's total, a histogram's `_count`).
pub fn metric_sample(text: &str, name: &str, has: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| has.iter().all(|h| l.contains(h)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Bytes under a directory (a journal's size on disk).
pub fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Starts the in-process operator serving on `opts.http`. A free port is released before the
/// operator binds it, and another connection can take it meanwhile: then it starts again on
/// another, written back to `opts.http`. Returns once `/healthz` answers.
pub async fn run_operator(
    client: &kube::Client,
    opts: &mut vworkspace_operator::run::Options,
) -> tokio::task::JoinHandle<vworkspace_operator::run::Result<()>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let addr = opts.http.expect("an HTTP address to serve on");
        let task = tokio::spawn(vworkspace_operator::run::run(client.clone(), opts.clone()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !task.is_finished() {
            let probe = tokio::task::spawn_blocking(move || {
                vworkspace_operator::cluster::jaeger::http(addr, "GET", "/healthz", None)
            });
            if probe.await.unwrap().is_ok_and(|(code, _)| code == 200) {
                return task;
            }
            assert!(std::time::Instant::now() < deadline, "the operator never served /healthz on {addr}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        match task.await {
            Ok(Err(e)) if attempt < 3 && vworkspace_operator::cluster::port_taken(&e.to_string()) => {
                opts.http = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
            }
            other => panic!("the operator stopped as it started: {other:?}"),
        }
    }
}
