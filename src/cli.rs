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
}
