//! Event types. Field names and types mirror the `.avsc` files exactly (Avro `int` is `i32`,
//! timestamps are milliseconds since the Unix epoch); the round-trip tests keep them in step.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC, on the server clock.
pub type Millis = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionSpec {
    pub text: String,
    pub choices: Vec<String>,
    /// 0-based index into `choices`: the answer key.
    pub correct_choice: i32,
    pub points: i32,
    pub time_limit_ms: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuizCreated {
    pub quiz_id: String,
    pub title: String,
    pub join_code: String,
    pub questions: Vec<QuestionSpec>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerJoined {
    pub quiz_id: String,
    pub player_id: String,
    pub name: String,
    pub joined_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerKicked {
    pub quiz_id: String,
    pub player_id: String,
    pub kicked_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoiningLocked {
    pub quiz_id: String,
    pub locked_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionStarted {
    pub quiz_id: String,
    pub question: i32,
    pub started_at: Millis,
    pub deadline: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CloseReason {
    Deadline,
    Host,
    NextQuestion,
    QuizFinished,
}

impl CloseReason {
    pub const ALL: [Self; 4] = [
        Self::Deadline,
        Self::Host,
        Self::NextQuestion,
        Self::QuizFinished,
    ];

    /// The name of the Avro enum symbol, also used in the read models and the HTTP bodies.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deadline => "DEADLINE",
            Self::Host => "HOST",
            Self::NextQuestion => "NEXT_QUESTION",
            Self::QuizFinished => "QUIZ_FINISHED",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionClosed {
    pub quiz_id: String,
    pub question: i32,
    pub closed_at: Millis,
    pub correct_choice: i32,
    pub reason: CloseReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuizFinished {
    pub quiz_id: String,
    pub finished_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerSubmitted {
    pub quiz_id: String,
    pub player_id: String,
    pub question: i32,
    pub choice: i32,
    pub received_at: Millis,
    pub elapsed_ms: i32,
    pub correct: bool,
    pub points: i32,
    pub streak: i32,
    pub streak_bonus: i32,
    pub rule_version: i32,
    pub idempotency_key: Option<String>,
}

impl AnswerSubmitted {
    /// What the answer adds to the player's total.
    pub fn awarded(&self) -> i64 {
        i64::from(self.points) + i64::from(self.streak_bonus)
    }
}

/// Every fact Podium records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    QuizCreated(QuizCreated),
    PlayerJoined(PlayerJoined),
    PlayerKicked(PlayerKicked),
    JoiningLocked(JoiningLocked),
    QuestionStarted(QuestionStarted),
    QuestionClosed(QuestionClosed),
    QuizFinished(QuizFinished),
    AnswerSubmitted(AnswerSubmitted),
}

impl Event {
    /// The name carried in the `event_type` record header; equals the Avro record name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::QuizCreated(_) => "QuizCreated",
            Event::PlayerJoined(_) => "PlayerJoined",
            Event::PlayerKicked(_) => "PlayerKicked",
            Event::JoiningLocked(_) => "JoiningLocked",
            Event::QuestionStarted(_) => "QuestionStarted",
            Event::QuestionClosed(_) => "QuestionClosed",
            Event::QuizFinished(_) => "QuizFinished",
            Event::AnswerSubmitted(_) => "AnswerSubmitted",
        }
    }

    pub fn quiz_id(&self) -> &str {
        match self {
            Event::QuizCreated(e) => &e.quiz_id,
            Event::PlayerJoined(e) => &e.quiz_id,
            Event::PlayerKicked(e) => &e.quiz_id,
            Event::JoiningLocked(e) => &e.quiz_id,
            Event::QuestionStarted(e) => &e.quiz_id,
            Event::QuestionClosed(e) => &e.quiz_id,
            Event::QuizFinished(e) => &e.quiz_id,
            Event::AnswerSubmitted(e) => &e.quiz_id,
        }
    }
}
