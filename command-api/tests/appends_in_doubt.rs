//! Appends whose outcome is unknown: the broker may have written the event and died before it
//! answered. The command side must append the same entry again before deciding anything that
//! depends on it, so a retried request gets its original result and the log never holds two
//! different decisions for one request.
//!
//! The log here is the in-memory adapter behind a wrapper that loses the broker's answer on
//! demand: a real broker cannot be made to write a record and drop the reply at a chosen
//! moment. The recovery tests in `e2e` cause the same on a real broker with `kill -9`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Result, bail, ensure};
use async_trait::async_trait;
use podium_command_api::Error;
use podium_command_api::clock::{Clock, ManualClock};
use podium_command_api::event_log::{
    AppendError, Entry, EventLog, LogRead, MemoryEventLog, Position, Positions,
};
use podium_command_api::quizzes::Quizzes;
use podium_schemas::domain::{AnswerCommand, Command, ReadModels};

mod support;
use podium_schemas::events::Event;

const START: i64 = 1_800_000_000_000;

/// What the next append does.
const ANSWERED: u8 = 0;
/// Writes the entry, then reports a failure: the broker died before it answered.
const WRITTEN_UNANSWERED: u8 = 1;
/// Writes nothing and reports a failure.
const LOST_UNANSWERED: u8 = 2;

#[derive(Debug, Default)]
struct UnansweredLog {
    log: MemoryEventLog,
    next: AtomicU8,
    /// The id of every entry written, in order.
    ids: std::sync::Mutex<Vec<uuid::Uuid>>,
}

impl UnansweredLog {
    fn next_append(&self, what: u8) {
        self.next.store(what, Ordering::SeqCst);
    }

    async fn events(&self) -> Result<Vec<Event>> {
        Ok(self.log.history().await?)
    }

