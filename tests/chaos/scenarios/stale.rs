//! Scenario 5: Stale reads: the operator's watch events arrive seconds late (the proxy holds them back)
//! while its own creates succeed at once, and it is restarted while they lag: it must never
//! create a second child for a step it has not yet seen created.

use std::time::Duration;

use crate::{Rig, iterations, load, operator, row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_watches_make_no_duplicates() {
    let _turn = super::turn().await;
    let (rig, mut op) = Rig::single("stale", &[]).await;
    let journal = op.journal.clone();
    assert!(op.ready(Duration::from_secs(60)).await, "{}", op.log_tail(30));
    let delay = Duration::from_millis(2500);
    rig.proxy.delay_watches(delay);
    let rounds = iterations(2, 8);
    let mut planned = Vec::new();
    for i in 0..rounds {
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("st{i}"), 14).await);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // A restart relists fresh state while the watch that follows still lags.
        op.kill();
        op.start();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let report = rig.settle(&planned, Duration::from_secs(240)).await;
    rig.proxy.delay_watches(Duration::ZERO);
    op.kill();
    let (code, out) = operator::verify(&journal);
    row("stale-reads", rounds, rounds, &report, &format!("watch_delay_ms={} journal_verify={code}", delay.as_millis()));
    report.assert_clean(&op.log_tail(40));
    assert_eq!(code, 0, "{out}");
}
