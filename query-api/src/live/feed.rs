//! One quiz's feed: reads the read model when it changes and broadcasts what changed.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::board::{Board, Rank};
use super::{Hub, ID_SPAN};
use crate::read_model::{Followed, Snapshot};
use crate::reads::MAX_LOBBY;
use crate::views::{FlowEvent, Lobby, flow_since};

/// How often a feed reads the quiz without a nudge: pub/sub may drop a message.
const POLL: Duration = Duration::from_secs(1);
/// While the leaderboard moves, how often a feed reads the standings of its players, for
/// their rank events. A question's close reads them at once, for the players' results.
const STANDINGS_EVERY: Duration = Duration::from_millis(250);
/// How long a feed without clients lingers, so a burst of reconnections finds it warm.
const LINGER: Duration = Duration::from_secs(10);
/// Reads a feed may make back to back before its window paces them: a question's start and
/// the first answer just after it are both read at once, instead of the answer waiting out
/// the rest of the window the start opened.
const BURST: NonZeroU32 = NonZeroU32::MIN.saturating_add(1);

/// Paces a feed's reads of the quiz: one per coalescing window on average, in bursts of up to
/// [`BURST`] (governor's cell rate algorithm). A quiz that changes all the time is read once a
/// window, so a change waits at most one; a window of 0 reads at every change.
struct Pace(Option<DefaultDirectRateLimiter>);

impl Pace {
    fn new(window: Duration) -> Self {
        Self(Quota::with_period(window).map(|quota| RateLimiter::direct(quota.allow_burst(BURST))))
    }

    /// Waits until a read may start, and counts it.
    async fn ready(&self) {
        let Some(limiter) = &self.0 else { return };
        while let Err(not_until) = limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(DefaultClock::default().now())).await;
        }
    }
}

/// What a frame says, for the clients' filters.
#[derive(Debug, Clone)]
pub(super) enum Mark {
    /// A question-flow event with its flow number.
    Flow(u64, FlowEvent),
    /// The leaderboard at this flow and version.
    Board { flow: u64, version: u64 },
    /// Who is in the quiz and connected, without an id, since it is sent afresh on every
    /// connection: the full list for dashboards, or the short one for players.
    Lobby { for_players: bool },
    /// The standings of every player this instance streams to, read together after the frames
    /// before it: each player stream takes its own, and none reads Redis for it. Empty when
    /// the read failed.
    Standings(Arc<HashMap<String, Followed>>),
}

/// One event for every client of a quiz, serialised once.
#[derive(Debug)]
pub(super) struct Frame {
    pub mark: Mark,
    pub name: &'static str,
    pub data: String,
}

impl Frame {
    pub(super) fn id(&self) -> u64 {
        match self.mark {
            Mark::Flow(flow, _) => flow * ID_SPAN,
            Mark::Board { flow, version } => flow * ID_SPAN + version,
            Mark::Lobby { .. } | Mark::Standings(_) => 0,
        }
    }
}

/// The name and JSON data of a flow event.
pub(super) fn flow_frame(flow: u64, event: FlowEvent) -> Frame {
    let (name, data) = match &event {
        FlowEvent::QuestionStarted(q) => ("question_started", serde_json::to_string(q)),
        FlowEvent::QuestionClosed(q) => ("question_closed", serde_json::to_string(q)),
        FlowEvent::PlayerKicked {
            player_id,
            kicked_at,
        } => (
            "player_kicked",
            serde_json::to_string(
                &serde_json::json!({ "player_id": player_id, "kicked_at": kicked_at }),
            ),
        ),
        FlowEvent::QuizFinished { finished_at } => (
            "quiz_finished",
            serde_json::to_string(&serde_json::json!({ "finished_at": finished_at })),
        ),
    };
    Frame {
        mark: Mark::Flow(flow, event),
        name,
        data: data.unwrap_or_default(),
    }
}

/// The `leaderboard` event of a snapshot.
pub(super) fn board_frame(snapshot: &Snapshot) -> Frame {
    let data = serde_json::json!({
        "version": snapshot.view.version,
        "ranked_players": snapshot.ranked_players,
        "entries": snapshot.top,
    });
    Frame {
        mark: Mark::Board {
            flow: snapshot.view.flow,
            version: snapshot.view.version,
        },
        name: "leaderboard",
        data: data.to_string(),
    }
}

