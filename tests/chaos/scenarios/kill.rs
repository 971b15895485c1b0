//! Scenario 1: SIGKILL the operator at random moments under load, and at the two moments a random kill
//! rarely hits: between a batch's append and its fsync, and between a child's creation and the
//! journaling of its outcome (failpoints).

use std::time::Duration;

use vworkspace_operator::failpoint;

use crate::{Rig, Rng, iterations, load, operator, row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments() {
    let _turn = super::turn().await;
    let (rig, mut op) = Rig::single("kill", &[]).await;
    let journal = op.journal.clone();
    let mut rng = Rng::new("sigkill");
    let kills = iterations(5, 30);
    let mut planned = Vec::new();
    let mut faults = 0;
    for i in 0..kills {
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("k{i}"), 7).await);
        // Anywhere from start-up (still relisting) to mid-flight.
        tokio::time::sleep(Duration::from_millis(100 + rng.below(1900))).await;
        op.kill();
        faults += 1;
        op.start();
    }
    // The failpoints: each start aborts itself at its point, then a clean start follows.
    for point in [failpoint::MID_APPEND, failpoint::AFTER_CREATE] {
        planned.extend(load::submit(&rig.cluster.client, &rig.ns, &format!("fp-{point}"), 7).await);
        op.kill();
        op.env("VW_FAILPOINT", &format!("{point}:{}", 2 + rng.below(4)));
        op.start();
        let mut aborted = false;
        for _ in 0..600 {
            if op.exited().is_some() {
                aborted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(aborted, "the failpoint {point} never fired:\n{}", op.log_tail(20));
        assert!(op.log_tail(50).contains(&format!("failpoint {point}")), "{}", op.log_tail(20));
        faults += 1;
        op.env("VW_FAILPOINT", "");
        op.start();
    }
    assert!(op.ready(Duration::from_secs(60)).await, "not ready after the last restart:\n{}", op.log_tail(30));
    let report = rig.settle(&planned, Duration::from_secs(180)).await;
    op.kill();
    let (code, out) = operator::verify(&journal);
    row("sigkill", kills + 2, faults, &report, &format!("journal_verify={code}"));
    report.assert_clean(&op.log_tail(40));
    assert_eq!(code, 0, "journal verify after SIGKILLs: {out}");
}
