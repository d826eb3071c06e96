//! A whole quiz through HTTP against the real broker and Redis: three questions with right,
//! wrong, late, duplicate and retried answers, a host action tried with a player's token, and a
//! join after the lock. Every response is checked, then the final leaderboard. Time is moved by
//! a manual clock, so "late" needs no sleeping; expected points are worked out by hand from the
//! rules (P = 1000, T = 10 s).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use podium_command_api::clock::ManualClock;
use podium_e2e::Stack;
use podium_testkit::eventually;
use serde_json::{Value, json};

const T0: i64 = 1_800_000_000_000;

struct Game {
    stack: Stack,
    clock: Arc<ManualClock>,
    quiz_id: String,
    host: String,
}

impl Game {
    async fn host(&self, action: &str, token: Option<&str>) -> Result<(u16, Value)> {
        let path = format!("/v1/quizzes/{}/{action}", self.quiz_id);
        self.stack.post(&path, token, &json!({})).await
    }

    async fn answer(
        &self,
        token: &str,
        question: i64,
        choice: i64,
        key: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .stack
            .http
            .post(format!(
                "{}/v1/quizzes/{}/answers",
                self.stack.command_url, self.quiz_id
            ))
            .bearer_auth(token)
            .json(&json!({"question": question, "choice": choice}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

/// (correct, points, streak, streak_bonus, total) of an answer response.
fn scored(body: &Value) -> (bool, i64, i64, i64, i64) {
    let n = |f: &str| body[f].as_i64().unwrap_or(-1);
    (
        body["correct"].as_bool().unwrap_or_default(),
        n("points"),
        n("streak"),
        n("streak_bonus"),
        n("total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_quiz_plays_by_the_rules() -> Result<()> {
    let clock = Arc::new(ManualClock::new(T0));
    let stack = Stack::start_with_clock(clock.clone()).await?;
    let question = |text: &str| json!({"text": text, "choices": ["a", "b", "c"], "correct_choice": 1, "time_limit_seconds": 10});
    let (status, created) = stack
        .post("/v1/quizzes", None, &json!({"title": "Rules", "questions": [question("one"), question("two"), question("three")]}))
        .await?;
    assert_eq!(status, 201, "{created}");
    assert!(
        !created.to_string().contains("correct_choice"),
        "the key stays on the command side"
    );
    let code_ = created["join_code"].as_str().unwrap_or_default().to_owned();
    let game = Game {
        quiz_id: created["quiz_id"].as_str().unwrap_or_default().to_owned(),
        host: created["host_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        stack,
        clock,
    };

    let mut tokens = vec![];
    let mut ids = vec![];
    for name in ["Ann", "Bob", "Cat"] {
        let (status, joined) = game
            .stack
            .post("/v1/join", None, &json!({"join_code": code_, "name": name}))
            .await?;
        assert_eq!(status, 201, "{joined}");
        tokens.push(
            joined["player_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        ids.push(joined["player_id"].as_str().unwrap_or_default().to_owned());
    }
    let (ann, bob, cat) = (&tokens[0], &tokens[1], &tokens[2]);
    let (status, unknown) = game
        .stack
        .post(
            "/v1/join",
            None,
            &json!({"join_code": "XXXXXX", "name": "Dan"}),
        )
        .await?;
    assert_eq!((status, code(&unknown)), (404, "quiz_not_found"));

    // Only the host drives the quiz.
    let (status, body) = game.host("lock", Some(ann)).await?;
    assert_eq!((status, code(&body)), (403, "not_host"));
    let (status, body) = game.host("lock", None).await?;
    assert_eq!((status, code(&body)), (401, "invalid_token"));
    let (status, body) = game.host("lock", Some(&game.host)).await?;
    assert_eq!(
        (status, body["joining_locked"].as_bool()),
        (200, Some(true))
    );
    let (status, body) = game
        .stack
        .post(
            "/v1/join",
            None,
            &json!({"join_code": code_, "name": "Dan"}),
        )
        .await?;
    assert_eq!((status, code(&body)), (409, "joining_locked"));

    // Question 1 at T0.
    let (status, started) = game.host("questions/1/start", Some(&game.host)).await?;
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        started["current_question"]["deadline"].as_i64(),
        Some(T0 + 10_000)
    );
    assert!(!started.to_string().contains("correct_choice"));
    game.clock.advance(2_000);
    let (status, first) = game.answer(ann, 1, 1, Some("ann-1")).await?;
    assert_eq!(status, 201, "{first}");
    assert_eq!(scored(&first), (true, 900, 1, 0, 900), "1000 × (1 − 2/20)");
    let (status, retried) = game.answer(ann, 1, 1, Some("ann-1")).await?;
    assert_eq!(
        (status, &retried),
        (200, &first),
        "an idempotent retry gets the original"
    );
    let (status, second) = game.answer(ann, 1, 0, Some("ann-2")).await?;
    assert_eq!((status, code(&second)), (409, "already_answered"));
    assert_eq!(second["original"]["points"].as_i64(), Some(900));
    let (status, wrong) = game.answer(bob, 1, 0, None).await?;
    assert_eq!((status, scored(&wrong)), (201, (false, 0, 0, 0, 0)));
    let (status, body) = game.answer(cat, 1, 9, None).await?;
    assert_eq!((status, code(&body)), (422, "invalid_choice"));
    let (status, body) = game.answer(cat, 2, 1, None).await?;
    assert_eq!((status, code(&body)), (409, "question_not_active"));
    game.clock.advance(8_001);
    let (status, late) = game.answer(cat, 1, 1, None).await?;
    assert_eq!(
        (status, code(&late)),
        (409, "question_closed"),
        "t = T + 1 ms is late"
    );

    // Question 2 at T0 + 20 s; starting it closes question 1.
    game.clock.advance(9_999);
    let (status, _) = game.host("questions/2/start", Some(&game.host)).await?;
    assert_eq!(status, 200);
    let (status, body) = game.answer(cat, 1, 1, None).await?;
    assert_eq!((status, code(&body)), (409, "question_closed"));
    let (status, body) = game.answer(bob, 1, 1, None).await?;
    assert_eq!(
        (status, code(&body)),
        (409, "already_answered"),
        "the first answer counts, even when wrong"
    );
    let (_, a2) = game.answer(ann, 2, 1, None).await?;
    assert_eq!(
        scored(&a2),
        (true, 1000, 2, 100, 2000),
        "t = 0, second in a row"
    );
    game.clock.advance(5_000);
    let (_, b2) = game.answer(bob, 2, 1, None).await?;
    assert_eq!(
        scored(&b2),
        (true, 750, 1, 0, 750),
        "the wrong answer broke Bob's streak"
    );
    game.clock.advance(5_000);
    let (_, c2) = game.answer(cat, 2, 1, None).await?;
    assert_eq!(scored(&c2), (true, 500, 1, 0, 500), "t = T earns half");
    let (status, closed) = game.host("questions/2/close", Some(&game.host)).await?;
    assert_eq!(
        (status, closed["current_question"]["open"].as_bool()),
        (200, Some(false))
    );

    // Question 3.
    game.clock.advance(1_000);
    let (status, _) = game.host("questions/3/start", Some(&game.host)).await?;
    assert_eq!(status, 200);
    let (_, a3) = game.answer(ann, 3, 2, None).await?;
    assert_eq!(scored(&a3), (false, 0, 0, 0, 2000));
    game.clock.advance(1_000);
    let (_, b3) = game.answer(bob, 3, 1, None).await?;
    assert_eq!(scored(&b3), (true, 950, 2, 100, 1800));

    let (status, finished) = game.host("finish", Some(&game.host)).await?;
    assert_eq!((status, finished["finished"].as_bool()), (200, Some(true)));
    let (status, body) = game.answer(cat, 3, 1, None).await?;
    assert_eq!((status, code(&body)), (409, "quiz_finished"));
    let (status, body) = game.host("questions/3/start", Some(&game.host)).await?;
    assert_eq!((status, code(&body)), (409, "quiz_finished"));

    // Ann 2000 (2 s), Bob 1800 (5 + 1 + 2 = 8 s), Cat 500 (10 s).
    let want = json!([
        {"rank": 1, "player_id": ids[0], "points": 2000, "elapsed_ms": 2_000},
        {"rank": 2, "player_id": ids[1], "points": 1800, "elapsed_ms": 8_000},
        {"rank": 3, "player_id": ids[2], "points": 500, "elapsed_ms": 10_000},
    ]);
    let path = format!("/v1/quizzes/{}/leaderboard", game.quiz_id);
    let board = eventually("the final leaderboard", Duration::from_secs(30), || async {
        let (_, board) = game.stack.get(&path).await.ok()?;
        (without_names(&board["entries"]) == want).then_some(board)
    })
    .await;
    assert!(
        board.is_ok(),
        "wanted {want}, last {:?}",
        game.stack.get(&path).await.ok()
    );

    game.stack.stop().await;
    Ok(())
}

/// Leaderboard entries without the display names, which this test does not compare.
fn without_names(entries: &serde_json::Value) -> serde_json::Value {
    let mut entries = entries.clone();
    for entry in entries.as_array_mut().into_iter().flatten() {
        let _ = entry.as_object_mut().map(|e| e.remove("name"));
    }
    entries
}