/// The `lobby` event: for players, the first [`PLAYER_LOBBY`] players and the counts.
pub(super) fn lobby_frame(lobby: &Lobby, for_players: bool) -> Frame {
    let data = if for_players && lobby.players.len() > PLAYER_LOBBY {
        let mut short = lobby.clone();
        short.players.truncate(PLAYER_LOBBY);
        short.truncated = true;
        serde_json::to_string(&short)
    } else {
        serde_json::to_string(lobby)
    };
    Frame {
        mark: Mark::Lobby { for_players },
        name: "lobby",
        data: data.unwrap_or_default(),
    }
}

/// The players a player's lobby lists: a phone shows a few names and the counts.
pub(super) const PLAYER_LOBBY: usize = 24;
/// Players' lobby events are sent at most this often: there may be a million of them, and a
/// lobby fills with joins.
const PLAYER_LOBBY_EVERY: Duration = Duration::from_secs(2);

/// When the players' lobby was last sent, and whether a change waits for the next window.
#[derive(Debug, Default)]
struct PlayerLobby {
    sent_at: Option<Instant>,
    pending: bool,
}

#[derive(Debug)]
pub(super) struct Feed {
    quiz_id: String,
    frames: broadcast::Sender<Arc<Frame>>,
    latest: watch::Sender<Option<Arc<Snapshot>>>,
    nudged: Notify,
    /// The trace context of the last change message, which the next delivery continues.
    trace: std::sync::Mutex<Option<String>>,
    player_lobby: std::sync::Mutex<PlayerLobby>,
    /// The highest read-model version the change channel announced.
    announced: AtomicU64,
    /// The change subscription's epoch when `latest` was read (`u64::MAX`: none yet).
    read_epoch: AtomicU64,
    /// When an HTTP read last used the feed: reads keep it, as streams do.
    touched: std::sync::Mutex<Instant>,
    /// Whether the quiz's change channel is subscribed, so announcements reach the feed.
    subscribed: AtomicBool,
    /// The players with a stream from this feed, and how many streams each.
    players: std::sync::Mutex<HashMap<String, usize>>,
    /// The copy of the board rank reads are answered from.
    board: Board,
}

/// A player stream's place among the feed's followed players, given up when it drops.
#[derive(Debug)]
pub(super) struct Following {
    feed: Arc<Feed>,
    player_id: String,
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut players = self
            .feed
            .players
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(streams) = players.get_mut(&self.player_id) {
            *streams -= 1;
            if *streams == 0 {
                let _ = players.remove(&self.player_id);
            }
        }
    }
}

impl Feed {
    pub(super) fn new(quiz_id: &str, buffer: usize) -> Self {
        Self {
            quiz_id: quiz_id.to_owned(),
            frames: broadcast::channel(buffer).0,
            latest: watch::channel(None).0,
            nudged: Notify::new(),
            trace: std::sync::Mutex::new(None),
            player_lobby: std::sync::Mutex::default(),
            announced: AtomicU64::new(0),
            read_epoch: AtomicU64::new(u64::MAX),
            touched: std::sync::Mutex::new(Instant::now()),
            subscribed: AtomicBool::new(false),
            players: std::sync::Mutex::default(),
            board: Board::default(),
        }
    }

    /// A player stream starts: the feed reads this player's standing with the others'.
    pub(super) fn follow(self: &Arc<Self>, player_id: &str) -> Following {
        *self
            .players
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(player_id.to_owned())
            .or_default() += 1;
        Following {
            feed: self.clone(),
            player_id: player_id.to_owned(),
        }
    }

    fn followed(&self) -> Vec<String> {
        self.players
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    pub(super) fn quiz_id(&self) -> &str {
        &self.quiz_id
    }

    pub(super) fn board(&self) -> &Board {
        &self.board
    }

    /// `player_id`'s standing from the copy of the board, under the same rule as
    /// [`Feed::current`]; `load` when the caller is to load a copy.
    pub(super) fn rank(&self, epoch: u64, player_id: &str) -> Rank {
        if !self.subscribed.load(Ordering::Acquire) {
            return Rank::NoCopy { load: false };
        }
        let announced = self.announced.load(Ordering::Acquire);
        self.board.rank(epoch, announced, &self.quiz_id, player_id)
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.frames.subscribe()
    }

    pub(super) fn receivers(&self) -> usize {
        self.frames.receiver_count()
    }

    pub(super) fn nudge(&self) {
        self.nudged.notify_one();
    }

    /// A change message: the read model moved, in the trace `traceparent` when it carries one.
    pub(super) fn changed(&self, traceparent: Option<String>) {
        if traceparent.is_some() {
            *self
                .trace
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = traceparent;
        }
        self.nudge();
    }

    /// Whether the players' lobby event goes out now: a change waits for the end of the
    /// current window, and the feed's poll sends it then.
    fn player_lobby_due(&self, changed: bool) -> bool {
        let mut lobby = self
            .player_lobby
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lobby.pending |= changed;
        let open = lobby
            .sent_at
            .is_none_or(|at| at.elapsed() >= PLAYER_LOBBY_EVERY);
        if lobby.pending && open {
            lobby.pending = false;
            lobby.sent_at = Some(Instant::now());
            return true;
        }
        false
    }

    pub(super) fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.store(subscribed, Ordering::Release);
    }

