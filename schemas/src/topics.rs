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

/// Records a projector could not read, with why and where they came from in the headers.
pub const DEAD_LETTERS: &str = "podium.dead-letters.v1";

/// Partition counts the local stack creates topics with. The answers topic's 3 is measured
/// (`podium-bench settings --partitions`, docs/performance.md): nisshi's produce rate falls as
/// a producer's records spread over more partitions (at 64 in flight, 4,553 records/s on 3
/// partitions against 3,122 on 6), and 3 still lets three projectors share the answers.
pub const LIFECYCLE_PARTITIONS: i32 = 3;
pub const ANSWERS_PARTITIONS: i32 = 3;
pub const DEAD_LETTERS_PARTITIONS: i32 = 1;

/// Dead-letter headers: why the record was set aside (`undecodable`, `unknown_event_type`,
/// `newer_schema`), the decoder's message, and the record's origin.
pub const HEADER_DEAD_LETTER_REASON: &str = "dead_letter_reason";
pub const HEADER_DEAD_LETTER_DETAIL: &str = "dead_letter_detail";
pub const HEADER_ORIGIN_TOPIC: &str = "origin_topic";
pub const HEADER_ORIGIN_PARTITION: &str = "origin_partition";
pub const HEADER_ORIGIN_OFFSET: &str = "origin_offset";

/// The topic names one deployment uses. A prefix keeps tests, or tenants, apart on one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub lifecycle: String,
    pub answers: String,
    pub dead_letters: String,
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
            dead_letters: format!("{prefix}{DEAD_LETTERS}"),
        }
    }

    /// Topic names with the partition count each is created with.
    pub fn with_partitions(&self) -> [(&str, i32); 3] {
        [
            (self.lifecycle.as_str(), LIFECYCLE_PARTITIONS),
            (self.answers.as_str(), ANSWERS_PARTITIONS),
            (self.dead_letters.as_str(), DEAD_LETTERS_PARTITIONS),
        ]
    }

    /// The topic an event is appended to.
    pub fn topic_of(&self, event: &Event) -> &str {
        match event {
            Event::AnswerSubmitted(_) => &self.answers,
            _ => &self.lifecycle,
        }
    }

    /// The topics of events, in the order a replay reads them.
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
