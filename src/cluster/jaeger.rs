//! A real Jaeger (v2, built from Go modules by `tests/tools/build.sh`) on loopback ports,
//! for `dev` and the tracing tests. In-memory storage; it dies with its parent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building Jaeger failed (exit {0:?}); is Go installed? see the output above")]
    Build(Option<i32>),
    #[error("starting Jaeger: {0}")]
    Io(#[from] std::io::Error),
    #[error("Jaeger was not healthy after {0:.1?}; its log: {1}")]
    NotReady(Duration, String),
}

pub struct Jaeger {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub query: SocketAddr,
    pub log: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
}

fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Builds Jaeger if the cache lacks it; returns its path.
pub fn build(repo_root: &Path) -> Result<PathBuf, Error> {
    let out = Command::new("bash")
        .arg(repo_root.join("tests/tools/build.sh"))
        .arg("jaeger")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(Error::Build(out.status.code()));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim()))
}

/// One HTTP/1.0 request on loopback (no chunked replies): `(status, body)`.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<(&str, &[u8])>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some((ctype, b)) = body {
        req.push_str(&format!("Content-Type: {ctype}\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some((_, b)) = body {
        s.write_all(b)?;
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

impl Jaeger {
    /// Starts Jaeger with the repo's loopback config on free ports and waits until healthy. A
    /// free port is released before Jaeger binds it, and another connection can take it
    /// meanwhile: then it starts again on other ports.
    pub fn start(binary: &Path, repo_root: &Path, log: &Path) -> Result<Self, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = [free_port()?, free_port()?, free_port()?, free_port()?, free_port()?];
            match Self::start_on(binary, repo_root, log, ports) {
                Err(Error::NotReady(_, text)) if attempt < 3 && super::port_taken(&text) => continue,
                done => return done,
            }
        }
    }

    /// Starts it on these ports: OTLP gRPC, OTLP HTTP, query HTTP, query gRPC, health. Fails
    /// at once when one is taken.
    pub fn start_on(binary: &Path, repo_root: &Path, log: &Path, ports: [SocketAddr; 5]) -> Result<Self, Error> {
        let [otlp_grpc, otlp_http, query, query_grpc, health] = ports;
        let log_file = std::fs::File::create(log)?;
        // bash waits for stdin to close, then stops Jaeger: it never outlives the parent.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(r#""$0" --config "$1" & pid=$!; cat > /dev/null; kill -TERM $pid; wait $pid"#)
            .arg(binary)
            .arg(repo_root.join("tests/tools/jaeger/config.yaml"))
            .env("JAEGER_OTLP_GRPC", otlp_grpc.to_string())
            .env("JAEGER_OTLP_HTTP", otlp_http.to_string())
            .env("JAEGER_QUERY_HTTP", query.to_string())
            .env("JAEGER_QUERY_GRPC", query_grpc.to_string())
            .env("JAEGER_HEALTH", health.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .spawn()?;
        let stdin = child.stdin.take();
        let timeout = Duration::from_secs(60);
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = http(query, "GET", "/api/services", None) {
                return Ok(Self { otlp_grpc, otlp_http, query, log: log.to_path_buf(), child, stdin });
            }
            // Jaeger exits when it cannot bind; bash then waits on stdin, so look at the log too.
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if started.elapsed() > timeout || matches!(child.try_wait(), Ok(Some(_))) || super::port_taken(&text) {
                drop(stdin);
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::NotReady(started.elapsed(), text));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn ui_url(&self) -> String {
        format!("http://{}", self.query)
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
