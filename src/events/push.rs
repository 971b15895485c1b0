//! Push mode: coalesced JSON batches POSTed to the control plane. The outbox is the queue
//! (bounded by `Options::keep`); a sink's cursor moves only after a 2xx, so delivery is
//! at-least-once across restarts, and the operator keeps working while the sink is down.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::watch;
use vworkspace_journal::outbox::Outbox;

use super::{Event, SCHEMA, coalesce};

#[derive(Clone, Debug)]
pub struct Options {
    pub url: String,
    /// Names the sink's cursor in the outbox.
    pub sink: String,
    /// How long transitions gather before a batch leaves (coalescing window).
    pub window: Duration,
    pub batch: usize,
    pub backoff_max: Duration,
    /// Events kept for a sink that is down; older ones are dropped (and counted).
    pub keep: u64,
}

impl Options {
    pub fn new(url: String) -> Self {
        Self {
            url,
            sink: "control-plane".into(),
            window: Duration::from_millis(500),
            batch: 500,
            backoff_max: Duration::from_secs(30),
            keep: 1_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("event sink {url}: {why}")]
    Send { url: String, why: String },
    #[error("outbox: {0}")]
    Outbox(#[from] vworkspace_journal::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Send { .. } => "sink",
            Error::Outbox(_) => "journal",
        }
    }
}

type Http = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

fn client() -> Result<Http, rustls::Error> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(rustls::crypto::ring::default_provider()) {
        Ok(b) => b,
        // No system roots: plain http still works; https then fails with a clear message.
        Err(e) => {
            tracing::warn!(error = %e, "event sink: no system TLS roots; https sinks will be refused");
            let config = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    Ok(Client::builder(TokioExecutor::new()).build(builder.https_or_http().enable_http1().build()))
}

async fn post(http: &Http, url: &str, body: Vec<u8>) -> Result<(), Error> {
    let err = |why: String| Error::Send { url: url.to_string(), why };
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| err(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), http.request(req))
        .await
        .map_err(|_| err("no answer in 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Err(err(format!("HTTP {status}: {}", String::from_utf8_lossy(&text).chars().take(200).collect::<String>())))
}

/// One batch: what is after the cursor, coalesced. None when there is nothing to send.
pub fn next_batch(outbox: &Outbox, sink: &str, limit: usize) -> Result<Option<(u64, Vec<Event>)>, Error> {
    let items = outbox.read(outbox.cursor(sink)?, limit)?;
    let Some(last) = items.last().map(|(n, _)| *n) else { return Ok(None) };
    let mut events = Vec::with_capacity(items.len());
    for (n, bytes) in items {
        match serde_json::from_slice::<Event>(&bytes) {
            Ok(mut e) => {
                e.cursor = n;
                events.push(e);
            }
            // Written by this code, so only damage gets here: skip it rather than block the sink.
            Err(e) => tracing::error!(event = n, error = %e, "outbox event does not decode; skipped"),
        }
    }
    Ok(Some((last, coalesce(events))))
}

/// Runs until the process stops. `last` changes whenever events are added.
pub async fn run(outbox: Outbox, mut last: watch::Receiver<u64>, opts: Options) {
    let http = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "event sink: no TLS configuration; events are kept in the outbox");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    tracing::info!(sink = %opts.url, cursor = outbox.cursor(&opts.sink).unwrap_or(0), "pushing events");
    loop {
        let batch = match next_batch(&outbox, &opts.sink, opts.batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, category = e.category(), "event sink: reading the outbox");
                tokio::time::sleep(opts.backoff_max).await;
                continue;
            }
        };
        let Some((upto, events)) = batch else {
            if last.changed().await.is_err() {
                return;
            }
            // Let the transitions of a burst gather, then send them as one coalesced batch.
            tokio::time::sleep(opts.window).await;
            continue;
        };
        tracing::debug!(upto, events = events.len(), sink = %opts.url, "sending a batch of events");
        let body = json!({ "schema": SCHEMA, "events": events });
        match post(&http, &opts.url, serde_json::to_vec(&body).unwrap_or_default()).await {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                crate::metrics::get().events_sent.inc_by(events.len() as u64);
                // Delivered events stay (up to `keep`) for pulls from older cursors.
                if let Err(e) = outbox.ack(&opts.sink, upto).and_then(|_| outbox.trim(0, opts.keep).map(|_| ())) {
                    tracing::error!(error = %e, "event sink: recording the cursor");
                }
            }
            Err(e) => {
                crate::metrics::get().events_failed.inc();
                tracing::warn!(error = %e, category = e.category(), retry_in = ?backoff, "event sink unreachable; events stay in the outbox");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(opts.backoff_max);
            }
        }
    }
}
