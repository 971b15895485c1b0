//! The last checks before a write leaves the process: the effector's client refuses a mutating
//! request while this process holds no valid lease term. The dispatcher checks the term before
//! each attempt, but a process paused (SIGSTOP, a stalled node) between that check and the send
//! wrote after the standby had taken over: the chaos suite's split-brain scenario caught a
//! status patch doing so, and later an Event whose check passed before the pause while its
//! connection was still being set up. So the term is checked twice more: when the request is
//! handed to the client (`Fenced`), and on hyper's connection task when it first reads the
//! request's body (`Gate`), after any connect and TLS handshake and just before the request
//! is buffered and flushed. The window left runs from that poll until the kernel takes the
//! request's last byte: a body larger than the socket's send buffer finishes when the process
//! wakes.
//! While the server is unreachable, requests first wait their turn (`outage`), and the term is
//! checked after that wait.

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use http_body::{Frame, SizeHint};
use kube::client::{Body, ConfigExt};

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::outage::Outage;
use crate::leader::{self, Leadership};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const REFUSED: &str = "not sent: this process's lease term ended before the write left";

#[derive(Clone)]
struct Fenced {
    inner: kube::Client,
    leadership: Leadership,
    outage: Arc<Outage>,
}

fn mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl tower::Service<Request<Body>> for Fenced {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mutating = mutating(req.method());
        let (client, leadership, outage) = (self.inner.clone(), self.leadership.clone(), self.outage.clone());
        // Checked when the request is about to be sent, not when it was built.
        Box::pin(async move {
            let probe = outage.admit().await;
            if mutating && leader::current(&leadership).is_none() {
                crate::metrics::get().fenced("handed");
                return Err(kube::Error::Service(REFUSED.into()));
            }
            // `send` hands back every HTTP response, error statuses included: an error here
            // means no response came.
            let sent = client.send(req).await;
            if let Err(e) = &sent
                && refused(e)
            {
                // Nothing was sent, so it says nothing of whether the server answers.
                return Err(kube::Error::Service(REFUSED.into()));
            }
            outage.report(sent.is_ok(), probe);
            sent
        })
    }
}

