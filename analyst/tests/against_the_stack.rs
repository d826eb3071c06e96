//! The analyst tool against the whole running stack: a quiz is played over HTTP (command API,
//! tansu, projector, Redis, query API), and what the tool recomputes from the log must equal
//! what the query API showed, at the end and in the middle.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use podium_e2e::Stack;
use podium_testkit::eventually;
use serde_json::{Value, json};
use support::{json_lines, run};

const PLAYERS: usize = 8;
const QUESTIONS: i64 = 3;
const WAIT: Duration = Duration::from_secs(30);

/// A quiz created and joined over HTTP, and how many events it has appended so far.
struct Game {
    quiz_id: String,
    host: String,
    players: Vec<(String, String)>,
    events: u64,
}

impl Game {
    async fn start(stack: &Stack) -> Result<Self> {
        let quiz = json!({
            "title": "Analysts",
            "questions": (0..QUESTIONS).map(|n| json!({
                "text": format!("Question {}?", n + 1),
                "choices": ["A", "B", "C"],
                "correct_choice": n % 3,
                "points": 1000 + 500 * n,
                // Long enough that no question closes by its deadline during the test.
                "time_limit_seconds": 120,
            })).collect::<Vec<_>>(),
        });
        let created = stack.create_and_join(&quiz, PLAYERS).await?;
        // The creation and one join each.
        let events = 1 + u64::try_from(created.players.len())?;
        Ok(Self {
            quiz_id: created.quiz_id,
            host: created.host,
            players: created.players,
            events,
        })
    }

    async fn host(&mut self, stack: &Stack, action: &str) -> Result<()> {
        let (status, body) = stack
            .post(
                &format!("/v1/quizzes/{}/{action}", self.quiz_id),
                Some(&self.host),
                &json!({}),
            )
            .await?;
        ensure!(status == 200, "{action}: {status} {body}");
        self.events += 1;
        Ok(())
    }

    /// Starts question `n`; all but one player answer (choices vary), then the host closes it.
    async fn play(&mut self, stack: &Stack, n: i64) -> Result<()> {
        self.host(stack, &format!("questions/{n}/start")).await?;
        let answers = self
            .players
            .iter()
            .enumerate()
            .skip(usize::try_from(n)? % 2)
            .map(|(i, (_, token))| {
                let path = format!("/v1/quizzes/{}/answers", self.quiz_id);
                let choice = (i64::try_from(i).unwrap_or(0) + n) % 3;
                async move {
                    let (status, body) = stack
                        .post(
                            &path,
                            Some(token),
                            &json!({"question": n, "choice": choice}),
                        )
                        .await?;
                    ensure!(status == 201, "answer: {status} {body}");
                    Ok::<(), anyhow::Error>(())
                }
            });
        let answered = futures::future::try_join_all(answers).await?.len();
        self.events += u64::try_from(answered)?;
        self.host(stack, &format!("questions/{n}/close")).await
    }

    /// The query API's whole leaderboard, once its version shows every event appended so far:
    /// a quiet moment, when the read model and the log agree.
    async fn settled_board(&self, stack: &Stack) -> Result<Value> {
        let path = format!("/v1/quizzes/{}/leaderboard?limit=100", self.quiz_id);
        let want = self.events;
        eventually("the query API to show every event", WAIT, || async {
            let (status, body) = stack.get(&path).await.ok()?;
            (status == 200 && body["version"].as_u64() == Some(want)).then_some(body)
        })
        .await
    }
}

fn brokers(stack: &Stack) -> (String, String) {
    (
        stack.kafka.brokers.clone(),
        stack.kafka.topic_prefix.clone(),
    )
}

