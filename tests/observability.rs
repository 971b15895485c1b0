//! Observability end to end: Operation traces in the real Jaeger (live from the operator, and
//! re-emitted from an export by `replay --otlp`), `/metrics` and the health endpoints scraped
//! during a run against the real API server, and audit records.
#![cfg(feature = "otlp")]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vworkspace_operator::cluster::jaeger::http;
use vworkspace_operator::signals::ids;

/// The trace of `uid` from Jaeger's query API, once it holds at least `want` span names.
fn trace(query: std::net::SocketAddr, uid: &str, want: &[&str]) -> Value {
    let id = ids::trace_id(uid);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = http(query, "GET", &format!("/api/traces/{id}"), None).unwrap();
        if status == 200 {
            let v: Value = serde_json::from_str(&text).unwrap();
            let names = span_names(&v);
            if want.iter().all(|w| names.iter().any(|n| n == w)) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "trace {id} of {uid} never held {want:?} (status {status}): {text:.2000}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn span_names(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
        .map(|s| s["operationName"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key).map(|t| &t["value"])
}

#[test]
fn replay_otlp_re_emits_each_operation_as_one_trace_in_jaeger() {
    let j = support::jaeger();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("replay-fixtures/velero-backup-succeeds/journal.vwj");
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["replay", fixture.to_str().unwrap(), "--format", "json", "--otlp", &format!("http://{}", j.otlp_grpc)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported"), "{}", String::from_utf8_lossy(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    let uid = view["operations"][0]["uid"].as_str().expect("an Operation uid").to_string();
    let v = trace(
        j.query,
        &uid,
        &["operation", "transition Accepted", "transition Succeeded", "command CreateChild", "wait Backup"],
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "one trace");
    let spans = v["data"][0]["spans"].as_array().unwrap();
    let roots: Vec<&Value> = spans.iter().filter(|s| s["operationName"] == "operation").collect();
    assert_eq!(roots.len(), 1, "one root span");
    let root_id = roots[0]["spanID"].as_str().unwrap();
    assert_eq!(root_id, ids::root_span_id(&uid));
    for s in spans.iter().filter(|s| s["operationName"] != "operation") {
        let parent = s["references"][0]["spanID"].as_str().unwrap_or_default();
        assert_eq!(parent, root_id, "every span hangs off the root: {s}");
        assert_eq!(tag(s, "vworkspace.operation.uid").and_then(Value::as_str), Some(uid.as_str()));
        assert!(tag(s, "vworkspace.journal.seq").is_some());
    }
    let wait = spans.iter().find(|s| s["operationName"] == "wait Backup").unwrap();
    assert_eq!(tag(wait, "vworkspace.engine.phase").and_then(Value::as_str), Some("Completed"), "{wait}");
    assert_eq!(tag(roots[0], "vworkspace.outcome.reason").and_then(Value::as_str), Some("Completed"));
    // A second export of the same journal lands in the same trace, with the same spans.
    let before: BTreeSet<String> = spans.iter().map(|s| s["spanID"].as_str().unwrap().to_string()).collect();
    let again = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["replay", fixture.to_str().unwrap(), "--otlp", &format!("http://{}", j.otlp_grpc)])
        .output()
        .unwrap();
    assert!(again.status.success());
    std::thread::sleep(Duration::from_secs(2));
    let v2 = trace(j.query, &uid, &["operation"]);
    let after: BTreeSet<String> =
        v2["data"][0]["spans"].as_array().unwrap().iter().map(|s| s["spanID"].as_str().unwrap().to_string()).collect();
    assert_eq!(before, after, "span IDs derive from the journal, not from the run");
}

#[test]
fn replay_otlp_to_an_unreachable_endpoint_fails_clearly() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("replay-fixtures/cancelled/journal.vwj");
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["replay", fixture.to_str().unwrap(), "--otlp", "not a url"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTLP") || err.contains("not a url"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn jaeger_on_a_port_another_process_took_fails_at_once_and_says_so() {
    use vworkspace_operator::cluster::jaeger::{self, Error, Jaeger};
    let binary = jaeger::build(&support::repo()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let ports = [taken.local_addr().unwrap(), free(), free(), free(), free()];
    let dir = tempfile::tempdir().unwrap();
    // `Jaeger::start` tries other ports on this error; its wait would otherwise last a minute.
    match Jaeger::start_on(&binary, &support::repo(), &dir.path().join("jaeger.log"), ports) {
        Err(Error::NotReady(_, log)) => assert!(vworkspace_operator::cluster::port_taken(&log), "{log}"),
        Err(e) => panic!("another error: {e}"),
        Ok(j) => panic!("Jaeger started on a taken port: {}", j.ui_url()),
    }
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || http(addr, "GET", "/metrics", None).map(|(_, t)| t).unwrap_or_default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_operations_of_three_engines_tell_one_story_in_jaeger_metrics_and_audit() {
    use kube::api::Api;
    use serde_json::json;
    use vworkspace_operator::api::Operation;
    use vworkspace_operator::sim;

    // The logging the binary sets up (text; the filter is reloadable), for `/loglevel`.
    let _logs = vworkspace_operator::telemetry::init(false, false);
    let j = support::jaeger();
    // The process-wide span sink, as `telemetry::init` sets it when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let endpoint = format!("http://{}", j.otlp_grpc);
    vworkspace_operator::signals::spans::set_sink(Box::new(
        vworkspace_operator::telemetry::processor(Some(&endpoint)).expect("OTLP processor"),
    ));
    let client = support::client("admin").await;
    let ns = support::namespace("observe").await;
    let velero_ns = support::namespace("velero-observe").await;
    support::three_engines(&client, &ns, &velero_ns).await;

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut opts = support::operator_options(dir.path());
    opts.http = Some(port);
    opts.audit = Some(audit.clone());
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(300), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let operator = support::run_operator(&client, &mut opts).await;
    let port = opts.http.unwrap();

    // Liveness at once; readiness once the first relist is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (h, r) = tokio::task::spawn_blocking(move || {
            (http(port, "GET", "/healthz", None).ok(), http(port, "GET", "/readyz", None).ok())
        })
        .await
        .unwrap();
        if h.as_ref().is_some_and(|(s, _)| *s == 200) && r.as_ref().is_some_and(|(s, _)| *s == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: healthz {h:?}, readyz {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = metrics_text(port).await;

    let ops = [("nightly", "Backup", "velero"), ("drill", "Runbook", "argoWorkflow"), ("cmd", "RunCommand", "job")];
    for (name, ty, _) in ops {
        let op = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": name, "namespace": ns, "annotations": { "ops.vworkspace.io/requested-by": "alice@example.com", "sim.vworkspace.io/scenario": "slow" } },
            "spec": { "type": ty, "target": { "name": "shop" } } });
        support::apply(&client, &support::ar::<Operation>(), Some(&ns), op).await;
    }
    let api: Api<Operation> = Api::namespaced(client.clone(), &ns);
    // Restart mid-flight: the trace stays one trace.
    let running = Instant::now() + Duration::from_secs(60);
    while support::phase(&api, "nightly").await != "Running" {
        assert!(Instant::now() < running, "nightly never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each create answered first: a child created before the abort but whose answer was not
    // yet journaled is adopted as seen by the next process, which then issues no create and so
    // emits no `command CreateChild` span (correct, but not what this test reads).
    let answered = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics_text(port).await;
        let creates = support::metric_sample(
            &text,
            "vworkspace_effector_commands_total",
            &["action=\"CreateChild\"", "result=\"Ok\""],
        )
        .unwrap_or(0.0);
        if creates >= ops.len() as f64 {
            break;
        }
        assert!(Instant::now() < answered, "the three creates were never answered: {creates}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Answered is not yet journaled: a few commits' time for that.
    tokio::time::sleep(Duration::from_millis(500)).await;
    operator.abort();
    let _ = operator.await;
    // The replacement serves the metrics below on the same address.
    support::wait_port_free(port).await;
    let operator = support::run_operator(&client, &mut opts).await;
    let port = opts.http.unwrap();
    for (name, _, _) in ops {
        let done = Instant::now() + Duration::from_secs(120);
        while support::phase(&api, name).await != "Succeeded" {
            assert!(!operator.is_finished(), "the restarted operator stopped");
            assert!(Instant::now() < done, "{name} never succeeded (is {})", support::phase(&api, name).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = metrics_text(port).await;

    for (name, ty, engine) in ops {
        let op = api.get(name).await.unwrap();
        let uid = op.metadata.uid.clone().unwrap();
        let st = op.status.unwrap();
        assert_eq!(st.trace_id.as_deref(), Some(ids::trace_id(&uid).as_str()), "status.traceID names the trace");
        let kind = match engine {
            "velero" => "Backup",
            "argoWorkflow" => "Workflow",
            _ => "Job",
        };
        let q = j.query;
        let want: Vec<String> = ["operation", "transition Accepted", "transition Succeeded", "command CreateChild"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("wait {kind}")])
            .collect();
        let uid2 = uid.clone();
        let v = tokio::task::spawn_blocking(move || {
            let w: Vec<&str> = want.iter().map(String::as_str).collect();
            trace(q, &uid2, &w)
        })
        .await
        .unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1, "{name}: one trace across the restart");
        let spans = v["data"][0]["spans"].as_array().unwrap();
        let root = spans.iter().find(|s| s["operationName"] == "operation").unwrap();
        assert_eq!(tag(root, "vworkspace.operation.type").and_then(Value::as_str), Some(ty));
        assert_eq!(tag(root, "vworkspace.operation.engine").and_then(Value::as_str), Some(engine));
        assert_eq!(tag(root, "vworkspace.operation.target").and_then(Value::as_str), Some("shop"));
        assert_eq!(tag(root, "vworkspace.operation.requested_by").and_then(Value::as_str), Some("alice@example.com"));
        assert!(tag(root, "vworkspace.lease.epoch").is_some(), "live spans carry the lease epoch: {root}");
        let create = spans.iter().find(|s| s["operationName"] == "command CreateChild").unwrap();
        assert_eq!(tag(create, "vworkspace.child.kind").and_then(Value::as_str), Some(kind));
        // The child carries the W3C traceparent of its Operation's root span.
        let uid_label = format!("ops.vworkspace.io/operation-uid={uid}");
        let out = support::ok(&support::kubectl(
            "admin",
            &[
                "get",
                &kind.to_lowercase(),
                "-A",
                "-l",
                &uid_label,
                "-o",
                "jsonpath={.items[0].metadata.annotations.traceparent}",
            ],
            None,
        ));
        assert_eq!(out.trim(), ids::traceparent(&uid));
    }

    // Metrics moved as the run says.
    for (name, has) in [
        ("vworkspace_operations_total", vec!["reason=\"Completed\""]),
        ("controller_runtime_reconcile_total", vec!["controller=\"operation\""]),
        ("vworkspace_effector_commands_total", vec!["action=\"CreateChild\"", "result=\"Ok\""]),
        ("vworkspace_journal_records_total", vec![]),
        ("vworkspace_journal_bytes_total", vec![]),
        ("vworkspace_journal_append_seconds_count", vec![]),
        ("vworkspace_journal_durable_seconds_count", vec![]),
        ("vworkspace_operation_duration_seconds_count", vec!["engine=\"velero\""]),
        ("workqueue_queue_duration_seconds_count", vec!["name=\"journal\""]),
    ] {
        let a = support::metric_sample(&after, name, &has).unwrap_or_else(|| panic!("{name}{has:?} missing:\n{after}"));
        let b = support::metric_sample(&before, name, &has).unwrap_or(0.0);
        assert!(a > b, "{name}{has:?} moved: {b} -> {a}");
    }
    for name in [
        "workqueue_depth",
        "vworkspace_journal_snapshot_age_seconds",
        "vworkspace_journal_records_since_snapshot",
        "vworkspace_leader",
        "vworkspace_lease_epoch",
    ] {
        assert!(support::metric_sample(&after, name, &[]).is_some(), "{name} missing:\n{after}");
    }
    assert_eq!(support::metric_sample(&after, "vworkspace_leader", &[]), Some(1.0));
    assert_eq!(
        support::metric_sample(
            &after,
            "vworkspace_operations_total",
            &["type=\"Backup\"", "engine=\"velero\"", "reason=\"Completed\""]
        ),
        Some(1.0)
    );

    // Audit: one accepted and one succeeded record per Operation, with who asked.
    let text = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (name, _, _) in ops {
        for event in ["accepted", "succeeded"] {
            let n = records.iter().filter(|r| r["operation"]["name"] == name && r["event"] == event).count();
            assert_eq!(n, 1, "{name}: one {event} audit record:\n{text}");
        }
        let r = records.iter().find(|r| r["operation"]["name"] == name).unwrap();
        assert_eq!(r["requestedBy"], "alice@example.com");
        assert_eq!(r["schema"], "vworkspace.audit/v1");
    }

    // The log filter changes at run time, and a bad one is refused.
    let (s, _) =
        tokio::task::spawn_blocking(move || http(port, "PUT", "/loglevel", Some(("text/plain", b"debug"))).unwrap())
            .await
            .unwrap();
    assert_eq!(s, 200);
    let (s, body) = tokio::task::spawn_blocking(move || http(port, "PUT", "/loglevel", Some(("text/plain", b"[bad="))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, 400, "{body}");
    let _ = vworkspace_operator::telemetry::set_filter("info");
    operator.abort();
    sims.abort();
    apps.abort();
}
