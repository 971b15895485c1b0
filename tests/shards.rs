//! Sharding against the real API server: three operator processes run as StatefulSet pods 0, 1
//! and 2 would (in-cluster identity, a journal each), and 300 Operations spread over 30 targets.
//! - They wait while the unlabelled Lease of an operator from before shards is live.
//! - Each Operation is handled by exactly one shard, the one its target hashes to: read from the
//!   Lease annotation on its child and from the journals (exported live).
//! - Shard 1 is killed (SIGKILL) mid-flight and replaced with the same ordinal and journal: its
//!   Operations finish and no child is duplicated.
//! - Scale 3 → 2 as a StatefulSet rolls: pod 2 stops, then pods 1 and 0 restart with two shards.
//!   The new pod 1 waits while the old pod 0 (three shards) still leads (the barrier), and shard
//!   2's Operations in flight are handed over and finish, each with its one child.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::pod::{PodEnv, terminate};
use vworkspace_journal::EntryKind;
use vworkspace_operator::api::{ApplicationInstance, Operation};
use vworkspace_operator::record::RecordBody;
use vworkspace_operator::shard::{ANNOTATION_LEASE, ANNOTATION_SHARDS, owner};
use vworkspace_operator::{journal_codec, sim};

/// Its own Lease family, so no other test's Lease takes part in the barrier.
const FAMILY: &str = "vw-shards-test";
const TARGETS: usize = 30;

struct Shards {
    env: PodEnv,
    dir: PathBuf,
    procs: BTreeMap<u32, Child>,
}

/// A failed assertion must not leave operator processes behind.
impl Drop for Shards {
    fn drop(&mut self) {
        for c in self.procs.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Shards {
    fn journal(&self, k: u32) -> PathBuf {
        self.dir.join(format!("journal-{k}"))
    }

    fn log(&self, k: u32) -> PathBuf {
        self.dir.join(format!("shard-{k}.log"))
    }

    fn start(&mut self, k: u32, count: u32) {
        let (journal, log) = (self.journal(k), self.log(k));
        // Each process its own log: the previous one's is kept beside it.
        let _ = std::fs::rename(&log, log.with_extension("prev.log"));
        let args = [
            "--journal",
            journal.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
            "--audit-log",
            "/dev/null",
            "--lease",
            FAMILY,
            "--shards",
            &count.to_string(),
        ];
        let child = self.env.spawn(&format!("vworkspace-operator-{k}"), &args, &log);
        self.procs.insert(k, child);
    }

    fn logs(&self) -> String {
        (0..3).map(|k| format!("--- shard {k}\n{}", tail(&self.log(k)))).collect()
    }

    /// Fails at once if a shard process died.
    fn assert_running(&mut self) {
        let mut dead = Vec::new();
        for (k, c) in self.procs.iter_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                dead.push(format!("shard {k} exited: {status}"));
            }
        }
        assert!(dead.is_empty(), "{dead:?}\n{}", self.logs());
    }

    /// The live journal, exported through the running shard's export socket.
    fn export(&self, k: u32, name: &str) -> PathBuf {
        let file = self.dir.join(format!("{name}.vwj"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
            .args(["journal", "export", self.journal(k).to_str().unwrap(), file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "export of shard {k}: {}", String::from_utf8_lossy(&out.stderr));
        file
    }
}

fn tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn target_of(i: usize) -> String {
    format!("app-{}", i % TARGETS)
}

async fn create_ops(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    numbers: std::ops::Range<usize>,
) -> BTreeMap<String, String> {
    let mut made = BTreeMap::new();
    for i in numbers {
        let (name, target) = (format!("{prefix}-{i}"), target_of(i));
        support::apply(client, &support::ar::<Operation>(), Some(ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
            "metadata": { "name": name, "namespace": ns }, "spec": { "type": "RunCommand", "target": { "name": target } } })).await;
        made.insert(name, target);
    }
    made
}

/// name → phase of every Operation in the namespace.
async fn phases(ops: &Api<Operation>) -> BTreeMap<String, String> {
    ops.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let phase = o.status.and_then(|s| s.phase).map(|p| p.as_str().to_string()).unwrap_or_default();
            (o.metadata.name.unwrap_or_default(), phase)
        })
        .collect()
}