    fn ids(&self) -> Vec<uuid::Uuid> {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl EventLog for UnansweredLog {
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError> {
        let what = self.next.swap(ANSWERED, Ordering::SeqCst);
        if what != LOST_UNANSWERED {
            let _ = self.log.append(entry).await?;
            self.ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(entry.id);
        }
        match what {
            ANSWERED => Ok(Position {
                topic: String::new(),
                partition: 0,
                offset: 0,
            }),
            _ => Err(AppendError::Failed(
                "the broker died before it answered".into(),
            )),
        }
    }

    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError> {
        self.log.read_from(from).await
    }

    async fn flush(&self) {}
}

struct Game {
    log: Arc<UnansweredLog>,
    clock: Arc<ManualClock>,
    quizzes: Arc<Quizzes>,
    quiz_id: String,
}

async fn game() -> Result<Game> {
    let log = Arc::new(UnansweredLog::default());
    let clock = Arc::new(ManualClock::new(START));
    let quizzes = Quizzes::restore(log.clone(), clock.clone()).await?;
    let created = quizzes.create(&support::two_questions("In doubt")).await?;
    Ok(Game {
        log,
        clock,
        quizzes,
        quiz_id: created.quiz_id,
    })
}

impl Game {
    async fn join(&self, name: &str) -> Result<String> {
        Ok(self.quizzes.join(&self.quiz_id, name).await?.player_id)
    }

    async fn start(&self, question: i32) -> Result<(), Error> {
        let at = self.clock.now();
        self.quizzes
            .host(&self.quiz_id, Command::StartQuestion { question, at })
            .await
            .map(|_| ())
    }

    async fn answer(
        &self,
        player_id: &str,
        question: i32,
        key: &str,
    ) -> Result<podium_command_api::quizzes::AnswerReceipt, Error> {
        self.quizzes
            .answer(
                &self.quiz_id,
                AnswerCommand {
                    player_id: player_id.into(),
                    question,
                    choice: 0,
                    received_at: self.clock.now(),
                    idempotency_key: Some(key.into()),
                },
            )
            .await
    }

    /// Every copy in the log of the player's answers to `question`.
    async fn answers_in_log(&self, player_id: &str, question: i32) -> Result<Vec<Event>> {
        Ok(self
            .log
            .events()
            .await?
            .into_iter()
            .filter(|e| {
                matches!(e, Event::AnswerSubmitted(a) if a.player_id == player_id && a.question == question)
            })
            .collect())
    }

    /// The player's total as the pure fold of the log counts it.
    async fn folded_total(&self, player_id: &str) -> Result<i64> {
        let events = self.log.events().await?;
        let models = ReadModels::fold(&events);
        Ok(models.quizzes[&self.quiz_id]
            .players
            .get(player_id)
            .map_or(0, |p| p.points))
    }
}

/// A game whose player Ann answered question 1 two seconds in, under key `k1`, and whose log
/// did `what` with the answer and reported a failure.
async fn answered_in_doubt(what: u8) -> Result<(Game, String)> {
    let game = game().await?;
    let ann = game.join("Ann").await?;
    game.start(1).await?;
    game.clock.advance(2_000);
    game.log.next_append(what);
    unacknowledged(game.answer(&ann, 1, "k1").await)?;
    Ok((game, ann))
}

fn unacknowledged(result: Result<impl std::fmt::Debug, Error>) -> Result<()> {
    match result {
        Err(Error::Append(AppendError::Failed(_))) => Ok(()),
        other => bail!("expected the append to fail, got {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_written_but_unacknowledged_is_retried_as_the_same_entry() -> Result<()> {
    let (game, ann) = answered_in_doubt(WRITTEN_UNANSWERED).await?;
    // The player retries later: slower, so a fresh decision would score fewer points.
    game.clock.advance(5_000);
    let retried = game.answer(&ann, 1, "k1").await?;

    let copies = game.answers_in_log(&ann, 1).await?;
    ensure!(copies.len() == 2, "expected two copies, got {copies:?}");
    ensure!(copies[0] == copies[1], "the copies differ: {copies:?}");
    ensure!(
        copies[0] == Event::AnswerSubmitted(retried.answer.clone()),
        "the player was told {:?}, the log holds {:?}",
        retried.answer,
        copies[0]
    );
    ensure!(
        retried.answer.received_at == START + 2_000,
        "rescored on retry"
    );
    let ids = game.log.ids();
    ensure!(
        ids[ids.len() - 1] == ids[ids.len() - 2],
        "the copies carry different ids"
    );
    ensure!(game.folded_total(&ann).await? == retried.total);

    // Another request for the same question finds the original standing.
    match game.answer(&ann, 1, "k2").await {
        Err(Error::Rejected(podium_schemas::domain::Rejection::AlreadyAnswered(original))) => {
            ensure!(*original == retried.answer);
        }
        other => bail!("expected already answered, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_answer_lost_unacknowledged_is_appended_once_on_retry() -> Result<()> {
    let (game, ann) = answered_in_doubt(LOST_UNANSWERED).await?;
    ensure!(game.answers_in_log(&ann, 1).await?.is_empty());
    game.clock.advance(5_000);
    let retried = game.answer(&ann, 1, "k1").await?;
    let copies = game.answers_in_log(&ann, 1).await?;
    ensure!(copies == [Event::AnswerSubmitted(retried.answer.clone())]);
    ensure!(game.folded_total(&ann).await? == retried.total);
    Ok(())
}

#[tokio::test]
async fn the_next_answer_settles_the_one_in_doubt_first() -> Result<()> {
    let (game, ann) = answered_in_doubt(WRITTEN_UNANSWERED).await?;

    // The player never retries question 1; their answer to question 2 carries the streak of
    // the answer to question 1 that is in the log.
    let _ = game
        .quizzes
        .host(
            &game.quiz_id,
            Command::CloseQuestion {
                question: 1,
                at: game.clock.now(),
            },
        )
        .await?;
    game.start(2).await?;
    game.clock.advance(1_000);
    let second = game.answer(&ann, 2, "k2").await?;
    ensure!(
        second.answer.streak == 2,
        "the streak missed the first answer: {:?}",
        second.answer
    );
    ensure!(game.folded_total(&ann).await? == second.total);
    ensure!(game.answers_in_log(&ann, 1).await?.len() == 2);
    Ok(())
}

#[tokio::test]
async fn a_host_command_in_doubt_is_appended_again_not_decided_again() -> Result<()> {
    let game = game().await?;
    game.log.next_append(WRITTEN_UNANSWERED);
    unacknowledged(game.start(1).await)?;
    game.clock.advance(3_000);
    // The host retries: question 1 starts at the time first decided, not a second time.
    game.start(1).await?;
    let starts: Vec<Event> = game
        .log
        .events()
        .await?
        .into_iter()
        .filter(|e| matches!(e, Event::QuestionStarted(_)))
        .collect();
    ensure!(starts.len() == 2 && starts[0] == starts[1], "{starts:?}");
    let Event::QuestionStarted(started) = &starts[0] else {
        bail!("not a start")
    };
    ensure!(started.started_at == START, "{started:?}");
    let view = &ReadModels::fold(&game.log.events().await?).quizzes[&game.quiz_id];
    ensure!(
        view.flow == 1,
        "the dashboards saw {} question events",
        view.flow
    );
    Ok(())
}

#[tokio::test]
async fn a_start_whose_close_is_in_doubt_appends_both_again_in_order() -> Result<()> {
    let game = game().await?;
    game.start(1).await?;
    game.clock.advance(1_000);
    let decided_at = game.clock.now();
    // Starting question 2 closes question 1 first: the close is written but unanswered, so the
    // start behind it is not handed to the log at all.
    game.log.next_append(WRITTEN_UNANSWERED);
    unacknowledged(game.start(2).await)?;
    ensure!(
        !game
            .log
            .events()
            .await?
            .iter()
            .any(|e| matches!(e, Event::QuestionStarted(s) if s.question == 2)),
        "no start without the close before it"
    );
    game.clock.advance(4_000);
    // The retry appends the close again, then the start, both as first decided.
    game.start(2).await?;
    let flow: Vec<Event> = game
        .log
        .events()
        .await?
        .into_iter()
        .filter(|e| matches!(e, Event::QuestionClosed(_) | Event::QuestionStarted(_)))
        .collect();
    let shapes: Vec<String> = flow
        .iter()
        .map(|e| match e {
            Event::QuestionStarted(s) => {
                format!("start {} at +{}", s.question, s.started_at - START)
            }
            Event::QuestionClosed(c) => format!("close {} at +{}", c.question, c.closed_at - START),
            _ => String::new(),
        })
        .collect();
    let at = decided_at - START;
    ensure!(
        shapes
            == [
                "start 1 at +0".to_owned(),
                format!("close 1 at +{at}"),
                format!("close 1 at +{at}"),
                format!("start 2 at +{at}"),
            ],
        "{shapes:?}"
    );
    let view = &ReadModels::fold(&game.log.events().await?).quizzes[&game.quiz_id];
    ensure!(view.flow == 3, "start, close, start: {}", view.flow);
    Ok(())
}

#[tokio::test]
async fn a_join_in_doubt_gives_the_same_player_to_the_retry() -> Result<()> {
    let game = game().await?;
    game.log.next_append(WRITTEN_UNANSWERED);
    unacknowledged(game.quizzes.join(&game.quiz_id, "Ann").await)?;
    let bob = game.join("Bob").await?;
    let ann = game.join("ann").await?;
    let joins: Vec<Event> = game
        .log
        .events()
        .await?
        .into_iter()
        .filter(|e| matches!(e, Event::PlayerJoined(j) if j.player_id == ann))
        .collect();
    ensure!(joins.len() == 2 && joins[0] == joins[1], "{joins:?}");
    ensure!(ann != bob);
    let view = &ReadModels::fold(&game.log.events().await?).quizzes[&game.quiz_id];
    ensure!(view.player_count() == 2);
    Ok(())
}
