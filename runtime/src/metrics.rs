//! Prometheus metrics: one recorder per process, rendered at `/metrics` by whichever server the
//! binary runs (the APIs' own routers, or [`serve_admin`] for the projector).

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Several services in one process (tests)
/// share it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test harness's) may be installed already; ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// A router serving `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    let handle = handle();
    Router::new().route("/metrics", get(move || std::future::ready(handle.render())))
}

/// Serves `/metrics`, `/livez` and `/readyz` on `listen` until `shutdown` resolves, as a task
/// of `tasks`; returns the bound address.
pub async fn serve_admin(
    listen: SocketAddr,
    health: &crate::health::Health,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let router = router().merge(health.router());
    drop(tasks.spawn(async move {
        // Scrapes and probes are short: a second is all they get once the process stops.
        let drain = std::time::Duration::from_secs(1);
        if let Err(e) = crate::serve("admin", listener, router, shutdown, drain).await {
            tracing::error!(error = %e, "the admin listener failed");
        }
    }));
    tracing::info!(%addr, "metrics at /metrics, health at /livez and /readyz");
    Ok(addr)
}