/// What the query API and the tool both show: version, size and every row.
fn comparable(board: &Value) -> Value {
    json!({
        "version": board["version"],
        "ranked_players": board["ranked_players"],
        "entries": board["entries"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exported_quiz_reaggregates_to_the_query_apis_final_leaderboard() -> Result<()> {
    let stack = Stack::start().await?;
    let (brokers, prefix) = brokers(&stack);
    let mut game = Game::start(&stack).await?;
    for n in 1..=QUESTIONS {
        game.play(&stack, n).await?;
    }
    game.host(&stack, "finish").await?;
    let api = game.settled_board(&stack).await?;

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("quiz.jsonl");
    let file_arg = file.display().to_string();
    let _ = run(
        &brokers,
        &prefix,
        &["export", "--quiz", &game.quiz_id, "--output", &file_arg],
    )
    .await?;
    let records = json_lines(&std::fs::read_to_string(&file)?)?;
    ensure!(
        u64::try_from(records.len())? == game.events,
        "the export holds every event of the quiz: {} of {}",
        records.len(),
        game.events
    );

    // Re-aggregated here, by hand: the first answer per (player, question) counts, points plus
    // streak bonus, then points descending, elapsed ascending, player id ascending.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut scores: BTreeMap<String, (i64, i64, Vec<i64>)> = BTreeMap::new();
    for record in &records {
        let event = &record["event"];
        let field = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
        match record["event_type"].as_str() {
            Some("PlayerJoined") => {
                let _ = names.insert(field("player_id"), field("name"));
            }
            Some("AnswerSubmitted") => {
                let (points, elapsed, questions) = scores.entry(field("player_id")).or_default();
                let question = event["question"].as_i64().context("question")?;
                if !questions.contains(&question) {
                    questions.push(question);
                    *points += event["points"].as_i64().context("points")?
                        + event["streak_bonus"].as_i64().context("bonus")?;
                    *elapsed += event["elapsed_ms"].as_i64().context("elapsed")?;
                }
            }
            _ => {}
        }
    }
    let mut rows: Vec<(String, i64, i64)> = scores
        .into_iter()
        .map(|(id, (points, elapsed, _))| (id, points, elapsed))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    let ours: Vec<Value> = rows
        .iter()
        .zip(1..)
        .map(|((id, points, elapsed), rank)| {
            json!({"rank": rank, "player_id": id, "name": names.get(id), "points": points, "elapsed_ms": elapsed})
        })
        .collect();
    assert_eq!(
        Value::Array(ours),
        api["entries"],
        "re-aggregated export vs the query API"
    );

    // The tool's own fold, and a re-scoring under the live rule, agree too.
    let board: Value = serde_json::from_str(
        &run(
            &brokers,
            &prefix,
            &["leaderboard", "--quiz", &game.quiz_id, "--json"],
        )
        .await?,
    )?;
    assert_eq!(comparable(&board), comparable(&api));
    let rescored: Value = serde_json::from_str(
        &run(
            &brokers,
            &prefix,
            &["rescore", "--quiz", &game.quiz_id, "--rules", "1", "--json"],
        )
        .await?,
    )?;
    let rescored_rows: Vec<Value> = rescored["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .map(|e| json!({"rank": e["rank"], "player_id": e["player_id"], "name": e["name"], "points": e["points"], "elapsed_ms": e["elapsed_ms"]}))
        .collect();
    assert_eq!(Value::Array(rescored_rows), api["entries"]);
    assert_eq!(rescored["recorded_rules"], json!([1]));

    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn as_of_mid_quiz_equals_what_the_query_api_showed_then() -> Result<()> {
    let stack = Stack::start().await?;
    let (brokers, prefix) = brokers(&stack);
    let mut game = Game::start(&stack).await?;
    game.play(&stack, 1).await?;
    game.play(&stack, 2).await?;

    // A quiet moment mid-quiz: the API shows every event so far. Note the board and the time.
    let then = game.settled_board(&stack).await?;
    let at = podium_analyst::time::Timestamp::now();
    // Whatever happens next is stamped after `at`.
    tokio::time::sleep(Duration::from_millis(5)).await;

    game.play(&stack, 3).await?;
    game.host(&stack, "finish").await?;
    let end = game.settled_board(&stack).await?;
    assert_ne!(
        comparable(&end),
        comparable(&then),
        "question 3 changed the board"
    );

    let as_of: Value = serde_json::from_str(
        &run(
            &brokers,
            &prefix,
            &[
                "leaderboard",
                "--quiz",
                &game.quiz_id,
                "--as-of",
                &at.to_string(),
                "--json",
            ],
        )
        .await?,
    )?;
    assert_eq!(comparable(&as_of), comparable(&then), "as of {at}");
    assert_eq!(as_of["as_of"], json!(at.to_string()));

    // Right after question 2 closed is the same moment.
    let after: Value = serde_json::from_str(
        &run(
            &brokers,
            &prefix,
            &[
                "leaderboard",
                "--quiz",
                &game.quiz_id,
                "--after-question",
                "2",
                "--json",
            ],
        )
        .await?,
    )?;
    assert_eq!(comparable(&after), comparable(&then));

    // The table shows the same rows.
    let table = run(
        &brokers,
        &prefix,
        &[
            "leaderboard",
            "--quiz",
            &game.quiz_id,
            "--as-of",
            &at.to_string(),
        ],
    )
    .await?;
    let leader = then["entries"][0]["player_id"].as_str().unwrap_or("?");
    assert!(
        table.lines().nth(3).is_some_and(|l| l.contains(leader)),
        "the leader {leader} tops the table:\n{table}"
    );

    stack.stop().await;
    Ok(())
}
