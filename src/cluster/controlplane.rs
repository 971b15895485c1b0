//! Builds (once, cached outside the clone) and runs the Go control plane from `tests/controlplane/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Go is required to build the control plane (tests/controlplane): `go` was not found on PATH; install Go 1.26 or newer"
    )]
    GoMissing,
    #[error("building the control plane failed (exit {code:?}); see the output above")]
    Build { code: Option<i32> },
    #[error("starting {binary}: {source}")]
    Spawn { binary: String, source: std::io::Error },
    #[error("the control plane exited before it was ready; its log: {log}")]
    Exited { log: String },
    #[error("the control plane was not ready within {0:?}; its log: {1}")]
    Timeout(Duration, String),
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: Box<kube::Error> },
    #[error("kubeconfig {path}: {source}")]
    KubeconfigRead { path: String, source: kube::config::KubeconfigError },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running kube-apiserver + etcd, stopped when dropped.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    child: Child,
    /// The binary exits when this pipe closes, so it never outlives its parent.
    stdin: Option<ChildStdin>,
}

/// Builds the binary if the cache lacks it; returns its path.
pub fn build(repo_root: &Path) -> Result<PathBuf> {
    if Command::new("go").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        return Err(Error::GoMissing);
    }
    let script = repo_root.join("tests/controlplane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| Error::Spawn { binary: script.display().to_string(), source })?;
    if !out.status.success() {
        return Err(Error::Build { code: out.status.code() });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim().to_string();
    Ok(PathBuf::from(path))
}

impl ControlPlane {
    /// Starts the binary with its state in `dir` and waits for `READY <kubeconfig>`.
    pub fn start(binary: &Path, dir: &Path, extra: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Spawn { binary: dir.display().to_string(), source })?;
        let log = dir.join("controlplane.log");
        let log_file =
            std::fs::File::create(&log).map_err(|source| Error::Spawn { binary: log.display().to_string(), source })?;
        let mut child = Command::new(binary)
            .arg("--dir")
            .arg(dir)
            .arg("--exit-on-stdin-eof")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|source| Error::Spawn { binary: binary.display().to_string(), source })?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(path) = line.strip_prefix("READY ") {
                    let _ = tx.send(PathBuf::from(path.trim()));
                }
            }
        });
        let timeout = Duration::from_secs(180);
        let started = Instant::now();
        let tail = |log: &Path| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!("{} …\n{}", log.display(), lines[lines.len().saturating_sub(20)..].join("\n"))
        };
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(kubeconfig) => {
                    let stdin = child.stdin.take();
                    return Ok(Self { dir: dir.to_path_buf(), kubeconfig, log, child, stdin });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(_)) = child.try_wait() {
                return Err(Error::Exited { log: tail(&log) });
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                return Err(Error::Timeout(timeout, tail(&log)));
            }
        }
    }

    /// The config of one of the kubeconfig's contexts: `admin`, `alice` or `bob`.
    pub async fn config(&self, context: &str) -> Result<kube::Config> {
        let path = self.kubeconfig.display().to_string();
        let kc = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|source| Error::KubeconfigRead { path: path.clone(), source })?;
        let opts = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
        kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|source| Error::KubeconfigRead { path, source })
    }

    /// A client for one of the kubeconfig's contexts.
    pub async fn client(&self, context: &str) -> Result<kube::Client> {
        let config = self.config(context).await?;
        let path = self.kubeconfig.display().to_string();
        kube::Client::try_from(config).map_err(|source| Error::Kubeconfig { path, source: Box::new(source) })
    }

    /// Closes the control pipe (the binary shuts down cleanly) and waits up to 20 s.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}
