//! One back-off for all of the effector's requests while the API server cannot be reached.
//!
//! The dispatcher backs off per Operation. That is right for an answer about one object (a
//! webhook that refuses it), but an unreachable server fails every Operation alike: each in
//! flight retried on its own schedule, about ten times a minute, so the attempts grew with the
//! Operations in flight (bounded only by the dispatcher's 50 a second).
//! So while the server is unreachable, one request at a time probes it, at doubling intervals;
//! the first response of any status lets every request through again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub struct Outage {
    base: Duration,
    max: Duration,
    state: Mutex<State>,
    /// Wakes the waiting requests when the server answers again.
    reopened: Notify,
}

struct State {
    /// Zero while the server answers; else the spacing between probes.
    interval: Duration,
    /// When the next probe may go.
    next: Instant,
    /// When the server stopped answering, for the log line that says it answers again.
    since: Option<Instant>,
}

impl Outage {
    pub fn new(base: Duration, max: Duration) -> Self {
        let state = State { interval: Duration::ZERO, next: Instant::now(), since: None };
        Self { base: base.max(Duration::from_millis(1)), max, state: Mutex::new(state), reopened: Notify::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn unreachable(&self) -> bool {
        !self.state().interval.is_zero()
    }

    /// Returns when this request may be sent: at once while the server answers; while it does
    /// not, when its turn to probe comes (one request per interval, whoever wakes first), or
    /// as soon as another request gets an answer. True when it goes as a probe.
    pub async fn admit(&self) -> bool {
        loop {
            let reopened = self.reopened.notified();
            tokio::pin!(reopened);
            reopened.as_mut().enable();
            let wait = {
                let mut s = self.state();
                let now = Instant::now();
                if s.interval.is_zero() {
                    return false;
                }
                if now >= s.next {
                    s.next = now + s.interval;
                    return true;
                }
                s.next - now
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = reopened => {}
            }
        }
    }

    /// What a request got: `answered` for any HTTP response (the server is there, whatever it
    /// said), false when no connection or no response came. Only a failed probe doubles the
    /// interval: the requests already on their way when the server went all fail together,
    /// and counted each they took the interval to its maximum at once.
    pub fn report(&self, answered: bool, probe: bool) {
        let mut s = self.state();
        let now = Instant::now();
        if answered {
            // Only transitions touch the gauge (a request that is answered leaves it alone).
            if let Some(since) = s.since.take() {
                tracing::info!(after = ?now - since, "API server answers again: effector requests go at once");
                crate::metrics::get().api_unreachable.set(0);
            }
            s.interval = Duration::ZERO;
            self.reopened.notify_waiters();
            return;
        }
        if s.since.is_none() {
            s.since = Some(now);
            tracing::warn!("API server unreachable: effector requests wait, and one at a time probes it");
            crate::metrics::get().api_unreachable.set(1);
        }
        if s.interval.is_zero() {
            s.interval = self.base;
        } else if probe {
            s.interval = (s.interval * 2).min(self.max);
        }
        s.next = s.next.max(now + s.interval);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// `n` requests retried each on its own backoff (as the dispatcher does) against a server
    /// that is unreachable until `down` has passed: how many reached it while it was down, and
    /// when the last one got through after.
    async fn storm(n: usize, down: Duration) -> (u32, Duration) {
        let gate = Arc::new(Outage::new(Duration::from_millis(200), Duration::from_secs(30)));
        let start = Instant::now();
        let during = Arc::new(AtomicU32::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (gate, during) = (gate.clone(), during.clone());
            tasks.spawn(async move {
                let mut delay = Duration::from_millis(100);
                loop {
                    let probe = gate.admit().await;
                    let up = start.elapsed() >= down;
                    gate.report(up, probe);
                    if up {
                        return start.elapsed();
                    }
                    during.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            });
        }
        let mut last = Duration::ZERO;
        while let Some(t) = tasks.join_next().await {
            last = last.max(t.unwrap());
        }
        (during.load(Ordering::SeqCst), last)
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_server_is_probed_once_per_interval_however_many_requests_wait() {
        let down = Duration::from_secs(60);
        let (one, _) = storm(1, down).await;
        let (many, last) = storm(200, down).await;
        // 200 ms doubling to 30 s: 0, 0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4, 51.0 s.
        assert!(many <= 9, "{many} attempts in a 60 s outage from 200 requests");
        assert!(many <= one + 1, "200 requests probe no more than one does ({many} against {one})");
        // The probe after the outage lets everyone through (30 s at most after it ended).
        assert!(last <= down + Duration::from_secs(30), "the last request went at {last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_server_answers_nothing_waits_and_one_answer_reopens_the_way() {
        let gate = Outage::new(Duration::from_millis(200), Duration::from_secs(30));
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!gate.admit().await, "no probe while the server answers");
            gate.report(true, false);
        }
        assert_eq!(t.elapsed(), Duration::ZERO);
        assert!(!gate.unreachable());
        // Requests that were on their way fail together; the interval stays at its first step.
        for _ in 0..5 {
            gate.report(false, false);
        }
        assert!(gate.unreachable());
        let waited = Instant::now();
        assert!(gate.admit().await, "the next request goes as a probe");
        assert_eq!(waited.elapsed(), Duration::from_millis(200), "after one interval, not five doublings");
        gate.report(false, true);
        let waited = Instant::now();
        assert!(gate.admit().await);
        assert_eq!(waited.elapsed(), Duration::from_millis(400), "a failed probe doubles it");
        gate.report(true, true);
        let t = Instant::now();
        for _ in 0..100 {
            gate.admit().await;
        }
        assert_eq!(t.elapsed(), Duration::ZERO, "an answer lets every request through at once");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_requests_go_as_soon_as_any_request_is_answered() {
        let gate = Arc::new(Outage::new(Duration::from_millis(100), Duration::from_secs(30)));
        gate.report(false, false);
        for _ in 0..8 {
            assert!(gate.admit().await);
            gate.report(false, true);
        }
        // The interval is now 25.6 s: a request waits for its turn...
        let start = Instant::now();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move {
                gate.admit().await;
                start.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        // ...until another one (a probe, or one already on its way) gets an answer.
        gate.report(true, false);
        assert_eq!(waiter.await.unwrap(), Duration::from_secs(1));
    }
}
