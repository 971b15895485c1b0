//! A control plane of the chaos suite's own: restartable on the same port and state (its etcd
//! data, certificates and tokens survive), with etcd reachable for compaction.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use vworkspace_operator::cluster::controlplane::{self, ControlPlane};
use vworkspace_operator::cluster::{self, install};

use crate::support;

pub struct Cluster {
    pub client: kube::Client,
    pub port: u16,
    cp: Option<ControlPlane>,
    binary: PathBuf,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a control plane with extra controlplane flags (`--` then kube-apiserver flags).
    pub async fn start(extra: &[&str]) -> Cluster {
        let binary =
            tokio::task::spawn_blocking(|| controlplane::build(&support::repo()).expect("build the control plane"))
                .await
                .unwrap();
        let dir = tempfile::Builder::new().prefix("vw-chaos-cp-").tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // A free port is released before kube-apiserver binds it, and another process's
        // connection can take it meanwhile (seen once in CI): try another port then.
        let mut attempt = 0;
        let (cp, port) = loop {
            attempt += 1;
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            match try_launch(&binary, dir.path(), port, &extra).await {
                Ok(cp) => break (cp, port),
                Err(e) if attempt < 3 && cluster::port_taken(&e.to_string()) => continue,
                Err(e) => panic!("start the chaos control plane: {e:?}"),
            }
        };
        let client = cp.client("admin").await.unwrap();
        install::install_all(&client, &support::repo()).await.expect("install the CRDs");
        Cluster { client, port, cp: Some(cp), binary, extra, dir }
    }

    /// Stops kube-apiserver and its etcd (the whole process), then starts them again.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    pub async fn stop(&mut self) {
        if let Some(mut cp) = self.cp.take() {
            tokio::task::spawn_blocking(move || cp.stop()).await.unwrap();
        }
    }

    pub async fn resume(&mut self) {
        let cp = launch(&self.binary, self.dir.path(), self.port, &self.extra).await;
        self.client = cp.client("admin").await.unwrap();
        self.cp = Some(cp);
    }

    pub fn upstream(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubeconfig whose server is `proxy` (it serves the API server's own certificate).
    pub fn kubeconfig_via(&self, proxy: SocketAddr, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let out = self.dir.path().join(name);
        std::fs::write(&out, text.replace(&format!("https://127.0.0.1:{}", self.port), &format!("https://{proxy}")))
            .unwrap();
        out
    }

    pub fn etcd_url(&self) -> String {
        let env: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("env.json")).unwrap()).unwrap();
        env["CONTROLPLANE_ETCD_URL"].as_str().unwrap().to_string()
    }

    /// Compacts etcd up to its current revision, through its JSON gateway: every watch that
    /// resumes from an older resourceVersion gets `410 Gone`.
    pub async fn compact(&self) -> i64 {
        let url = self.etcd_url();
        let range =
            gateway::post(&format!("{url}/v3/kv/range"), r#"{"key":"AA==","range_end":"AA==","count_only":true}"#)
                .await;
        let v: serde_json::Value = serde_json::from_str(&range).unwrap();
        let rev: i64 = v["header"]["revision"].as_str().unwrap().parse().unwrap();
        gateway::post(&format!("{url}/v3/kv/compaction"), &format!(r#"{{"revision":"{rev}","physical":true}}"#)).await;
        rev
    }
}

async fn launch(binary: &Path, dir: &Path, port: u16, extra: &[String]) -> ControlPlane {
    try_launch(binary, dir, port, extra).await.expect("start the chaos control plane")
}

async fn try_launch(
    binary: &Path,
    dir: &Path,
    port: u16,
    extra: &[String],
) -> Result<ControlPlane, controlplane::Error> {
    let (binary, dir) = (binary.to_path_buf(), dir.to_path_buf());
    let mut args = vec!["--port".to_string(), port.to_string()];
    args.extend(extra.iter().cloned());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ControlPlane::start(&binary, &dir, &args)
    })
    .await
    .unwrap()
}

/// Plain HTTP/1.0 POSTs to etcd's JSON gateway (1.0: never chunked), without another client crate.
mod gateway {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub async fn post(url: &str, body: &str) -> String {
        let rest = url.strip_prefix("http://").expect("etcd serves plain HTTP here");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!(
            "POST /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        assert!(head.lines().next().unwrap_or_default().contains(" 200 "), "etcd /{path}: {head}\n{body}");
        body.to_string()
    }
}
