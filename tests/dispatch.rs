//! The dispatcher's scheduling rules, driven on tokio's paused clock with a scripted executor
//! (no API server: these are ordering and timing rules of our own code, not server behaviour).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use vworkspace_operator::command::{Action, Command};
use vworkspace_operator::dispatch::{self, Execute, Limits};
use vworkspace_operator::key::OpKey;
use vworkspace_operator::leader::Term;
use vworkspace_operator::pressure::{Bounds, Pressure};
use vworkspace_operator::record::{OutcomeData, OutcomeResult as R, RecordBody};

#[derive(Default)]
struct Script {
    /// Results to give, per command id, in order; then Ok.
    results: BTreeMap<String, Vec<R>>,
    /// How long each attempt takes.
    latency: Duration,
    /// (command id, epoch, start, end) of every attempt.
    log: Vec<(String, u64, Instant, Instant)>,
    in_flight: usize,
    max_in_flight: usize,
}

struct Scripted(Mutex<Script>);

impl Execute for Scripted {
    async fn execute(&self, cmd: &Command, epoch: u64) -> Result<OutcomeData, (R, String)> {
        let (latency, result) = {
            let mut s = self.0.lock().unwrap();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            let r = s.results.get_mut(&cmd.id).and_then(|v| (!v.is_empty()).then(|| v.remove(0))).unwrap_or(R::Ok);
            (s.latency, r)
        };
        let start = Instant::now();
        tokio::time::sleep(latency).await;
        let mut s = self.0.lock().unwrap();
        s.in_flight -= 1;
        s.log.push((cmd.id.clone(), epoch, start, Instant::now()));
        if result == R::Ok { Ok(OutcomeData::None) } else { Err((result, format!("scripted {result:?}"))) }
    }
}

fn cmd(op: &str, id: &str) -> Command {
    Command {
        id: id.into(),
        op: OpKey { namespace: "ns".into(), name: op.into() },
        uid: format!("uid-{op}"),
        action: Action::AddFinalizer,
    }
}

struct Rig {
    exec: Arc<Scripted>,
    commands: mpsc::UnboundedSender<Command>,
    outcomes: mpsc::UnboundedReceiver<RecordBody>,
    leader: watch::Sender<Option<Term>>,
    pressure: Pressure,
}

fn rig(script: Script, limits: Limits) -> Rig {
    let exec = Arc::new(Scripted(Mutex::new(script)));
    let (commands, rx) = mpsc::unbounded_channel();
    let (out, outcomes) = mpsc::unbounded_channel();
    let (leader, leadership) = watch::channel(Some(Term::sole()));
    let pressure = Pressure::new(Bounds { commands: 4, records: 1_000 });
    tokio::spawn(dispatch::run(exec.clone(), rx, out, leadership, limits, pressure.clone()));
    Rig { exec, commands, outcomes, leader, pressure }
}

