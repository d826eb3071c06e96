//! Live streams over Server-Sent Events.
//!
//! One [`Feed`] per quiz per instance follows the read model: it is nudged by the projector's
//! change channel (one Redis subscription per quiz) and polls as a safety net, reads the quiz
//! at most once per coalescing interval, and turns what changed into frames on a bounded
//! broadcast channel that every client of the quiz shares. Each client has a small task that
//! forwards frames into a bounded queue; a client too slow for the broadcast skips to the
//! latest state, and one that keeps falling behind is disconnected with a reason.
//!
//! Event ids are `flow × 10^12 + version`: `flow` numbers the question flow (the same on every
//! instance and replay), `version` the read model's changes (0 on flow events). They increase
//! per quiz, and a client that reconnects with `Last-Event-ID` is sent the flow it missed.

mod board;
mod client;
mod feed;
mod presence;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use redis::aio::PubSubSink;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

pub use client::{Resume, StreamOf};
use feed::Feed;
use presence::Presence;

use board::Rank;
use podium_schemas::read_model::ChangeMessage;

use crate::read_model::{ReadModel, Snapshot};
use crate::views::PlayerStanding;

/// The change epoch while no change subscription stands.
const NOT_FOLLOWING: u64 = u64::MAX;

/// Flow numbers are scaled by this in event ids; versions stay below it.
pub const ID_SPAN: u64 = 1_000_000_000_000;

/// The stream settings' defaults, named once for the flags and for [`StreamArgs::default`].
mod defaults {
    pub(super) const TOP: u16 = 10;
    pub(super) const COALESCE_MS: u64 = 50;
    pub(super) const HEARTBEAT_SECONDS: u64 = 15;
    pub(super) const RETRY_MS: u64 = 2000;
    pub(super) const MAX_CONNECTIONS: usize = 10_000;
    pub(super) const CLIENT_BUFFER: u16 = 32;
    pub(super) const MAX_SKIPS: u32 = 3;
    pub(super) const SEND_BUFFER_BYTES: usize = 65_536;
    pub(super) const REPLAY_LIMIT: usize = 32;
}

/// Settings of the live streams, from flags or the environment.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Leaders in each snapshot and leaderboard event.
    #[arg(long = "sse-top", env = "PODIUM_SSE_TOP", default_value_t = defaults::TOP,
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub top: u16,

    /// One read of a quiz (and one leaderboard event) per this many milliseconds on average, in
    /// bursts of two, so a quiz that changes all the time has each change wait at most one
    /// window. At 100 ms, without bursts, the first answers after each question start reached
    /// dashboards 40–70 ms after the polled read did. 0 reads at every change.
    #[arg(
        long = "sse-coalesce-ms",
        env = "PODIUM_SSE_COALESCE_MS",
        default_value_t = defaults::COALESCE_MS
    )]
    pub coalesce_ms: u64,

    /// Comment lines keep idle connections open through proxies.
    #[arg(
        long = "sse-heartbeat-seconds",
        env = "PODIUM_SSE_HEARTBEAT_SECONDS",
        default_value_t = defaults::HEARTBEAT_SECONDS
    )]
    pub heartbeat_seconds: u64,

    /// The reconnection delay suggested to clients (`retry:`).
    #[arg(
        long = "sse-retry-ms",
        env = "PODIUM_SSE_RETRY_MS",
        default_value_t = defaults::RETRY_MS
    )]
    pub retry_ms: u64,

    /// Live streams one instance holds; beyond, 503 with Retry-After.
    #[arg(
        long = "sse-max-connections",
        env = "PODIUM_SSE_MAX_CONNECTIONS",
        default_value_t = defaults::MAX_CONNECTIONS
    )]
    pub max_connections: usize,

    /// Frames a client may fall behind the quiz before it skips to the latest state.
    #[arg(long = "sse-client-buffer", env = "PODIUM_SSE_CLIENT_BUFFER", default_value_t = defaults::CLIENT_BUFFER,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub client_buffer: u16,

    /// Skips to the latest state a client may need before it is disconnected as too slow.
    #[arg(
        long = "sse-max-skips",
        env = "PODIUM_SSE_MAX_SKIPS",
        default_value_t = defaults::MAX_SKIPS
    )]
    pub max_skips: u32,

    /// Kernel send buffer of each connection, in bytes (0: the kernel's own, which grows to
    /// 4 MiB for a client that stops reading).
    #[arg(
        long = "sse-send-buffer-bytes",
        env = "PODIUM_SSE_SEND_BUFFER_BYTES",
        default_value_t = defaults::SEND_BUFFER_BYTES
    )]
    pub send_buffer_bytes: usize,

    /// Missed question-flow events replayed on reconnection; a longer gap gets a fresh
    /// snapshot marked as a resync instead.
    #[arg(
        long = "sse-replay-limit",
        env = "PODIUM_SSE_REPLAY_LIMIT",
        default_value_t = defaults::REPLAY_LIMIT
    )]
    pub replay_limit: usize,
}