    /// The change channel announced `version`.
    pub(super) fn announce(&self, version: u64) {
        let _ = self.announced.fetch_max(version, Ordering::AcqRel);
    }

    /// An HTTP read used the feed.
    pub(super) fn touch(&self) {
        *self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn touched_within(&self, span: Duration) -> bool {
        self.touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
            < span
    }

    /// The feed's state if it is as new as anything the projector announced since the change
    /// subscription of `epoch` began; `None` while a change may not have been read yet.
    pub(super) fn current(&self, epoch: u64) -> Option<Arc<Snapshot>> {
        if epoch == super::NOT_FOLLOWING
            || !self.subscribed.load(Ordering::Acquire)
            || self.read_epoch.load(Ordering::Acquire) != epoch
        {
            return None;
        }
        let latest = self.latest()?;
        (latest.view.version >= self.announced.load(Ordering::Acquire)).then_some(latest)
    }

    /// The last state the feed read, if it has read one.
    pub(super) fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.borrow().clone()
    }

    /// Seeds the feed with a client's own first read, unless the feed has read since; returns
    /// the state the client must start from. The feed's next read is then diffed against
    /// what the client was shown, so nothing between the two is lost.
    pub(super) fn offer(&self, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        let _ = self.latest.send_if_modified(|latest| {
            if latest.is_some() {
                return false;
            }
            *latest = Some(snapshot.clone());
            true
        });
        self.latest().unwrap_or(snapshot)
    }
}

/// The frames that lead from `before` to `after`: the flow in order, then the leaderboard if
/// it changed.
pub(super) fn changes(before: &Snapshot, after: &Snapshot, now: i64) -> Vec<Frame> {
    let mut frames: Vec<Frame> = flow_since(&after.view, before.view.flow, now)
        .into_iter()
        .map(|(flow, event)| flow_frame(flow, event))
        .collect();
    if after.top != before.top || after.ranked_players != before.ranked_players {
        frames.push(board_frame(after));
    }
    frames
}

/// What a delivery sent that the player streams' standings follow.
#[derive(Debug, Default, Clone, Copy)]
struct Delivered {
    /// A question closed: every player stream's result waits for the standings.
    closed: bool,
    /// The leaderboard moved: ranks may have changed.
    board: bool,
}

/// Reads the standings of every followed player and sends them to every stream, as one frame.
async fn deliver_standings(hub: &Hub, feed: &Feed) {
    let players = feed.followed();
    if players.is_empty() {
        return;
    }
    metrics::counter!("podium_query_standings_reads_total").increment(1);
    let standings = match hub.read_model().standings(&feed.quiz_id, &players).await {
        Ok(standings) => standings,
        Err(cause) => {
            // The streams fall back to a read of their own.
            tracing::warn!(%cause, quiz_id = %feed.quiz_id, "standings read failed");
            HashMap::new()
        }
    };
    let frame = Frame {
        mark: Mark::Standings(Arc::new(standings)),
        name: "standings",
        data: String::new(),
    };
    let _ = feed.frames.send(Arc::new(frame));
}

