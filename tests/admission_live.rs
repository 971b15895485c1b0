//! The admission cap against the real API server: forty Operations listed at once, at most five
//! run at a time, the rest wait (the waiting gauge shows them), and every one still ends with
//! one Job. Its own test binary, so its own control plane: no other operator acts on these.

mod support;

use vworkspace_operator::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_operations_wait_and_everything_still_ends() {
    let client = support::client("admin").await;
    let ns = support::namespace("admission").await;
    // Not exclusive: all forty start together, so their commands pile up.
    support::job_engine(&client, &ns).await;
    let journal = tempfile::tempdir().unwrap();
    let opts = run::Options { max_active: Some(5), ..support::slow_effector_options(journal.path()) };
    let sims = support::instant_simulators(&client);
    let names: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    // Submitted before the operator starts: its first list brings all forty at once.
    support::submit_runcommands(&client, &ns, &names).await;
    let waiting = &vworkspace_operator::metrics::get().operations_waiting;
    let mut most_waiting = 0;
    let operator = tokio::spawn(run::run(client.clone(), opts));
    support::await_succeeded_with_one_job(&client, &ns, &names, || most_waiting = most_waiting.max(waiting.get()))
        .await;
    assert!(most_waiting >= 20, "most of the forty waited for a slot (at most {most_waiting} seen waiting)");
    assert_eq!(waiting.get(), 0, "none waits at the end");
    operator.abort();
    sims.iter().for_each(|s| s.abort());
}
