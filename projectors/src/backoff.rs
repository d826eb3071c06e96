//! Pacing for work that must succeed before a projector moves on: never skipped, retried from
//! 50 ms, doubling up to 5 s.

use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(50))
    }

    /// Logs why `what` failed, waits, and lengthens the next wait.
    pub(crate) async fn wait(&mut self, what: &str, error: &(dyn std::fmt::Display + Sync)) {
        self.note(what, error);
        self.pause().await;
    }

    /// Logs why `what` failed, without waiting.
    pub(crate) fn note(&self, what: &str, error: &(dyn std::fmt::Display + Sync)) {
        tracing::warn!(%error, retry_in = ?self.0, "{what} failed; retrying");
    }

    /// Waits, and lengthens the next wait.
    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}
