use std::io::Write;

use anyhow::Context;
use clap::Parser;

mod cli;

use cli::{Cli, Command};
use vworkspace_operator::crdgen;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    }
    Ok(())
}
