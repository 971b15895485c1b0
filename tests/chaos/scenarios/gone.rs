//! Scenario 3: 410 Gone: watches are cut and held off while the load moves on, etcd is compacted past
//! every resourceVersion the operator holds, then watches may resume. The server answers 410
//! (counted at the proxy); the operator relists and misses nothing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{Rig, iterations, load, operator, row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_after_compaction_relists() {
    let _turn = super::turn().await;
    // No watch cache: watches are served by etcd, so compaction alone makes old versions gone.
    let (rig, mut op) = Rig::single("gone", &["--", "--watch-cache=false"]).await;
    let journal = op.journal.clone();
    assert!(op.ready(Duration::from_secs(60)).await, "{}", op.log_tail(30));
    let rounds = iterations(2, 10);
    let mut planned = Vec::new();
    for i in 0..rounds {
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("g{i}"), 7).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        rig.proxy.cut_watches(true);
        // Changes the operator does not see: new Operations and the simulators' status writes.
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("unseen{i}"), 7).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.cluster.compact().await;
        rig.proxy.cut_watches(false);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let report = rig.settle(&planned, Duration::from_secs(180)).await;
    let gone = rig.proxy.stats.gone.load(Ordering::SeqCst);
    op.kill();
    let (code, out) = operator::verify(&journal);
    row("gone", rounds, rounds, &report, &format!("gone_410_seen={gone} journal_verify={code}"));
    report.assert_clean(&op.log_tail(40));
    assert!(gone > 0, "the server never answered 410: the scenario tested nothing");
    assert_eq!(code, 0, "{out}");
}
