//! A live stream read as a browser's `EventSource` reads it (reqwest + eventsource-stream).

use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

type Events = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A live stream as a browser's `EventSource` would read it.
pub struct Sse {
    events: Events,
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse").finish_non_exhaustive()
    }
}

impl Sse {
    /// Opens `url`; an error response is returned as its status and problem document.
    pub async fn open(
        url: &str,
        last_event_id: Option<&str>,
    ) -> Result<std::result::Result<Self, (u16, Value)>> {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            let retry_after = response.headers().get("retry-after").is_some();
            let mut body: Value = response.json().await.unwrap_or(Value::Null);
            body["retry_after_present"] = json!(retry_after);
            return Ok(Err((status, body)));
        }
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|e| e.map_err(|e| anyhow!("{e}")));
        Ok(Ok(Self {
            events: Box::pin(events),
        }))
    }

    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Result<Self> {
        Self::open(url, last_event_id)
            .await?
            .map_err(|(status, body)| anyhow!("{url}: {status} {body}"))
    }

    /// The next event, or an error if none comes within `within` or the stream ends.
    pub async fn next(&mut self, within: Duration) -> Result<Event> {
        tokio::time::timeout(within, self.events.next())
            .await
            .map_err(|_| anyhow!("no event within {within:?}"))?
            .ok_or_else(|| anyhow!("the stream ended"))?
    }

    /// Events up to and including the first named `name`.
    pub async fn until(&mut self, name: &str, within: Duration) -> Result<Vec<Event>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self
                .next(left)
                .await
                .with_context(|| format!("waiting for {name} after {:?}", names(&seen)))?;
            let done = event.event == name;
            seen.push(event);
            if done {
                return Ok(seen);
            }
        }
    }
}

pub fn names(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event.clone()).collect()
}