impl Default for StreamArgs {
    fn default() -> Self {
        Self {
            top: defaults::TOP,
            coalesce_ms: defaults::COALESCE_MS,
            heartbeat_seconds: defaults::HEARTBEAT_SECONDS,
            retry_ms: defaults::RETRY_MS,
            max_connections: defaults::MAX_CONNECTIONS,
            client_buffer: defaults::CLIENT_BUFFER,
            max_skips: defaults::MAX_SKIPS,
            send_buffer_bytes: defaults::SEND_BUFFER_BYTES,
            replay_limit: defaults::REPLAY_LIMIT,
        }
    }
}

impl StreamArgs {
    fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_seconds.max(1))
    }
    fn retry(&self) -> Duration {
        Duration::from_millis(self.retry_ms)
    }
}

/// Every live stream of one instance.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    read_model: ReadModel,
    settings: StreamArgs,
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    upstream: tokio::sync::Mutex<Option<PubSubSink>>,
    connections: Arc<Semaphore>,
    presence: Presence,
    /// How many times the change subscription was established, and whether it stands now: a
    /// feed's state passes for current only if it was read under the standing one.
    subscriptions: AtomicU64,
    following: AtomicBool,
    shutdown: CancellationToken,
}

impl Hub {
    /// Starts the upstream subscription task; everything stops when `shutdown` is cancelled.
    pub fn start(read_model: ReadModel, settings: StreamArgs, shutdown: CancellationToken) -> Self {
        let hub = Self {
            inner: Arc::new(Inner {
                presence: Presence::start(read_model.clone(), shutdown.clone()),
                subscriptions: AtomicU64::new(0),
                following: AtomicBool::new(false),
                read_model,
                connections: Arc::new(Semaphore::new(settings.max_connections)),
                settings,
                feeds: Mutex::new(HashMap::new()),
                upstream: tokio::sync::Mutex::new(None),
                shutdown,
            }),
        };
        drop(tokio::spawn(hub.clone().follow_changes()));
        hub
    }

    pub fn settings(&self) -> &StreamArgs {
        &self.inner.settings
    }

