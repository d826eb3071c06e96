//! A copy of one quiz's leaderboard with its ranked players' cards, so that a stadium of phones
//! asking their rank is answered from memory (ADR 0013). It is filled from Redis in chunks and
//! kept in step by the change messages, which carry the cards of the players a fold changed.
//!
//! Every card remembers the version it was read or announced at, and an older one never
//! replaces it: a chunk read before a change may arrive after the change's message. The copy
//! answers only once it is whole, and it knows when it missed a message, since each message
//! says the version it follows.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use podium_schemas::read_model::{ChangeMessage, ChangedPlayer, leaderboard_score};

use crate::views::{PlayerStanding, Source};

/// A ranked player's card as the copy holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub name: Option<String>,
    pub points: i64,
    pub elapsed_ms: i64,
    pub answers: u64,
    pub last_question: i32,
    pub streak: i32,
}

impl Card {
    fn score(&self) -> i64 {
        leaderboard_score(self.points, self.elapsed_ms)
    }
}

/// A card and the version it was read at; `None` while loading: the player left the board at
/// that version, and an older chunk must not put them back.
#[derive(Debug)]
struct Entry {
    version: u64,
    card: Option<Card>,
}

/// Bytes of an id held inline in its place on the board.
const HEAD: usize = 16;

/// A player's place in the board's order: score, then player id byte-wise, as the sorted set
/// orders ties. The id's first bytes are held inline, so a rank lookup compares places
/// without leaving the tree's nodes; only ids that share them are compared whole.
#[derive(Debug, Clone)]
struct Place {
    score: i64,
    /// The id's first `HEAD` bytes, zero-padded: comparing heads orders ids as comparing
    /// them whole does, or ties.
    head: [u8; HEAD],
    id: Arc<str>,
}

impl Place {
    fn new(score: i64, id: Arc<str>) -> Self {
        let mut head = [0; HEAD];
        let bytes = id.as_bytes();
        let n = bytes.len().min(HEAD);
        head[..n].copy_from_slice(&bytes[..n]);
        Self { score, head, id }
    }
}

impl Ord for Place {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .cmp(&other.score)
            .then_with(|| self.head.cmp(&other.head))
            .then_with(|| self.id.as_bytes().cmp(other.id.as_bytes()))
    }
}

