//! The leaderboard as a pure fold of `AnswerSubmitted` events: the reference every read model is
//! compared with.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use crate::events::AnswerSubmitted;

/// One player's accepted answers and what they add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayerScore {
    pub points: i64,
    /// Sum of elapsed ms over accepted answers: the first tie-breaker.
    pub elapsed_ms: i64,
    /// Accepted answers by question number.
    pub answers: BTreeMap<i32, AnswerSubmitted>,
}

impl PlayerScore {
    /// Consecutive correct answers ending at `question`; 0 when it was wrong or not answered.
    pub fn streak_at(&self, question: i32) -> i32 {
        self.answers
            .get(&question)
            .filter(|a| a.correct)
            .map_or(0, |a| a.streak)
    }
}

/// A row of the leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub player_id: String,
    pub points: i64,
    pub elapsed_ms: i64,
}

/// Leaderboard order: points descending, then elapsed ms ascending, then player id ascending.
pub fn leaderboard_order(a: &Standing, b: &Standing) -> Ordering {
    b.points
        .cmp(&a.points)
        .then(a.elapsed_ms.cmp(&b.elapsed_ms))
        .then_with(|| a.player_id.cmp(&b.player_id))
}

/// Scores of one quiz's players.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standings {
    players: HashMap<String, PlayerScore>,
}

impl Standings {
    /// Folds one answer in. The first answer per (player, question) counts; a repeat — a
    /// redelivery, a replay, a retried append — changes nothing and returns `false`.
    pub fn apply(&mut self, answer: &AnswerSubmitted) -> bool {
        let player = self.players.entry(answer.player_id.clone()).or_default();
        if player.answers.contains_key(&answer.question) {
            return false;
        }
        player.points += answer.awarded();
        player.elapsed_ms += i64::from(answer.elapsed_ms);
        let _ = player.answers.insert(answer.question, answer.clone());
        true
    }

    pub fn player(&self, player_id: &str) -> Option<&PlayerScore> {
        self.players.get(player_id)
    }

    pub fn len(&self) -> usize {
        self.players.len()
    }

    pub fn is_empty(&self) -> bool {
        self.players.is_empty()
    }

    /// Every player with at least one accepted answer, in leaderboard order.
    pub fn ranked(&self) -> Vec<Standing> {
        let mut rows: Vec<Standing> = self
            .players
            .iter()
            .map(|(id, p)| Standing {
                player_id: id.clone(),
                points: p.points,
                elapsed_ms: p.elapsed_ms,
            })
            .collect();
        rows.sort_by(leaderboard_order);
        rows
    }
}