/// Whether `Gate` refused the request (hyper wraps its error twice).
fn refused(e: &kube::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = next {
        if e.is::<Refused>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// `inner`, refusing writes outside a valid term of `leadership`, and holding requests back
/// while `outage` says the server is unreachable.
pub fn client(inner: kube::Client, leadership: Leadership, outage: Arc<Outage>) -> kube::Client {
    let ns = inner.default_namespace().to_string();
    kube::Client::new(Fenced { inner, leadership, outage }, ns)
}

/// The request body of a write: its first poll, on hyper's connection task, checks the term.
/// Reads pass with no check.
pub struct Gate {
    body: Body,
    /// `Some` until the first poll of a write's body.
    term: Option<Leadership>,
}

#[derive(Debug, thiserror::Error)]
#[error("{REFUSED}")]
pub struct Refused;

impl Gate {
    pub fn new(body: Body, leadership: Option<Leadership>) -> Self {
        Self { body, term: leadership }
    }
}

impl http_body::Body for Gate {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(l) = self.term.take()
            && leader::current(&l).is_none()
        {
            crate::metrics::get().fenced("connection");
            return Poll::Ready(Some(Err(Box::new(Refused))));
        }
        Pin::new(&mut self.body).poll_frame(cx).map_err(Into::into)
    }

    // Until the check ran, the body is never "ended": hyper would write the request without
    // polling it. (So would a `Content-Length: 0` header or HTTP/1.0; kube sends neither.)
    fn is_end_stream(&self) -> bool {
        self.term.is_none() && self.body.is_end_stream()
    }

    // An empty write's length stays open, so hyper still polls its body (it sends it chunked).
    fn size_hint(&self) -> SizeHint {
        match self.body.size_hint().exact() {
            Some(0) if self.term.is_some() => SizeHint::default(),
            _ => self.body.size_hint(),
        }
    }
}

/// A client whose every write is `Gate`d, with the layers kube's default client has for
/// reaching the server and authenticating: its base URI, auth (token refresh, exec plugins),
/// extra headers, TLS, and its connect (TCP and TLS), read and write timeouts. Left out on
/// purpose: kube's retry layer, which would send a write again below every check; the
/// dispatcher retries instead, and checks the term before each attempt. HTTP/1 only, as kube's:
/// HTTP/2 would send a request's headers before reading its body.
pub fn gated(config: &kube::Config, leadership: Leadership) -> Result<kube::Client, kube::Error> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let mut connector = hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let stack = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_request(move |req: Request<Body>| {
            let term = mutating(req.method()).then(|| leadership.clone());
            req.map(|body| Gate::new(body, term))
        })
        .map_err(|e: hyper_util::client::legacy::Error| -> BoxError { Box::new(e) })
        .service(hyper);
    Ok(kube::client::ClientBuilder::new(stack, config.default_namespace.clone()).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::Term;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection HTTP server: what it received, answering any request with `{}`.
    async fn server() -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
                let Ok(Ok(n)) = read else { break };
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                    let _ = s.write_all(answer).await;
                    break;
                }
            }
            got
        });
        (url, task)
    }

    async fn send(term: Option<Term>, req: http::Request<Vec<u8>>) -> (Result<String, kube::Error>, String) {
        let (url, received) = server().await;
        let config = kube::Config::new(url.parse().unwrap());
        let (_tx, leadership) = tokio::sync::watch::channel(term);
        let client = gated(&config, leadership).unwrap();
        let result = client.request_text(req).await;
        (result, String::from_utf8_lossy(&received.await.unwrap()).into_owned())
    }

    fn post(body: &[u8]) -> http::Request<Vec<u8>> {
        http::Request::post("/apis/events.k8s.io/v1/namespaces/default/events").body(body.to_vec()).unwrap()
    }

    fn ended() -> Option<Term> {
        Some(Term { epoch: 3, valid_until: tokio::time::Instant::now() - Duration::from_millis(1) })
    }

    fn fenced(check: &'static str) -> u64 {
        crate::metrics::get().writes_fenced.get_or_create(&vec![("check", check.to_string())]).get()
    }

    #[tokio::test]
    async fn a_write_outside_a_term_never_reaches_the_socket() {
        let before = fenced("connection");
        // The gated client alone, without `Fenced`: the connection is made, then the body's
        // first poll refuses, and not one byte of the request is sent.
        for term in [None, ended()] {
            for body in [&b"{\"kind\":\"Event\"}"[..], b""] {
                let (result, received) = send(term, post(body)).await;
                let e = result.expect_err("a write without a term");
                assert!(refused(&e), "{e:?}");
                assert_eq!(received, "", "bytes reached the server");
            }
        }
        let (result, received) =
            send(None, http::Request::delete("/api/v1/namespaces/default/pods/p").body(b"{}".to_vec()).unwrap()).await;
        assert!(result.is_err());
        assert_eq!(received, "");
        // Five refusals, each counted where it happened (other tests here refuse none).
        assert_eq!(fenced("connection") - before, 5);
        let text = crate::metrics::get().encode();
        assert!(text.contains("vworkspace_writes_fenced_total{check=\"connection\"} "), "{text}");
    }

    #[tokio::test]
    async fn reads_pass_without_a_term_and_writes_within_one() {
        let (result, received) = send(None, http::Request::get("/api/v1/namespaces").body(Vec::new()).unwrap()).await;
        assert_eq!(result.unwrap(), "{}");
        assert!(received.starts_with("GET /api/v1/namespaces HTTP/1.1"), "{received}");
        let (result, received) = send(Some(Term::sole()), post(b"{\"kind\":\"Event\"}")).await;
        assert_eq!(result.unwrap(), "{}");
        assert!(received.starts_with("POST /apis/events.k8s.io/v1/namespaces/default/events HTTP/1.1"), "{received}");
        // An empty write goes chunked, so that its body is still polled, and checked.
        let (result, received) = send(Some(Term::sole()), post(b"")).await;
        assert_eq!(result.unwrap(), "{}");
        assert!(received.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{received}");
    }
}