impl PartialOrd for Place {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Place {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Place {}

/// The copy missed a change message: it must be loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed;

#[derive(Debug)]
pub struct BoardCopy {
    /// The version the copy is whole at, once loaded.
    version: u64,
    latest_closed: i32,
    /// Keyed by the same `Arc` as the player's place, so each id is held once.
    entries: HashMap<Arc<str>, Entry>,
    order: indexset::BTreeSet<Place>,
    loaded: bool,
}

impl BoardCopy {
    /// A copy starting from the first chunk's version: every change after it must reach the
    /// copy as a message.
    pub fn new(version: u64, latest_closed: i32) -> Self {
        Self {
            version,
            latest_closed,
            entries: HashMap::new(),
            order: indexset::BTreeSet::new(),
            loaded: false,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Ranked players.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Sets `player_id`'s card (or takes them off the board) as of `version`, unless the copy
    /// holds a newer one.
    fn put(&mut self, player_id: &str, version: u64, card: Option<Card>) {
        let (id, old) = match self.entries.get_key_value(player_id) {
            Some((_, entry)) if entry.version >= version => return,
            Some((id, entry)) => (id.clone(), entry.card.as_ref().map(Card::score)),
            None => (Arc::from(player_id), None),
        };
        if let Some(score) = old {
            let _ = self.order.remove(&Place::new(score, id.clone()));
        }
        if let Some(card) = &card {
            let _ = self.order.insert(Place::new(card.score(), id.clone()));
        }
        if card.is_none() && self.loaded {
            // Once loaded, every message is newer than every chunk: no tombstone is needed.
            let _ = self.entries.remove(player_id);
        } else {
            let _ = self.entries.insert(id, Entry { version, card });
        }
    }

    /// A chunk of the board read from Redis at `version`.
    pub fn fill(&mut self, version: u64, cards: impl IntoIterator<Item = (String, Card)>) {
        for (player_id, card) in cards {
            self.put(&player_id, version, Some(card));
        }
    }

    /// The last chunk is in: the copy answers from now on, and forgets who left the board.
    pub fn finish_loading(&mut self) {
        self.loaded = true;
        self.entries.retain(|_, entry| entry.card.is_some());
    }

    /// Applies a change message; `Missed` if one before it never arrived.
    pub fn apply(&mut self, message: &ChangeMessage) -> Result<(), Missed> {
        if message.version <= self.version {
            return Ok(());
        }
        let Some(players) = message.changed_players() else {
            return Err(Missed);
        };
        if message.version.checked_sub(message.changed) != Some(self.version) {
            return Err(Missed);
        }
        for player in players {
            let card = (!player.kicked).then(|| card_of(player));
            self.put(&player.player_id, message.version, card);
        }
        self.latest_closed = self.latest_closed.max(message.closed);
        self.version = message.version;
        Ok(())
    }

    /// `player_id`'s standing, if the copy is loaded and ranks them; players off the board
    /// (not answered yet, kicked, unknown) are read from Redis.
    pub fn standing(&self, quiz_id: &str, player_id: &str) -> Option<PlayerStanding> {
        if !self.loaded {
            return None;
        }
        let (id, entry) = self.entries.get_key_value(player_id)?;
        let card = entry.card.as_ref()?;
        let rank = u64::try_from(self.order.rank(&Place::new(card.score(), id.clone()))).ok()? + 1;
        let ranked_players = u64::try_from(self.order.len()).ok()?;
        Some(PlayerStanding {
            quiz_id: quiz_id.to_owned(),
            player_id: player_id.to_owned(),
            version: self.version,
            source: Source::Live,
            name: card.name.clone(),
            rank: Some(rank),
            ranked_players,
            percentile: PlayerStanding::percentile(rank, ranked_players),
            points: card.points,
            elapsed_ms: card.elapsed_ms,
            answers: card.answers,
            streak: PlayerStanding::streak_now(card.streak, card.last_question, self.latest_closed),
            kicked_at: None,
        })
    }
}

fn card_of(player: &ChangedPlayer) -> Card {
    Card {
        name: player.name.clone(),
        points: player.points,
        elapsed_ms: player.elapsed_ms,
        answers: player.answers,
        last_question: player.last_question,
        streak: player.streak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(points: i64, elapsed_ms: i64) -> Card {
        Card {
            name: None,
            points,
            elapsed_ms,
            answers: 1,
            last_question: 1,
            streak: 1,
        }
    }

    fn changed(player_id: &str, points: i64, elapsed_ms: i64, kicked: bool) -> ChangedPlayer {
        ChangedPlayer {
            player_id: player_id.into(),
            points,
            elapsed_ms,
            answers: 1,
            last_question: 1,
            streak: 1,
            name: None,
            kicked,
        }
    }

    fn message(version: u64, changed: u64, players: Vec<ChangedPlayer>) -> ChangeMessage {
        ChangeMessage {
            version,
            traceparent: None,
            changed,
            closed: 0,
            players: Some(players),
        }
    }

    fn rank(copy: &BoardCopy, player_id: &str) -> Option<u64> {
        copy.standing("q", player_id).and_then(|s| s.rank)
    }

    #[test]
    fn ranks_follow_points_then_time_then_player_id() {
        let mut copy = BoardCopy::new(5, 0);
        copy.fill(
            5,
            [
                ("b".into(), card(10, 500)),
                ("a".into(), card(10, 500)),
                ("c".into(), card(20, 900)),
                ("d".into(), card(10, 100)),
            ],
        );
        assert_eq!(rank(&copy, "c"), None, "a copy answers once loaded");
        copy.finish_loading();
        let ranks: Vec<_> = ["c", "d", "a", "b"]
            .iter()
            .map(|p| rank(&copy, p))
            .collect();
        assert_eq!(ranks, [Some(1), Some(2), Some(3), Some(4)]);
        assert_eq!(copy.standing("q", "a").map(|s| s.ranked_players), Some(4));
        assert_eq!(rank(&copy, "nobody"), None);
    }

    #[test]
    fn places_order_ids_byte_wise_whatever_their_heads() {
        let uuid = "0192f3a4-5b6c-7d8e-9f00-";
        let mut ids: Vec<String> = [
            "",
            "a",
            "a\0",
            "a\0\u{1}",
            "ab",
            "b",
            "p000001",
            "p000010",
            "é",
            "z",
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaab",
        ]
        .iter()
        .map(|id| (*id).to_owned())
        .chain(["2", "10", "1"].iter().map(|tail| format!("{uuid}{tail}")))
        .collect();
        let mut places: Vec<Place> = ids
            .iter()
            .map(|id| Place::new(7, Arc::from(id.as_str())))
            .collect();
        places.sort();
        ids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let sorted: Vec<&str> = places.iter().map(|place| &*place.id).collect();
        assert_eq!(sorted, ids);
        assert!(
            Place::new(1, "z".into()) < Place::new(2, "a".into()),
            "score first"
        );
    }

    #[test]
    fn a_chunk_older_than_a_message_changes_nothing() {
        let mut copy = BoardCopy::new(5, 0);
        copy.apply(&message(
            7,
            2,
            vec![changed("a", 30, 100, false), changed("k", 0, 0, true)],
        ))
        .expect("follows 5");
        // Read at 6, before the message's change, but arriving after it.
        copy.fill(6, [("a".into(), card(10, 100)), ("k".into(), card(5, 5))]);
        copy.finish_loading();
        assert_eq!(copy.standing("q", "a").map(|s| s.points), Some(30));
        assert_eq!(
            rank(&copy, "k"),
            None,
            "the kicked player stays off the board"
        );
        assert_eq!(copy.len(), 1);
    }

    #[test]
    fn a_missed_message_is_noticed_and_old_ones_are_ignored() {
        let mut copy = BoardCopy::new(5, 0);
        copy.finish_loading();
        assert_eq!(
            copy.apply(&message(4, 1, vec![changed("a", 1, 1, false)])),
            Ok(())
        );
        assert!(
            copy.is_empty(),
            "a message the first chunk already held changes nothing"
        );
        assert_eq!(copy.apply(&message(9, 2, vec![])), Err(Missed));
        assert_eq!(
            copy.apply(&message(7, 2, vec![changed("a", 1, 1, false)])),
            Ok(())
        );
        assert_eq!(copy.version(), 7);
        let bare = ChangeMessage::parse("8").expect("a version alone");
        assert_eq!(
            copy.apply(&bare),
            Err(Missed),
            "a message without its players"
        );
    }

    #[test]
    fn a_player_who_moves_or_leaves_takes_their_place_along() {
        let mut copy = BoardCopy::new(1, 0);
        copy.fill(
            1,
            [("a".into(), card(10, 100)), ("b".into(), card(20, 100))],
        );
        copy.finish_loading();
        copy.apply(&message(2, 1, vec![changed("a", 30, 200, false)]))
            .expect("follows 1");
        assert_eq!((rank(&copy, "a"), rank(&copy, "b")), (Some(1), Some(2)));
        copy.apply(&message(3, 1, vec![changed("a", 30, 200, true)]))
            .expect("follows 2");
        assert_eq!((rank(&copy, "a"), rank(&copy, "b")), (None, Some(1)));
        assert_eq!(copy.len(), 1);
    }

    #[test]
    fn a_streak_breaks_at_a_closed_question_the_player_skipped() {
        let mut copy = BoardCopy::new(1, 1);
        copy.fill(1, [("a".into(), card(10, 100))]);
        copy.finish_loading();
        assert_eq!(copy.standing("q", "a").map(|s| s.streak), Some(1));
        let mut close = message(2, 1, vec![]);
        close.closed = 2;
        copy.apply(&close).expect("follows 1");
        assert_eq!(copy.standing("q", "a").map(|s| s.streak), Some(0));
    }
}
