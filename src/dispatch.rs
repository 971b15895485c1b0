//! Scheduling commands onto the effector: one command at a time per Operation (so its commands
//! keep their order), many Operations at once, exponential backoff per Operation, a global rate
//! limit on API attempts, and fencing: an attempt starts only inside a valid leadership term and
//! is cut off when the term ends. An abandoned command leaves no outcome; the next leader's
//! Restart record re-derives it. An unreachable API server is one back-off for all Operations,
//! in the effector's client (`effector::outage`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::OperationPhase;
use crate::command::{Action, Command};
use crate::key::OpKey;
use crate::leader::{self, Leadership};
use crate::record::{Outcome, OutcomeData, OutcomeResult as R, RecordBody};

/// One attempt at one command.
pub trait Execute: Send + Sync + 'static {
    fn execute(&self, cmd: &Command, epoch: u64) -> impl Future<Output = Result<OutcomeData, (R, String)>> + Send;
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Operations whose commands run at the same time.
    pub concurrency: usize,
    /// API attempts per second across all Operations, and the burst above it.
    pub rate_per_sec: u32,
    pub burst: u32,
    /// Attempts per command before a transient failure becomes its outcome.
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: 16,
            rate_per_sec: 50,
            burst: 100,
            attempts: 6,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Only server errors and lost write races are worth another attempt; a failed guard (Conflict),
/// a refusal or a missing object is an answer.
fn transient(r: R) -> bool {
    r == R::Error
}

/// A token bucket as a virtual schedule (GCRA): each attempt reserves the next slot; up to
/// `burst` slots may be taken ahead of the schedule.
pub struct RateLimit {
    origin: Instant,
    interval: Duration,
    burst: Duration,
    /// The theoretical arrival time of the next attempt, as an offset from `origin`.
    next: Mutex<Duration>,
}

impl RateLimit {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / per_sec.max(1);
        Self { origin: Instant::now(), interval, burst: interval * burst, next: Mutex::new(Duration::ZERO) }
    }

    /// Waits for this attempt's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.origin.elapsed();
            let slot = next.saturating_sub(self.burst).max(now);
            *next = (*next).max(now) + self.interval;
            slot
        };
        tokio::time::sleep_until(self.origin + slot).await;
    }
}

/// How one command ended.
enum Finished {
    /// An outcome to journal, and the backoff the key carries into its next command.
    Done(Box<Outcome>, Duration),
    /// Leadership ended first: nothing is journaled.
    Abandoned,
}

/// Runs until the command channel closes; outcomes go back as records. The commands held
/// (queued or running) are reported to `pressure`.
pub async fn run<E: Execute, T: From<RecordBody>>(
    exec: Arc<E>,
    mut commands: UnboundedReceiver<Command>,
    out: UnboundedSender<T>,
    leadership: Leadership,
    limits: Limits,
    pressure: crate::pressure::Pressure,
) {
    let limiter = Arc::new(RateLimit::new(limits.rate_per_sec, limits.burst));
    let mut queues: BTreeMap<OpKey, VecDeque<Command>> = BTreeMap::new();
    let mut backoff: BTreeMap<OpKey, Duration> = BTreeMap::new();
    let mut ready: VecDeque<OpKey> = VecDeque::new();
    let mut running: BTreeMap<tokio::task::Id, OpKey> = BTreeMap::new();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut open = true;
    // Received and not yet answered (superseded, finished or abandoned).
    let mut held = 0usize;
    while open || !tasks.is_empty() {
        tokio::select! {
            cmd = commands.recv(), if open => match cmd {
                Some(cmd) => {
                    held += 1;
                    let key = cmd.op.clone();
                    let q = queues.entry(key.clone()).or_default();
                    let was_empty = q.is_empty();
                    if let Some(old) = superseded(q, &cmd) {
                        held -= 1;
                        if out.send(RecordBody::Outcome(old).into()).is_err() {
                            return;
                        }
                    }
                    enqueue(q, cmd);
                    if was_empty && !running.values().any(|k| *k == key) {
                        ready.push_back(key);
                    }
                }
                None => open = false,
            },
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, finished) = match joined {
                    Ok((id, f)) => (id, Some(f)),
                    Err(e) => (e.id(), None),
                };
                let Some(key) = running.remove(&id) else { continue };
                held = held.saturating_sub(1);
                match finished {
                    Some(Finished::Done(outcome, carry)) => {
                        let outcome = *outcome;
                        if carry.is_zero() { backoff.remove(&key); } else { backoff.insert(key.clone(), carry); }
                        if !outcome.result.is_success() {
                            tracing::info!(command = %outcome.command_id, op = %outcome.op, result = ?outcome.result, message = %outcome.message, "effect outcome");
                        }
                        if out.send(RecordBody::Outcome(outcome).into()).is_err() {
                            return;
                        }
                    }
                    Some(Finished::Abandoned) => {}
                    None => tracing::error!(op = %key, "effector task failed; the next Restart re-derives its command"),
                }
                if queues.get(&key).is_some_and(|q| !q.is_empty()) {
                    ready.push_back(key);
                }
            }
        }
        pressure.set_commands(held);
        while tasks.len() < limits.concurrency.max(1) {
            let Some(key) = ready.pop_front() else { break };
            let Some(cmd) = queues.get_mut(&key).and_then(VecDeque::pop_front) else { continue };
            if queues.get(&key).is_some_and(VecDeque::is_empty) {
                queues.remove(&key);
            }
            let start = backoff.get(&key).copied().unwrap_or_default();
            let handle =
                tasks.spawn(attempts(exec.clone(), cmd, leadership.clone(), limiter.clone(), start, limits.clone()));
            running.insert(handle.id(), key);
        }
    }
}

