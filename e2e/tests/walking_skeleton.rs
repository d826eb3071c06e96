//! An answer goes in, a leaderboard comes out: 50 players join and answer two questions through
//! HTTP, against a real tansu broker and a real Redis, and the query API's leaderboard must equal
//! the one this test computes from the answer responses.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use podium_e2e::Stack;
use podium_testkit::eventually;
use rand::Rng;
use serde_json::{Value, json};

const PLAYERS: usize = 50;
const QUESTIONS: i64 = 2;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    points: i64,
    elapsed_ms: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_players_answer_and_the_leaderboard_matches() -> Result<()> {
    let stack = Stack::start().await?;

    let quiz = json!({
        "title": "Walking skeleton",
        "questions": [
            {"text": "2 + 2?", "choices": ["3", "4", "5"], "correct_choice": 1},
            {"text": "Capital of France?", "choices": ["Paris", "Lyon"], "correct_choice": 0, "points": 2000}
        ]
    });
    let (status, created) = stack.post("/v1/quizzes", None, &quiz).await?;
    ensure!(status == 201, "create: {status} {created}");
    let quiz_id = created["quiz_id"].as_str().unwrap_or_default().to_owned();
    let host = created["host_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let join_code = created["join_code"].as_str().unwrap_or_default().to_owned();

    let mut players = Vec::new();
    for i in 0..PLAYERS {
        let (status, joined) = stack
            .post(
                "/v1/join",
                None,
                &json!({"join_code": join_code, "name": format!("player {i}")}),
            )
            .await?;
        ensure!(status == 201, "join {i}: {status} {joined}");
        players.push((
            joined["player_id"].as_str().unwrap_or_default().to_owned(),
            joined["player_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }

    let mut expected: HashMap<String, Expected> = HashMap::new();
    for question in 1..=QUESTIONS {
        let (status, body) = stack
            .post(
                &format!("/v1/quizzes/{quiz_id}/questions/{question}/start"),
                Some(&host),
                &json!({}),
            )
            .await?;
        ensure!(status == 200, "start {question}: {status} {body}");
        // Everyone answers at once, with a random choice.
        let answers = players.iter().map(|(player_id, token)| {
            let choice = rand::rng().random_range(0..2);
            let stack = &stack;
            let quiz_id = &quiz_id;
            async move {
                let (status, body) = stack
                    .post(
                        &format!("/v1/quizzes/{quiz_id}/answers"),
                        Some(token),
                        &json!({"question": question, "choice": choice}),
                    )
                    .await?;
                ensure!(status == 201, "answer by {player_id}: {status} {body}");
                Ok::<(String, Value), anyhow::Error>((player_id.clone(), body))
            }
        });
        for (player_id, body) in futures::future::try_join_all(answers).await? {
            let e = expected.entry(player_id).or_default();
            e.points +=
                body["points"].as_i64().unwrap_or(-1) + body["streak_bonus"].as_i64().unwrap_or(-1);
            e.elapsed_ms += body["elapsed_ms"].as_i64().unwrap_or(-1);
            ensure!(
                body["total"].as_i64() == Some(e.points),
                "the response's total is the running sum: {body}"
            );
        }
    }

    // The test's own leaderboard: points desc, elapsed asc, player id asc.
    let mut ranked: Vec<(String, Expected)> = expected.into_iter().collect();
    ranked.sort_by(|(a_id, a), (b_id, b)| {
        b.points
            .cmp(&a.points)
            .then(a.elapsed_ms.cmp(&b.elapsed_ms))
            .then(a_id.cmp(b_id))
    });
    let want: Vec<Value> = ranked
        .iter()
        .zip(1..)
        .map(|((id, e), rank)| json!({"rank": rank, "player_id": id, "points": e.points, "elapsed_ms": e.elapsed_ms}))
        .collect();

    // Wait for the projector by polling until the board is complete, with a deadline.
    let path = format!("/v1/quizzes/{quiz_id}/leaderboard?limit=100");
    let last = std::sync::Mutex::new(Value::Null);
    let caught_up = eventually(
        "the projector to catch up",
        Duration::from_secs(60),
        || async {
            let (status, body) = stack.get(&path).await.ok()?;
            let mut entries = body["entries"].as_array().cloned().unwrap_or_default();
            for entry in &mut entries {
                // Names are the join's business; this test checks scores and order.
                let _ = entry.as_object_mut().map(|e| e.remove("name"));
            }
            let done = status == 200 && entries == want;
            *last.lock().ok()? = body.clone();
            done.then_some(body)
        },
    )
    .await;
    let board = match caught_up {
        Ok(board) => board,
        Err(e) => panic!(
            "{e}\nwanted {want:#?}\nlast seen {:#}",
            last.lock().map(|l| l.clone()).unwrap_or_default()
        ),
    };
    assert!(board["version"].as_u64() > Some(0), "{board}");

    // One player's points and rank agree with the board.
    for (rank, (player_id, e)) in ranked.iter().enumerate().step_by(7) {
        let (status, standing) = stack
            .get(&format!("/v1/quizzes/{quiz_id}/players/{player_id}"))
            .await?;
        assert_eq!(status, 200, "{standing}");
        assert_eq!(standing["rank"].as_u64(), Some(rank as u64 + 1));
        assert_eq!(standing["points"].as_i64(), Some(e.points));
        assert_eq!(standing["answers"].as_i64(), Some(QUESTIONS));
    }
    let (status, missing) = stack
        .get(&format!("/v1/quizzes/{quiz_id}/players/nobody"))
        .await?;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("player_not_found"))
    );

    stack.stop().await;
    Ok(())
}
