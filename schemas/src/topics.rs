//! Topic names, record keys and header names: defined here once.

use crate::events::Event;

/// Record header carrying [`Event::event_type`].
pub const HEADER_EVENT_TYPE: &str = "event_type";
/// Record header carrying a unique id of the event (UUIDv7).
pub const HEADER_EVENT_ID: &str = "event_id";
/// Record header carrying W3C trace context.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// Quiz lifecycle and joins, keyed by quiz id so that one quiz's lifecycle is totally ordered.
pub const LIFECYCLE: &str = "podium.quiz-lifecycle.v1";
/// Answers, keyed by `quiz_id/player_id`: one player's answers stay ordered and a large quiz
/// spreads over partitions.
pub const ANSWERS: &str = "podium.answers.v1";

/// Partition counts the local stack creates topics with.
pub const LIFECYCLE_PARTITIONS: i32 = 3;
pub const ANSWERS_PARTITIONS: i32 = 6;

/// The topic names one deployment uses. A prefix keeps tests, or tenants, apart on one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub lifecycle: String,
    pub answers: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

impl Topics {
    /// `prefix` is prepended verbatim; an empty prefix gives the standard names.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            lifecycle: format!("{prefix}{LIFECYCLE}"),
            answers: format!("{prefix}{ANSWERS}"),
        }
    }

    /// Topic names with the partition count each is created with.
    pub fn with_partitions(&self) -> [(&str, i32); 2] {
        [
            (self.lifecycle.as_str(), LIFECYCLE_PARTITIONS),
            (self.answers.as_str(), ANSWERS_PARTITIONS),
        ]
    }

    /// The topic an event is appended to.
    pub fn topic_of(&self, event: &Event) -> &str {
        match event {
            Event::AnswerSubmitted(_) => &self.answers,
            _ => &self.lifecycle,
        }
    }

    pub fn all(&self) -> [&str; 2] {
        [self.lifecycle.as_str(), self.answers.as_str()]
    }
}

/// The record key of an event.
pub fn record_key(event: &Event) -> String {
    match event {
        Event::AnswerSubmitted(a) => format!("{}/{}", a.quiz_id, a.player_id),
        other => other.quiz_id().to_owned(),
    }
}
