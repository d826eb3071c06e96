//! Prometheus metrics: one recorder per process, rendered at `/metrics` on each binary's admin
//! listener ([`serve_admin`]), apart from the public one.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
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

/// Drains the histograms' samples into their buckets every few seconds. The recorder keeps
/// every sample until then; without it a process nobody scrapes grows by each request.
async fn upkeep() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        let _ = every.tick().await;
        handle().run_upkeep();
    }
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
        let serve = crate::serve("admin", listener, router, shutdown, drain);
        tokio::select! {
            served = serve => if let Err(e) = served {
                tracing::error!(error = %e, "the admin listener failed");
            },
            () = upkeep() => {}
        }
    }));
    tracing::info!(%addr, "metrics at /metrics, health at /livez and /readyz");
    Ok(addr)
}

/// The admin listener's address from a flag's value: an address, or `off` for none.
pub fn admin_address(value: &str) -> Result<Option<SocketAddr>, String> {
    if value == "off" {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("not an address or `off`: {value}"))
}

/// Counts every request `router` routes, and times it until its response head:
/// `podium_http_requests_total{service, method, route, status, code}` (`code` is the problem's,
/// empty on success) and `podium_http_request_duration_seconds{service, method, route}`. The
/// route is the template (`/v1/quizzes/{quiz_id}`), never the raw path, so ids add no series.
pub fn with_request_metrics<S>(router: Router<S>, service: &'static str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| record_request(service, request, next),
    ))
}

async fn record_request(service: &'static str, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| interned(p.as_str()));
    let response = next.run(request).await;
    let code = response
        .extensions()
        .get::<crate::problem::ProblemCode>()
        .map_or("", |c| c.0);
    metrics::counter!(
        "podium_http_requests_total",
        "service" => service,
        "method" => method,
        "route" => route,
        "status" => interned(response.status().as_str()),
        "code" => code,
    )
    .increment(1);
    metrics::histogram!(
        "podium_http_request_duration_seconds",
        "service" => service,
        "method" => method,
        "route" => route,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: the standard ones by name, any other as `other`, so a client
/// inventing methods adds no series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A label value kept for the life of the process. Route templates and status codes are few,
/// so each is leaked once, and requests after the first label with it without allocating.
fn interned(value: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{LazyLock, PoisonError, RwLock};
    static SEEN: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(RwLock::default);
    if let Some(seen) = SEEN
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(value)
    {
        return seen;
    }
    let mut seen = SEEN.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = seen.get(value) {
        return kept;
    }
    let kept: &'static str = Box::leak(value.into());
    let _ = seen.insert(kept);
    kept
}

/// An admin listener ([`serve_admin`]) a service stops by itself, after its public listener
/// has drained, so probes and scrapes see the whole shutdown.
#[derive(Debug, Default)]
pub struct AdminServer {
    addr: Option<SocketAddr>,
    tasks: tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
}

impl AdminServer {
    /// Serves on `listen`, or nothing when it is `None`.
    pub async fn start(
        listen: Option<SocketAddr>,
        health: &crate::health::Health,
    ) -> std::io::Result<Self> {
        let mut admin = Self::default();
        if let Some(listen) = listen {
            let stop = admin.stop.clone().cancelled_owned();
            admin.addr = Some(serve_admin(listen, health, &admin.tasks, stop).await?);
        }
        Ok(admin)
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{interned, method_label};

    #[test]
    fn a_label_is_kept_once_and_invented_methods_share_one() {
        let route = String::from("/v1/quizzes/{quiz_id}");
        let first = interned(&route);
        let again = interned(&route.clone());
        assert_eq!(first, route);
        assert!(std::ptr::eq(first, again), "the same value is kept once");
        let invented = axum::http::Method::from_bytes(b"BREW").expect("a token");
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
    }
}
