//! One client's stream: its first events (a snapshot, or what it missed), then the quiz's
//! frames through a bounded queue, with the player's own view added on a player stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::feed::{
    Feed, Following, Frame, Mark, PLAYER_LOBBY, board_frame, flow_frame, lobby_frame,
};
use super::presence::Here;
use super::{Hub, ID_SPAN};
use crate::error::{Error, Result};
use crate::read_model::{Followed, Snapshot};
use crate::reads::{MAX_LOBBY, now_millis};
use crate::views::{ClosedQuestion, FlowEvent, PlayerStanding, QuizState, flow_since};

/// Events queued for a client that hyper has not written yet: the bound on what a slow
/// client costs, beside the broadcast's own bounded buffer. The queue holds boxed events:
/// tokio allocates a channel's slots 32 at a time, so an idle stream keeps 32 pointers
/// rather than 32 events.
const QUEUE: usize = 8;
/// After a reconnection, when a player stream looks up the player's rank. Live, the feed
/// reads every player's standing together.
const RANK_INTERVAL: Duration = Duration::from_millis(250);
/// The last event of a stream the server ends, written after whatever is still queued.
type LastWords = Arc<std::sync::Mutex<Option<Event>>>;

/// Whose stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOf {
    /// A dashboard: the question flow and the leaderboard.
    Quiz,
    /// A player (already authenticated): the question flow, their results and rank changes.
    Player(String),
}

/// The `Last-Event-ID` a client reconnected with, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume(pub Option<String>);

fn event(name: &str, id: u64, data: &str) -> Event {
    Event::default().event(name).id(id.to_string()).data(data)
}

fn snapshot_id(snapshot: &Snapshot) -> u64 {
    snapshot.view.flow * ID_SPAN + snapshot.view.version
}

struct Session {
    hub: Hub,
    feed: Arc<Feed>,
    quiz_id: String,
    of: StreamOf,
    queue: mpsc::Sender<Box<Event>>,
    last_words: LastWords,
    /// The highest flow number and version the client has been sent.
    seen_flow: u64,
    seen_version: u64,
    retry_sent: bool,
    skips: u32,
    rank: Option<u64>,
    /// When to look up the player's rank on a read of its own: after a reconnection only.
    rank_at: Option<tokio::time::Instant>,
    /// Whether the first events were sent: from then on, a player's results and ranks come
    /// from the feed's standings.
    live: bool,
    /// A question that closed, whose result waits for the feed's standings: its event id and
    /// the question.
    result_due: Option<(u64, ClosedQuestion)>,
    /// A player stream's place among the players the feed reads.
    _following: Option<Following>,
}

impl Session {
    /// Queues an event; `false` once the client has gone.
    async fn send(&mut self, mut event: Event) -> bool {
        if !self.retry_sent {
            self.retry_sent = true;
            event = event.retry(self.hub.settings().retry());
        }
        self.queue.send(Box::new(event)).await.is_ok()
    }

    async fn player(&self) -> Option<PlayerStanding> {
        self.read_alone().await.map(|followed| followed.standing)
    }

    async fn snapshot(&mut self, snapshot: &Snapshot, resync: bool) -> bool {
        let quiz = QuizState::of(
            &snapshot.view,
            snapshot.player_count,
            snapshot.connected,
            now_millis(),
        );
        let data = match &self.of {
            StreamOf::Quiz => json!({
                "resync": resync,
                "quiz": quiz,
                "leaderboard": {
                    "version": snapshot.view.version,
                    "ranked_players": snapshot.ranked_players,
                    "entries": snapshot.top,
                },
            }),
            StreamOf::Player(_) => {
                let you = self.player().await;
                self.rank = you.as_ref().and_then(|p| p.rank);
                json!({ "resync": resync, "quiz": quiz, "you": you })
            }
        };
        self.seen_flow = snapshot.view.flow;
        self.seen_version = self.seen_version.max(snapshot.view.version);
        if resync {
            metrics::counter!("podium_query_sse_resyncs_total").increment(1);
        }
        self.send(event("snapshot", snapshot_id(snapshot), &data.to_string()))
            .await
    }

