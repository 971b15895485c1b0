//! Replay fixtures: journal exports recorded from real runs against the control plane, one
//! folder per scenario under `replay-fixtures/`, each with a golden timeline.
//!
//! - `record_fixtures` (ignored; run with `cargo test --test replay_fixtures -- --ignored`)
//!   records every scenario on its own fresh control plane, so each journal holds only its own
//!   story, and writes `replay-fixtures/<scenario>/journal.vwj`.
//! - the other tests replay the committed fixtures offline: `--check` passes, the timeline
//!   matches its golden file (insta), and the output is byte-identical across runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use vworkspace_journal::{SledJournal, export};
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::cluster::controlplane::{self, ControlPlane};
use vworkspace_operator::cluster::install;
use vworkspace_operator::replay::{pass, source, view};
use vworkspace_operator::{run, sim};

fn fixtures() -> PathBuf {
    support::repo().join("replay-fixtures")
}

fn scenarios_on_disk() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("journal.vwj").exists())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().join("journal.vwj")))
        .collect();
    out.sort();
    out
}

fn replay_text(path: &Path, check: bool) -> (String, bool) {
    let src = source::load(path).unwrap();
    let opts = pass::Options { check, timeline: true, ..Default::default() };
    let p = pass::run(&src, &opts).unwrap();
    // The path is not part of the story: name the fixture, not where it was checked out.
    let v = view::build("journal.vwj", &p, &opts);
    let text = view::text(&v);
    // The CLI renders text one Operation at a time; it must be the same text.
    assert_eq!(view::render_text("journal.vwj", &p, &opts), text);
    // And it keeps the timelines as text lines, not items: the same text again.
    let lines = pass::Options { lines: true, ..opts.clone() };
    let pl = pass::run(&src, &lines).unwrap();
    assert!(pl.timelines.is_empty() && !pl.lines.is_empty());
    assert_eq!(view::render_text("journal.vwj", &pl, &lines), text);
    (text, p.divergence.is_none())
}

const SCENARIOS: [&str; 10] = [
    "velero-backup-succeeds",
    "velero-backup-partially-fails",
    "velero-restore",
    "argo-runbook-node-fails",
    "job-deadline-exceeded",
    "snapshot-error-then-ready",
    "cancelled",
    "two-queued-on-one-target",
    "operator-restart-mid-flight",
    "relist-after-410-gone",
];

