//! The runtime: watch → journal → fold → effector. Every record is appended and made durable
//! before it is folded (write-ahead); commands go to the effector, whose outcomes come back as
//! records; timers fire as records. The fold is the only place that decides.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use vworkspace_journal::{Journal, SledJournal};

use crate::command::{Action, Command};
use crate::dispatch::{self, Limits};
use crate::effector::Effector;
use crate::fold::{self, State};
use crate::inbound::Inbound;
use crate::journal_codec;
use crate::record::{Record, RecordBody, TimerFired};
use vworkspace_journal::outbox::Outbox;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("journal: {0}")]
    Journal(#[from] vworkspace_journal::Error),
    #[error("journal record: {0}")]
    Codec(#[from] journal_codec::Error),
    #[error("snapshot does not decode: {0}")]
    Snapshot(serde_json::Error),
    #[error("{0}")]
    Http(#[from] crate::http::Error),
    #[error("cannot open the audit log {path}: {source}")]
    Audit { path: String, source: std::io::Error },
    #[error("cannot build the effector's API client: {0}")]
    Client(#[source] kube::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Options {
    /// Journal directory; `None` keeps records in memory only (benchmarks' baseline).
    pub journal: Option<PathBuf>,
    /// Records between two snapshots of the folded state.
    pub snapshot_every: u64,
    /// Records kept before the newest snapshot.
    pub retain: u64,
    pub rediscover: Duration,
    /// Lease-based leadership; `None` acts alone (dev, single-replica tests).
    pub leader: Option<crate::leader::Options>,
    /// Effector concurrency, rate limit and backoff.
    pub limits: Limits,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/loglevel` are served.
    pub http: Option<std::net::SocketAddr>,
    /// Where audit records go: a file, or `-` for stdout.
    pub audit: Option<PathBuf>,
    /// Push the event stream to the control plane.
    pub events: Option<crate::events::push::Options>,
    /// How long a shutdown waits for commands in flight.
    pub drain: Duration,
    /// The shard this process serves (0 of 1: everything).
    pub shard: crate::shard::Shard,
    /// Queue bounds past which the Operation watch pauses (backpressure).
    pub bounds: crate::pressure::Bounds,
    /// At most this many Operations run at once; the rest wait in creation order
    /// (`fold::admission`). `None`: no cap.
    pub max_active: Option<u32>,
    /// How long a group commit waits for more records after the first (0: commit what is
    /// queued at once).
    pub commit_delay: Duration,
    /// The API server's config. Given, the effector opens connections of its own, and checks
    /// the lease term on each write as hyper first reads its body (`effector::fence::gated`);
    /// `None` (one in-process operator in tests): it writes through the watches' client and
    /// checks the term when the write is handed to it.
    pub api: Option<kube::Config>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            journal: None,
            snapshot_every: 10_000,
            retain: 50_000,
            rediscover: Duration::from_secs(15),
            leader: None,
            limits: Limits::default(),
            http: None,
            audit: None,
            events: None,
            drain: Duration::from_secs(20),
            shard: crate::shard::Shard::default(),
            bounds: crate::pressure::Bounds::default(),
            max_active: None,
            commit_delay: Duration::from_millis(2),
            api: None,
        }
    }
}

/// Restores the folded state: the newest snapshot, then the journal's tail (no commands run:
/// they ran before, or the Restart record re-derives them).
/// Events of records past the outbox's high water (a crash came between journaling them and
/// writing their events) are derived again on the way and put in the outbox.
fn restore(journal: &SledJournal, outbox: &Outbox) -> Result<(State, Restore)> {
    let t = std::time::Instant::now();
    let snapshot = journal.latest_snapshot()?;
    let read = t.elapsed();
    let (mut state, from) = match snapshot {
        Some((seq, bytes)) => match State::from_snapshot(&bytes) {
            Ok(state) => (state, seq + 1),
            // An unreadable snapshot (an older build's) must not stop the operator: fold what
            // the journal retains; the relist adopts what the cluster shows for the rest.
            Err(e) => {
                tracing::error!(seq, error = %Error::Snapshot(e), "snapshot ignored; folding the retained journal");
                (State::default(), 0)
            }
        },
        None => (State::default(), 0),
    };
    let decoded = t.elapsed();
    let high_water = outbox.high_water()?;
    if high_water + 1 < from {
        tracing::warn!(high_water, snapshot = from - 1, "events of records before the snapshot were never written");
    }
    let mut projector = (high_water < journal.last_seq()).then(|| crate::signals::Projector::seeded(&state));
    let mut events = Vec::new();
    let mut folded = 0;
    for e in journal.read_from(from) {
        let e = e?;
        folded += 1;
        // Echoes of the operator's own writes are folded from a probe, not decoded whole.
        if let Some((key, meta)) = journal_codec::op_meta(&e)
            && fold::skip_echo(&mut state, e.header.seq, &key, &meta)
        {
            continue;
        }
        let rec = journal_codec::from_entry(&e)?;
        let cmds = fold::step(&mut state, &rec);
        if let Some(p) = projector.as_mut() {
            let signals = p.step(&state, &rec, &cmds);
            if rec.seq > high_water {
                events.extend(crate::events::encoded(&signals));
            }
        }
    }
    if projector.is_some() {
        tracing::info!(events = events.len(), from = high_water + 1, "events derived again for the outbox");
        outbox.put(journal.last_seq(), &events)?;
    }
    let r = Restore { records: folded, read, decode: decoded - read, tail: t.elapsed() - decoded };
    tracing::info!(
        snapshot_read_ms = r.read.as_millis() as u64,
        snapshot_decode_ms = r.decode.as_millis() as u64,
        tail_ms = r.tail.as_millis() as u64,
        tail_records = r.records,
        "journal restored"
    );
    Ok((state, r))
}

/// Where a restore's time went.
#[derive(Clone, Copy, Debug)]
pub struct Restore {
    /// Records folded after the snapshot.
    pub records: u64,
    /// Reading the snapshot: the store, its checksum and decompression.
    pub read: Duration,
    /// Decoding the snapshot into the state.
    pub decode: Duration,
    /// Folding the records after it.
    pub tail: Duration,
}

/// What a start does before its watches: open the journal directory and restore the folded
/// state (the restart benchmark times it).
pub fn restore_dir(dir: &std::path::Path) -> Result<(State, Restore)> {
    let (j, _) = SledJournal::open(dir)?;
    let outbox = j.outbox()?;
    restore(&j, &outbox)
}

/// Runs until an unrecoverable journal error (never returns otherwise).
pub async fn run(client: kube::Client, opts: Options) -> Result<()> {
    run_until(client, opts, std::future::pending()).await
}

/// Runs until `shutdown` completes (SIGTERM), then stops gracefully: no more watch records,
/// commands in flight finish and are journaled (new ones are left to the next process's
/// Restart), the journal is made durable with a snapshot, and the Lease is released so a
/// replacement takes over at once.
pub async fn run_until(
    client: kube::Client,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let journal = match &opts.journal {
        Some(dir) => {
            let (j, report) = SledJournal::open(dir)?;
            if !report.truncated.is_empty() {
                tracing::warn!(seqs = ?report.truncated, "journal: torn tail truncated");
            }
            if let Some((seq, why, aside)) = &report.quarantined {
                tracing::error!(first_bad_seq = seq, %why, moved_to = %aside.display(), "journal damaged: quarantined; relisting from the cluster");
            }
            Some(Arc::new(j))
        }
        None => None,
    };
    // Ends with this function (a dropped run must release the journal for the next one).
    let _exports = match (&journal, &opts.journal) {
        (Some(j), Some(dir)) => Some(AbortOnDrop(tokio::spawn(serve_exports(j.clone(), dir.clone())))),
        _ => None,
    };
    let outbox = journal.as_ref().map(|j| j.outbox()).transpose()?;
    let (mut state, replayed) = match (&journal, &outbox) {
        (Some(j), Some(o)) => restore(j, o).map(|(s, r)| (s, r.records))?,
        _ => (State::default(), 0),
    };
    let (events_tx, events_rx) = tokio::sync::watch::channel(0u64);
    let _push = match (&outbox, &opts.events) {
        (Some(o), Some(p)) => {
            Some(AbortOnDrop(tokio::spawn(crate::events::push::run(o.clone(), events_rx.clone(), p.clone()))))
        }
        (None, Some(_)) => {
            tracing::warn!("the event stream needs a journal (its outbox); no events are pushed");
            None
        }
        _ => None,
    };
    tracing::info!(replayed, ops = state.ops.len(), "state restored");
    let _http = match opts.http {
        Some(addr) => {
            let stream = outbox.clone().map(|o| crate::http::EventSource { outbox: o, last: events_rx.clone() });
            let (bound, task) = crate::http::serve(addr, stream).await?;
            tracing::info!(%bound, "serving /metrics, /healthz, /readyz, /loglevel");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let audit: Option<Box<dyn std::io::Write + Send>> = match opts.audit.as_deref() {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| Error::Audit { path: p.display().to_string(), source })?,
        )),
    };
    let (tx, rx) = mpsc::unbounded_channel::<Inbound>();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<Command>();
    let (leadership, elector) = match &opts.leader {
        Some(l) => {
            let (rx, task) = crate::leader::spawn(client.clone(), l.clone());
            (rx, Some(AbortOnDrop(task)))
        }
        None => (tokio::sync::watch::channel(Some(crate::leader::Term::sole())).1, None),
    };
    let outage = Arc::new(crate::effector::outage::Outage::new(opts.limits.backoff_base, opts.limits.backoff_max));
    let writer = match &opts.api {
        Some(config) => crate::effector::fence::gated(config, leadership.clone()).map_err(Error::Client)?,
        None => client.clone(),
    };
    let fenced = crate::effector::fence::client(writer, leadership.clone(), outage);
    let effector = Arc::new(Effector::new(fenced).with_lease(opts.leader.as_ref().map(|l| l.name.clone())));
    let pressure = crate::pressure::Pressure::new(opts.bounds);
    tokio::spawn(dispatch::run(
        effector,
        cmd_rx,
        tx.clone(),
        leadership.clone(),
        opts.limits.clone(),
        pressure.clone(),
    ));
    // Before any watch record: the fold waits for this process's relists before acting.
    let _ =
        tx.send(RecordBody::Started(crate::record::Started { shard: opts.shard, max_active: opts.max_active }).into());
    tracing::info!(shard = %opts.shard, "serving shard");
    let own = crate::ownership::Ownership::new(client.clone(), opts.shard);
    let ingest = AbortOnDrop(tokio::spawn(crate::ingest::run(
        client.clone(),
        tx.clone(),
        opts.rediscover,
        own,
        pressure.clone(),
    )));
    // Whatever was in flight when the last process stopped (or the last leader) may never have
    // run: each gain of leadership is a Restart record, and the fold re-derives it.
    tokio::spawn(restart_on_leadership(leadership.clone(), tx.clone()));
    let last_term = leadership.clone();
    let sinks = crate::signals::sinks::Sinks::new(&state, audit, Some(leadership));
    // Timers of restored Operations are re-armed by the fold after the Restart record.
    let outputs = Outputs { sinks, outbox, events: events_tx, ingest: Some(ingest), pressure };
    let unfinished = fold_loop(&mut state, journal, Channels { rx, tx, cmd_tx }, &opts, outputs, shutdown).await?;
    if let (Some(l), Some(elector)) = (&opts.leader, elector) {
        drop(elector);
        // Attempts still running past the drain may act until their term's deadline: the
        // Lease is handed on only after it, so a successor never overlaps them.
        let term = *last_term.borrow();
        if let (true, Some(t)) = (unfinished > 0, term) {
            tracing::warn!(unfinished, "waiting out the lease term before releasing it");
            tokio::time::sleep_until(t.valid_until).await;
        }
        match crate::leader::release_lease(&client, l).await {
            Ok(()) => tracing::info!(lease = %l.name, "lease released"),
            Err(e) => tracing::warn!(error = %e, "lease not released; it expires on its own"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// A task that ends with its owner.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The socket in the journal directory where `journal export` reaches a running operator: sled
/// lets one process open a journal, so another process asks this one for the export.
pub const EXPORT_SOCKET: &str = "export.sock";

async fn serve_exports(journal: Arc<SledJournal>, dir: PathBuf) {
    let path = dir.join(EXPORT_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no live export socket; export from a stopped journal instead");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (j, p) = (journal.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            let sent = stream
                .into_std()
                .and_then(|s| s.set_nonblocking(false).map(|_| s))
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    let mut w = std::io::BufWriter::new(s);
                    vworkspace_journal::export::export_to(&j, &mut w, &p).map_err(|e| e.to_string())
                });
            match sent {
                Ok(n) => tracing::info!(records = n, "journal exported over the live export socket"),
                Err(e) => tracing::warn!(error = %e, "live export failed"),
            }
        });
    }
}

async fn restart_on_leadership(mut leadership: crate::leader::Leadership, tx: UnboundedSender<Inbound>) {
    let mut leading = false;
    loop {
        let now = leadership.borrow_and_update().is_some();
        if now && !leading && tx.send(RecordBody::Restart.into()).is_err() {
            return;
        }
        leading = now;
        let m = crate::metrics::get();
        m.leader.set(i64::from(now));
        if let Some(t) = *leadership.borrow() {
            m.lease_epoch.set(t.epoch as i64);
        }
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

async fn fold_loop(
    state: &mut State,
    journal: Option<Arc<SledJournal>>,
    ch: Channels,
    opts: &Options,
    mut out: Outputs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<i64> {
    let Channels { mut rx, tx, cmd_tx } = ch;
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    // Set by SIGTERM: until then a far-off instant.
    let mut drain_until: Option<tokio::time::Instant> = None;
    let m = crate::metrics::get();
    let mut seq = journal.as_ref().map(|j| j.last_seq()).unwrap_or(0);
    let mut since_snapshot = 0u64;
    let mut snapshot_at = std::time::Instant::now();
    let mut compaction = Compaction::default();
    let mut in_flight: i64 = 0;
    // Not ready until this process has relisted (its Started record, the first, says so).
    crate::http::READY.store(false, std::sync::atomic::Ordering::Relaxed);
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let first = tokio::select! {
            r = rx.recv() => match r {
                Some(b) => b,
                None => break,
            },
            _ = &mut shutdown, if drain_until.is_none() => {
                // No more watch records; what is in flight finishes and is journaled.
                out.ingest.take();
                drain_until = Some(tokio::time::Instant::now() + opts.drain);
                tracing::info!(in_flight, "shutting down: draining the effector");
                if in_flight <= 0 {
                    break;
                }
                continue;
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                tracing::warn!(in_flight, "drain deadline passed: the next process re-derives the rest");
                break;
            }
        };
        let taken = std::time::Instant::now();
        // Group commit: what is queued, and what comes within the commit delay, under one
        // durable(). Without a journal on disk there is no commit to share.
        let delay = if journal.is_some() && drain_until.is_none() { opts.commit_delay } else { Duration::ZERO };
        let bodies = gather(&mut rx, first, delay).await;
        // The journal keeps microseconds: fold with exactly the time a replay will read.
        let now = Utc::now();
        let at = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        // Redacted before folding too: the fold decides on exactly what a replay will read.
        let records: Vec<Record> = bodies
            .into_iter()
            .filter_map(|item| match item.into_body() {
                Ok(mut body) => {
                    body.redact();
                    Some(Record { seq: 0, at, body })
                }
                Err(e) => {
                    // serde_json wrote the text from what it had read: not reachable but by a bug.
                    tracing::error!(error = %e, "a watched object did not parse again; left out");
                    None
                }
            })
            .collect();
        let records = match &journal {
            Some(j) => {
                let entries: Vec<_> = records.iter().map(journal_codec::to_entry).collect();
                let (t, bytes) = (std::time::Instant::now(), j.appended_bytes());
                let range = j.append(entries)?;
                crate::failpoint::hit(crate::failpoint::MID_APPEND);
                m.journal_append.observe(t.elapsed().as_secs_f64());
                m.journal_bytes.inc_by(j.appended_bytes() - bytes);
                let t = std::time::Instant::now();
                j.durable()?;
                m.journal_durable.observe(t.elapsed().as_secs_f64());
                records
                    .into_iter()
                    .zip(range)
                    .map(|(mut r, s)| {
                        r.seq = s;
                        r
                    })
                    .collect::<Vec<_>>()
            }
            None => records
                .into_iter()
                .map(|mut r| {
                    seq += 1;
                    r.seq = seq;
                    r
                })
                .collect(),
        };
        m.journal_records.inc_by(records.len() as u64);
        let reconciled =
            m.reconcile.get_or_create(&vec![("controller", "operation".into()), ("result", "success".into())]);
        let mut events = Vec::new();
        for r in &records {
            if matches!(r.body, RecordBody::Outcome(_)) {
                in_flight -= 1;
            }
            let cmds = fold::step(state, r);
            // Once per Operation: a queue's peers may act in a later round of the same record.
            let ops: std::collections::BTreeSet<_> = cmds.iter().map(|c| &c.op).collect();
            reconciled.inc_by(ops.len() as u64);
            let signals = out.sinks.on_record(state, r, &cmds);
            if out.outbox.is_some() {
                events.extend(crate::events::encoded(&signals));
            }
            for cmd in cmds {
                if drain_until.is_some() {
                    // Not started while stopping: the next process's Restart re-derives it.
                    continue;
                }
                in_flight += i64::from(cmd.action.has_outcome());
                route(cmd, &cmd_tx, &tx);
            }
        }
        if let (Some(o), Some(last)) = (&out.outbox, records.last()) {
            let n = o.put(last.seq, &events)?;
            if !events.is_empty() {
                tracing::debug!(events = events.len(), last = n, "events written to the outbox");
                out.events.send_replace(n);
            }
        }
        crate::http::READY.store(state.synced(), std::sync::atomic::Ordering::Relaxed);
        let waited = taken.elapsed().as_secs_f64();
        m.workqueue_queue_duration.get_or_create(&vec![("name", "journal".into())]).observe(waited);
        m.workqueue_depth.get_or_create(&vec![("name", "journal".into())]).set(rx.len() as i64);
        out.pressure.set_records(rx.len());
        m.workqueue_depth.get_or_create(&vec![("name", "effector".into())]).set(in_flight.max(0));
        m.operations_waiting.set(state.admission.waiting() as i64);
        since_snapshot += records.len() as u64;
        // At least every `snapshot_every` records, and no more often than one record per
        // Operation held, so the cost of snapshots stays proportional to the records folded.
        let due = opts.snapshot_every.max(state.ops.len() as u64);
        if let (Some(j), true) = (&journal, since_snapshot >= due) {
            since_snapshot = 0;
            snapshot(j, state, opts, out.outbox.as_ref())?;
            compaction.to(state.last_seq.saturating_sub(opts.retain));
            snapshot_at = std::time::Instant::now();
        } else if let Some(j) = &journal {
            compaction.step(j, records.len())?;
        }
        m.journal_since_snapshot.set(since_snapshot as i64);
        m.journal_snapshot_age.set(snapshot_at.elapsed().as_secs_f64());
        if drain_until.is_some() && in_flight <= 0 {
            tracing::info!("effector drained");
            break;
        }
    }
    if let Some(j) = &journal {
        // The next process starts from here without folding the tail again.
        j.durable()?;
        snapshot(j, state, opts, out.outbox.as_ref())?;
        j.compact(state.last_seq.saturating_sub(opts.retain))?;
        j.durable()?;
    }
    Ok(in_flight.max(0))
}

/// Old records are removed a little after each group commit, twice as fast as records come:
/// compacted all at once after a snapshot, sled pulled and copied every page of them together
/// (peak RSS 154 MB at 10,000 Operations, against 132 MB without compaction).
#[derive(Default)]
struct Compaction {
    /// Records before this seq are in a snapshot and past the retained tail.
    before: Option<u64>,
}

impl Compaction {
    fn to(&mut self, before: u64) {
        self.before = Some(before);
    }

    fn step(&mut self, j: &SledJournal, appended: usize) -> Result<()> {
        if let Some(before) = self.before
            && j.compact_some(before, 2 * appended + 64)? == 0
        {
            self.before = None;
        }
        Ok(())
    }
}

/// Writes a snapshot; the records it makes redundant, all but `opts.retain`, are left to
/// `Compaction`.
fn snapshot(j: &SledJournal, state: &State, opts: &Options, outbox: Option<&Outbox>) -> Result<()> {
    let last = state.last_seq;
    // Snapshots obey the same redaction as records (DESIGN §4), and they do by construction:
    // the state holds only what redacted records brought. Debug builds (every test) check it.
    #[cfg(debug_assertions)]
    {
        let mut v = serde_json::to_value(state).unwrap_or_default();
        let before = v.clone();
        vworkspace_journal::redact::redact(&mut v);
        debug_assert_eq!(v, before, "the folded state holds something redaction removes");
    }
    // Streamed from the state into the compressor: no copy of the whole state, in any form.
    let wrote = j.write_snapshot_with(last, &mut |w| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        serde_json::to_writer(&mut w, state).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut w)
    });
    let written = match wrote {
        // The state does not serialise (a bug, not the disk): the journal keeps every record,
        // so a restart folds a longer tail; stopping would only make a crash loop of it.
        Err(e @ vworkspace_journal::Error::Encode(_)) => {
            tracing::error!(seq = last, error = %e, "snapshot not written");
            return Ok(());
        }
        r => r?,
    };
    if let Some(o) = outbox {
        // Without a push sink nothing acknowledges: keep a bounded tail for pulls.
        o.trim(0, opts.events.as_ref().map_or(1_000_000, |p| p.keep))?;
    }
    tracing::info!(seq = last, bytes = written, "snapshot written");
    Ok(())
}

/// Records in (and back, for timers), commands out.
struct Channels {
    rx: UnboundedReceiver<Inbound>,
    tx: UnboundedSender<Inbound>,
    cmd_tx: UnboundedSender<Command>,
}

/// Where each folded record's consequences go besides commands.
struct Outputs {
    sinks: crate::signals::sinks::Sinks,
    outbox: Option<Outbox>,
    /// The number of the newest event, for the push task and SSE streams.
    events: tokio::sync::watch::Sender<u64>,
    /// The watch streams; dropped (stopped) when shutting down.
    ingest: Option<AbortOnDrop>,
    /// Told how many records wait to be folded.
    pressure: crate::pressure::Pressure,
}

/// Records in one group commit at most.
const BATCH: usize = 512;

/// The batch for one group commit: `first`, what is already queued, then what arrives within
/// `delay` of now. Each commit is a sled flush and an fdatasync, whose CPU (I/O threads woken,
/// a write and a sync per commit, in the kernel) was most of the journal's cost under load: a
/// short wait shares it among more records, for at most `delay` more latency per record.
async fn gather(rx: &mut UnboundedReceiver<Inbound>, first: Inbound, delay: Duration) -> Vec<Inbound> {
    let mut bodies = vec![first];
    while bodies.len() < BATCH {
        match rx.try_recv() {
            Ok(b) => bodies.push(b),
            Err(_) => break,
        }
    }
    let until = tokio::time::Instant::now() + delay;
    while bodies.len() < BATCH && !delay.is_zero() {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(b)) => bodies.push(b),
            // Closed: the loop sees it on its next receive.
            Ok(None) | Err(_) => break,
        }
    }
    bodies
}

/// Timers become delayed records; everything else goes to the effector.
fn route(cmd: Command, cmd_tx: &UnboundedSender<Command>, tx: &UnboundedSender<Inbound>) {
    if let Action::SetTimer { timer, at } = &cmd.action {
        let wait = (*at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let fired = RecordBody::Timer(TimerFired { op: cmd.op.clone(), timer: *timer });
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(fired.into());
        });
        return;
    }
    let _ = cmd_tx.send(cmd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vworkspace_journal::{EntryKind, NewEntry, ResourceRef};

    fn entry(i: u64) -> NewEntry {
        NewEntry {
            recorded_at_micros: i as i64,
            kind: EntryKind::Observed,
            event: 3,
            op_key: "demo/op".into(),
            resource: ResourceRef { kind: "Job".into(), name: format!("j{i}"), ..Default::default() },
            body: serde_json::json!({ "i": i }),
        }
    }

    fn timer(n: u32) -> Inbound {
        RecordBody::Timer(TimerFired {
            op: crate::key::OpKey::new("demo", format!("op{n}")),
            timer: crate::record::TimerKind::Deadline,
        })
        .into()
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_commit_takes_what_comes_within_the_delay_and_no_more() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(timer(1)).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            late.send(timer(2)).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.send(timer(3)).unwrap();
        });
        let first = timer(0);
        let start = tokio::time::Instant::now();
        let batch = gather(&mut rx, first, Duration::from_millis(2)).await;
        assert_eq!(batch.len(), 3, "queued, then one within the delay");
        assert_eq!(start.elapsed(), Duration::from_millis(2), "it waits out the delay, no longer");
        let next = rx.recv().await.unwrap();
        let batch = gather(&mut rx, next, Duration::ZERO).await;
        assert_eq!(batch.len(), 1, "no delay: only what is queued");
        drop(tx);
        // A closed channel ends the wait at once.
        let batch = gather(&mut rx, timer(4), Duration::from_secs(60)).await;
        assert_eq!((batch.len(), start.elapsed() < Duration::from_secs(1)), (1, true));
    }

    #[test]
    fn compaction_keeps_ahead_of_appends_and_stops_at_the_floor() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, _) = SledJournal::open(tmp.path()).unwrap();
        j.append((1..=2000).map(entry).collect()).unwrap();
        let mut c = Compaction::default();
        c.step(&j, 100).unwrap();
        assert_eq!(j.verify().first_seq, Some(1), "nothing to do before a snapshot");
        c.to(1501);
        c.step(&j, 100).unwrap();
        assert_eq!(j.verify().first_seq, Some(265), "twice the records appended, and 64");
        while c.before.is_some() {
            c.step(&j, 0).unwrap();
        }
        let r = j.verify();
        assert_eq!((r.records, r.first_seq, r.last_seq), (500, Some(1501), 2000));
    }
}