async fn outcomes(r: &mut Rig, n: usize) -> Vec<(String, R)> {
    let mut got = Vec::new();
    while got.len() < n {
        match r.outcomes.recv().await {
            Some(RecordBody::Outcome(o)) => got.push((o.command_id, o.result)),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

fn fast() -> Limits {
    Limits { rate_per_sec: 1_000_000, burst: 1_000_000, ..Limits::default() }
}

#[tokio::test(start_paused = true)]
async fn one_command_at_a_time_per_operation_and_operations_in_parallel() {
    let mut r = rig(Script { latency: Duration::from_millis(50), ..Default::default() }, fast());
    for i in 0..3 {
        for op in ["a", "b", "c"] {
            r.commands.send(cmd(op, &format!("{op}{i}"))).unwrap();
        }
    }
    outcomes(&mut r, 9).await;
    let s = r.exec.0.lock().unwrap();
    for op in ["a", "b", "c"] {
        let mine: Vec<_> = s.log.iter().filter(|l| l.0.starts_with(op)).collect();
        let ids: Vec<_> = mine.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(ids, [format!("{op}0"), format!("{op}1"), format!("{op}2")], "order kept per Operation");
        assert!(mine.windows(2).all(|w| w[0].3 <= w[1].2), "{op}: no overlap within one Operation");
    }
    assert_eq!(s.max_in_flight, 3, "three Operations ran at once");
}

/// Backpressure: the held commands (queued or running) close the Operation watch over the
/// bound and open it again once answers bring them under half of it.
#[tokio::test(start_paused = true)]
async fn held_commands_are_reported_for_backpressure() {
    let limits = Limits { concurrency: 1, ..fast() };
    let mut r = rig(Script { latency: Duration::from_millis(10), ..Default::default() }, limits);
    assert!(r.pressure.open());
    for op in 0..6 {
        r.commands.send(cmd(&format!("op{op}"), &format!("op{op}-x"))).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!r.pressure.open(), "six held over a bound of four");
    let admitted = tokio::spawn({
        let p = r.pressure.clone();
        async move { p.admit().await }
    });
    outcomes(&mut r, 3).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!admitted.is_finished(), "three held: under the bound, not yet under half of it");
    outcomes(&mut r, 1).await;
    tokio::time::timeout(Duration::from_secs(1), admitted).await.expect("two held: admitted").unwrap();
    outcomes(&mut r, 2).await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let limits = Limits { concurrency: 2, ..fast() };
    let mut r = rig(Script { latency: Duration::from_millis(10), ..Default::default() }, limits);
    for op in 0..8 {
        r.commands.send(cmd(&format!("op{op}"), &format!("op{op}-x"))).unwrap();
    }
    outcomes(&mut r, 8).await;
    assert_eq!(r.exec.0.lock().unwrap().max_in_flight, 2);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_per_operation_and_does_not_delay_others() {
    let script =
        Script { results: BTreeMap::from([("a0".into(), vec![R::Error, R::Error, R::Error])]), ..Default::default() };
    let mut r = rig(script, fast());
    let t0 = Instant::now();
    r.commands.send(cmd("a", "a0")).unwrap();
    r.commands.send(cmd("b", "b0")).unwrap();
    let got = outcomes(&mut r, 2).await;
    assert!(got.contains(&("a0".into(), R::Ok)) && got.contains(&("b0".into(), R::Ok)), "{got:?}");
    let s = r.exec.0.lock().unwrap();
    let a: Vec<Duration> = s.log.iter().filter(|l| l.0 == "a0").map(|l| l.2 - t0).collect();
    let b: Vec<Duration> = s.log.iter().filter(|l| l.0 == "b0").map(|l| l.2 - t0).collect();
    assert_eq!(a, [0, 100, 300, 700].map(Duration::from_millis), "100 ms, then doubling");
    assert_eq!(b, [Duration::ZERO], "the other Operation was not held back");
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_become_the_outcome_and_the_operation_stays_backed_off() {
    let limits = Limits { attempts: 3, ..fast() };
    let script = Script { results: BTreeMap::from([("a0".into(), vec![R::Error; 3])]), ..Default::default() };
    let mut r = rig(script, limits);
    let t0 = Instant::now();
    r.commands.send(cmd("a", "a0")).unwrap();
    assert_eq!(outcomes(&mut r, 1).await, [("a0".to_string(), R::Error)]);
    r.commands.send(cmd("a", "a1")).unwrap();
    r.commands.send(cmd("b", "b1")).unwrap();
    outcomes(&mut r, 2).await;
    let s = r.exec.0.lock().unwrap();
    let start = |id: &str| s.log.iter().find(|l| l.0 == id).map(|l| l.2 - t0).unwrap();
    // a0 ran at 0, 100, 300 ms; the key carries the next delay (400 ms) into a1.
    assert_eq!(start("a1"), Duration::from_millis(700));
    assert_eq!(start("b1"), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn answers_are_not_retried() {
    let results = BTreeMap::from([
        ("conflict".to_string(), vec![R::Conflict]),
        ("forbidden".to_string(), vec![R::Forbidden]),
        ("gone".to_string(), vec![R::NotFound]),
        ("invalid".to_string(), vec![R::Invalid]),
        ("ours".to_string(), vec![R::AlreadyExistsOurs]),
        ("taken".to_string(), vec![R::AlreadyExistsForeign]),
    ]);
    let mut r = rig(Script { results, ..Default::default() }, fast());
    for id in ["conflict", "forbidden", "gone", "invalid", "ours", "taken"] {
        r.commands.send(cmd(id, id)).unwrap();
    }
    let mut got = outcomes(&mut r, 6).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("conflict".into(), R::Conflict),
            ("forbidden".into(), R::Forbidden),
            ("gone".into(), R::NotFound),
            ("invalid".into(), R::Invalid),
            ("ours".into(), R::AlreadyExistsOurs),
            ("taken".into(), R::AlreadyExistsForeign),
        ]
    );
    assert_eq!(r.exec.0.lock().unwrap().log.len(), 6, "one attempt each; each journaled as itself");
}

#[tokio::test(start_paused = true)]
async fn the_global_rate_limit_spaces_attempts() {
    let limits = Limits { rate_per_sec: 10, burst: 2, ..Limits::default() };
    let mut r = rig(Script::default(), limits);
    let t0 = Instant::now();
    for op in 0..12 {
        r.commands.send(cmd(&format!("op{op}"), &format!("x{op}"))).unwrap();
    }
    outcomes(&mut r, 12).await;
    let s = r.exec.0.lock().unwrap();
    let mut starts: Vec<Duration> = s.log.iter().map(|l| l.2 - t0).collect();
    starts.sort();
    // A burst of 2 goes at once (plus the slot that is due now), then one every 100 ms.
    assert_eq!(starts[..3], [Duration::ZERO; 3]);
    assert_eq!(starts[11], Duration::from_millis(900));
    assert!(starts.windows(2).skip(2).all(|w| w[1] - w[0] == Duration::from_millis(100)), "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_standby_acts_on_nothing() {
    let mut r = rig(Script::default(), fast());
    r.leader.send_replace(None);
    r.commands.send(cmd("a", "a0")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(r.outcomes.try_recv().is_err(), "no outcome without leadership");
    assert!(r.exec.0.lock().unwrap().log.is_empty(), "no API call without leadership");
}

#[tokio::test(start_paused = true)]
async fn losing_leadership_during_backoff_abandons_the_command() {
    let script = Script { results: BTreeMap::from([("a0".into(), vec![R::Error; 5])]), ..Default::default() };
    let mut r = rig(script, fast());
    r.commands.send(cmd("a", "a0")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await; // two attempts made, backing off
    r.leader.send_replace(None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(r.outcomes.try_recv().is_err(), "abandoned: the next leader's Restart re-derives it");
    assert_eq!(r.exec.0.lock().unwrap().log.len(), 2, "no attempt after stepping down");
}

#[tokio::test(start_paused = true)]
async fn a_new_term_does_not_finish_the_old_terms_retries() {
    let script = Script { results: BTreeMap::from([("a0".into(), vec![R::Error; 5])]), ..Default::default() };
    let mut r = rig(script, fast());
    r.commands.send(cmd("a", "a0")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = Term { epoch: 7, ..Term::sole() };
    r.leader.send_replace(Some(next));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(r.outcomes.try_recv().is_err());
    assert!(r.exec.0.lock().unwrap().log.iter().all(|l| l.1 == 0), "every attempt carried the epoch it started under");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_is_cut_off_when_its_term_runs_out() {
    let mut r = rig(Script { latency: Duration::from_secs(60), ..Default::default() }, fast());
    let term = Term { epoch: 3, valid_until: Instant::now() + Duration::from_secs(2) };
    r.leader.send_replace(Some(term));
    r.commands.send(cmd("a", "a0")).unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(r.outcomes.try_recv().is_err(), "the term lapsed without renewal: nothing is journaled");
    assert!(r.exec.0.lock().unwrap().log.is_empty(), "the slow call was dropped at the term's end");
}

#[tokio::test(start_paused = true)]
async fn a_queued_status_patch_is_superseded_by_a_newer_one_and_never_sent() {
    let mut r = rig(Script { latency: Duration::from_millis(50), ..Default::default() }, fast());
    let patch = |id: &str| Command { action: Action::PatchStatus { status: Default::default() }, ..cmd("a", id) };
    // a0 runs; the patches queue behind it, with an Event between them.
    r.commands.send(cmd("a", "a0")).unwrap();
    tokio::task::yield_now().await;
    r.commands.send(patch("p1")).unwrap();
    r.commands.send(Command { action: Action::RemoveFinalizer, ..cmd("a", "e1") }).unwrap();
    r.commands.send(patch("p2")).unwrap();
    r.commands.send(patch("p3")).unwrap();
    let got = outcomes(&mut r, 5).await;
    let result = |id: &str| got.iter().find(|(c, _)| c == id).map(|(_, r)| *r);
    assert_eq!(result("p1"), Some(R::Superseded));
    assert_eq!(result("p2"), Some(R::Superseded));
    assert_eq!(result("p3"), Some(R::Ok));
    let sent: Vec<String> = r.exec.0.lock().unwrap().log.iter().map(|l| l.0.clone()).collect();
    assert_eq!(sent, ["a0", "e1", "p3"], "only the newest patch reaches the API server, in order");
}

#[tokio::test(start_paused = true)]
async fn a_running_operations_status_patch_lets_later_commands_go_first_and_an_ending_one_does_not() {
    use vworkspace_operator::api::{OperationPhase, OperationStatus};
    let mut r = rig(Script { latency: Duration::from_millis(50), ..Default::default() }, fast());
    let patch = |id: &str, phase: OperationPhase| Command {
        action: Action::PatchStatus { status: Arc::new(OperationStatus { phase: Some(phase), ..Default::default() }) },
        ..cmd("a", id)
    };
    let event = |id: &str| Command { action: Action::RemoveFinalizer, ..cmd("a", id) };
    r.commands.send(cmd("a", "a0")).unwrap();
    tokio::task::yield_now().await;
    // Pending, then a command the fold issued after it: the command is sent first, and the
    // next status (Running) finds Pending still queued and replaces it.
    r.commands.send(patch("pending", OperationPhase::Pending)).unwrap();
    r.commands.send(event("create")).unwrap();
    r.commands.send(event("e1")).unwrap();
    r.commands.send(patch("running", OperationPhase::Running)).unwrap();
    r.commands.send(event("e2")).unwrap();
    // The status that ends the Operation keeps its place before what follows it.
    r.commands.send(patch("done", OperationPhase::Succeeded)).unwrap();
    r.commands.send(event("e3")).unwrap();
    let got = outcomes(&mut r, 8).await;
    let result = |id: &str| got.iter().find(|(c, _)| c == id).map(|(_, r)| *r);
    assert_eq!(result("pending"), Some(R::Superseded));
    assert_eq!(result("running"), Some(R::Superseded), "replaced by the ending status while still queued");
    assert_eq!(result("done"), Some(R::Ok));
    let sent: Vec<String> = r.exec.0.lock().unwrap().log.iter().map(|l| l.0.clone()).collect();
    assert_eq!(sent, ["a0", "create", "e1", "e2", "done", "e3"]);
}
