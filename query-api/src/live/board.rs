//! The copy of a quiz's board that a feed keeps for rank reads, from the first rank read of
//! the quiz until the feed retires (ADR 0013). Loaded in chunks by a task of its own, kept in
//! step by the change messages, dropped when it missed one, when the change subscription it
//! was loaded under ends, when a rebuild switches generations or when Redis is behind it.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use podium_schemas::read_model::ChangeMessage;
use tokio::time::Instant;

use super::{Hub, NOT_FOLLOWING};
use crate::board_copy::BoardCopy;
use crate::views::PlayerStanding;

/// Players per chunk read: one script of this size holds Redis for about a millisecond.
const CHUNK: usize = 1000;
/// Messages kept while the first chunk is out; a burst beyond gives the load up.
const PENDING_MAX: usize = 10_000;
/// A copy is loaded at most this often, so a quiz whose copy keeps failing costs Redis
/// little more than its reads did.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct Board {
    /// Rank reads share it; messages and loads take it alone.
    slot: RwLock<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Whether a load is out.
    loading: bool,
    /// When the last load started.
    started_at: Option<Instant>,
    /// Messages that arrived before the first chunk, which the copy starts from.
    pending: Option<Vec<ChangeMessage>>,
    copy: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    copy: BoardCopy,
    /// The change subscription and the generation the copy was loaded under.
    epoch: u64,
    generation: String,
}

/// What a rank read found.
pub(super) enum Rank {
    /// The copy answers.
    Standing(PlayerStanding),
    /// The copy is whole and current, and does not rank the player: Redis knows why.
    NotRanked,
    /// No current copy; `load` says whether the caller starts a load.
    NoCopy { load: bool },
}

/// A rank read, answered from the copy if it is whole and as new as `announced` under the
/// change subscription of `epoch`.
struct Read<'a> {
    epoch: u64,
    announced: u64,
    quiz_id: &'a str,
    player_id: &'a str,
}

impl Read<'_> {
    fn answer(&self, slot: &Slot) -> Option<Rank> {
        let loaded = slot.copy.as_ref().filter(|loaded| {
            self.epoch != NOT_FOLLOWING
                && loaded.epoch == self.epoch
                && loaded.copy.loaded()
                && loaded.copy.version() >= self.announced
        })?;
        Some(
            loaded
                .copy
                .standing(self.quiz_id, self.player_id)
                .map_or(Rank::NotRanked, Rank::Standing),
        )
    }
}

impl Board {
    fn slot(&self) -> RwLockWriteGuard<'_, Slot> {
        self.slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A change message of the quiz.
    pub(super) fn message(&self, message: &ChangeMessage) {
        let mut slot = self.slot();
        if let Some(pending) = &mut slot.pending {
            if pending.len() < PENDING_MAX {
                pending.push(message.clone());
            } else {
                slot.pending = None;
            }
            return;
        }
        if let Some(loaded) = &mut slot.copy
            && loaded.copy.apply(message).is_err()
        {
            metrics::counter!("podium_query_board_copies_dropped_total", "why" => "missed")
                .increment(1);
            slot.copy = None;
        }
    }

    /// `player_id`'s standing from the copy, if it is whole and as new as `announced` under
    /// the change subscription of `epoch`.
    pub(super) fn rank(&self, epoch: u64, announced: u64, quiz_id: &str, player_id: &str) -> Rank {
        let read = Read {
            epoch,
            announced,
            quiz_id,
            player_id,
        };
        if let Some(rank) = read.answer(&self.read()) {
            return rank;
        }
        let mut slot = self.slot();
        // A load may have finished between the two locks.
        if let Some(rank) = read.answer(&slot) {
            return rank;
        }
        let due = slot
            .started_at
            .is_none_or(|at| at.elapsed() >= RELOAD_EVERY);
        let stale = slot
            .copy
            .as_ref()
            .is_none_or(|loaded| loaded.epoch != epoch);
        let load = !slot.loading && stale && due && epoch != NOT_FOLLOWING;
        if load {
            slot.loading = true;
            slot.started_at = Some(Instant::now());
        }
        Rank::NoCopy { load }
    }

    /// What the feed's read of the quiz found: a copy from another generation, or newer than
    /// Redis (which lost its data), is dropped.
    pub(super) fn check(&self, generation: &str, version: u64) {
        let mut slot = self.slot();
        if let Some(loaded) = &slot.copy
            && (loaded.generation != generation || loaded.copy.version() > version)
        {
            metrics::counter!("podium_query_board_copies_dropped_total", "why" => "moved")
                .increment(1);
            slot.copy = None;
        }
    }
}

/// Loads the feed's copy of the board, chunk by chunk; the messages that arrive meanwhile
/// keep it in step.
pub(super) async fn load(hub: Hub, feed: Arc<super::feed::Feed>) {
    let board = feed.board();
    let epoch = hub.change_epoch();
    {
        let mut slot = board.slot();
        slot.copy = None;
        slot.pending = Some(Vec::new());
    }
    let started = std::time::Instant::now();
    let mut after: Option<String> = None;
    let outcome = loop {
        let read = hub
            .read_model()
            .board_chunk(feed.quiz_id(), after.as_deref(), CHUNK)
            .await;
        let mut slot = board.slot();
        let (generation, chunk) = match read {
            Ok(read) => read,
            Err(cause) => break Err(cause.to_string()),
        };
        if after.is_none() {
            let Some(pending) = slot.pending.take() else {
                break Err("too many changes while the first chunk was read".to_owned());
            };
            let mut copy = BoardCopy::new(chunk.version, chunk.latest_closed);
            if pending.iter().any(|message| copy.apply(message).is_err()) {
                break Err("a change message was missed".to_owned());
            }
            slot.copy = Some(Loaded {
                copy,
                epoch,
                generation: generation.clone(),
            });
        }
        let Some(loaded) = slot.copy.as_mut().filter(|l| l.generation == generation) else {
            break Err("the copy was dropped while loading".to_owned());
        };
        loaded.copy.fill(chunk.version, chunk.cards);
        match chunk.next {
            Some(next) => after = Some(next),
            None => {
                loaded.copy.finish_loading();
                break Ok(loaded.copy.len());
            }
        }
    };
    let mut slot = board.slot();
    slot.loading = false;
    slot.pending = None;
    match outcome {
        Ok(players) => {
            metrics::counter!("podium_query_board_copies_loaded_total").increment(1);
            tracing::debug!(
                quiz_id = feed.quiz_id(),
                players,
                ms = started.elapsed().as_millis(),
                "board copy loaded"
            );
        }
        Err(cause) => {
            slot.copy = None;
            tracing::warn!(quiz_id = feed.quiz_id(), %cause, "board copy not loaded");
        }
    }
}