/// Operation name → the Lease annotation of each of its Jobs.
async fn jobs(jobs: &Api<Job>) -> BTreeMap<String, Vec<String>> {
    let mut by_op: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let lp = ListParams::default().labels("ops.vworkspace.io/operation");
    for j in jobs.list(&lp).await.unwrap().items {
        let labels = j.metadata.labels.clone().unwrap_or_default();
        let lease = j.metadata.annotations.unwrap_or_default().get(ANNOTATION_LEASE).cloned().unwrap_or_default();
        by_op.entry(labels["ops.vworkspace.io/operation"].clone()).or_default().push(lease);
    }
    by_op
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    shards: &mut Shards,
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        shards.assert_running();
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}\n{}", shards.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn lease_of(ns: &str, target: &str, count: u32) -> String {
    format!("{FAMILY}-shard-{}", owner(ns, target, count))
}

/// The Operations of `ns` a journal export names; with `since_last_start`, only in the records
/// of the newest process (after its Started record).
fn ops_in(export: &Path, ns: &str, since_last_start: bool) -> BTreeSet<String> {
    let src = vworkspace_operator::replay::source::load(export).unwrap();
    let mut names = BTreeSet::new();
    for e in src.entries().unwrap() {
        if since_last_start
            && e.header.kind == EntryKind::Discovery
            && matches!(journal_codec::from_entry(&e).map(|r| r.body), Ok(RecordBody::Started(_)))
        {
            names.clear();
        }
        if let Some(name) = e.header.op_key.strip_prefix(&format!("{ns}/")) {
            names.insert(name.to_string());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_split_300_operations_survive_a_kill_and_hand_over_on_scale_down() {
    let client = support::client("admin").await;
    let env = PodEnv::new();
    let ns = support::namespace("shards").await;
    support::job_engine(&client, &ns).await;
    for t in 0..TARGETS {
        support::apply(&client, &support::ar::<ApplicationInstance>(), Some(&ns), json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
            "metadata": { "name": format!("app-{t}"), "namespace": ns, "annotations": { "ops.vworkspace.io/run-command": "job" } },
            "spec": { "chart": { "name": "shop", "version": "1.0.0" } } })).await;
    }
    let apps = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(150)));
    let sim_opts = sim::Options { tick: Duration::from_millis(150), instant: false };
    let mut sims = tokio::spawn(sim::run(client.clone(), sim_opts));
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Shards { env, dir: dir.path().to_path_buf(), procs: BTreeMap::new() };
    // A single replica of an operator from before shards still leads: its plain, unlabelled
    // Lease holds the three new shards back until it is gone.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "vworkspace-system");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let old: Lease = serde_json::from_value(json!({ "metadata": { "name": FAMILY, "namespace": "vworkspace-system" },
        "spec": { "holderIdentity": "vworkspace-operator-0", "leaseDurationSeconds": 60, "acquireTime": now, "renewTime": now, "leaseTransitions": 4 } })).unwrap();
    leases.create(&Default::default(), &old).await.unwrap();
    for k in 0..3 {
        shards.start(k, 3);
    }
    let barrier = "waiting: a shard of another shard count is live";
    wait_until(&mut shards, "the shards wait for the old single replica", Duration::from_secs(30), || async {
        (0..3).all(|k| std::fs::read_to_string(shards_log(&dir, k)).unwrap_or_default().contains(barrier))
    })
    .await;
    leases.delete(FAMILY, &Default::default()).await.unwrap();
    let held = |k: u32, count: u32| {
        let leases = leases.clone();
        async move {
            let Ok(Some(l)) = leases.get_opt(&format!("{FAMILY}-shard-{k}")).await else { return false };
            let count_ok =
                l.metadata.annotations.unwrap_or_default().get(ANNOTATION_SHARDS) == Some(&count.to_string());
            count_ok && l.spec.and_then(|s| s.holder_identity).as_deref() == Some(&format!("vworkspace-operator-{k}"))
        }
    };
    wait_until(&mut shards, "three shard Leases held", Duration::from_secs(60), || async {
        held(0, 3).await && held(1, 3).await && held(2, 3).await
    })
    .await;

    // 300 Operations: shard 1 is killed once 50 of the first 150 have their Job, and the other
    // 150 arrive while it is down. (Created all at once, most had ended before the kill.)
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let job_api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let mut made = create_ops(&client, &ns, "a", 0..150).await;
    wait_until(&mut shards, "50 Jobs created", Duration::from_secs(120), || async { jobs(&job_api).await.len() >= 50 })
        .await;
    let epoch = |l: Lease| l.spec.and_then(|s| s.lease_transitions).unwrap_or(0);
    let epoch_before = epoch(leases.get(&format!("{FAMILY}-shard-1")).await.unwrap());
    let mut one = shards.procs.remove(&1).unwrap();
    one.kill().unwrap();
    one.wait().unwrap();
    made.extend(create_ops(&client, &ns, "a", 150..300).await);
    let per_shard: BTreeMap<u32, usize> = made.values().fold(BTreeMap::new(), |mut m, t| {
        *m.entry(owner(&ns, t, 3)).or_default() += 1;
        m
    });
    assert_eq!(per_shard.len(), 3, "every shard has Operations: {per_shard:?}");
    let at_restart = phases(&ops).await;
    let done = at_restart.values().filter(|p| p.as_str() == "Succeeded").count();
    let open_of_1 = made
        .iter()
        .filter(|(n, t)| owner(&ns, t, 3) == 1 && at_restart.get(*n).is_none_or(|p| p != "Succeeded"))
        .count();
    assert!(open_of_1 > 0, "shard 1 had Operations left when it was killed");
    shards.start(1, 3);
    wait_until(&mut shards, "all 300 Succeeded", Duration::from_secs(240), || async {
        let p = phases(&ops).await;
        p.len() == 300 && p.values().all(|p| p == "Succeeded")
    })
    .await;
    eprintln!("{done} of 300 had succeeded when shard 1 came back, {open_of_1} of its own open; shards {per_shard:?}");
    wait_until(&mut shards, "the replacement takes shard 1's Lease in a new term", Duration::from_secs(60), || async {
        held(1, 3).await && epoch(leases.get(&format!("{FAMILY}-shard-1")).await.unwrap()) == epoch_before + 1
    })
    .await;

    // Exactly one Job each, created under the Lease of the shard the target hashes to.
    let by_op = jobs(&job_api).await;
    for (name, target) in &made {
        assert_eq!(by_op.get(name).map(Vec::len), Some(1), "{name}: {:?}", by_op.get(name));
        assert_eq!(by_op[name][0], lease_of(&ns, target, 3), "{name} on {target}");
    }
    // And in the journals: each shard's names exactly the Operations its targets hash to.
    let mut seen = BTreeSet::new();
    for k in 0..3u32 {
        let names = ops_in(&shards.export(k, &format!("a-{k}")), &ns, false);
        let expected: BTreeSet<String> =
            made.iter().filter(|(_, t)| owner(&ns, t, 3) == k).map(|(n, _)| n.clone()).collect();
        assert_eq!(names, expected, "shard {k}'s journal");
        assert!(names.is_disjoint(&seen), "an Operation in two shards' journals");
        seen.extend(names);
    }
    assert_eq!(seen.len(), 300);
    // Sizing figures (docs/operate/install.md): journal growth on disk and exported.
    let disk: u64 = (0..3).map(|k| support::dir_size(&shards.journal(k))).sum();
    let exported: u64 = (0..3).map(|k| std::fs::metadata(shards.dir.join(format!("a-{k}.vwj"))).unwrap().len()).sum();
    eprintln!(
        "journals after 300 Operations: {:.1} MB on disk (sled), {:.1} MB exported: {:.1} MB and {:.1} MB per 1,000 Operations",
        disk as f64 / 1e6,
        exported as f64 / 1e6,
        disk as f64 / 1e6 / 0.3,
        exported as f64 / 1e6 / 0.3
    );

    // Scale 3 → 2 with Operations in flight: the simulators pause, so Jobs stay running.
    sims.abort();
    let moving = create_ops(&client, &ns, "b", 0..60).await;
    wait_until(&mut shards, "60 more Jobs", Duration::from_secs(120), || async {
        let j = jobs(&job_api).await;
        moving.keys().all(|n| j.contains_key(n))
    })
    .await;
    let from_two: Vec<&String> = moving.iter().filter(|(_, t)| owner(&ns, t, 3) == 2).map(|(n, _)| n).collect();
    assert!(!from_two.is_empty());
    // The StatefulSet's order: pod 2 goes, then pod 1 and pod 0 are replaced with two shards.
    for k in [2, 1] {
        let status = terminate(shards.procs.get_mut(&k).unwrap());
        assert!(status.success(), "shard {k} stopped gracefully: {status}\n{}", shards.logs());
        shards.procs.remove(&k);
    }
    shards.start(1, 2);
    wait_until(&mut shards, "the new pod 1 waits for the old pod 0", Duration::from_secs(30), || async {
        std::fs::read_to_string(shards_log(&dir, 1)).unwrap_or_default().contains(barrier)
    })
    .await;
    let log1 = std::fs::read_to_string(shards_log(&dir, 1)).unwrap();
    assert!(!log1.contains(" leading"), "no two shard counts lead at once:\n{log1}");
    let status = terminate(shards.procs.get_mut(&0).unwrap());
    assert!(status.success(), "shard 0 stopped gracefully: {status}");
    shards.procs.remove(&0);
    shards.start(0, 2);
    wait_until(&mut shards, "two shard Leases held", Duration::from_secs(60), || async {
        held(0, 2).await && held(1, 2).await
    })
    .await;
    sims = tokio::spawn(sim::run(client.clone(), sim_opts));
    wait_until(&mut shards, "the 60 handed over and finished", Duration::from_secs(180), || async {
        let p = phases(&ops).await;
        moving.keys().all(|n| p.get(n).map(String::as_str) == Some("Succeeded"))
    })
    .await;
    let by_op = jobs(&job_api).await;
    for (name, target) in &moving {
        assert_eq!(by_op.get(name).map(Vec::len), Some(1), "{name} was not duplicated: {:?}", by_op.get(name));
        // Created by the three-shard owner, before the handover.
        assert_eq!(by_op[name][0], lease_of(&ns, target, 3), "{name} on {target}");
    }
    // After the restart, each new shard's journal names only what it owns under two shards,
    // shard 2's moved Operations included.
    for k in 0..2u32 {
        let names = ops_in(&shards.export(k, &format!("b-{k}")), &ns, true);
        for n in &names {
            let target = made.get(n).or(moving.get(n)).unwrap();
            assert_eq!(owner(&ns, target, 2), k, "{n} in shard {k}'s journal after the restart");
        }
        for n in from_two.iter().filter(|n| owner(&ns, &moving[**n], 2) == k) {
            assert!(names.contains(*n), "{n} handed over to shard {k}");
        }
    }
    for (_, mut c) in std::mem::take(&mut shards.procs) {
        terminate(&mut c);
    }
    sims.abort();
    apps.abort();
}

fn shards_log(dir: &tempfile::TempDir, k: u32) -> PathBuf {
    dir.path().join(format!("shard-{k}.log"))
}
