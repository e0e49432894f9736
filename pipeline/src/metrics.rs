//! Prometheus metrics: the recorder and the `:2112` endpoint (`/metrics`, `/healthz`,
//! `/livez`); the names and counters themselves are `nightjar_event::metrics`, re-exported here.
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

pub use nightjar_event::metrics::*;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Installs the global Prometheus recorder (once per process).
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| MetricsError::Install(e.to_string()))?;
    describe();
    init_event_series();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let up = handle.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(5));
        loop {
            t.tick().await;
            up.run_upkeep();
        }
    });
    Ok(handle)
}

/// Health of the agent as `/healthz` reports it.
pub type HealthFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Connections served at once; beyond, a new connection is closed at once (and counted in
/// `nightjar_stage_dropped_total{stage="metrics_http",reason="too_many_connections"}`).
pub const MAX_CONNECTIONS: usize = 128;
/// A request's headers must arrive within this (also the longest idle keep-alive).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection, however it behaves.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds `addr` and serves `/metrics`, `/healthz` and `/livez` until the task is dropped.
/// Returns the bound address (useful with port 0). Slow or idle clients are cut off
/// ([`HEADER_TIMEOUT`], [`CONNECTION_TIMEOUT`]) and at most [`MAX_CONNECTIONS`] are served,
/// so half-open connections cannot exhaust the agent's file descriptors.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    health: HealthFn,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| MetricsError::Bind { addr, source })?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                count_stage_drop("metrics_http", "too_many_connections", 1);
                drop(stream);
                continue;
            };
            let handle = handle.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    let health = health.clone();
                    async move { Ok::<_, Infallible>(route(&req, &handle, &health)) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(16 << 10)
                    .serve_connection(TokioIo::new(stream), svc);
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection ended with an error"),
                    Err(_) => tracing::debug!("metrics connection closed: open too long"),
                    Ok(Ok(())) => {}
                }
            });
        }
    });
    Ok((bound, task))
}

fn route(req: &Request<hyper::body::Incoming>, handle: &PrometheusHandle, health: &HealthFn) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
        r
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut body = handle.render();
            nightjar_event::overhead::render(&mut body);
            text(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        // Liveness: the process serves, whatever its sinks and sensor say (a SIEM outage
        // must not make the kubelet restart the agent and lose its memory buffers).
        "/livez" => text(StatusCode::OK, "text/plain", "alive\n".into()),
        "/healthz" => match health() {
            Ok(()) => text(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("unhealthy: {why}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "try /metrics, /healthz or /livez\n".into()),
    }
}
