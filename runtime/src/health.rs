//! Liveness and readiness. A process is live while it answers at all; it is ready while every
//! dependency it named reports well. A service marks each check as it learns about it (a batch
//! applied, a broker error), so `/readyz` costs no round trip and never hangs on a dead
//! dependency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

/// One named readiness check, cheap to clone and to set.
#[derive(Debug, Clone)]
pub struct Check {
    name: &'static str,
    ok: Arc<AtomicBool>,
    detail: Arc<Mutex<String>>,
}

impl Check {
    /// Marks the check passing.
    pub fn pass(&self) {
        if !self.ok.swap(true, Ordering::Relaxed) {
            tracing::info!(check = self.name, "ready again");
            self.export(true);
        }
    }

    /// `podium_ready{check}`: 1 while the check passes, 0 while it fails, for alerts.
    fn export(&self, ok: bool) {
        metrics::gauge!("podium_ready", "check" => self.name).set(f64::from(u8::from(ok)));
    }

    /// Marks the check failing, with a short reason shown by `/readyz`.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        if self.ok.swap(false, Ordering::Relaxed) {
            tracing::warn!(check = self.name, %reason, "not ready");
            self.export(false);
        }
        *self.detail.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    pub fn is_ok(&self) -> bool {
        self.ok.load(Ordering::Relaxed)
    }
}

/// The readiness checks of one process.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<&'static str, Check>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a check, failing with `initially` until the service first passes it.
    pub fn check(&self, name: &'static str, initially: &str) -> Check {
        let check = Check {
            name,
            ok: Arc::new(AtomicBool::new(false)),
            detail: Arc::new(Mutex::new(initially.to_owned())),
        };
        let _ = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, check.clone());
        check.export(false);
        check
    }

    /// True when every check passes.
    pub fn ready(&self) -> bool {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .all(Check::is_ok)
    }

    /// Every check and its state, as `/readyz` shows them.
    pub fn report(&self) -> serde_json::Value {
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        let entries: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|(name, check)| {
                let state = if check.is_ok() {
                    serde_json::json!({"ok": true})
                } else {
                    let detail = check
                        .detail
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    serde_json::json!({"ok": false, "detail": detail})
                };
                ((*name).to_owned(), state)
            })
            .collect();
        serde_json::json!({"ready": checks.values().all(Check::is_ok), "checks": entries})
    }

    /// `GET /livez` (always 200 while the process serves) and `GET /readyz` (200 when ready,
    /// 503 otherwise, with each check in the body).
    pub fn router(&self) -> Router {
        let health = self.clone();
        Router::new().route("/livez", get(|| async { "ok" })).route(
            "/readyz",
            get(move || {
                let report = health.report();
                let status = if health.ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                std::future::ready((status, axum::Json(report)).into_response())
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let health = Health::new();
        let broker = health.check("broker", "not connected yet");
        let redis = health.check("redis", "not connected yet");
        assert!(!health.ready());
        broker.pass();
        assert!(!health.ready());
        redis.pass();
        assert!(health.ready());
        redis.fail("connection refused");
        assert!(!health.ready());
        let report = health.report();
        assert_eq!(report["checks"]["redis"]["detail"], "connection refused");
        assert_eq!(report["checks"]["broker"]["ok"], true);
    }
}
