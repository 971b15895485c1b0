//! A TLS-terminating proxy in front of the API server, one per operator process. It sees each
//! HTTP/1.1 request, so it can count them, log every write, delay or cut watch streams, count
//! the `410 Gone` errors the server sends on them, and play an unreachable server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// One write the operator sent: when, and the request line.
#[derive(Clone, Debug)]
pub struct Write {
    pub at: Instant,
    pub method: String,
    pub path: String,
}

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    /// Connections dropped at once while the server plays unreachable.
    pub refused: AtomicU64,
    /// `410` Status objects seen in watch streams or as response codes.
    pub gone: AtomicU64,
    pub watches: AtomicU64,
    pub writes: Mutex<Vec<Write>>,
}

#[derive(Clone, Copy, Debug)]
enum Cut {
    Watches,
    All,
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    unreachable: Arc<AtomicBool>,
    watch_delay_ms: Arc<AtomicU64>,
    /// While set, watch requests are answered by closing the connection.
    hold_watches: Arc<AtomicBool>,
    cut: broadcast::Sender<Cut>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: SocketAddr,
    connector: TlsConnector,
    stats: Arc<Stats>,
    unreachable: Arc<AtomicBool>,
    watch_delay_ms: Arc<AtomicU64>,
    hold_watches: Arc<AtomicBool>,
    cut: broadcast::Sender<Cut>,
}

impl Proxy {
    /// Serves with the API server's own certificate (it names 127.0.0.1), from its `pki` dir.
    pub async fn start(upstream: SocketAddr, pki: &Path) -> Proxy {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join("apiserver.crt")).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(pki.join("apiserver.key")).unwrap();
        let server = ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pki.join("ca.crt")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            upstream,
            connector: TlsConnector::from(Arc::new(client)),
            stats: Arc::default(),
            unreachable: Arc::default(),
            watch_delay_ms: Arc::default(),
            hold_watches: Arc::default(),
            cut: cut.clone(),
        });
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                if s.unreachable.load(Ordering::SeqCst) {
                    s.stats.refused.fetch_add(1, Ordering::SeqCst);
                    drop(tcp);
                    continue;
                }
                let (s, acceptor) = (s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        connection(tls, s).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            stats: shared.stats.clone(),
            unreachable: shared.unreachable.clone(),
            watch_delay_ms: shared.watch_delay_ms.clone(),
            hold_watches: shared.hold_watches.clone(),
            cut,
            task,
        }
    }

    /// Drops every open connection and refuses new ones until `reachable`.
    pub fn unreachable(&self) {
        self.unreachable.store(true, Ordering::SeqCst);
        let _ = self.cut.send(Cut::All);
    }

    pub fn reachable(&self) {
        self.unreachable.store(false, Ordering::SeqCst);
    }

    /// Watch events reach the operator this much later than the server sent them.
    pub fn delay_watches(&self, d: Duration) {
        self.watch_delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Ends every open watch; while `hold` is set, new watches are refused too.
    pub fn cut_watches(&self, hold: bool) {
        self.hold_watches.store(hold, Ordering::SeqCst);
        let _ = self.cut.send(Cut::Watches);
    }

    pub fn writes(&self) -> Vec<Write> {
        self.stats.writes.lock().unwrap().clone()
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(client: S, s: Arc<Shared>) {
    let mut cut = s.cut.subscribe();
    let Ok(tcp) = TcpStream::connect(s.upstream).await else { return };
    let name = ServerName::IpAddress(s.upstream.ip().into());
    let Ok(up) = s.connector.connect(name, tcp).await else { return };
    let (cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(up);
    let watch = Arc::new(AtomicBool::new(false));
    let requests = requests(BufReader::new(cr), &mut uw, &s, watch.clone());
    // Server → client, each chunk held back by the watch delay (in order, without adding up).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let (stats, w) = (s.stats.clone(), watch.clone());
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if (w.load(Ordering::SeqCst) && contains(chunk, b"\"code\":410")) || chunk.starts_with(b"HTTP/1.1 410") {
                stats.gone.fetch_add(1, Ordering::SeqCst);
            }
            if tx.send((Instant::now(), chunk.to_vec())).is_err() {
                return;
            }
        }
    };
    let delay = s.watch_delay_ms.clone();
    let w = watch.clone();
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            if w.load(Ordering::SeqCst) {
                let d = Duration::from_millis(delay.load(Ordering::SeqCst));
                tokio::time::sleep_until((at + d).into()).await;
            }
            if cw.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let cuts = async move {
        loop {
            match cut.recv().await {
                Ok(Cut::All) => return,
                Ok(Cut::Watches) if watch.load(Ordering::SeqCst) => return,
                Ok(Cut::Watches) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = async { tokio::join!(read, write) } => {}
        _ = cuts => {}
    }
}

/// Client → server: forwards each request, reading its head to count it and classify it.
async fn requests<R, W>(mut r: BufReader<R>, up: &mut W, s: &Shared, watch: Arc<AtomicBool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let mut head = Vec::new();
        loop {
            let start = head.len();
            match r.read_until(b'\n', &mut head).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if &head[start..] == b"\r\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut line = text.lines().next().unwrap_or_default().split(' ');
        let (method, path) = (line.next().unwrap_or_default().to_string(), line.next().unwrap_or_default().to_string());
        s.stats.requests.fetch_add(1, Ordering::SeqCst);
        if path.contains("watch=true") || path.contains("watch=1") {
            if s.hold_watches.load(Ordering::SeqCst) {
                return;
            }
            s.stats.watches.fetch_add(1, Ordering::SeqCst);
            watch.store(true, Ordering::SeqCst);
        }
        if method != "GET" {
            s.stats.writes.lock().unwrap().push(Write { at: Instant::now(), method, path });
        }
        let length = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<u64>().unwrap_or(0))
            })
            .unwrap_or(0);
        if up.write_all(&head).await.is_err() {
            return;
        }
        if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            // Not sent by kube's client; pass the rest through unparsed.
            let _ = tokio::io::copy(&mut r, up).await;
            return;
        }
        let mut body = (&mut r).take(length);
        if tokio::io::copy(&mut body, up).await.is_err() {
            return;
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
