//! One record shown to a person or a program: a JSON object (the export's JSON Lines and
//! `tail --json`) or a human-readable line (`tail`).

use podium_schemas::Event;
use podium_schemas::events::{
    AnswerSubmitted, JoiningLocked, PlayerJoined, PlayerKicked, QuestionClosed, QuestionStarted,
    QuizCreated, QuizFinished,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::log::LogRecord;
use crate::time::Timestamp;

/// The event's fields, named and ordered as in its `.avsc` file: times in ms since the epoch,
/// enums by symbol, the optional fields as `null` or their value.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EventFields<'a> {
    QuizCreated(&'a QuizCreated),
    PlayerJoined(&'a PlayerJoined),
    PlayerKicked(&'a PlayerKicked),
    JoiningLocked(&'a JoiningLocked),
    QuestionStarted(&'a QuestionStarted),
    QuestionClosed(&'a QuestionClosed),
    QuizFinished(&'a QuizFinished),
    AnswerSubmitted(&'a AnswerSubmitted),
}

impl<'a> EventFields<'a> {
    pub fn of(event: &'a Event) -> Self {
        match event {
            Event::QuizCreated(e) => Self::QuizCreated(e),
            Event::PlayerJoined(e) => Self::PlayerJoined(e),
            Event::PlayerKicked(e) => Self::PlayerKicked(e),
            Event::JoiningLocked(e) => Self::JoiningLocked(e),
            Event::QuestionStarted(e) => Self::QuestionStarted(e),
            Event::QuestionClosed(e) => Self::QuestionClosed(e),
            Event::QuizFinished(e) => Self::QuizFinished(e),
            Event::AnswerSubmitted(e) => Self::AnswerSubmitted(e),
        }
    }
}

/// The export's JSON object for a record: where it is in the log, when, and what it says.
#[derive(Debug, Serialize)]
pub struct JsonRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub event_type: &'static str,
    pub event: EventFields<'a>,
}

pub fn json_object<'a>(record: &'a LogRecord, event: &'a Event) -> JsonRecord<'a> {
    JsonRecord {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.as_deref(),
        event_id: record.event_id.as_deref(),
        event_type: event.event_type(),
        event: EventFields::of(event),
    }
}

/// A record `tail --json` could not decode: where it is and why.
pub fn undecodable_object(record: &LogRecord, reason: &str) -> Value {
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key,
        "event_id": record.event_id,
        "event_type": null,
        "error": reason,
    })
}

/// `2026-01-01T12:00:07.000Z answers/3@17 AnswerSubmitted quiz=q player=p q1 choice 1 correct
/// +900 +0 streak 1 (4000 ms)`.
pub fn human_line(record: &LogRecord, event: &Event) -> String {
    let what = match event {
        Event::QuizCreated(e) => format!(
            "{:?} with {} questions, join code {}",
            e.title,
            e.questions.len(),
            e.join_code
        ),
        Event::PlayerJoined(e) => format!("player={} name={:?}", e.player_id, e.name),
        Event::PlayerKicked(e) => format!("player={} kicked", e.player_id),
        Event::JoiningLocked(_) => "joining locked".to_owned(),
        Event::QuestionStarted(e) => format!(
            "q{} started, deadline {}",
            e.question,
            Timestamp(e.deadline)
        ),
        Event::QuestionClosed(e) => format!(
            "q{} closed ({}), correct choice {}",
            e.question,
            e.reason.name(),
            e.correct_choice
        ),
        Event::QuizFinished(_) => "finished".to_owned(),
        Event::AnswerSubmitted(e) => format!(
            "player={} q{} choice {} {} +{} +{} streak {} ({} ms, rules v{})",
            e.player_id,
            e.question,
            e.choice,
            if e.correct { "correct" } else { "wrong" },
            e.points,
            e.streak_bonus,
            e.streak,
            e.elapsed_ms,
            e.rule_version
        ),
    };
    format!(
        "{} {}/{}@{} {} quiz={} {}",
        Timestamp(record.timestamp),
        record.topic,
        record.partition,
        record.offset,
        event.event_type(),
        event.quiz_id(),
        what
    )
}

/// A line for a record that could not be decoded.
pub fn human_undecodable(record: &LogRecord, reason: &str) -> String {
    format!(
        "{} {}/{}@{} UNDECODABLE {}",
        Timestamp(record.timestamp),
        record.topic,
        record.partition,
        record.offset,
        reason
    )
}
