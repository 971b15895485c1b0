//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/loglevel` to read or
//! change the log filter at run time, and `/events?cursor=N`, the event stream as Server-Sent
//! Events from a cursor. Liveness never depends on the API server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use std::convert::Infallible;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use vworkspace_journal::outbox::Outbox;

/// What `/events` streams from: the outbox, and the number of its newest event.
#[derive(Clone)]
pub struct EventSource {
    pub outbox: Outbox,
    pub last: tokio::sync::watch::Receiver<u64>,
}

#[derive(serde::Deserialize)]
struct From {
    /// Events after this one (an event's `cursor`); `Last-Event-ID` works too.
    cursor: Option<u64>,
}

async fn events(State(src): State<Option<EventSource>>, Query(q): Query<From>, headers: HeaderMap) -> Response {
    let Some(src) = src else {
        return (StatusCode::NOT_FOUND, "no event stream: the operator runs without a journal\n").into_response();
    };
    let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let from = q.cursor.or(resumed).unwrap_or(0);
    let stream = futures::stream::unfold((src, from), |(mut src, cursor)| async move {
        loop {
            match src.outbox.read(cursor, 100) {
                Ok(items) if !items.is_empty() => {
                    let next = items.last().map(|(n, _)| *n).unwrap_or(cursor);
                    let out: Vec<Result<sse::Event, Infallible>> = items
                        .into_iter()
                        .filter_map(|(n, bytes)| {
                            let mut e: crate::events::Event = serde_json::from_slice(&bytes).ok()?;
                            e.cursor = n;
                            let data = serde_json::to_string(&e).ok()?;
                            Some(Ok(sse::Event::default().id(n.to_string()).event("transition").data(data)))
                        })
                        .collect();
                    return Some((futures::stream::iter(out), (src, next)));
                }
                Ok(_) => {
                    if src.last.changed().await.is_err() {
                        return None;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "event stream: reading the outbox");
                    return None;
                }
            }
        }
    })
    .flatten();
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Set once the journal is restored and every watched kind has finished its first list.
pub static READY: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

async fn metrics() -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], crate::metrics::get().encode())
}

async fn readyz() -> (StatusCode, &'static str) {
    if READY.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "journal not restored or first relist not done\n")
    }
}

async fn loglevel_get() -> String {
    crate::telemetry::filter().unwrap_or_else(|| "unknown".into()) + "\n"
}

async fn loglevel_put(body: String) -> (StatusCode, String) {
    match crate::telemetry::set_filter(body.trim()) {
        Ok(()) => (StatusCode::OK, format!("log filter is now {}\n", body.trim())),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

pub fn router(events_source: Option<EventSource>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/loglevel", get(loglevel_get).put(loglevel_put))
        .route("/events", get(events))
        .with_state(events_source)
}

/// Binds now (so a taken port is an error at startup) and serves in the background.
pub async fn serve(addr: SocketAddr, events: Option<EventSource>) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(events)).await {
            tracing::error!(error = %e, "HTTP endpoint stopped");
        }
    });
    Ok((bound, task))
}
