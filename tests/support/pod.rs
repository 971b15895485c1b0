//! The operator binary run as a pod runs it: in-cluster configuration only (the ServiceAccount
//! token and CA at their fixed paths, `KUBERNETES_SERVICE_HOST`/`PORT`, `POD_NAME`), with a token
//! the real API server issued for the operator's ServiceAccount, so it has exactly the chart's
//! RBAC. The files are mounted in a private mount namespace (`unshare -m`, a tmpfs over /run),
//! so the machine's own /run is untouched.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine;

pub struct PodEnv {
    /// token, ca.crt and namespace, copied into each pod's /run/secrets/….
    sa: tempfile::TempDir,
    pub token: String,
    pub host: String,
    pub port: u16,
}

impl PodEnv {
    /// Installs the plain manifests (the ServiceAccount and its RBAC) and issues a token.
    pub fn new() -> Self {
        super::install_manifests();
        let token = super::ok(&super::kubectl(
            "admin",
            &["create", "token", "vworkspace-operator", "-n", "vworkspace-system", "--duration", "1h"],
            None,
        ));
        let conf = kube::config::Kubeconfig::read_from(super::kubeconfig()).unwrap();
        let cluster = conf.clusters[0].cluster.clone().unwrap();
        let ca = base64::engine::general_purpose::STANDARD.decode(cluster.certificate_authority_data.unwrap()).unwrap();
        let url: hyper::Uri = cluster.server.unwrap().parse().unwrap();
        let sa = tempfile::tempdir().unwrap();
        std::fs::write(sa.path().join("token"), token.trim()).unwrap();
        std::fs::write(sa.path().join("ca.crt"), ca).unwrap();
        std::fs::write(sa.path().join("namespace"), "vworkspace-system").unwrap();
        Self {
            sa,
            token: token.trim().to_string(),
            host: url.host().unwrap().to_string(),
            port: url.port_u16().unwrap(),
        }
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.sa.path().join("ca.crt")
    }

    /// `vworkspace-operator run ARGS` as pod `pod` of the StatefulSet, stderr to `log`.
    pub fn spawn(&self, pod: &str, args: &[&str], log: &Path) -> Child {
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
             cp {sa}/token {sa}/ca.crt {sa}/namespace /run/secrets/kubernetes.io/serviceaccount/ && \
             exec {bin} run \"$@\"",
            sa = self.sa.path().display(),
            bin = env!("CARGO_BIN_EXE_vworkspace-operator"),
        );
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script, "sh"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBERNETES_SERVICE_HOST", &self.host)
            .env("KUBERNETES_SERVICE_PORT", self.port.to_string())
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", "vworkspace-system")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap()))
            .spawn()
            .expect("unshare")
    }
}

/// SIGTERM, then waits for the process to exit (a graceful stop: drain, snapshot, release).
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    child.wait().unwrap()
}