    /// Sends a frame the client has not seen, as this client's kind of stream shows it.
    async fn forward(&mut self, frame: &Frame) -> bool {
        match (&frame.mark, &self.of) {
            (Mark::Lobby { for_players }, of) => {
                if *for_players != matches!(of, StreamOf::Player(_)) {
                    return true;
                }
                let lobby = Event::default().event(frame.name).data(&frame.data);
                self.send(lobby).await
            }
            (Mark::Standings(standings), StreamOf::Player(me)) => {
                let mine = standings.get(me).cloned();
                self.standings(mine).await
            }
            (Mark::Standings(_), StreamOf::Quiz) => true,
            (Mark::Flow(flow, _), _) if *flow <= self.seen_flow => true,
            (Mark::Board { version, .. }, _) if *version <= self.seen_version => true,
            (Mark::Board { flow, version }, StreamOf::Player(_)) => {
                self.seen_flow = self.seen_flow.max(*flow);
                self.seen_version = *version;
                // Live, the feed's next standings carry the rank.
                if !self.live {
                    self.rank_due();
                }
                true
            }
            (Mark::Board { flow, version }, StreamOf::Quiz) => {
                self.seen_flow = self.seen_flow.max(*flow);
                self.seen_version = *version;
                self.send(event(frame.name, frame.id(), &frame.data)).await
            }
            (Mark::Flow(flow, FlowEvent::QuestionClosed(question)), StreamOf::Player(_)) => {
                self.seen_flow = *flow;
                if self.live {
                    // The feed reads every player's standing after the close, in one step.
                    self.result_due = Some((frame.id(), question.clone()));
                    return true;
                }
                let you = self.read_alone().await;
                self.rank_due();
                self.question_result(frame.id(), question, you).await
            }
            (Mark::Flow(flow, FlowEvent::PlayerKicked { player_id, .. }), StreamOf::Player(me)) => {
                self.seen_flow = *flow;
                if player_id != me {
                    return true;
                }
                // The stream ends here; the client's reconnection is refused with
                // `player_kicked`.
                self.last_words("kicked", "player_kicked");
                false
            }
            (Mark::Flow(flow, _), _) => {
                self.seen_flow = *flow;
                self.send(event(frame.name, frame.id(), &frame.data)).await
            }
        }
    }

    /// The player's standing and awards on a read of this stream's own.
    async fn read_alone(&self) -> Option<Followed> {
        let StreamOf::Player(player_id) = &self.of else {
            return None;
        };
        metrics::counter!("podium_query_stream_player_reads_total").increment(1);
        match self
            .hub
            .read_model()
            .standings(&self.quiz_id, std::slice::from_ref(player_id))
            .await
        {
            Ok(mut read) => read.remove(player_id),
            Err(cause) => {
                tracing::debug!(%cause, "player read for a stream failed");
                None
            }
        }
    }

    /// A closed question's result for the player, with their standing after it.
    async fn question_result(
        &mut self,
        id: u64,
        question: &ClosedQuestion,
        you: Option<Followed>,
    ) -> bool {
        let awarded = you
            .as_ref()
            .and_then(|you| you.awarded.get(&question.number).copied());
        let data = json!({
            "question": question,
            "answered": awarded.is_some(),
            "awarded": awarded.unwrap_or(0),
            "you": you.map(|you| you.standing),
        });
        self.send(event("question_result", id, &data.to_string()))
            .await
    }

    /// The feed's standings, with this player's if it read them: a due question result, then
    /// a rank event if the rank moved.
    async fn standings(&mut self, mine: Option<Followed>) -> bool {
        let mine = match mine {
            Some(mine) => Some(mine),
            // The feed's read failed: a due result is read alone.
            None if self.result_due.is_some() => self.read_alone().await,
            None => return true,
        };
        if let Some((id, question)) = self.result_due.take()
            && !self.question_result(id, &question, mine.clone()).await
        {
            return false;
        }
        match mine {
            Some(mine) => self.rank_moved(mine.standing).await,
            None => true,
        }
    }

