//! No Secret value leaves the cluster through the operator. An end-to-end run touches Secrets
//! every way it can: a prerequisite Secret that appears later, a Secret created with `kubectl
//! apply` (so its last-applied annotation holds the value), a secret parameter given as a
//! reference, a plain env value, and a Helm release record whose hook has an env value. Then the
//! journal export, the operator's debug logs, its OTLP spans in a real Jaeger, every Event, and
//! every Operation's status are searched for each value: there is none.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use vworkspace_journal::export::{self, Item};
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::sim;

const VALUES: [&str; 4] = ["S3cr3t-db-pass-1", "S3cr3t-hook-env-2", "S3cr3t-param-env-3", "S3cr3t-applied-4"];

fn release(ns: &str) -> Value {
    let hook = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: shop-migrate\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: m\n          image: busybox:1.36\n          env:\n            - name: TOKEN\n              value: {}\n",
        VALUES[1]
    );
    let rel = json!({ "name": "shop", "namespace": ns, "version": 1,
        "hooks": [{ "name": "shop-migrate", "kind": "Job", "events": ["pre-upgrade"], "weight": 0, "manifest": hook }] });
    vworkspace_operator::effector::release_record(ns, "shop", &rel)
}

fn leaks(what: &str, text: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    VALUES.iter().filter(|v| text.contains(*v) || text.contains(&b64(v))).map(|v| format!("{what} holds {v}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_in_journal_logs_events_or_status() {
    let client = support::client("admin").await;
    let ns = support::namespace("redact").await;
    let schema = json!({ "type": "object", "properties": { "env": { "type": "object",
        "properties": { "DB_PASSWORD": { "type": "object", "x-vworkspace-secret": true } } } } });
    for (name, spec) in [
        (
            "job",
            json!({ "types": ["RunCommand"], "engine": "job", "job": { "image": "busybox:1.36" }, "parametersSchema": schema,
            "preconditions": { "requiredSecrets": ["db-credentials"] } }),
        ),
        ("hooks", json!({ "types": ["Migration"], "engine": "helmHookJob", "helmHook": { "event": "pre-upgrade" } })),
    ] {
        let mut spec = spec;
        spec["namespaces"] = json!([ns]);
        spec["preconditions"]["exclusive"] = json!(false);
        let t = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": format!("{name}-{ns}") }, "spec": spec });
        support::apply(&client, &support::ar::<OperationTemplate>(), None, t).await;
    }
    support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job", "ops.vworkspace.io/migration": "helmHookJob" } },
        "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })).await;
    support::ok(&support::kubectl("admin", &["create", "-f", "-"], Some(&release(&ns).to_string())));
    // kubectl apply keeps the whole object, value included, in last-applied-configuration.
    let applied = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "applied", "namespace": ns }, "stringData": { "v": VALUES[3] } });
    support::ok(&support::kubectl("admin", &["apply", "-f", "-"], Some(&applied.to_string())));

    let jaeger = support::jaeger();
    let service = format!("vworkspace-redaction-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let journal = dir.path().join("journal");
    let mut operator = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["run", "--no-leader-elect", "--http-addr", "127.0.0.1:0", "--log-format", "json", "--audit-log"])
        .arg(dir.path().join("audit.jsonl"))
        .arg("--journal")
        .arg(&journal)
        .env("KUBECONFIG", support::kubeconfig())
        .env("RUST_LOG", "debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", jaeger.otlp_grpc))
        .env("OTEL_SERVICE_NAME", &service)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::from(std::fs::File::create(dir.path().join("stdout.log")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let sims =
        tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(100), instant: false }));
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(100)));

    let op = |name: &str, ty: &str, params: Value| {
        json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation", "metadata": { "name": name, "namespace": ns },
            "spec": { "type": ty, "target": { "name": "shop" }, "parameters": params } })
    };
    let env = json!({ "env": { "DB_PASSWORD": { "secretKeyRef": { "name": "db-credentials", "key": "password" } }, "LEVEL": VALUES[2] } });
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("command", "RunCommand", env)).await;
    support::apply(&client, &support::ar::<Operation>(), Some(&ns), op("hooks", "Migration", json!({}))).await;
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    for _ in 0..100 {
        let st = ops.get("command").await.ok().and_then(|o| o.status);
        if st.is_some_and(|s| s.conditions.iter().any(|c| c.reason == "MissingSecret")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The prerequisite Secret appears later (watched as metadata).
    let db = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "db-credentials", "namespace": ns }, "stringData": { "password": VALUES[0] } });
    support::ok(&support::kubectl("admin", &["create", "-f", "-"], Some(&db.to_string())));
    for name in ["command", "hooks"] {
        for _ in 0..300 {
            if support::phase(&ops, name).await == "Succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(support::phase(&ops, name).await, "Succeeded", "{name}");
    }
    // Let the span exporter's next batch leave (every 200 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    // While it runs, the journal is exported by the operator itself (sled allows one process).
    let live = dir.path().join("live.vwj");
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["journal", "export"])
        .arg(&journal)
        .arg(&live)
        .output()
        .unwrap();
    assert!(out.status.success(), "live export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("from the running operator"));
    let live_records = export::read(&live).unwrap().iter().filter(|i| matches!(i, Item::Record(_))).count();
    assert!(live_records > 20, "{live_records} records in the live export");
    operator.kill().unwrap();
    operator.wait().unwrap();
    sims.abort();
    apps.abort();

    let mut found = Vec::new();
    // The journal, through its export: every record body, decoded.
    let file = dir.path().join("incident.vwj");
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["journal", "export"])
        .arg(&journal)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items = export::read(&file).unwrap();
    let mut records = 0;
    for item in &items {
        match item {
            Item::Record(e) => {
                records += 1;
                found.extend(leaks(&format!("journal record {}", e.header.seq), &String::from_utf8_lossy(&e.body)));
            }
            Item::Snapshot { seq, state } => {
                found.extend(leaks(&format!("snapshot {seq}"), &String::from_utf8_lossy(state)))
            }
        }
    }
    assert!(records > 20, "{records} records exported");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG"), "debug logs were collected");
    found.extend(leaks("the operator's logs", &text));
    // `--log-format json`: every line is one JSON object, and the effector's carry the
    // Operation key and its trace ID.
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}")))
        .collect();
    let effect = lines
        .iter()
        .find(|l| l["span"]["name"] == "effect" && l["span"]["operation"] == format!("{ns}/command"))
        .unwrap_or_else(|| panic!("no effector log line for {ns}/command"));
    assert_eq!(effect["span"]["trace_id"].as_str().map(str::len), Some(32), "{effect}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"event\":\"succeeded\"")), "audit records: {audit}");
    found.extend(leaks("the audit log", &audit));
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let events = events.list(&ListParams::default()).await.unwrap();
    assert!(events.items.len() >= 4, "Events were collected");
    found.extend(leaks("Events", &serde_json::to_string(&events.items).unwrap()));
    for o in ops.list(&ListParams::default()).await.unwrap() {
        found.extend(leaks("status", &serde_json::to_string(&o.status).unwrap()));
    }
    // The operator's spans, as Jaeger stores them.
    let mut spans = 0;
    let mut traces = String::new();
    for _ in 0..50 {
        let path = format!("/api/traces?service={service}&limit=1000&lookback=1h");
        let (status, text) = vworkspace_operator::cluster::jaeger::http(jaeger.query, "GET", &path, None).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        spans = v["data"].as_array().into_iter().flatten().map(|t| t["spans"].as_array().map_or(0, Vec::len)).sum();
        if status == 200 && spans > 10 {
            traces = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(spans > 10, "the operator's spans reached Jaeger ({spans})");
    found.extend(leaks("Jaeger spans", &traces));
    assert!(found.is_empty(), "secret values escaped:\n{}", found.join("\n"));

    // The values did reach where they belong: the Jobs.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    let all = serde_json::to_string(&jobs.list(&ListParams::default()).await.unwrap().items).unwrap();
    assert!(all.contains(VALUES[1]) && all.contains(VALUES[2]), "the Jobs got their env values");
    assert!(
        all.contains("\"secretKeyRef\":{\"key\":\"password\",\"name\":\"db-credentials\"}"),
        "the secret parameter is a reference"
    );
    assert!(!all.contains(VALUES[0]), "and never a value");
}
