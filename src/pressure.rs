//! Backpressure from the effector to ingestion. New work enters only through the Operation
//! watch, so that watch stops being read while the effector's queue (commands received, not yet
//! answered) or the journal's queue (records not yet folded) is over its bound, and resumes when
//! both are back under half of it. An unread watch waits in the connection, not in our heap: at
//! 50,000 Operations submitted at once the effector's queue had reached 95,632 commands.
//! Children, targets and outcomes keep flowing, so whatever is queued still ends.

use std::sync::Arc;

use tokio::sync::watch;

/// How many commands and records may wait before the Operation watch pauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub commands: usize,
    pub records: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        // 20 s of work at the default 50 attempts/s; four group commits of records.
        Self { commands: 1_000, records: 2_048 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Load {
    commands: usize,
    records: usize,
}

/// Shared by the dispatcher and the fold loop (which report their queues) and the Operation
/// watch (which waits).
#[derive(Clone, Debug)]
pub struct Pressure {
    load: Arc<watch::Sender<Load>>,
    bounds: Bounds,
}

impl Pressure {
    pub fn new(bounds: Bounds) -> Self {
        Self { load: Arc::new(watch::Sender::new(Load::default())), bounds }
    }

    /// The effector's queue: commands received and not yet answered.
    pub fn set_commands(&self, n: usize) {
        self.load.send_if_modified(|l| std::mem::replace(&mut l.commands, n) != n);
    }

    /// The journal's queue: records received and not yet folded.
    pub fn set_records(&self, n: usize) {
        self.load.send_if_modified(|l| std::mem::replace(&mut l.records, n) != n);
    }

    fn over(&self, l: &Load) -> bool {
        l.commands > self.bounds.commands || l.records > self.bounds.records
    }

    fn eased(&self, l: &Load) -> bool {
        l.commands <= self.bounds.commands / 2 && l.records <= self.bounds.records / 2
    }

    /// Whether the next watch event may be read now.
    pub fn open(&self) -> bool {
        !self.over(&self.load.borrow())
    }

    /// Returns at once unless a queue is over its bound; then waits until both are under half
    /// of theirs (hysteresis: a watch does not flap around the bound).
    pub async fn admit(&self) {
        if self.open() {
            return;
        }
        let mut rx = self.load.subscribe();
        let load = *rx.borrow();
        tracing::debug!(commands = load.commands, records = load.records, "ingestion paused: queues over their bounds");
        let m = crate::metrics::get();
        m.ingest_paused.inc();
        let t = std::time::Instant::now();
        // The sender lives as long as any clone of this Pressure, this one included.
        let _ = rx.wait_for(|l| self.eased(l)).await;
        m.ingest_paused_seconds.inc_by(t.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_over_the_bound_and_resumes_under_half_of_it() {
        let p = Pressure::new(Bounds { commands: 10, records: 100 });
        p.admit().await;
        p.set_commands(11);
        assert!(!p.open());
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.admit().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Under the bound but not under half: still paused.
        p.set_commands(6);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "resumes only under half the bound");
        p.set_commands(5);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn either_queue_pauses_and_both_must_ease() {
        let p = Pressure::new(Bounds { commands: 10, records: 100 });
        p.set_records(101);
        assert!(!p.open());
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.admit().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        p.set_commands(8);
        p.set_records(10);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the commands queue is over half its bound");
        p.set_commands(0);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(p.open());
    }
}
