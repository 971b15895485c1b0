//! Prometheus metrics (`/metrics`). controller-runtime's names where dashboards expect them,
//! `vworkspace_*` for the rest. One process-wide registry: the operator is one process.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::signals::Signal;

type Labels = Vec<(&'static str, String)>;
type Hist = Family<Labels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub reconcile: Family<Labels, Counter>,
    pub reconcile_errors: Family<Labels, Counter>,
    pub workqueue_depth: Family<Labels, Gauge>,
    pub workqueue_queue_duration: Hist,
    pub operations: Family<Labels, Counter>,
    pub operation_duration: Hist,
    pub effector_commands: Family<Labels, Counter>,
    pub journal_append: Histogram,
    pub journal_durable: Histogram,
    pub journal_records: Counter,
    pub journal_bytes: Counter,
    pub journal_snapshot_age: Gauge<f64, AtomicU64>,
    pub journal_since_snapshot: Gauge,
    pub leader: Gauge,
    pub lease_epoch: Gauge<i64, AtomicI64>,
    pub events_sent: Counter,
    pub events_failed: Counter,
    pub ingest_paused: Counter,
    pub ingest_paused_seconds: Counter<f64, AtomicU64>,
    pub operations_waiting: Gauge,
    pub api_unreachable: Gauge,
    pub writes_fenced: Family<Labels, Counter>,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn long() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 16))
}

impl Metrics {
    /// A write the fence refused: `handed` when given to the client, `connection` as hyper read
    /// its body (`effector::fence`).
    pub fn fenced(&self, check: &'static str) {
        self.writes_fenced.get_or_create(&vec![("check", check.to_string())]).inc();
    }

    fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            registry: Registry::default(),
            reconcile: Family::default(),
            reconcile_errors: Family::default(),
            workqueue_depth: Family::default(),
            workqueue_queue_duration: Family::new_with_constructor(latency),
            operations: Family::default(),
            operation_duration: Family::new_with_constructor(long),
            effector_commands: Family::default(),
            journal_append: latency(),
            journal_durable: latency(),
            journal_records: Counter::default(),
            journal_bytes: Counter::default(),
            journal_snapshot_age: Gauge::default(),
            journal_since_snapshot: Gauge::default(),
            leader: Gauge::default(),
            lease_epoch: Gauge::default(),
            events_sent: Counter::default(),
            events_failed: Counter::default(),
            ingest_paused: Counter::default(),
            ingest_paused_seconds: Counter::default(),
            operations_waiting: Gauge::default(),
            api_unreachable: Gauge::default(),
            writes_fenced: Family::default(),
        };
        r.register("controller_runtime_reconcile", "Operations reconciled, by result", m.reconcile.clone());
        r.register(
            "controller_runtime_reconcile_errors",
            "Reconciles whose command failed transiently (retried)",
            m.reconcile_errors.clone(),
        );
        r.register("workqueue_depth", "Items waiting: records to fold, commands to run", m.workqueue_depth.clone());
        r.register(
            "workqueue_queue_duration_seconds",
            "How long a record waited from receipt until it was journaled and folded",
            m.workqueue_queue_duration.clone(),
        );
        r.register(
            "vworkspace_operations",
            "Operations ended, by type, engine and terminal reason",
            m.operations.clone(),
        );
        r.register(
            "vworkspace_operation_duration_seconds",
            "From creation to the terminal condition",
            m.operation_duration.clone(),
        );
        r.register(
            "vworkspace_effector_commands",
            "Effector command outcomes, by action and result",
            m.effector_commands.clone(),
        );
        r.register("vworkspace_journal_append_seconds", "Journal append latency (one batch)", m.journal_append.clone());
        r.register(
            "vworkspace_journal_durable_seconds",
            "Journal flush-to-disk latency (one batch)",
            m.journal_durable.clone(),
        );
        r.register("vworkspace_journal_records", "Records appended to the journal", m.journal_records.clone());
        r.register(
            "vworkspace_journal_bytes",
            "Record bytes appended, as stored (header, lz4 body, checksum)",
            m.journal_bytes.clone(),
        );
        r.register(
            "vworkspace_journal_snapshot_age_seconds",
            "Seconds since the last snapshot was written",
            m.journal_snapshot_age.clone(),
        );
        r.register(
            "vworkspace_journal_records_since_snapshot",
            "Records folded since the last snapshot",
            m.journal_since_snapshot.clone(),
        );
        r.register("vworkspace_leader", "1 while this process holds the lease", m.leader.clone());
        r.register(
            "vworkspace_api_unreachable",
            "1 while the API server gives the effector no response (its requests wait, one probes)",
            m.api_unreachable.clone(),
        );
        r.register(
            "vworkspace_writes_fenced",
            "Writes refused, not sent, because this process's lease term had ended, by where the check ran",
            m.writes_fenced.clone(),
        );
        r.register("vworkspace_lease_epoch", "The lease epoch this process last held", m.lease_epoch.clone());
        r.register(
            "vworkspace_events_sent",
            "Events delivered to the control plane (after coalescing)",
            m.events_sent.clone(),
        );
        r.register(
            "vworkspace_events_send_failures",
            "Failed deliveries to the control plane (retried)",
            m.events_failed.clone(),
        );
        r.register(
            "vworkspace_ingest_paused",
            "Times the Operation watch paused because the effector's or the journal's queue was full",
            m.ingest_paused.clone(),
        );
        r.register(
            "vworkspace_ingest_paused_seconds",
            "Time the Operation watch spent paused by backpressure",
            m.ingest_paused_seconds.clone(),
        );
        r.register(
            "vworkspace_operations_waiting",
            "Operations waiting for a slot under --max-active-operations",
            m.operations_waiting.clone(),
        );
        Self { registry: r, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Counts what the signals of one record say.
pub fn on_signals(signals: &[Signal]) {
    let m = get();
    for s in signals {
        match s {
            Signal::Finished(f) => {
                let l = labels(&[("type", &f.op.ty), ("engine", &f.op.engine), ("reason", &f.reason)]);
                m.operations.get_or_create(&l).inc();
                let secs = (f.completed - f.created).num_milliseconds().max(0) as f64 / 1000.0;
                m.operation_duration
                    .get_or_create(&labels(&[("type", &f.op.ty), ("engine", &f.op.engine)]))
                    .observe(secs);
            }
            Signal::Command(c) => {
                m.effector_commands.get_or_create(&labels(&[("action", &c.action), ("result", &c.result)])).inc();
                if c.result == "Error" {
                    m.reconcile_errors.get_or_create(&labels(&[("controller", "operation")])).inc();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    /// The Grafana dashboard in `deploy/grafana/` asks only for metrics this registry serves.
    #[test]
    fn the_dashboard_queries_only_served_metrics() {
        // Families print only children that exist: make one in each (this test binary only).
        let m = super::get();
        let l = vec![("test", "x".to_string())];
        let _ = m.reconcile.get_or_create(&l);
        let _ = m.reconcile_errors.get_or_create(&l);
        let _ = m.workqueue_depth.get_or_create(&l);
        let _ = m.workqueue_queue_duration.get_or_create(&l);
        let _ = m.operations.get_or_create(&l);
        let _ = m.operation_duration.get_or_create(&l);
        let _ = m.effector_commands.get_or_create(&l);
        let text = m.encode();
        let served: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/vworkspace-operator.json");
        let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut checked = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !(word.starts_with("vworkspace_")
                        || word.starts_with("controller_runtime_")
                        || word.starts_with("workqueue_"))
                    {
                        continue;
                    }
                    let base = ["_bucket", "_count", "_sum", "_total"]
                        .iter()
                        .fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
                    assert!(
                        served.contains(&base),
                        "the dashboard asks for {word}, which /metrics does not serve ({served:?})"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 15, "{checked} metric references checked");
    }
}
