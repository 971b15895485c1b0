//! Journal benches with realistic 8 KB Kubernetes objects (a Job with managedFields, labels and
//! status): durable appends with one sync per batch of 1, 100 and 1000; the same against a
//! plain append-only file (length + CRC framing, fdatasync per batch) in the same run; a warm
//! header scan; a full decode; what replay reads of a record (kind, namespace, name, UID,
//! resourceVersion) decoded from its rkyv header against the same fields parsed from the JSON of
//! the same real object; and reopening a large journal from its snapshot.
//! Run: `cargo bench --bench journal` (add `-- --quick` for a smoke run).
//! `VW_BENCH_REOPEN_RECORDS` sets the reopen journal's size (default 1,000,000).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use vworkspace_journal::{EntryKind, Journal, NewEntry, ResourceRef, SledJournal};

/// A Job as the API server returns it, about 8 KB of JSON.
fn job(i: u64) -> Value {
    let managed: Vec<Value> = (0..12)
        .map(|m| json!({ "manager": format!("kube-controller-manager-{m}"), "operation": "Update", "apiVersion": "batch/v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": { "f:status": { "f:active": {}, "f:ready": {}, "f:startTime": {}, "f:uncountedTerminatedPods": {}, "f:conditions": { ".": {}, "k:{\"type\":\"Complete\"}": { ".": {}, "f:status": {}, "f:type": {} } } } } }))
        .collect();
    let labels: serde_json::Map<String, Value> =
        (0..30).map(|l| (format!("example.org/label-{l}"), json!(format!("value-{l}-{i}")))).collect();
    json!({ "object": {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": format!("backup-{i}"), "namespace": "demo", "uid": format!("0b9c5d1e-{i:012}"), "resourceVersion": (100_000 + i).to_string(),
            "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels, "managedFields": managed },
        "spec": { "backoffLimit": 1, "completions": 1, "parallelism": 1, "template": { "metadata": { "labels": { "job-name": format!("backup-{i}") } },
            "spec": { "restartPolicy": "Never", "containers": [{ "name": "run", "image": "registry.example.org/tools/backup:2.3.1",
                "command": ["sh", "-c"], "args": [format!("run-backup --id {i} --verbose --target s3://bucket/prefix/{i}")],
                "env": (0..30).map(|e| json!({ "name": format!("SETTING_{e}"), "value": format!("configuration-value-{e}-{i}") })).collect::<Vec<_>>(),
                "resources": { "limits": { "cpu": "500m", "memory": "256Mi" }, "requests": { "cpu": "100m", "memory": "64Mi" } } }] } } },
        "status": { "active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z", "uncountedTerminatedPods": {},
            "conditions": [{ "type": "Complete", "status": "True", "lastProbeTime": "2026-01-01T00:00:10Z", "lastTransitionTime": "2026-01-01T00:00:10Z", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods" }] },
    }})
}

fn entry(i: u64, body: Value) -> NewEntry {
    NewEntry {
        recorded_at_micros: i as i64,
        kind: EntryKind::Observed,
        event: 3,
        op_key: format!("demo/op-{}", i % 100),
        resource: ResourceRef {
            kind: "Job".into(),
            namespace: "demo".into(),
            name: format!("backup-{i}"),
            uid: format!("u{i}"),
            resource_version: i.to_string(),
        },
        body,
    }
}

/// The baseline: length + CRC32C framing, one fdatasync per batch.
fn plain_append(file: &mut File, batch: &[Vec<u8>]) {
    let mut buf = Vec::new();
    for r in batch {
        buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(r).to_le_bytes());
        buf.extend_from_slice(r);
    }
    file.write_all(&buf).expect("write");
    file.sync_data().expect("fdatasync");
}

fn appends(c: &mut Criterion) {
    let size = serde_json::to_vec(&job(0)).unwrap().len();
    eprintln!("object size: {size} bytes of JSON");
    let mut g = c.benchmark_group("append-durable");
    g.measurement_time(Duration::from_secs(5));
    for batch in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(batch as u64));
        let entries: Vec<NewEntry> = (0..batch as u64).map(|i| entry(i, job(i))).collect();
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = SledJournal::open(tmp.path()).unwrap();
        g.bench_with_input(BenchmarkId::new("sled", batch), &entries, |b, entries| {
            b.iter_batched(
                || entries.clone(),
                |appended| {
                    let seqs = j.append(appended).unwrap();
                    let durable = j.durable().unwrap();
                    // Keep the bench's disk use bounded, as the operator's own compaction does.
                    if *seqs.end() % 20_000 < batch as u64 {
                        j.compact(*seqs.start()).unwrap();
                    }
                    black_box(durable)
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("encode-only (redact+JSON+lz4)", batch), &entries, |b, entries| {
            b.iter_batched(
                || entries.clone(),
                |mut batch| {
                    for e in &mut batch {
                        vworkspace_journal::redact::redact(&mut e.body);
                        black_box(vworkspace_journal::envelope::compress_body(&e.body).unwrap());
                    }
                },
                BatchSize::LargeInput,
            )
        });
        let raw: Vec<Vec<u8>> = entries.iter().map(|e| serde_json::to_vec(&e.body).unwrap()).collect();
        let tmp2 = tempfile::tempdir().unwrap();
        let mut file = OpenOptions::new().create(true).append(true).open(tmp2.path().join("plain.log")).unwrap();
        g.bench_with_input(BenchmarkId::new("plain-file", batch), &raw, |b, raw| {
            // Each sample starts from an empty file, so the bench's disk use stays bounded.
            b.iter_custom(|iters| {
                file.set_len(0).expect("truncate");
                let start = Instant::now();
                for _ in 0..iters {
                    plain_append(&mut file, raw);
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = SledJournal::open(tmp.path()).unwrap();
    let n = 20_000u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        j.append(chunk.iter().map(|i| entry(*i, job(*i))).collect::<Vec<_>>()).unwrap();
    }
    j.durable().unwrap();
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(n));
    g.bench_function("warm header scan (owned headers)", |b| {
        b.iter(|| j.headers_from(0).filter(|h| h.is_ok()).count())
    });
    g.bench_function("warm header scan (archived, zero-copy)", |b| {
        b.iter(|| {
            let mut ops = 0u64;
            j.scan_headers(0, |h| ops += h.op_key.len() as u64).unwrap();
            black_box(ops)
        })
    });
    g.bench_function("sled iteration only (no CRC, no decode)", |b| b.iter(|| black_box(j.count_raw(0).unwrap())));
    g.bench_function("full decode (lz4 + JSON parse)", |b| {
        b.iter(|| j.read_from(0).map(|e| e.unwrap().json().unwrap()).filter(|v| v.is_object()).count())
    });
    g.finish();
}

/// Reopen time of a journal that saw N records, was snapshotted and compacted.
fn reopen(_c: &mut Criterion) {
    let n: u64 = std::env::var("VW_BENCH_REOPEN_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // `cargo test` runs benches without `--bench` (criterion's test mode): keep that small.
    let quick = !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--quick");
    let n = if quick { n.min(20_000) } else { n };
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = SledJournal::open(tmp.path()).unwrap();
    let small = |i: u64| {
        entry(
            i,
            json!({ "object": { "kind": "Operation", "metadata": { "name": format!("op-{i}"), "namespace": "demo" }, "status": { "phase": "Running" } } }),
        )
    };
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewEntry> = (i..(i + 5000).min(n)).map(small).collect();
        j.append(batch.clone()).unwrap();
        j.durable().unwrap();
        i += batch.len() as u64;
    }
    let fill = started.elapsed();
    let state = vec![7u8; 8 << 20];
    j.write_snapshot(n, &state).unwrap();
    j.compact(n.saturating_sub(10_000)).unwrap();
    j.durable().unwrap();
    drop(j);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (j, report) = SledJournal::open(tmp.path()).unwrap();
        let (seq, s) = j.latest_snapshot().unwrap().unwrap();
        let tail = j.read_from(seq + 1).count();
        black_box((report, s.len(), tail));
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "reopen: {n} records appended in {fill:?} ({:.0} rec/s, batches of 5000), snapshot of 8 MiB, 10k retained; reopen+snapshot+tail min {:?} median {:?} max {:?}",
        n as f64 / fill.as_secs_f64(),
        times[0],
        times[1],
        times[2]
    );
}

/// The same record's identity read two ways: rkyv header (validated, deserialised) against the
/// JSON of the real 8 KB Job it holds (parsed, then the five fields read), per record.
fn rkyv_vs_json(c: &mut Criterion) {
    let n = 2_000u64;
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            let body = job(i);
            let o = &body["object"];
            let field = |f: &str| o["metadata"][f].as_str().unwrap_or_default().to_string();
            let mut e = entry(i, body.clone());
            e.resource = ResourceRef {
                kind: o["kind"].as_str().unwrap_or_default().into(),
                namespace: field("namespace"),
                name: field("name"),
                uid: field("uid"),
                resource_version: field("resourceVersion"),
            };
            (vworkspace_journal::envelope::encode(i + 1, &e).unwrap(), serde_json::to_vec(&body).unwrap())
        })
        .collect();
    let mut g = c.benchmark_group("decode a record's identity");
    g.throughput(Throughput::Elements(n));
    g.bench_function("rkyv header", |b| {
        b.iter(|| {
            let mut total = 0usize;
            for (i, (bytes, _)) in records.iter().enumerate() {
                let h = vworkspace_journal::envelope::decode_header(i as u64 + 1, bytes).unwrap();
                let r = &h.resource;
                total += r.uid.len() + r.resource_version.len() + r.name.len() + r.namespace.len() + r.kind.len();
            }
            black_box(total)
        })
    });
    g.bench_function("JSON of the object", |b| {
        b.iter(|| {
            let mut total = 0usize;
            for (_, json) in &records {
                let v: Value = serde_json::from_slice(json).unwrap();
                let m = &v["object"]["metadata"];
                let len = |f: &str| m[f].as_str().map_or(0, str::len);
                total += len("uid") + len("resourceVersion") + len("name") + len("namespace");
                total += v["object"]["kind"].as_str().map_or(0, str::len);
            }
            black_box(total)
        })
    });
    g.finish();
}

criterion_group!(benches, appends, reads, rkyv_vs_json, reopen);
criterion_main!(benches);
