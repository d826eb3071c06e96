//! Every read model of one quiz as a pure fold of its events: the reference the Redis and
//! ScyllaDB projections are compared with, and what the analyst tools recompute.
//!
//! The fold gives the same result whatever the interleaving of the lifecycle and answers
//! partitions: each partition is ordered, and what answers change (sums, counts, the streak of
//! the highest question answered) commutes with the lifecycle.

use std::collections::BTreeMap;

use crate::domain::standings::{Standing, leaderboard_order};
use crate::events::{CloseReason, Event, Millis};

/// What the quiz's read models hold, as one value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuizView {
    pub quiz_id: String,
    /// `None` until `QuizCreated` was folded in (answers may be read first).
    pub title: Option<String>,
    pub created_at: Option<Millis>,
    pub question_count: i32,
    /// The active question and its deadline.
    pub current: Option<(i32, Millis)>,
    pub locked_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// How many flow events (question started, closed, player kicked, quiz finished) were
    /// folded in. It depends
    /// on the lifecycle partition alone, so it is the same in every replay: the live streams
    /// number their events with it.
    pub flow: u64,
    /// The flow number of `QuizFinished`.
    pub finished_flow: Option<u64>,
    /// Kicked players by the flow number of their kick.
    pub kicks: BTreeMap<u64, String>,
    pub questions: BTreeMap<i32, QuestionView>,
    pub players: BTreeMap<String, PlayerCard>,
    /// How many events changed the view: the read model's version.
    pub version: u64,
}

/// One question: its text, its reveal once closed, and its answer statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuestionView {
    pub text: String,
    pub choices: Vec<String>,
    pub points: i32,
    pub time_limit_ms: i32,
    pub started_at: Option<Millis>,
    pub deadline: Option<Millis>,
    /// The quiz's flow number when the question started, and when it closed.
    pub started_flow: Option<u64>,
    pub closed_flow: Option<u64>,
    pub reveal: Option<Reveal>,
    pub stats: QuestionStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reveal {
    pub closed_at: Millis,
    pub correct_choice: i32,
    pub reason: CloseReason,
}

/// Counted answers of one question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuestionStats {
    pub answers: u64,
    pub correct: u64,
    pub elapsed_ms_sum: i64,
    /// Answers per 0-based choice.
    pub per_choice: BTreeMap<i32, u64>,
}

impl QuestionStats {
    /// Mean elapsed ms over counted answers; 0 when there are none.
    pub fn mean_elapsed_ms(&self) -> i64 {
        match i64::try_from(self.answers) {
            Ok(n) if n > 0 => self.elapsed_ms_sum / n,
            _ => 0,
        }
    }
}

impl QuestionView {
    /// Counted answers per choice, one for each of the question's choices in order.
    pub fn answers_per_choice(&self) -> Vec<u64> {
        (0..i32::try_from(self.choices.len()).unwrap_or(0))
            .map(|c| self.stats.per_choice.get(&c).copied().unwrap_or(0))
            .collect()
    }
}

/// What a player's card shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayerCard {
    /// `None` while only the player's answers have been folded in.
    pub name: Option<String>,
    pub points: i64,
    pub elapsed_ms: i64,
    pub answers: u64,
    /// The streak carried by the answer to the highest question answered.
    pub streak: i32,
    pub last_question: i32,
    /// Points awarded per counted answer, by question: the first answer per question counts.
    pub awarded: BTreeMap<i32, i64>,
    /// When the host removed the player; a kicked player is off the leaderboard.
    pub kicked_at: Option<Millis>,
}

impl QuizView {
    pub fn new(quiz_id: impl Into<String>) -> Self {
        Self {
            quiz_id: quiz_id.into(),
            ..Self::default()
        }
    }