    pub fn read_model(&self) -> &ReadModel {
        &self.inner.read_model
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The standing change subscription's number, or `NOT_FOLLOWING`.
    fn change_epoch(&self) -> u64 {
        if self.inner.following.load(Ordering::Acquire) {
            self.inner.subscriptions.load(Ordering::Acquire)
        } else {
            NOT_FOLLOWING
        }
    }

    /// The quiz's state and top of the leaderboard from its feed, if it is as new as every
    /// change the projector announced: what HTTP reads answer with instead of a Redis read.
    /// `None` for a quiz without a feed, or while the feed has a change to read.
    pub fn cached(&self, quiz_id: &str) -> Option<Arc<Snapshot>> {
        let feed = self.feed(quiz_id)?;
        feed.touch();
        feed.current(self.change_epoch())
    }

    /// A player's standing from the copy of the quiz's board, if the quiz has a feed and the
    /// copy is as new as every change announced; otherwise `None`, and the first such read
    /// starts loading a copy. A quiz without rank reads has no copy.
    pub fn rank(&self, quiz_id: &str, player_id: &str) -> Option<PlayerStanding> {
        let feed = self.feed(quiz_id)?;
        feed.touch();
        match feed.rank(self.change_epoch(), player_id) {
            Rank::Standing(standing) => {
                metrics::counter!("podium_query_rank_reads_total", "from" => "copy").increment(1);
                return Some(standing);
            }
            Rank::NoCopy { load: true } => drop(tokio::spawn(board::load(self.clone(), feed))),
            Rank::NoCopy { load: false } | Rank::NotRanked => {}
        }
        metrics::counter!("podium_query_rank_reads_total", "from" => "redis").increment(1);
        None
    }

    /// Starts a feed for a quiz that HTTP reads found, so the next reads are answered from it.
    /// It follows the quiz's changes, and retires once neither reads nor streams used it for
    /// a while. A quiz nobody reads costs nothing.
    pub fn warm(&self, quiz_id: &str) {
        if self.feed(quiz_id).is_some() {
            return;
        }
        let (feed, receiver) = self.join(quiz_id);
        // Reads hold no receiver; the feed lingers on the touch instead.
        drop(receiver);
        feed.touch();
        feed.nudge();
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.inner.settings.max_connections - self.inner.connections.available_permits()
    }

    /// The quiz's feed, started if needed, and a receiver of its frames. The receiver is
    /// created under the same lock the feed takes to retire, so a feed never retires under
    /// a new client.
    fn join(&self, quiz_id: &str) -> (Arc<Feed>, broadcast::Receiver<Arc<feed::Frame>>) {
        let mut feeds = self
            .inner
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = feeds.get(quiz_id) {
            return (feed.clone(), feed.subscribe());
        }
        let feed = Arc::new(Feed::new(
            quiz_id,
            usize::from(self.inner.settings.client_buffer),
        ));
        let receiver = feed.subscribe();
        let _ = feeds.insert(quiz_id.to_owned(), feed.clone());
        drop(tokio::spawn(feed::run(self.clone(), feed.clone())));
        (feed, receiver)
    }

    /// Removes the feed if no client holds it; returns whether it did.
    fn retire(&self, feed: &Feed) -> bool {
        let mut feeds = self
            .inner
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if feed.receivers() > 0 {
            return false;
        }
        let _ = feeds.remove(feed.quiz_id());
        true
    }

    /// Subscribes to (or leaves) the quiz's change channel; whether it is subscribed now.
    async fn subscribe_changes(&self, quiz_id: &str, subscribe: bool) -> bool {
        let channel = self.inner.read_model.root().changes(quiz_id);
        let mut upstream = self.inner.upstream.lock().await;
        let Some(sink) = upstream.as_mut() else {
            return false;
        };
        let result = if subscribe {
            sink.subscribe(&channel).await
        } else {
            sink.unsubscribe(&channel).await
        };
        match result {
            Ok(()) => subscribe,
            Err(cause) => {
                // The feed's poll still sees every change, only later.
                tracing::warn!(%cause, %channel, "change subscription failed");
                false
            }
        }
    }

    /// Holds the pub/sub connection: routes change messages to feeds, and after a lost
    /// connection resubscribes every feed and nudges them all, since messages may be lost.
    async fn follow_changes(self) {
        use futures::StreamExt;
        let prefix = self.inner.read_model.root().changes("");
        let prefix = prefix.trim_end_matches('}').to_owned();
        while !self.inner.shutdown.is_cancelled() {
            let pubsub = match self.inner.read_model.client().get_async_pubsub().await {
                Ok(pubsub) => pubsub,
                Err(cause) => {
                    tracing::warn!(%cause, "change subscription connection failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (mut sink, mut messages) = pubsub.split();
            for feed in self.feeds() {
                let channel = self.inner.read_model.root().changes(feed.quiz_id());
                feed.set_subscribed(sink.subscribe(channel).await.is_ok());
            }
            *self.inner.upstream.lock().await = Some(sink);
            // A new subscription: states read before it may have missed an announcement.
            let _ = self.inner.subscriptions.fetch_add(1, Ordering::AcqRel);
            self.inner.following.store(true, Ordering::Release);
            for feed in self.feeds() {
                feed.nudge();
            }
            loop {
                tokio::select! {
                    () = self.inner.shutdown.cancelled() => return,
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        let channel = message.get_channel_name();
                        let quiz_id = channel
                            .strip_prefix(prefix.as_str())
                            .and_then(|rest| rest.strip_suffix('}'));
                        if let Some(feed) = quiz_id.and_then(|q| self.feed(q)) {
                            // A change message, or "presence".
                            let payload: String = message.get_payload().unwrap_or_default();
                            match ChangeMessage::parse(&payload) {
                                Some(change) => {
                                    // The copy first: a rank read that sees the version
                                    // announced finds the copy at it.
                                    feed.board().message(&change);
                                    feed.announce(change.version);
                                    feed.changed(change.traceparent);
                                }
                                None => feed.changed(None),
                            }
                        }
                    }
                }
            }
            self.inner.following.store(false, Ordering::Release);
            *self.inner.upstream.lock().await = None;
            tracing::warn!("change subscription lost; reconnecting");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn feeds(&self) -> Vec<Arc<Feed>> {
        let feeds = self
            .inner
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        feeds.values().cloned().collect()
    }

    fn feed(&self, quiz_id: &str) -> Option<Arc<Feed>> {
        let feeds = self
            .inner
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        feeds.get(quiz_id).cloned()
    }
}
