//! Command-line surface (DESIGN §5). Subcommands only; each lives in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "vworkspace-operator",
    version,
    about = "Day-2 Operations for application instances, with a replayable core"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: `text`, or `json` lines carrying the span's Operation and trace ID.
    #[arg(long, global = true, value_enum, env = "VW_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every CRD as YAML (`crds/` holds this output).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// The operator: in-cluster, or from KUBECONFIG.
    Run {
        /// Journal directory (the StatefulSet's volume); `memory` keeps no journal.
        #[arg(long, default_value = "/var/lib/vworkspace/journal")]
        journal: String,
        /// Act alone, without the Lease (a single replica you are sure of).
        #[arg(long)]
        no_leader_elect: bool,
        /// Name of the Lease in the pod's namespace (`POD_NAMESPACE`, else `default`).
        #[arg(long, default_value = "vworkspace-operator")]
        lease: String,
        /// Shards (the StatefulSet's replicas): each pod owns the Operations whose target hashes
        /// to its ordinal, with a Lease (`<lease>-shard-<K>`) and a journal of its own.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: u32,
        /// This pod's shard; by default the ordinal at the end of `POD_NAME`.
        #[arg(long)]
        shard_ordinal: Option<u32>,
        /// Operations whose commands run at the same time.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
        max_concurrent: u32,
        /// API attempts per second across all Operations (retries included).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        api_qps: u32,
        /// Attempts allowed above the rate in a burst.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        api_burst: u32,
        /// Backpressure: the Operation watch pauses while more commands than this wait for the
        /// effector, and resumes under half of it.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        max_queued_commands: u64,
        /// At most this many Operations run at once (accepted and not ended, those waiting for
        /// their target included); the rest wait, untouched, in creation order. 0: no cap.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32))]
        max_active_operations: u32,
        /// `/metrics`, `/healthz`, `/readyz` and `/loglevel`; `off` serves none.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: String,
        /// Audit records (JSON lines): a file, or `-` for stdout (logs go to stderr).
        #[arg(long, default_value = "-")]
        audit_log: String,
        /// Records between two snapshots of the folded state (or, when more Operations are held,
        /// one record per Operation: a snapshot costs in proportion to the state).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
        snapshot_every: u64,
        /// Records kept before the newest snapshot (older ones are compacted away).
        #[arg(long, default_value_t = 50_000)]
        journal_retain: u64,
        /// Milliseconds a journal commit waits for more records after the first, so one
        /// flush and fdatasync serves more of them (0: commit at once).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1_000))]
        commit_delay_ms: u64,
        /// Push Operation condition transitions to this control-plane URL (http or https).
        #[arg(long, value_parser = sink_url)]
        event_sink: Option<String>,
        /// Milliseconds transitions gather before a batch is coalesced and sent.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        event_window_ms: u64,
    },
    /// Replay a journal offline with the operator's own fold: timelines, state at a moment,
    /// `--check` for divergence (upgrade safety), and `replay diff A B`.
    #[command(args_conflicts_with_subcommands = true)]
    Replay {
        #[command(subcommand)]
        command: Option<ReplayCommand>,
        #[command(flatten)]
        args: ReplayArgs,
    },
    /// Inspect, verify, export or import a journal (a directory or an export file).
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// The embedded default: a local control plane, the CRDs, the engine simulators and the samples.
    Dev {
        /// Apply the samples, print `kubectl get operations`, and exit.
        #[arg(long)]
        once: bool,
        /// The repository (for tests/controlplane and deploy/samples).
        #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
        repo: PathBuf,
        /// Keep the control plane's state here instead of a temporary directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A journal directory or an export file.
    pub path: Option<PathBuf>,
    /// Only this Operation (NAMESPACE/NAME).
    #[arg(long)]
    pub op: Option<String>,
    /// The state after this seq.
    #[arg(long, conflicts_with = "at")]
    pub until: Option<u64>,
    /// The state at this time (RFC 3339).
    #[arg(long)]
    pub at: Option<String>,
    /// Recompute every command and compare with the recorded outcomes; exit 1 at a divergence.
    #[arg(long)]
    pub check: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also re-emit every Operation's trace to this OTLP/gRPC endpoint (e.g. Jaeger's
    /// http://localhost:4317): the same trace IDs and spans the operator sent live.
    #[arg(long)]
    pub otlp: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
}

#[derive(Subcommand, Debug)]
pub enum ReplayCommand {
    /// Where two journals, or two moments of one (PATH@SEQ), differ.
    Diff {
        a: String,
        b: String,
        /// Only this Operation (NAMESPACE/NAME).
        #[arg(long)]
        op: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// One line per record: seq, time, kind, event, Operation and object.
    Inspect {
        path: PathBuf,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
    /// Check every checksum, the sequence and the snapshots; exit 1 at the first damage.
    Verify { path: PathBuf },
    /// Write a journal directory to one portable export file.
    Export { dir: PathBuf, file: PathBuf },
    /// Load an export file into a new, empty journal directory.
    Import { file: PathBuf, dir: PathBuf },
}

fn sink_url(s: &str) -> Result<String, String> {
    match s.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not an http:// or https:// URL")),
    }
}