    fn rank_due(&mut self) {
        let _ = self
            .rank_at
            .get_or_insert_with(|| tokio::time::Instant::now() + RANK_INTERVAL);
    }

    async fn check_rank(&mut self) -> bool {
        self.rank_at = None;
        match self.player().await {
            Some(you) => self.rank_moved(you).await,
            None => true,
        }
    }

    /// A rank event if the player's rank is not the one the stream last sent.
    async fn rank_moved(&mut self, you: PlayerStanding) -> bool {
        if you.rank == self.rank {
            return true;
        }
        let data = json!({ "from": self.rank, "to": you.rank, "you": you });
        self.rank = you.rank;
        self.seen_version = self.seen_version.max(you.version);
        let id = self.seen_flow * ID_SPAN + self.seen_version;
        self.send(event("rank", id, &data.to_string())).await
    }

    /// The first events: a snapshot, or on reconnection what the client missed.
    async fn start(&mut self, snapshot: &Snapshot, resume: &Resume) -> bool {
        let Some(raw) = &resume.0 else {
            return self.snapshot(snapshot, false).await;
        };
        let Ok(id) = raw.trim().parse::<u64>() else {
            return self.snapshot(snapshot, true).await;
        };
        let (flow, version) = (id / ID_SPAN, id % ID_SPAN);
        let missed = flow_since(&snapshot.view, flow, now_millis());
        if flow > snapshot.view.flow || missed.len() > self.hub.settings().replay_limit {
            return self.snapshot(snapshot, true).await;
        }
        self.seen_flow = flow;
        self.seen_version = version;
        if let StreamOf::Player(_) = self.of {
            self.rank = None;
            self.rank_due();
        }
        for (number, missed) in missed {
            if !self.forward(&flow_frame(number, missed)).await {
                return false;
            }
        }
        self.forward(&board_frame(snapshot)).await
    }

    /// Ends the stream with a reason. It goes after the queued events, so even a client
    /// whose queue is full reads why, once it has read the rest.
    fn last_words(&mut self, name: &str, reason: &str) {
        metrics::counter!("podium_query_sse_disconnects_total", "reason" => reason.to_owned())
            .increment(1);
        let data = json!({ "reason": reason }).to_string();
        let id = self.seen_flow * ID_SPAN + self.seen_version;
        let words = event(name, id, &data).retry(self.hub.settings().retry());
        *self
            .last_words
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(words);
    }

