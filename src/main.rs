use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;

mod cli;
mod dev;

use cli::{Cli, Command};
use vworkspace_operator::crdgen;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Crds { out_dir: None } => {
            std::io::stdout().write_all(crdgen::render_all()?.as_bytes())?;
        }
        Command::Crds { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, crd) in crdgen::all() {
                let path = dir.join(file);
                std::fs::write(&path, crdgen::to_yaml(&crd)?).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Dev { once, repo, state_dir } => {
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(dev::run(dev::Options { once, repo, state_dir }))?;
        }
    }
    Ok(())
}
