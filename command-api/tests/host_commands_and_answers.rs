//! Answers beside a host command whose append is still in flight. An answer the pending events
//! cannot change (another player's kick, a lock of joining) is decided at once; one they can
//! (its question's close, its player's kick, the finish) waits for the outcome, so the rules
//! never accept what the recorded state refuses.
//!
//! The log is the in-memory adapter behind a gate that holds lifecycle appends until the test
//! releases them: a real broker cannot be made to hold one topic's acknowledgements at a
//! chosen moment.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use podium_command_api::Error;
use podium_command_api::clock::{Clock, ManualClock};
use podium_command_api::event_log::{
    AppendError, Entry, EventLog, LogRead, MemoryEventLog, Position, Positions,
};
use podium_command_api::quizzes::{AnswerReceipt, Quizzes};
use podium_schemas::domain::{AnswerCommand, Command, ReadModels, Rejection};

mod support;
use podium_schemas::events::Event;
use tokio::sync::watch;

const START: i64 = 1_800_000_000_000;
/// Only a guard against a hang: every wait here ends as soon as the code under test lets it.
const GUARD: Duration = Duration::from_secs(10);

/// Holds every lifecycle append while closed; answers pass.
#[derive(Debug)]
struct GatedLog {
    log: MemoryEventLog,
    open: watch::Sender<bool>,
}

impl GatedLog {
    fn new() -> Self {
        Self {
            log: MemoryEventLog::default(),
            open: watch::Sender::new(true),
        }
    }

    fn hold_lifecycle(&self) {
        let _ = self.open.send_replace(false);
    }

    fn release(&self) {
        let _ = self.open.send_replace(true);
    }
}

#[async_trait]
impl EventLog for GatedLog {
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError> {
        if !matches!(entry.event, Event::AnswerSubmitted(_)) {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        self.log.append(entry).await
    }

    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError> {
        self.log.read_from(from).await
    }

    async fn flush(&self) {}
}

struct Game {
    log: Arc<GatedLog>,
    clock: Arc<ManualClock>,
    quizzes: Arc<Quizzes>,
    quiz_id: String,
    ann: String,
    bob: String,
}

/// A quiz of two questions, Ann and Bob joined, question 1 open for two seconds.
async fn game() -> Result<Game> {
    let log = Arc::new(GatedLog::new());
    let clock = Arc::new(ManualClock::new(START));
    let quizzes = Quizzes::restore(log.clone(), clock.clone()).await?;
    let quiz_id = quizzes
        .create(&support::two_questions("Beside the host"))
        .await?
        .quiz_id;
    let ann = quizzes.join(&quiz_id, "Ann").await?.player_id;
    let bob = quizzes.join(&quiz_id, "Bob").await?.player_id;
    let _ = quizzes
        .host(
            &quiz_id,
            Command::StartQuestion {
                question: 1,
                at: clock.now(),
            },
        )
        .await?;
    clock.advance(2_000);
    Ok(Game {
        log,
        clock,
        quizzes,
        quiz_id,
        ann,
        bob,
    })
}

impl Game {
    /// Runs a host command in a task of its own, with its lifecycle appends held.
    fn host_held(&self, command: Command) -> tokio::task::JoinHandle<Result<(), Error>> {
        self.log.hold_lifecycle();
        let quizzes = self.quizzes.clone();
        let quiz_id = self.quiz_id.clone();
        tokio::spawn(async move { quizzes.host(&quiz_id, command).await.map(|_| ()) })
    }

    fn answer(
        &self,
        player_id: &str,
        question: i32,
    ) -> impl Future<Output = Result<AnswerReceipt, Error>> + 'static {
        let quizzes = self.quizzes.clone();
        let quiz_id = self.quiz_id.clone();
        let command = AnswerCommand {
            player_id: player_id.into(),
            question,
            choice: 0,
            received_at: self.clock.now(),
            idempotency_key: Some(format!("{player_id}/{question}")),
        };
        async move { quizzes.answer(&quiz_id, command).await }
    }

    /// The points the pure fold of the log gives `player_id`.
    async fn folded_points(&self, player_id: &str) -> Result<i64> {
        let events = self.log.log.history().await?;
        let models = ReadModels::fold(&events);
        Ok(models.quizzes[&self.quiz_id]
            .players
            .get(player_id)
            .map_or(0, |p| p.points))
    }
}