/// A TCP proxy between the operator and the API server that can cut every connection and
/// refuse new ones for a while: the operator's watches then resume from resourceVersions that
/// etcd has compacted away, and get 410 Gone.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                if !gate.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { port, cut, open }
    }

    fn cut_and_block(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn every_fixture_replays_with_check_and_matches_its_golden_timeline() {
    let found = scenarios_on_disk();
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for s in SCENARIOS {
        assert!(names.contains(&s), "fixture {s} is missing; record it with --ignored");
    }
    let mut total = 0;
    for (name, path) in &found {
        total += std::fs::metadata(path).unwrap().len();
        let (text, ok) = replay_text(path, true);
        assert!(ok, "{name}: --check found a divergence:\n{text}");
        let (again, _) = replay_text(path, true);
        assert_eq!(text, again, "{name}: two replays differ");
        insta::with_settings!({ snapshot_path => path.parent().unwrap(), prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!("timeline", text);
        });
    }
    assert!(total < 5 * 1024 * 1024, "fixtures take {total} bytes; keep them under 5 MB");
}

#[test]
fn records_folded_from_a_probe_fold_and_show_as_records_decoded_whole() {
    // --check decodes every outcome whole; without it, those that change nothing are probed.
    for (name, path) in &scenarios_on_disk() {
        let src = source::load(path).unwrap();
        let whole = pass::Options { check: true, timeline: true, ..Default::default() };
        let a = pass::run(&src, &whole).unwrap();
        for opts in [pass::Options { timeline: true, ..Default::default() }, pass::Options::default()] {
            let b = pass::run(&src, &opts).unwrap();
            assert!(b.probed > a.probed, "{name}: no outcome was probed ({} against {})", b.probed, a.probed);
            assert_eq!((b.records, b.last_seq), (a.records, a.last_seq), "{name}");
            assert_eq!(b.state, a.state, "{name}: the folded state differs");
            if opts.timeline {
                for key in a.state.ops.keys() {
                    assert_eq!(b.timelines.get(key), a.timelines.get(key), "{name}: {key}'s timeline differs");
                }
            }
        }
    }
}

#[test]
fn the_cli_output_is_byte_identical_across_runs_in_every_format() {
    for (name, path) in scenarios_on_disk() {
        for format in ["text", "json", "html"] {
            let run = || {
                Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
                    .args(["replay", "--check", "--format", format])
                    .arg(&path)
                    .output()
                    .unwrap()
            };
            let (a, b) = (run(), run());
            assert!(a.status.success(), "{name} {format}: {}", String::from_utf8_lossy(&a.stderr));
            assert!(!a.stdout.is_empty());
            assert_eq!(a.stdout, b.stdout, "{name} {format}: output differs between runs");
        }
    }
}

/// One scenario on its own control plane; returns the export's path.
async fn record(name: &str, binary: &Path) {
    let dir = tempfile::tempdir().unwrap();
    // For 410 Gone: compact etcd every second and serve watches from etcd, not a cache.
    let gone = name == "relist-after-410-gone";
    let args: &[&str] = if gone {
        &["--cleanup", "--etcd-compaction-interval=1s", "--", "--watch-cache=false"]
    } else {
        &["--cleanup"]
    };
    let cp = ControlPlane::start(binary, dir.path(), args).unwrap();
    let client = cp.client("admin").await.unwrap();
    let mut proxy = None;
    let operator_client = if gone {
        let kc = kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
        let opts = kube::config::KubeConfigOptions { context: Some("admin".into()), ..Default::default() };
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await.unwrap();
        let upstream =
            format!("{}:{}", cfg.cluster_url.host().unwrap(), cfg.cluster_url.port_u16().unwrap()).parse().unwrap();
        let p = Proxy::start(upstream).await;
        cfg.cluster_url = format!("https://127.0.0.1:{}", p.port).parse().unwrap();
        proxy = Some(p);
        kube::Client::try_from(cfg).unwrap()
    } else {
        client.clone()
    };
    install::install_all(&client, &support::repo()).await.unwrap();
    let ns = "shop";
    let create_ns = |n: &str| json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": n } });
    for n in [ns, "velero"] {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        api.create(&Default::default(), &serde_json::from_value(create_ns(n)).unwrap()).await.unwrap();
    }
    let exclusive = name == "two-queued-on-one-target";
    let t = |tname: &str, spec: Value| {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"] = json!({ "exclusive": exclusive });
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": tname }, "spec": spec })
    };
    for tpl in [
        t("velero", json!({ "types": ["Backup", "Restore"], "engine": "velero", "velero": { "namespace": "velero" } })),
        t(
            "argo",
            json!({ "types": ["Runbook"], "engine": "argoWorkflow", "argo": { "workflowTemplateRef": "db-runbook" } }),
        ),
        t("job", json!({ "types": ["RunCommand"], "engine": "job", "job": { "image": "busybox:1.36" } })),
        t("csi", json!({ "types": ["Backup"], "engine": "csiSnapshot" })),
    ] {
        support::apply(&client, &support::ar::<OperationTemplate>(), None, tpl).await;
    }
    let caps = json!({ "ops.vworkspace.io/backup": "velero,csiSnapshot", "ops.vworkspace.io/restore": "velero",
        "ops.vworkspace.io/runbook": "argoWorkflow", "ops.vworkspace.io/run-command": "job" });
    support::apply(
        &client,
        &support::ar::<ApplicationInstance>(),
        Some(ns),
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1",
        "kind": "ApplicationInstance", "metadata": { "name": "shop", "namespace": ns, "annotations": caps },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } }),
    )
    .await;

    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(200), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(200)));
    let journal = dir.path().join("journal");
    let opts =
        run::Options { journal: Some(journal.clone()), rediscover: Duration::from_secs(2), ..Default::default() };
    let mut operator = tokio::spawn(run::run(operator_client.clone(), opts.clone()));
    let op = |oname: &str, ty: &str, engine: Option<&str>, scenario: &str, params: Value, extra: Value| {
        let mut spec = json!({ "type": ty, "target": { "name": "shop" }, "parameters": params });
        if let Some(e) = engine {
            spec["engine"] = json!(e);
        }
        vworkspace_operator::harness::merge(&mut spec, &extra);
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": oname, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": scenario } }, "spec": spec })
    };
    let ops: Api<Operation> = Api::namespaced(client.clone(), ns);
    let wait = async |oname: &str, phases: &[&str]| {
        for _ in 0..600 {
            if phases.contains(&support::phase(&ops, oname).await.as_str()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name}: {oname} did not reach {phases:?}");
    };
    let submit = async |o: Value| support::apply(&client, &support::ar::<Operation>(), Some(ns), o).await;
    match name {
        "velero-backup-succeeds" => {
            submit(op("nightly", "Backup", Some("velero"), "succeed", json!({}), json!({}))).await;
            wait("nightly", &["Succeeded"]).await;
        }
        "velero-backup-partially-fails" => {
            submit(op("nightly", "Backup", Some("velero"), "partially-fail", json!({}), json!({}))).await;
            wait("nightly", &["Failed"]).await;
        }
        "velero-restore" => {
            submit(op("restore", "Restore", None, "succeed", json!({ "backupName": "nightly-1" }), json!({}))).await;
            wait("restore", &["Succeeded"]).await;
        }
        "argo-runbook-node-fails" => {
            submit(op("runbook", "Runbook", None, "fail", json!({ "db": "orders" }), json!({}))).await;
            wait("runbook", &["Failed"]).await;
        }
        "job-deadline-exceeded" => {
            submit(op("cmd", "RunCommand", None, "never-finish", json!({}), json!({ "deadlineSeconds": 3 }))).await;
            wait("cmd", &["Failed"]).await;
        }
        "snapshot-error-then-ready" => {
            submit(op(
                "snap",
                "Backup",
                Some("csiSnapshot"),
                "snapshot-error-then-ready",
                json!({ "pvc": "data" }),
                json!({}),
            ))
            .await;
            wait("snap", &["Succeeded"]).await;
        }
        "cancelled" => {
            submit(op("cmd", "RunCommand", None, "never-finish", json!({}), json!({}))).await;
            wait("cmd", &["Running"]).await;
            ops.patch("cmd", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "cancel": true } })))
                .await
                .unwrap();
            wait("cmd", &["Cancelled"]).await;
        }
        "two-queued-on-one-target" => {
            submit(op("first", "Backup", Some("velero"), "slow", json!({}), json!({}))).await;
            wait("first", &["Running"]).await;
            submit(op("second", "RunCommand", None, "succeed", json!({}), json!({}))).await;
            wait("second", &["Blocked"]).await;
            wait("first", &["Succeeded"]).await;
            wait("second", &["Succeeded"]).await;
        }
        "operator-restart-mid-flight" => {
            submit(op("nightly", "Backup", Some("velero"), "slow", json!({}), json!({}))).await;
            wait("nightly", &["Running"]).await;
            operator.abort();
            let _ = operator.await;
            SledJournal::close(&journal);
            operator = tokio::spawn(run::run(operator_client.clone(), opts.clone()));
            wait("nightly", &["Succeeded"]).await;
        }
        "relist-after-410-gone" => {
            submit(op("first", "RunCommand", None, "succeed", json!({}), json!({}))).await;
            wait("first", &["Succeeded"]).await;
            // Cut the operator off; while it is away, the world moves on and etcd compacts.
            let p = proxy.as_ref().unwrap();
            p.cut_and_block();
            let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
            for i in 0..20 {
                let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("churn-{i}"), "namespace": ns } });
                cms.create(&Default::default(), &serde_json::from_value(cm).unwrap()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            submit(op("second", "RunCommand", None, "succeed", json!({}), json!({}))).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            p.reopen();
            // The watches resume, get 410 Gone, relist, and find the Operation created meanwhile.
            wait("second", &["Succeeded"]).await;
        }
        other => panic!("unknown scenario {other}"),
    }
    // Let the last status write and Event land in the journal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    operator.abort();
    let _ = operator.await;
    sims.abort();
    apps.abort();
    SledJournal::close(&journal);
    let out = fixtures().join(name);
    std::fs::create_dir_all(&out).unwrap();
    let j = SledJournal::open_existing(&journal).unwrap();
    export::export(&j, &out.join("journal.vwj")).unwrap();
    drop(j);
    SledJournal::close(&journal);
    drop(cp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "recording mode: rewrites replay-fixtures/ from real runs (cargo test --test replay_fixtures -- --ignored)"]
async fn record_fixtures() {
    let binary = controlplane::build(&support::repo()).unwrap();
    let only = std::env::var("VW_SCENARIO").ok();
    for s in SCENARIOS.iter().filter(|s| only.as_deref().is_none_or(|o| o == **s)) {
        eprintln!("recording {s}");
        record(s, &binary).await;
        // The golden timeline follows the new recording.
        let _ = std::fs::remove_file(fixtures().join(s).join("timeline.snap"));
    }
}