/// Reads the quiz and sends every stream the frames since the last read.
async fn deliver(hub: &Hub, feed: &Feed, top: usize) -> Delivered {
    let mut delivered = Delivered::default();
    // Announcements lost while the subscription was down are not missed: a read counts for
    // the cache only if the subscription it began under still stands.
    let epoch = hub.change_epoch();
    match hub.read_model().snapshot(&feed.quiz_id, top).await {
        Ok(snapshot) => {
            if let Ok(generation) = hub.read_model().generation().await {
                feed.board.check(&generation, snapshot.view.version);
            }
            let snapshot = Arc::new(snapshot);
            let previous = feed.latest.send_replace(Some(snapshot.clone()));
            feed.read_epoch.store(epoch, Ordering::Release);
            if let Some(previous) = previous {
                for frame in changes(&previous, &snapshot, crate::reads::now_millis()) {
                    match &frame.mark {
                        Mark::Flow(_, FlowEvent::QuestionClosed(_)) => delivered.closed = true,
                        Mark::Board { .. } => delivered.board = true,
                        _ => {}
                    }
                    // No receivers is fine: the feed is about to retire.
                    let _ = feed.frames.send(Arc::new(frame));
                }
                let changed = previous.lobby_stamp() != snapshot.lobby_stamp();
                let for_players = feed.player_lobby_due(changed);
                if changed || for_players {
                    match hub.read_model().lobby(&feed.quiz_id, MAX_LOBBY).await {
                        Ok(lobby) => {
                            if changed {
                                let _ = feed.frames.send(Arc::new(lobby_frame(&lobby, false)));
                            }
                            if for_players {
                                let _ = feed.frames.send(Arc::new(lobby_frame(&lobby, true)));
                            }
                        }
                        Err(cause) => {
                            tracing::warn!(%cause, quiz_id = %feed.quiz_id, "lobby read failed");
                        }
                    }
                }
            }
        }
        // A quiz Redis no longer holds, or cannot serve: reads go to Redis (or the durable
        // results) until the feed has read the quiz again.
        Err(crate::Error::QuizNotFound) => feed
            .read_epoch
            .store(super::NOT_FOLLOWING, Ordering::Release),
        Err(cause) => {
            feed.read_epoch
                .store(super::NOT_FOLLOWING, Ordering::Release);
            tracing::warn!(%cause, quiz_id = %feed.quiz_id, "feed read failed");
        }
    }
    delivered
}

pub(super) async fn run(hub: Hub, feed: Arc<Feed>) {
    feed.set_subscribed(hub.subscribe_changes(&feed.quiz_id, true).await);
    let settings = hub.settings().clone();
    let top = usize::from(settings.top);
    let pace = Pace::new(settings.coalesce());
    let mut idle_since: Option<Instant> = None;
    // When the players' standings are to be read because the leaderboard moved.
    let mut standings_at: Option<Instant> = None;
    loop {
        let standings_due = async {
            match standings_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let changed = tokio::select! {
            () = hub.shutdown().cancelled() => break,
            () = feed.nudged.notified() => true,
            () = tokio::time::sleep(POLL) => false,
            () = standings_due => {
                standings_at = None;
                deliver_standings(&hub, &feed).await;
                continue;
            }
        };
        // Coalescing: changes that arrive meanwhile are read together. The safety-net poll
        // neither waits nor counts: a change just after it would otherwise wait out the
        // window, and one change in ten did, which made the tail of ack → SSE.
        if changed {
            pace.ready().await;
        }
        let trace = feed
            .trace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let deliver = deliver(&hub, &feed, top);
        let delivered = match trace.filter(|_| podium_runtime::telemetry::exporting()) {
            // The delivery continues the trace of the fold that made the change.
            Some(traceparent) => {
                let span = tracing::info_span!(
                    "deliver",
                    otel.name = "deliver changes",
                    otel.kind = "consumer",
                    quiz_id = %feed.quiz_id,
                );
                podium_runtime::telemetry::continue_trace(&span, &traceparent);
                deliver.instrument(span).await
            }
            None => deliver.await,
        };
        if delivered.closed {
            standings_at = None;
            deliver_standings(&hub, &feed).await;
        } else if delivered.board {
            let _ = standings_at.get_or_insert_with(|| Instant::now() + STANDINGS_EVERY);
        }
        if feed.receivers() == 0 && !feed.touched_within(LINGER) {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= LINGER && hub.retire(&feed) {
                break;
            }
        } else {
            idle_since = None;
        }
    }
    feed.set_subscribed(false);
    let _ = hub.subscribe_changes(&feed.quiz_id, false).await;
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn reads_come_in_bursts_of_two_then_one_a_window() {
        let pace = Pace::new(Duration::from_secs(3600));
        assert!(pace.ready().now_or_never().is_some(), "first read at once");
        assert!(pace.ready().now_or_never().is_some(), "second read at once");
        assert!(
            pace.ready().now_or_never().is_none(),
            "a third read waits for the window"
        );
    }

    #[tokio::test]
    async fn a_window_of_zero_never_waits() {
        let pace = Pace::new(Duration::ZERO);
        for _ in 0..100 {
            assert!(pace.ready().now_or_never().is_some());
        }
    }
}