    /// Folds one event of this quiz in; returns whether it changed the view. Each fact counts
    /// once: an answer repeated for the same (player, question), or a lifecycle fact already
    /// folded in (a copy of a retried append), changes nothing.
    pub fn apply(&mut self, event: &Event) -> bool {
        let changed = match event {
            Event::QuizCreated(_) if self.title.is_some() => false,
            Event::PlayerJoined(e)
                if self
                    .players
                    .get(&e.player_id)
                    .is_some_and(|p| p.name.is_some()) =>
            {
                false
            }
            Event::PlayerKicked(e)
                if self
                    .players
                    .get(&e.player_id)
                    .is_some_and(|p| p.kicked_at.is_some()) =>
            {
                false
            }
            Event::JoiningLocked(_) if self.locked_at.is_some() => false,
            Event::QuestionStarted(e)
                if self
                    .questions
                    .get(&e.question)
                    .is_some_and(|q| q.started_at.is_some()) =>
            {
                false
            }
            Event::QuestionClosed(e)
                if self
                    .questions
                    .get(&e.question)
                    .is_some_and(|q| q.reveal.is_some()) =>
            {
                false
            }
            Event::QuizFinished(_) if self.finished_at.is_some() => false,
            Event::QuizCreated(e) => {
                self.title = Some(e.title.clone());
                self.created_at = Some(e.created_at);
                self.question_count = i32::try_from(e.questions.len()).unwrap_or(i32::MAX);
                for (number, spec) in (1..).zip(&e.questions) {
                    let question = self.questions.entry(number).or_default();
                    question.text.clone_from(&spec.text);
                    question.choices.clone_from(&spec.choices);
                    question.points = spec.points;
                    question.time_limit_ms = spec.time_limit_ms;
                }
                true
            }
            Event::PlayerJoined(e) => {
                self.players.entry(e.player_id.clone()).or_default().name = Some(e.name.clone());
                true
            }
            Event::PlayerKicked(e) => {
                self.players
                    .entry(e.player_id.clone())
                    .or_default()
                    .kicked_at = Some(e.kicked_at);
                self.flow += 1;
                let _ = self.kicks.insert(self.flow, e.player_id.clone());
                true
            }
            Event::JoiningLocked(e) => {
                self.locked_at = Some(e.locked_at);
                true
            }
            Event::QuestionStarted(e) => {
                let question = self.questions.entry(e.question).or_default();
                question.started_at = Some(e.started_at);
                question.deadline = Some(e.deadline);
                self.flow += 1;
                question.started_flow = Some(self.flow);
                self.current = Some((e.question, e.deadline));
                true
            }
            Event::QuestionClosed(e) => {
                self.flow += 1;
                let question = self.questions.entry(e.question).or_default();
                question.closed_flow = Some(self.flow);
                question.reveal = Some(Reveal {
                    closed_at: e.closed_at,
                    correct_choice: e.correct_choice,
                    reason: e.reason,
                });
                if self.current.is_some_and(|(q, _)| q == e.question) {
                    self.current = None;
                }
                true
            }
            Event::QuizFinished(e) => {
                self.finished_at = Some(e.finished_at);
                self.current = None;
                self.flow += 1;
                self.finished_flow = Some(self.flow);
                true
            }
            Event::AnswerSubmitted(a) => {
                let card = self.players.entry(a.player_id.clone()).or_default();
                if card.awarded.contains_key(&a.question) {
                    return false;
                }
                let _ = card.awarded.insert(a.question, a.awarded());
                card.points += a.awarded();
                card.elapsed_ms += i64::from(a.elapsed_ms);
                card.answers += 1;
                if a.question > card.last_question {
                    card.last_question = a.question;
                    card.streak = a.streak;
                }
                let stats = &mut self.questions.entry(a.question).or_default().stats;
                stats.answers += 1;
                stats.correct += u64::from(a.correct);
                stats.elapsed_ms_sum += i64::from(a.elapsed_ms);
                *stats.per_choice.entry(a.choice).or_default() += 1;
                true
            }
        };
        self.version += u64::from(changed);
        changed
    }

    /// Every player with a counted answer who was not kicked, in leaderboard order.
    pub fn ranked(&self) -> Vec<Standing> {
        let mut rows: Vec<Standing> = self
            .players
            .iter()
            .filter(|(_, card)| card.answers > 0 && card.kicked_at.is_none())
            .map(|(id, card)| Standing {
                player_id: id.clone(),
                points: card.points,
                elapsed_ms: card.elapsed_ms,
            })
            .collect();
        rows.sort_by(leaderboard_order);
        rows
    }

    /// How many players joined and were not kicked.
    pub fn player_count(&self) -> usize {
        self.players
            .values()
            .filter(|p| p.name.is_some() && p.kicked_at.is_none())
            .count()
    }
}

/// The read models of every quiz in a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModels {
    pub quizzes: BTreeMap<String, QuizView>,
}

impl ReadModels {
    /// Folds a whole log, in any interleaving of its partitions.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut models = Self::default();
        for event in events {
            let _ = models.apply(event);
        }
        models
    }

    pub fn apply(&mut self, event: &Event) -> bool {
        self.quizzes
            .entry(event.quiz_id().to_owned())
            .or_insert_with(|| QuizView::new(event.quiz_id()))
            .apply(event)
    }
}
