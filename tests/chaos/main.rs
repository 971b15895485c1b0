//! The chaos suite: faults injected into a real API server, its etcd, the network between it and
//! the operator (a proxy), the operator process and its journal, under a mixed load of
//! Operations. After each scenario every invariant of `invariants.rs` must hold.
//!
//! `cargo test --test chaos` runs the short mode; `VW_CHAOS=long` the long one. Scenarios run
//! one at a time (each has a control plane of its own, and the machine has two cores).

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod invariants;
mod load;
mod operator;
mod proxy;
mod scenarios;

use std::time::Duration;

use cluster::Cluster;
use invariants::{Report, TerminalWatch};
use operator::Operator;
use proxy::Proxy;
use support::receiver::Receiver;
use vworkspace_operator::sim;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn long() -> bool {
    std::env::var("VW_CHAOS").is_ok_and(|v| v == "long")
}

/// Iterations: the short mode's count in CI, the long mode's otherwise.
pub fn iterations(short: usize, long_mode: usize) -> usize {
    if long() { long_mode } else { short }
}

/// Everything a scenario runs against, torn down when dropped.
pub struct Rig {
    pub cluster: Cluster,
    pub proxy: Proxy,
    pub receiver: Receiver,
    pub ns: String,
    pub watch: TerminalWatch,
    pub dir: tempfile::TempDir,
    sims: tokio::task::JoinHandle<()>,
    apps: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.sims.abort();
        self.apps.abort();
        // `VW_CHAOS_KEEP=1` keeps the journals and logs of a run to replay them.
        if std::env::var("VW_CHAOS_KEEP").is_ok() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("chaos: kept {}", dir.keep().display());
        }
    }
}

impl Rig {
    /// A control plane (`cp_extra`: its flags), the simulators, a proxy and an event receiver.
    pub async fn new(prefix: &str, cp_extra: &[&str]) -> Rig {
        let cluster = Cluster::start(cp_extra).await;
        let client = cluster.client.clone();
        let ns = load::namespace(&client, prefix).await;
        let proxy = Proxy::start(cluster.upstream(), &cluster.pki()).await;
        let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Default::default(), Default::default());
        let sims = tokio::spawn(async move {
            let _ = sim::run(client, sim::Options { tick: Duration::from_millis(250), instant: false }).await;
        });
        let client = cluster.client.clone();
        let apps = tokio::spawn(async move {
            let _ = sim::app::run(client, Duration::from_millis(200)).await;
        });
        let watch = TerminalWatch::start(&cluster.client, &ns);
        let dir = tempfile::Builder::new().prefix("vw-chaos-").tempdir().unwrap();
        Rig { cluster, proxy, receiver, ns, watch, dir, sims, apps }
    }

    /// A rig and one operator (no leader election) journaling into `<dir>/journal`.
    pub async fn single(prefix: &str, cp_extra: &[&str]) -> (Rig, Operator) {
        let rig = Rig::new(prefix, cp_extra).await;
        let op = rig.operator(&rig.proxy, "operator", &rig.dir.path().join("journal"), &["--no-leader-elect"]);
        (rig, op)
    }

    /// An operator process whose API traffic goes through `proxy`, journaling into `journal`.
    pub fn operator(&self, proxy: &Proxy, name: &str, journal: &std::path::Path, args: &[&str]) -> Operator {
        self.operator_with(proxy, name, journal, args, &[])
    }

    pub fn operator_with(
        &self,
        proxy: &Proxy,
        name: &str,
        journal: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let kubeconfig = self.cluster.kubeconfig_via(proxy.addr, &format!("kubeconfig-{name}"));
        let sink = format!("http://{}/v1/events", self.receiver.addr);
        let mut all = vec!["--event-sink", &sink, "--event-window-ms", "200"];
        all.extend_from_slice(args);
        Operator::spawn(&kubeconfig, journal, &self.dir.path().join(format!("{name}.log")), &all, env)
    }

    pub async fn settle(&self, planned: &[load::Planned], within: Duration) -> Report {
        invariants::settle(&self.cluster.client, &self.ns, planned, &self.watch, &self.receiver, within).await
    }
}

/// A small deterministic generator for kill moments, seeded from the clock and printed, so a
/// failing run can be repeated with `VW_CHAOS_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn new(scenario: &str) -> Rng {
        let seed = std::env::var("VW_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("chaos {scenario}: VW_CHAOS_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One line per scenario, the row of `docs/reliability.md`'s table.
pub fn row(scenario: &str, iterations: usize, faults: usize, r: &Report, extra: &str) {
    let line = format!(
        "CHAOS {scenario}: mode={} iterations={iterations} faults={faults} operations={} lost={} duplicate_children={} violations={} {extra}",
        if long() { "long" } else { "short" },
        r.ops,
        r.lost.len(),
        r.duplicates.len(),
        r.violations(),
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("VW_CHAOS_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        let _ = writeln!(f, "{line}");
    }
}