/// Lets every task that can run do so, on the test's one thread: a task still unfinished after
/// it waits on something only the test can release.
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_answer_the_pending_host_command_cannot_change_is_decided_at_once() -> Result<()> {
    let game = game().await?;
    let kick = game.host_held(Command::Kick {
        player_id: game.bob.clone(),
        at: game.clock.now(),
    });
    settle().await;
    ensure!(!kick.is_finished(), "the kick's append should be held");

    // Ann is not the one kicked: her answer does not wait for the kick's acknowledgement.
    let receipt = tokio::time::timeout(GUARD, game.answer(&game.ann, 1))
        .await
        .context("Ann's answer waited for Bob's kick")??;
    ensure!(!receipt.repeated && receipt.total > 0, "{receipt:?}");
    ensure!(
        !kick.is_finished(),
        "the kick finished before its append was released"
    );

    game.log.release();
    kick.await??;
    ensure!(game.folded_points(&game.ann).await? == receipt.total);
    Ok(())
}

#[tokio::test]
async fn an_answer_to_a_question_whose_close_is_pending_waits_and_is_refused() -> Result<()> {
    let game = game().await?;
    let close = game.host_held(Command::CloseQuestion {
        question: 1,
        at: game.clock.now(),
    });
    settle().await;
    game.clock.advance(100);
    let answer = tokio::spawn(game.answer(&game.ann, 1));
    settle().await;
    ensure!(
        !answer.is_finished(),
        "the answer was decided while its question's close was pending"
    );

    game.log.release();
    close.await??;
    match answer.await? {
        Err(Error::Rejected(Rejection::QuestionClosed(1))) => {}
        other => bail!("expected question_closed, got {other:?}"),
    }
    ensure!(game.folded_points(&game.ann).await? == 0);
    Ok(())
}

#[tokio::test]
async fn a_kicked_players_answer_waits_for_the_kick_and_is_refused() -> Result<()> {
    let game = game().await?;
    let kick = game.host_held(Command::Kick {
        player_id: game.bob.clone(),
        at: game.clock.now(),
    });
    settle().await;
    let answer = tokio::spawn(game.answer(&game.bob, 1));
    settle().await;
    ensure!(
        !answer.is_finished(),
        "Bob's answer did not wait for his kick"
    );

    game.log.release();
    kick.await??;
    match answer.await? {
        Err(Error::Rejected(Rejection::PlayerKicked)) => {}
        other => bail!("expected player_kicked, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_join_waits_for_a_pending_lock_of_joining() -> Result<()> {
    let game = game().await?;
    let lock = game.host_held(Command::LockJoining {
        at: game.clock.now(),
    });
    settle().await;
    let quizzes = game.quizzes.clone();
    let quiz_id = game.quiz_id.clone();
    let join = tokio::spawn(async move { quizzes.join(&quiz_id, "Cat").await });
    settle().await;
    ensure!(!join.is_finished(), "the join did not wait for the lock");

    game.log.release();
    lock.await??;
    match join.await? {
        Err(Error::Rejected(Rejection::JoiningLocked)) => {}
        other => bail!("expected joining_locked, got {other:?}"),
    }
    // Answers are not joins: Ann answers while joining is locked.
    let _ = game.answer(&game.ann, 1).await?;
    Ok(())
}

#[tokio::test]
async fn a_second_host_command_waits_for_the_first() -> Result<()> {
    let game = game().await?;
    let close = game.host_held(Command::CloseQuestion {
        question: 1,
        at: game.clock.now(),
    });
    settle().await;
    let quizzes = game.quizzes.clone();
    let quiz_id = game.quiz_id.clone();
    let at = game.clock.now();
    let start = tokio::spawn(async move {
        quizzes
            .host(&quiz_id, Command::StartQuestion { question: 2, at })
            .await
    });
    settle().await;
    ensure!(!start.is_finished(), "the start did not wait for the close");
    game.log.release();
    close.await??;
    let status = start.await??;
    ensure!(
        status
            .current_question
            .as_ref()
            .is_some_and(|q| q.number == 2 && q.open),
        "{status:?}"
    );
    Ok(())
}
