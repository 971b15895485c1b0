//! Command-line surface (DESIGN §5). Subcommands only; each lives in its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "vworkspace-operator",
    version,
    about = "Day-2 Operations for application instances, with a replayable core"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every CRD as YAML (`crds/` holds this output).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
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
