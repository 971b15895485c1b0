//! Scenario 6: Split brain: SIGSTOP the leader past its lease, let the standby take over, then SIGCONT
//! the old leader. Each operator talks through a proxy of its own, so every write is attributed:
//! after it wakes, the old leader may only touch its Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::proxy::Proxy;
use crate::{Rig, iterations, load, operator, row};

async fn holder(client: &kube::Client, ns: &str) -> String {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    api.get_opt("vworkspace-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_old_leader_never_writes() {
    let _turn = super::turn().await;
    let rig = Rig::new("split", &[]).await;
    let second = Proxy::start(rig.cluster.upstream(), &rig.cluster.pki()).await;
    let proxies = [&rig.proxy, &second];
    let names = ["op-a", "op-b"];
    let journals = [rig.dir.path().join("journal-a"), rig.dir.path().join("journal-b")];
    let mut ops: Vec<_> = (0..2)
        .map(|i| {
            rig.operator_with(
                proxies[i],
                names[i],
                &journals[i],
                &[],
                &[("POD_NAME", names[i]), ("POD_NAMESPACE", &rig.ns)],
            )
        })
        .collect();
    let rounds = iterations(1, 3);
    let mut planned = Vec::new();
    let mut late_writes = Vec::new();
    let mut takeovers = Vec::new();
    let mut leader_writes = Vec::new();
    let mut fenced = Vec::new();
    for round in 0..rounds {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut leader = holder(&rig.cluster.client, &rig.ns).await;
        while !names.contains(&leader.as_str()) {
            assert!(Instant::now() < deadline, "no leader after 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
            leader = holder(&rig.cluster.client, &rig.ns).await;
        }
        let l = names.iter().position(|n| *n == leader).unwrap();
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("s{round}"), 14).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Proof the proxy sees this operator's writes: it wrote while it led.
        let lease = |w: &crate::proxy::Write| w.path.starts_with("/apis/coordination.k8s.io/");
        leader_writes.push(proxies[l].writes().iter().filter(|w| !lease(w)).count());
        ops[l].signal("STOP");
        let stopped = Instant::now();
        let deadline = stopped + Duration::from_secs(60);
        while holder(&rig.cluster.client, &rig.ns).await != names[1 - l] {
            assert!(Instant::now() < deadline, "the standby never took over");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        takeovers.push(stopped.elapsed());
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("after{round}"), 7).await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let woke = Instant::now();
        ops[l].signal("CONT");
        tokio::time::sleep(Duration::from_secs(10)).await;
        for w in proxies[l].writes() {
            if w.at > woke && !lease(&w) {
                late_writes.push(format!("{} after waking: {} {}", names[l], w.method, w.path));
            }
        }
        // What the fence refused (reported, not asserted: it depends on what was in flight).
        let metrics = ops[l].metrics().await;
        fenced.push(crate::support::metric_sample(&metrics, "vworkspace_writes_fenced_total", &[]).unwrap_or(0.0));
    }
    let report = rig.settle(&planned, Duration::from_secs(180)).await;
    for op in &mut ops {
        op.kill();
    }
    let verified: Vec<i32> = journals.iter().map(|j| operator::verify(j).0).collect();
    row(
        "split-brain",
        rounds,
        rounds,
        &report,
        &format!(
            "takeover_s={:?} leader_writes_before_stop={leader_writes:?} late_writes={} fenced_total={fenced:?} journal_verify={verified:?}",
            takeovers.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            late_writes.len()
        ),
    );
    report.assert_clean(&format!("{}\n---\n{}", ops[0].log_tail(30), ops[1].log_tail(30)));
    assert!(late_writes.is_empty(), "the old leader wrote after waking: {late_writes:#?}");
    assert!(leader_writes.iter().all(|n| *n > 0), "a leader's writes were not seen: {leader_writes:?}");
    assert_eq!(verified, [0, 0]);
}
