use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;

mod cli;
mod dev;
mod journal_cli;
mod replay_cli;

use cli::{Cli, Command, JournalCommand};
use vworkspace_operator::crdgen;

// The fold and replay allocate many small JSON nodes: glibc's malloc was a quarter of a replay
// profile, and the static image's musl malloc is slower still.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // mimalloc madvises its arenas for transparent huge pages before main runs, so a 2 MiB page
    // stayed resident while any of it was used: at 10,000 retained Operations RSS was 309 MB with
    // them and 231 MB without (docs/benchmarks.md). MIMALLOC_ALLOW_THP=1 keeps them.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none_or(|v| v != "1") {
        // SAFETY: prctl with integer arguments only; it sets a flag on this process's memory map.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    // The OTLP exporter (when configured) runs on this runtime.
    let telemetry = {
        let _in_runtime = rt.enter();
        vworkspace_operator::telemetry::init(std::io::stderr().is_terminal(), cli.log_format == cli::LogFormat::Json)
    };
    let result = command(cli, &rt);
    drop(telemetry);
    result
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn command(cli: Cli, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
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
        Command::Replay { command: Some(cli::ReplayCommand::Diff { a, b, op, format }), .. } => {
            replay_cli::diff(&a, &b, op.as_deref(), format)?
        }
        Command::Replay { command: None, args } => replay_cli::replay(args)?,
        Command::Journal { command } => match command {
            JournalCommand::Inspect { path, from, limit } => journal_cli::inspect(&path, from, limit)?,
            JournalCommand::Verify { path } => journal_cli::verify(&path)?,
            JournalCommand::Export { dir, file } => journal_cli::export_to(&dir, &file)?,
            JournalCommand::Import { file, dir } => journal_cli::import_from(&file, &dir)?,
        },
        Command::Run {
            journal,
            no_leader_elect,
            lease,
            shards,
            shard_ordinal,
            max_concurrent,
            api_qps,
            api_burst,
            max_queued_commands,
            max_active_operations,
            http_addr,
            audit_log,
            event_sink,
            event_window_ms,
            snapshot_every,
            journal_retain,
            commit_delay_ms,
        } => {
            let http = match http_addr.as_str() {
                "off" => None,
                a => Some(a.parse().with_context(|| format!("--http-addr {a:?} is not HOST:PORT or off"))?),
            };
            if shards > 1 && no_leader_elect {
                anyhow::bail!("--shards {shards} needs leader election: each shard is fenced by its own Lease");
            }
            let shard = match (shard_ordinal, shards) {
                (Some(k), n) => vworkspace_operator::shard::Shard::new(k, n),
                (None, 1) => Ok(vworkspace_operator::shard::Shard::default()),
                (None, n) => vworkspace_operator::shard::Shard::from_pod_name(
                    &std::env::var("POD_NAME").context("--shards > 1 needs --shard-ordinal or POD_NAME")?,
                    n,
                ),
            }
            .context("choosing this pod's shard")?;
            rt.block_on(async {
                let config = kube::Config::infer()
                    .await
                    .context("reading the API server's config (in-cluster or KUBECONFIG)")?;
                let client = kube::Client::try_from(config.clone()).context("connecting to the API server")?;
                let opts = vworkspace_operator::run::Options {
                    journal: (journal != "memory").then(|| std::path::PathBuf::from(&journal)),
                    leader: (!no_leader_elect).then(|| {
                        let ns = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
                        vworkspace_operator::leader::Options::from_env(&ns, &lease, shard)
                    }),
                    limits: vworkspace_operator::dispatch::Limits {
                        concurrency: max_concurrent as usize,
                        rate_per_sec: api_qps,
                        burst: api_burst,
                        ..Default::default()
                    },
                    http,
                    snapshot_every,
                    retain: journal_retain,
                    commit_delay: std::time::Duration::from_millis(commit_delay_ms),
                    audit: Some(audit_log.into()),
                    events: event_sink.map(|url| vworkspace_operator::events::push::Options {
                        window: std::time::Duration::from_millis(event_window_ms),
                        ..vworkspace_operator::events::push::Options::new(url)
                    }),
                    shard,
                    bounds: vworkspace_operator::pressure::Bounds {
                        commands: max_queued_commands as usize,
                        ..Default::default()
                    },
                    max_active: (max_active_operations > 0).then_some(max_active_operations),
                    api: Some(config),
                    ..Default::default()
                };
                vworkspace_operator::run::run_until(client, opts, terminated()).await.context("the operator stopped")
            })?;
        }
        Command::Dev { once, repo, state_dir } => {
            // Its own runtime: every task (watches included) stops before the control plane goes.
            let dev_rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let processes = dev_rt.block_on(dev::run(dev::Options { once, repo, state_dir }));
            drop(dev_rt);
            drop(processes?);
        }
    }
    Ok(())
}
