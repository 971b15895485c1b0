//! Backpressure against the real API server: with a small effector queue bound, the Operation
//! watch pauses while commands wait, and every Operation still ends, with one Job each. Its own
//! test binary, so its own control plane: no other operator acts on these Operations.

mod support;

use vworkspace_operator::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_effector_queue_pauses_the_operation_watch_and_everything_still_ends() {
    let client = support::client("admin").await;
    let ns = support::namespace("pressure").await;
    // Not exclusive: all forty start together, so their commands pile up.
    support::job_engine(&client, &ns).await;
    let journal = tempfile::tempdir().unwrap();
    let opts = run::Options {
        bounds: vworkspace_operator::pressure::Bounds { commands: 6, records: 2_048 },
        ..support::slow_effector_options(journal.path())
    };
    let sims = support::instant_simulators(&client);
    let names: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    // Submitted before the operator starts: its first list brings all forty at once.
    support::submit_runcommands(&client, &ns, &names).await;
    let paused = vworkspace_operator::metrics::get().ingest_paused.get();
    let operator = tokio::spawn(run::run(client.clone(), opts));
    support::await_succeeded_with_one_job(&client, &ns, &names, || {}).await;
    let now = vworkspace_operator::metrics::get().ingest_paused.get();
    assert!(now > paused, "the Operation watch paused at least once ({paused} → {now})");
    operator.abort();
    sims.iter().for_each(|s| s.abort());
}