    async fn follow(
        mut self,
        snapshot: Arc<Snapshot>,
        resume: Resume,
        mut frames: broadcast::Receiver<Arc<Frame>>,
    ) {
        // Every await of more than a select is boxed: a task's size is its largest state, and
        // an idle stream should not keep the room of its start, a resync or a frame.
        if !Box::pin(self.start(&snapshot, &resume)).await {
            return;
        }
        drop(snapshot);
        self.live = true;
        // Who is in the quiz, afresh on every connection; then whenever it changes.
        let for_players = self.of != StreamOf::Quiz;
        let limit = if for_players { PLAYER_LOBBY } else { MAX_LOBBY };
        let lobby = match Box::pin(self.hub.read_model().lobby(&self.quiz_id, limit)).await {
            Ok(lobby) => lobby_frame(&lobby, for_players),
            Err(cause) => {
                tracing::debug!(%cause, "lobby read for a stream failed");
                return;
            }
        };
        if !Box::pin(self.forward(&lobby)).await {
            return;
        }
        drop(lobby);
        let shutdown = self.hub.shutdown().clone();
        loop {
            let rank_at = self.rank_at;
            let rank_due = async {
                match rank_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let open = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.last_words("reconnect", "server_shutdown");
                    return;
                }
                () = self.queue.closed() => return,
                frame = frames.recv() => match frame {
                    Ok(frame) => Box::pin(self.forward(&frame)).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.skips += 1;
                        if self.skips > self.hub.settings().max_skips {
                            self.last_words("disconnect", "too_slow");
                            return;
                        }
                        // The resync's snapshot carries the player's standing: a result
                        // still due would come late.
                        self.result_due = None;
                        match self.feed.latest() {
                            Some(latest) => Box::pin(self.snapshot(&latest, true)).await,
                            None => true,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = rank_due => Box::pin(self.check_rank()).await,
            };
            if !open {
                return;
            }
        }
    }
}

/// Counts open streams for `/metrics` and releases the connection slot with the body.
struct Held {
    _permit: OwnedSemaphorePermit,
    /// A player stream keeps its player present.
    _here: Option<Here>,
    hub: Hub,
}

impl Drop for Held {
    fn drop(&mut self) {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("podium_query_sse_streams")
            .set(self.hub.open_streams().saturating_sub(1) as f64);
    }
}

impl Hub {
    /// Opens a stream: refuses beyond the connection cap, 404s an unknown quiz or player, then
    /// streams until the client leaves, falls too far behind, or the instance shuts down.
    pub async fn open(
        &self,
        quiz_id: &str,
        of: StreamOf,
        resume: Resume,
    ) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let permit = self
            .inner
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyStreams)?;
        // Read before joining when the quiz has no warm feed: a request for a quiz that does not
        // exist (or a player who does not) is refused without starting a feed for it.
        let top = usize::from(self.settings().top);
        let read = match self.feed(quiz_id).and_then(|feed| feed.latest()) {
            Some(_) => None,
            None => Some(Arc::new(self.read_model().snapshot(quiz_id, top).await?)),
        };
        let here = match &of {
            StreamOf::Player(player_id) => {
                let standing = self.read_model().player(quiz_id, player_id).await?;
                if standing.kicked_at.is_some() {
                    return Err(Error::PlayerKicked);
                }
                Some(self.inner.presence.arrive(quiz_id, player_id))
            }
            StreamOf::Quiz => None,
        };
        let (feed, frames) = self.join(quiz_id);
        // Whatever happened meanwhile, the feed's next read is diffed against this snapshot.
        let snapshot = match (feed.latest(), read) {
            // A warm feed's state can be up to a coalescing window old. A client resuming from
            // an id gets what it missed from a fresh read, so the missed flow comes first.
            (Some(latest), _) if resume.0.is_some() => {
                let fresh = self.read_model().snapshot(quiz_id, top).await?;
                if (fresh.view.flow, fresh.view.version) > (latest.view.flow, latest.view.version) {
                    Arc::new(fresh)
                } else {
                    latest
                }
            }
            (Some(latest), _) => latest,
            (None, Some(read)) => feed.offer(read),
            // The warm feed retired in between: this one is new.
            (None, None) => feed.offer(Arc::new(self.read_model().snapshot(quiz_id, top).await?)),
        };
        let (queue, events) = mpsc::channel(QUEUE);
        let last_words = LastWords::default();
        let following = match &of {
            StreamOf::Player(player_id) => Some(feed.follow(player_id)),
            StreamOf::Quiz => None,
        };
        let session = Session {
            last_words: last_words.clone(),
            hub: self.clone(),
            feed,
            quiz_id: quiz_id.to_owned(),
            of,
            queue,
            seen_flow: 0,
            seen_version: 0,
            retry_sent: false,
            skips: 0,
            rank: None,
            rank_at: None,
            live: false,
            result_due: None,
            _following: following,
        };
        drop(tokio::spawn(session.follow(snapshot, resume, frames)));
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("podium_query_sse_streams").set(self.open_streams() as f64);
        let held = Held {
            _permit: permit,
            _here: here,
            hub: self.clone(),
        };
        let farewell = futures::stream::once(async move {
            last_words
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        })
        .filter_map(std::future::ready);
        Ok(ReceiverStream::new(events)
            .map(|event| *event)
            .chain(farewell)
            .map(move |event| {
                let _ = &held;
                Ok(event)
            }))
    }
}
