//! The leaderboard store against a real Redis: exactly once per log position, the same answers
//! as the pure fold, whatever is redelivered.

use anyhow::Result;
use podium_projectors::leaderboard::{LeaderboardStore, RedisLeaderboard, Sourced};
use podium_schemas::domain::Standings;
use podium_schemas::events::AnswerSubmitted;
use podium_schemas::read_model::{Keys, unpack_score};
use podium_testkit::{Redis, unique};
use redis::AsyncCommands;

fn answer(
    quiz: &str,
    player: &str,
    question: i32,
    points: i32,
    elapsed_ms: i32,
) -> AnswerSubmitted {
    AnswerSubmitted {
        quiz_id: quiz.into(),
        player_id: player.into(),
        question,
        choice: 1,
        received_at: 0,
        elapsed_ms,
        correct: points > 0,
        points,
        streak: 0,
        streak_bonus: 0,
        rule_version: 1,
        idempotency_key: None,
    }
}

fn at(partition: i32, offset: i64, event: AnswerSubmitted) -> Sourced<AnswerSubmitted> {
    Sourced {
        topic: "answers".into(),
        partition,
        offset,
        event,
    }
}

/// The leaderboard as stored: (player, points, elapsed) in order.
async fn stored(redis: &Redis, keys: &Keys, quiz: &str) -> Result<Vec<(String, i64, i64)>> {
    let mut connection = redis.connection().await?;
    let rows: Vec<(String, f64)> = connection
        .zrange_withscores(keys.leaderboard(quiz), 0, -1)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(player, score)| {
            let (points, elapsed) = unpack_score(score);
            (player, points, elapsed)
        })
        .collect())
}

fn folded(batch: &[Sourced<AnswerSubmitted>]) -> Vec<(String, i64, i64)> {
    let mut standings = Standings::default();
    for a in batch {
        let _ = standings.apply(&a.event);
    }
    standings
        .ranked()
        .into_iter()
        .map(|s| (s.player_id, s.points, s.elapsed_ms))
        .collect()
}

#[tokio::test]
async fn a_redelivered_batch_changes_nothing() -> Result<()> {
    let redis = Redis::start().await?;
    let keys = Keys::new(unique("ns"));
    let store = RedisLeaderboard::connect(&redis.url(), keys.clone()).await?;
    let batch = vec![
        at(0, 0, answer("q", "ann", 1, 900, 2_000)),
        at(1, 0, answer("q", "bob", 1, 900, 1_000)),
        at(0, 1, answer("q", "ann", 2, 800, 4_000)),
        at(2, 7, answer("q", "cid", 1, 0, 500)),
    ];
    assert_eq!(store.apply(&batch).await?, 4);
    let once = stored(&redis, &keys, "q").await?;
    assert_eq!(once, folded(&batch));

    // The whole batch again, and an overlapping tail: redeliveries after a crash.
    assert_eq!(store.apply(&batch).await?, 0);
    assert_eq!(store.apply(&batch[2..]).await?, 0);
    assert_eq!(stored(&redis, &keys, "q").await?, once);
    let mut connection = redis.connection().await?;
    let version: u64 = connection.get(keys.version("q")).await?;
    assert_eq!(version, 1, "only the applied batch moved the version");
    Ok(())
}

#[tokio::test]
async fn an_answer_repeated_at_a_new_offset_counts_once() -> Result<()> {
    let redis = Redis::start().await?;
    let keys = Keys::new(unique("ns"));
    let store = RedisLeaderboard::connect(&redis.url(), keys.clone()).await?;
    // A retried append can put the same answer in the log twice: the first one counts.
    let first = at(0, 0, answer("q", "ann", 1, 900, 2_000));
    let retried = at(0, 1, answer("q", "ann", 1, 500, 9_000));
    let batch = vec![first, retried];
    assert_eq!(store.apply(&batch).await?, 1);
    assert_eq!(
        stored(&redis, &keys, "q").await?,
        vec![("ann".to_owned(), 900, 2_000)]
    );
    assert_eq!(stored(&redis, &keys, "q").await?, folded(&batch));
    Ok(())
}

#[tokio::test]
async fn quizzes_are_kept_apart_and_ties_go_to_the_lower_player_id() -> Result<()> {
    let redis = Redis::start().await?;
    let keys = Keys::new(unique("ns"));
    let store = RedisLeaderboard::connect(&redis.url(), keys.clone()).await?;
    let batch = vec![
        at(0, 0, answer("q1", "zed", 1, 500, 100)),
        at(1, 0, answer("q1", "amy", 1, 500, 100)),
        at(0, 1, answer("q2", "zed", 1, 700, 100)),
    ];
    assert_eq!(store.apply(&batch).await?, 3);
    let q1 = stored(&redis, &keys, "q1").await?;
    assert_eq!(
        q1,
        vec![("amy".to_owned(), 500, 100), ("zed".to_owned(), 500, 100)]
    );
    assert_eq!(
        stored(&redis, &keys, "q2").await?,
        vec![("zed".to_owned(), 700, 100)]
    );
    Ok(())
}