/// A queued status patch of a running Operation lets later commands of its Operation go
/// first, so it stays queued long enough to be superseded: each carries the whole status, and
/// while an Operation moves quickly most of its intermediate patches are then never sent (a
/// status write is the costliest call an Operation makes). The patch that ends an Operation
/// keeps its place: its latency is what users wait for.
fn enqueue(queue: &mut VecDeque<Command>, cmd: Command) {
    let yields = |c: &Command| match &c.action {
        Action::PatchStatus { status } => !status.phase.is_some_and(OperationPhase::is_terminal),
        _ => false,
    };
    match queue.back() {
        Some(last) if yields(last) && !matches!(cmd.action, Action::PatchStatus { .. }) => {
            queue.insert(queue.len() - 1, cmd)
        }
        _ => queue.push_back(cmd),
    }
}

/// A status patch still queued when a newer one for the same Operation arrives is never sent:
/// each carries the whole status, so the newer one says everything. Its outcome says so, and
/// the fold (which waits for every command's outcome) takes it as done.
fn superseded(queue: &mut VecDeque<Command>, newer: &Command) -> Option<Outcome> {
    if !matches!(newer.action, Action::PatchStatus { .. }) {
        return None;
    }
    let i = queue.iter().position(|c| matches!(c.action, Action::PatchStatus { .. }))?;
    let old = queue.remove(i)?;
    tracing::debug!(command = %old.id, by = %newer.id, "status patch superseded before it was sent");
    Some(Outcome::of(&old, R::Superseded, format!("superseded by {}", newer.id), OutcomeData::None))
}

/// Attempts one command until it has an answer, its attempts run out, or leadership ends.
async fn attempts<E: Execute>(
    exec: Arc<E>,
    cmd: Command,
    leadership: Leadership,
    limiter: Arc<RateLimit>,
    mut delay: Duration,
    limits: Limits,
) -> Finished {
    let Some(first) = leader::current(&leadership) else {
        tracing::debug!(command = %cmd.id, "standby: not acting");
        return Finished::Abandoned;
    };
    let mut attempt = 0;
    loop {
        if !delay.is_zero() {
            tracing::debug!(command = %cmd.id, ?delay, "backing off");
            tokio::time::sleep(delay).await;
        }
        limiter.acquire().await;
        // A new term means a Restart record is on its way and re-derives this command.
        let Some(term) = leader::current(&leadership).filter(|t| t.epoch == first.epoch) else {
            return Finished::Abandoned;
        };
        attempt += 1;
        // One span per API attempt; never the manifest or a message (they may quote values).
        let span = tracing::info_span!(
            "effect",
            otel.name = cmd.action.name(),
            operation = %cmd.op,
            trace_id = %crate::signals::ids::trace_id(&cmd.uid),
            command = %cmd.id,
            lease.epoch = term.epoch,
            attempt,
            result = tracing::field::Empty,
        );
        // In the Operation's trace, under its root span.
        #[cfg(feature = "otlp")]
        if let Some(cx) = crate::signals::spans::parent(&cmd.uid) {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let _ = span.set_parent(cx);
        }
        let call = exec.execute(&cmd, term.epoch).instrument(span.clone());
        let result = tokio::select! {
            // The deadline first: a process stopped (SIGSTOP, a long pause) past its term must
            // not get one more write out when it wakes (the chaos split-brain test saw one).
            biased;
            _ = tokio::time::sleep_until(term.valid_until) => {
                // Renewals move the deadline; only a term that really ended stops us.
                match leader::current(&leadership) {
                    Some(t) if t.epoch == term.epoch => Err((R::Error, "attempt outlived its lease term's deadline".into())),
                    _ => return Finished::Abandoned,
                }
            }
            r = call => r,
        };
        span.record("result", format!("{:?}", result.as_ref().map(|_| R::Ok).unwrap_or_else(|(r, _)| *r)).as_str());
        let next = (delay * 2).clamp(limits.backoff_base, limits.backoff_max);
        match result {
            Ok(data) => return Finished::Done(Box::new(Outcome::of(&cmd, R::Ok, String::new(), data)), Duration::ZERO),
            Err((r, m)) if transient(r) && attempt < limits.attempts => {
                tracing::debug!(command = %cmd.id, result = ?r, message = %m, "transient failure");
                delay = next;
            }
            Err((r, m)) => {
                let carry = if transient(r) { next } else { Duration::ZERO };
                return Finished::Done(Box::new(Outcome::of(&cmd, r, m, OutcomeData::None)), carry);
            }
        }
    }
}
