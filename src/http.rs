//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, and `/loglevel` to read or
//! change the log filter at run time. Liveness never depends on the API server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

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

pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/loglevel", get(loglevel_get).put(loglevel_put))
}

/// Binds now (so a taken port is an error at startup) and serves in the background.
pub async fn serve(addr: SocketAddr) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::error!(error = %e, "HTTP endpoint stopped");
        }
    });
    Ok((bound, task))
}
