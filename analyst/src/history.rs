//! One quiz's events read back from the log, and the quiz as it stood at a moment.
//!
//! **Which time "as of" means.** An event counts as of `T` when its own domain time is at or
//! before `T`: `created_at`, `joined_at`, `locked_at`, `started_at`, `closed_at`, `finished_at`,
//! and an answer's `received_at`. The command side stamps these with its clock before it appends
//! the event and acknowledges the command, so they are the times the quiz's participants saw.
//! They are part of the events, so the answer is deterministic: the same for every replay, on
//! every broker, after any copy of the topics. Record timestamps are not used here (they are the
//! producer's send time, or the broker's append time on a topic configured so, and a mirror may
//! rewrite them); `export --from/--to` filters on those.

use indicatif::{ProgressBar, ProgressStyle};
use podium_runtime::KafkaArgs;
use podium_schemas::domain::QuizView;
use podium_schemas::events::Millis;
use podium_schemas::fence::{Fence, Verdict};
use podium_schemas::{Codec, Event};

use crate::error::{Error, Result};
use crate::log::{EventLog, Flow};
use crate::time::Timestamp;

/// When to look at a quiz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Everything the log holds now.
    Latest,
    /// Every event whose domain time is at or before this time.
    AsOf(Timestamp),
    /// Right after question N closed: the lifecycle up to that close, and the answers to
    /// questions 1 to N (no answer to a question is accepted after it closes).
    AfterQuestion(i32),
}

/// The domain time of an event: when the command side says it happened.
pub fn event_time(event: &Event) -> Millis {
    match event {
        Event::QuizCreated(e) => e.created_at,
        Event::PlayerJoined(e) => e.joined_at,
        Event::PlayerKicked(e) => e.kicked_at,
        Event::JoiningLocked(e) => e.locked_at,
        Event::QuestionStarted(e) => e.started_at,
        Event::QuestionClosed(e) => e.closed_at,
        Event::QuizFinished(e) => e.finished_at,
        Event::AnswerSubmitted(e) => e.received_at,
    }
}

/// Every event of one quiz: its lifecycle in log order (one partition holds it all), then its
/// answers, each player's in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuizHistory {
    pub quiz_id: String,
    pub lifecycle: Vec<Event>,
    pub answers: Vec<Event>,
    /// Records of the topics that could not be decoded (they may belong to any quiz).
    pub undecodable: u64,
    /// Records every reader voids: appended by a command-side owner that had lost its shard
    /// (ADR 0011). They may belong to any quiz.
    pub void: u64,
}

impl QuizHistory {
    /// Reads the quiz's events from both topics, up to the high watermarks of this moment.
    /// Holds one quiz's events in memory; the log streams past.
    pub fn read(kafka: &KafkaArgs, quiz_id: &str, progress: bool) -> Result<Self> {
        let log = EventLog::connect(kafka)?;
        let topics = kafka.topics();
        let mut partitions = Vec::new();
        for topic in topics.all() {
            partitions.extend(log.partitions(topic)?);
        }
        let total: i64 = partitions.iter().map(|p| p.high - p.low).sum();
        let bar = if progress {
            ProgressBar::new(u64::try_from(total).unwrap_or(0))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("reading {bar:40} {pos}/{len} records, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let codec = Codec::new();
        let mut history = Self {
            quiz_id: quiz_id.to_owned(),
            ..Self::default()
        };
        // From each partition's start: the fence voids what the projectors void.
        let mut fence = Fence::default();
        for marks in &partitions {
            log.read(&marks.topic, marks.partition, marks.low, marks.high, |record| {
                bar.inc(1);
                match record.judge(&mut fence) {
                    Verdict::Count => {}
                    Verdict::Claim => return Ok(Flow::Continue),
                    Verdict::Void => {
                        history.void += 1;
                        return Ok(Flow::Continue);
                    }
                }
                match codec.decode(&record.payload) {
                    Ok(event) if event.quiz_id() == quiz_id => history.push(event),
                    Ok(_) => {}
                    Err(e) => {
                        history.undecodable += 1;
                        tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "undecodable record skipped");
                    }
                }
                Ok(Flow::Continue)
            })?;
        }
        bar.finish_and_clear();
        if history.lifecycle.is_empty() && history.answers.is_empty() {
            return Err(Error::QuizNotFound(quiz_id.to_owned()));
        }
        Ok(history)
    }

    /// A history from events in log order (tests, and callers that read the log themselves).
    pub fn from_events<'a>(quiz_id: &str, events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut history = Self {
            quiz_id: quiz_id.to_owned(),
            ..Self::default()
        };
        for event in events.into_iter().filter(|e| e.quiz_id() == quiz_id) {
            history.push(event.clone());
        }
        history
    }

    fn push(&mut self, event: Event) {
        match event {
            Event::AnswerSubmitted(_) => self.answers.push(event),
            _ => self.lifecycle.push(event),
        }
    }

    /// The events that had happened at `moment`.
    pub fn until(&self, moment: Moment) -> Result<Vec<&Event>> {
        Ok(match moment {
            Moment::Latest => self.lifecycle.iter().chain(&self.answers).collect(),
            Moment::AsOf(t) => self
                .lifecycle
                .iter()
                .chain(&self.answers)
                .filter(|e| event_time(e) <= t.millis())
                .collect(),
            Moment::AfterQuestion(n) => {
                let close = self
                    .lifecycle
                    .iter()
                    .position(|e| matches!(e, Event::QuestionClosed(c) if c.question == n))
                    .ok_or_else(|| Error::Quiz {
                        quiz_id: self.quiz_id.clone(),
                        reason: format!("question {n} has not closed in the log"),
                    })?;
                self.lifecycle[..=close]
                    .iter()
                    .chain(
                        self.answers
                            .iter()
                            .filter(|e| matches!(e, Event::AnswerSubmitted(a) if a.question <= n)),
                    )
                    .collect()
            }
        })
    }

    /// Every read model of the quiz at `moment`: the projectors' own pure fold.
    pub fn view(&self, moment: Moment) -> Result<QuizView> {
        Ok(fold(&self.quiz_id, self.until(moment)?))
    }
}

/// Folds events into a [`QuizView`], as the projectors do.
pub fn fold<'a>(quiz_id: &str, events: impl IntoIterator<Item = &'a Event>) -> QuizView {
    let mut view = QuizView::new(quiz_id);
    for event in events {
        let _ = view.apply(event);
    }
    view
}
