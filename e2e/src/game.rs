//! A quiz played over HTTP by a host and its players, who retry until each answer is final:
//! the workload of the fault tests and of the bench's chaos run.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use podium_testkit::unique;

use crate::processes::{Acknowledged, Client};

/// What each player was told was recorded, by (quiz, player, question).
pub type Acks = Mutex<HashMap<(String, String, i32), Acknowledged>>;

/// A quiz played over HTTP.
#[derive(Debug, Clone)]
pub struct Game {
    pub quiz_id: String,
    pub host: String,
    pub join_code: String,
    /// Each player's id and token.
    pub players: Vec<(String, String)>,
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// Creates a quiz of `questions` questions (two minutes each, so no clock closes one during
/// an outage) and joins `players` players.
pub async fn create(stack: &Client, players: usize, questions: usize) -> Result<Game> {
    create_timed(stack, players, questions, 120).await
}

/// As [`create`], each question open for `seconds` (5 at least).
pub async fn create_timed(
    stack: &Client,
    players: usize,
    questions: usize,
    seconds: u32,
) -> Result<Game> {
    let quiz = serde_json::json!({
        "title": unique("recovery"),
        "questions": (1..=questions).map(|n| serde_json::json!({
            "text": format!("question {n}"),
            "choices": ["a", "b", "c"],
            "correct_choice": 1,
            "time_limit_seconds": seconds
        })).collect::<Vec<_>>()
    });
    let (status, created) = stack
        .post_until_final("/v1/quizzes", None, None, &quiz)
        .await?;
    ensure!(status == 201, "create: {status} {created}");
    let mut game = Game {
        quiz_id: text(&created, "quiz_id"),
        host: text(&created, "host_token"),
        join_code: text(&created, "join_code"),
        players: Vec::with_capacity(players),
    };
    let joins = futures::stream::iter(0..players)
        .map(|i| {
            let body =
                serde_json::json!({"join_code": game.join_code, "name": format!("player {i}")});
            async move { stack.post_until_final("/v1/join", None, None, &body).await }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await;
    for joined in joins {
        let (status, joined) = joined?;
        ensure!(status == 201, "join: {status} {joined}");
        game.players
            .push((text(&joined, "player_id"), text(&joined, "player_token")));
    }
    Ok(game)
}

/// A host command, retried until final. A retry after an acknowledgement the host did not see
/// is refused as out of order or no longer active, which means it stands.
pub async fn host(stack: &Client, game: &Game, action: &str) -> Result<()> {
    let path = format!("/v1/quizzes/{}/{action}", game.quiz_id);
    let (status, reply) = stack
        .post_until_final(&path, Some(&game.host), None, &serde_json::json!({}))
        .await?;
    let repeated = matches!(
        reply["code"].as_str(),
        Some("question_out_of_order" | "question_not_active" | "question_closed" | "quiz_finished")
    );
    ensure!(status == 200 || repeated, "{action}: {status} {reply}");
    Ok(())
}

/// Every player answers question `n`, 64 at a time, each retrying under one idempotency key
/// until told the answer is recorded.
pub async fn answer_all(stack: &Client, game: &Game, n: i32, acks: &Acks) -> Result<()> {
    let mut answers = futures::stream::iter(game.players.iter().enumerate())
        .map(|(i, (player, token))| async move {
            let choice = i64::try_from((i + usize::try_from(n).unwrap_or(0)) % 3).unwrap_or(0);
            let ack = stack
                .answer(&game.quiz_id, token, i64::from(n), choice)
                .await?;
            anyhow::Ok((player.clone(), ack))
        })
        .buffer_unordered(64);
    while let Some(answer) = answers.next().await {
        let (player, ack) = answer?;
        let _ = acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((game.quiz_id.clone(), player, n), ack);
    }
    Ok(())
}

/// How many answers to question `n` were acknowledged so far.
pub fn answered_to(acks: &Acks, n: i32) -> usize {
    acks.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys()
        .filter(|(_, _, q)| *q == n)
        .count()
}

pub async fn play_question(stack: &Client, game: &Game, n: i32, acks: &Acks) -> Result<()> {
    host(stack, game, &format!("questions/{n}/start")).await?;
    answer_all(stack, game, n, acks).await?;
    host(stack, game, &format!("questions/{n}/close")).await
}

/// Every acknowledged answer is in the log once, and the read models reach a pure fold of the
/// log.
pub async fn nothing_lost_nothing_doubled(
    stack: &crate::processes::Processes,
    acks: &Acks,
) -> Result<()> {
    let acks = acks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let checked = stack
        .every_acknowledged_answer_is_in_the_log_once(&acks)
        .await
        .with_context(|| stack.logs())?;
    ensure!(checked.acknowledged > 0, "no answer was acknowledged");
    // Recorded, not asserted: how many appends reached the log twice after an unknown outcome.
    eprintln!(
        "{} acknowledged answers; {} copies of retried appends in the log",
        checked.acknowledged, checked.copies
    );
    let expected = stack.fold_of_log().await?;
    stack.converges_to(&expected).await
}
