//! The operator as a separate process, as it runs in a pod: killed with real signals, restarted
//! on the same journal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Operator {
    pub journal: PathBuf,
    pub log: PathBuf,
    pub http: SocketAddr,
    kubeconfig: PathBuf,
    /// The log's length when this process started (its own lines follow).
    log_from: usize,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Operator {
    /// `args` follow `run --journal J --http-addr A`, e.g. `--no-leader-elect`.
    pub fn spawn(kubeconfig: &Path, journal: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Operator {
        let mut op = Operator {
            journal: journal.to_path_buf(),
            log: log.to_path_buf(),
            http: free_addr(),
            kubeconfig: kubeconfig.to_path_buf(),
            log_from: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
        };
        op.start();
        op
    }

    /// Sets an environment variable for the next start (a failpoint, say).
    pub fn env(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn start(&mut self) {
        self.start_on(free_addr());
    }

    /// Starts it serving HTTP on `http` (a test can hand it a taken port).
    pub fn start_on(&mut self, http: SocketAddr) {
        self.http = http;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        self.log_from = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
            .args(["run", "--audit-log"])
            .arg(self.log.with_extension("audit.jsonl"))
            .arg("--http-addr")
            .arg(self.http.to_string())
            .arg("--journal")
            .arg(&self.journal)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KUBECONFIG", &self.kubeconfig)
            // `VW_CHAOS_LOG` sets the operator's RUST_LOG (say `info,vworkspace_operator::dispatch=debug`).
            .env("RUST_LOG", std::env::var("VW_CHAOS_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the operator binary");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{sig} {}", self.pid());
    }

    /// Whether it has exited on its own (a crash), with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for `/readyz` to answer 200. The HTTP port is released before the operator binds
    /// it, and another connection can take it meanwhile: then it starts again on another.
    pub async fn ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut attempts = 1;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                if attempts < 3 && self.lost_its_port() {
                    attempts += 1;
                    self.start();
                    continue;
                }
                return false;
            }
            if get(self.http, "/readyz").await.is_some_and(|(code, _)| code == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn metrics(&self) -> String {
        get(self.http, "/metrics").await.map(|(_, b)| b).unwrap_or_default()
    }

    /// Whether this process's own log lines say its HTTP port was taken.
    fn lost_its_port(&self) -> bool {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let own = String::from_utf8_lossy(text.get(self.log_from..).unwrap_or_default());
        vworkspace_operator::cluster::port_taken(&own)
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.ok()?.ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// `journal verify` on a journal directory: its exit code and what it printed.
pub fn verify(journal: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vworkspace-operator"))
        .args(["journal", "verify"])
        .arg(journal)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}
