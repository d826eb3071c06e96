//! The query side live: reads and Server-Sent Event streams against the whole stack (command
//! API, a real tansu broker, the projector, a real Redis, the query API), with a real HTTP SSE
//! client (reqwest + eventsource-stream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use eventsource_stream::Event;
use podium_e2e::Stack;
use podium_e2e::sse::{Sse, names};
use podium_testkit::eventually;
use serde_json::{Value, json};

fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap_or(Value::Null)
}

/// Every event but `lobby`, which is sent afresh on each connection and has no id.
fn ids_increase(events: &[Event]) -> Result<()> {
    let events: Vec<Event> = events
        .iter()
        .filter(|e| e.event != "lobby")
        .cloned()
        .collect();
    let events = events.as_slice();
    let ids: Vec<u64> = events.iter().filter_map(|e| e.id.parse().ok()).collect();
    ensure!(
        ids.len() == events.len(),
        "every event has a numeric id: {ids:?}"
    );
    ensure!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "event ids increase: {ids:?} for {:?}",
        names(events)
    );
    Ok(())
}

const WAIT: Duration = Duration::from_secs(30);

async fn wait_for_quiz(stack: &Stack, quiz_id: &str) -> Result<()> {
    eventually("the quiz in the read model", WAIT, || async {
        let (status, _) = stack.get(&format!("/v1/quizzes/{quiz_id}")).await.ok()?;
        (status == 200).then_some(())
    })
    .await
}

/// A quiz created and joined through the command API.
struct Game {
    quiz_id: String,
    host: String,
    join_code: String,
    players: Vec<(String, String)>,
}

impl Game {
    async fn start(stack: &Stack, questions: usize, players: usize) -> Result<Self> {
        let quiz = json!({
            "title": "Live",
            "questions": (0..questions).map(|n| json!({
                "text": format!("Question {}?", n + 1),
                "choices": ["A", "B", "C"],
                "correct_choice": n % 3,
            })).collect::<Vec<_>>(),
        });
        let created = stack.create_and_join(&quiz, players).await?;
        Ok(Self {
            quiz_id: created.quiz_id,
            host: created.host,
            join_code: created.join_code,
            players: created.players,
        })
    }

    async fn host(&self, stack: &Stack, action: &str) -> Result<()> {
        let path = format!("/v1/quizzes/{}/{action}", self.quiz_id);
        let (status, body) = stack.post(&path, Some(&self.host), &json!({})).await?;
        ensure!(status == 200, "{action}: {status} {body}");
        Ok(())
    }

    /// Every player answers `question`, choice by player index.
    async fn answer_all(&self, stack: &Stack, question: usize) -> Result<()> {
        let answers = self
            .players
            .iter()
            .enumerate()
            .map(|(i, (_, token))| async move {
                let path = format!("/v1/quizzes/{}/answers", self.quiz_id);
                let body = json!({"question": question, "choice": i % 3});
                let (status, body) = stack.post(&path, Some(token), &body).await?;
                ensure!(status == 201, "answer: {status} {body}");
                Ok(())
            });
        let _ = futures::future::try_join_all(answers).await?;
        Ok(())
    }

    async fn play(&self, stack: &Stack, question: usize) -> Result<()> {
        self.host(stack, &format!("questions/{question}/start"))
            .await?;
        self.answer_all(stack, question).await?;
        self.host(stack, &format!("questions/{question}/close"))
            .await
    }

    fn events_url(&self, query_url: &str) -> String {
        format!("{query_url}/v1/quizzes/{}/events", self.quiz_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dashboard_sees_every_question_and_the_final_leaderboard() -> Result<()> {
    let stack = Stack::start().await?;
    let game = Game::start(&stack, 3, 12).await?;
    let quiz = format!("/v1/quizzes/{}", game.quiz_id);
    wait_for_quiz(&stack, &game.quiz_id).await?;

    let mut dashboard = Sse::connect(&game.events_url(&stack.query_url), None).await?;
    let snapshot = dashboard.next(WAIT).await?;
    ensure!(
        snapshot.event == "snapshot",
        "first comes a snapshot: {snapshot:?}"
    );
    ensure!(
        snapshot.retry.is_some(),
        "the first event carries a retry hint"
    );
    ensure!(
        data(&snapshot)["quiz"]["status"] == "lobby",
        "{}",
        snapshot.data
    );
    let mut seen = vec![snapshot];

    // The first question, checked while it is open: no answer key anywhere.
    game.host(&stack, "questions/1/start").await?;
    let started = dashboard.until("question_started", WAIT).await?;
    let question = data(started.last().context("started")?);
    ensure!(
        question["number"] == 1 && question.get("correct_choice").is_none(),
        "{question}"
    );
    seen.extend(started);
    game.answer_all(&stack, 1).await?;
    let (status, state) = stack.get(&quiz).await?;
    ensure!(
        status == 200 && state["status"] == "question_open",
        "{state}"
    );
    ensure!(
        !state.to_string().contains("correct_choice"),
        "no answer key while open: {state}"
    );
    let (status, sealed) = stack.get(&format!("{quiz}/questions/1/stats")).await?;
    ensure!(
        status == 403 && sealed["code"] == "question_not_closed",
        "{status} {sealed}"
    );
    game.host(&stack, "questions/1/close").await?;
    for question in 2..=3 {
        game.play(&stack, question).await?;
    }
    game.host(&stack, "finish").await?;

    seen.extend(dashboard.until("quiz_finished", WAIT).await?);
    let flow: Vec<String> = seen
        .iter()
        .filter(|e| e.event.starts_with("question_") || e.event == "quiz_finished")
        .map(|e| format!("{} {}", e.event, data(e)["number"]))
        .collect();
    ensure!(
        flow == [
            "question_started 1",
            "question_closed 1",
            "question_started 2",
            "question_closed 2",
            "question_started 3",
            "question_closed 3",
            "quiz_finished null"
        ],
        "every question starts and closes, in order: {flow:?}"
    );
    let closed = seen
        .iter()
        .find(|e| e.event == "question_closed")
        .context("closed")?;
    ensure!(
        data(closed)["correct_choice"] == 0 && data(closed)["stats"]["answers"] == 12,
        "{}",
        closed.data
    );

    // The leaderboard converges to the final one.
    let (_, final_board) = stack.get(&format!("{quiz}/leaderboard?limit=10")).await?;
    let mut last_board = seen
        .iter()
        .rev()
        .find(|e| e.event == "leaderboard")
        .map(data);
    while last_board.as_ref().map(|b| &b["entries"]) != Some(&final_board["entries"]) {
        let event = dashboard.until("leaderboard", WAIT).await?;
        last_board = event.last().map(data);
        seen.extend(event);
    }
    ids_increase(&seen)?;

    // Reads: keyset pages cover the whole leaderboard exactly once.
    let (_, all) = stack.get(&format!("{quiz}/leaderboard?limit=100")).await?;
    let mut paged = Vec::new();
    let mut path = format!("{quiz}/leaderboard?limit=5");
    loop {
        let (status, page) = stack.get(&path).await?;
        ensure!(status == 200, "{page}");
        paged.extend(page["entries"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{quiz}/leaderboard?limit=5&cursor={cursor}"),
            None => break,
        }
    }
    ensure!(
        Value::from(paged) == all["entries"],
        "pages equal the whole board"
    );
    let middle = all["entries"][5]["player_id"].as_str().unwrap_or_default();
    let (_, around) = stack
        .get(&format!("{quiz}/leaderboard/around/{middle}?radius=2"))
        .await?;
    let ranks: Vec<i64> = around["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["rank"].as_i64())
        .collect();
    ensure!(ranks == [4, 5, 6, 7, 8], "around rank 6: {around}");
    let (_, standing) = stack.get(&format!("{quiz}/players/{middle}")).await?;
    ensure!(
        standing["rank"] == 6 && standing["ranked_players"] == 12 && standing["answers"] == 3,
        "{standing}"
    );
    ensure!(standing["percentile"].as_f64() == Some(50.0), "{standing}");
    let (status, stats) = stack.get(&format!("{quiz}/questions/2/stats")).await?;
    let per_choice: u64 = stats["stats"]["per_choice"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .sum();
    ensure!(
        status == 200 && per_choice == 12 && stats["correct_choice"] == 1,
        "{stats}"
    );
    let (status, bad) = stack
        .get(&format!("{quiz}/leaderboard?cursor=%21%21"))
        .await?;
    ensure!(status == 400 && bad["code"] == "invalid_cursor", "{bad}");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_reconnects_gets_what_it_missed_or_a_resync() -> Result<()> {
    let mut stack = Stack::start().await?;
    let game = Game::start(&stack, 4, 3).await?;
    let mut short = stack.query_config();
    short.streams.replay_limit = 1;
    let short_url = stack.start_query_api_with("query-api-short", short).await?;
    // Every join applied, so the player stream knows its player: joins reach the read model
    // a fetch after the quiz itself.
    eventually("every join in the read model", WAIT, || async {
        let (_, state) = stack
            .get(&format!("/v1/quizzes/{}", game.quiz_id))
            .await
            .ok()?;
        (state["player_count"].as_u64() == Some(game.players.len() as u64)).then_some(())
    })
    .await?;

    // The player stream needs the player's own token.
    let (me, token) = game.players[0].clone();
    let player_url = format!(
        "{}/v1/quizzes/{}/players/{me}/events",
        stack.query_url, game.quiz_id
    );
    let refused = Sse::open(&player_url, None)
        .await?
        .err()
        .context("no token")?;
    ensure!(
        refused.0 == 401 && refused.1["code"] == "invalid_token",
        "{refused:?}"
    );
    let other = format!("{player_url}?access_token={}", game.players[1].1);
    let refused = Sse::open(&other, None)
        .await?
        .err()
        .context("another's token")?;
    ensure!(
        refused.0 == 403 && refused.1["code"] == "not_this_player",
        "{refused:?}"
    );
    let mut player = Sse::connect(&format!("{player_url}?access_token={token}"), None).await?;
    let hello = player.next(WAIT).await?;
    ensure!(
        hello.event == "snapshot" && data(&hello)["you"]["player_id"] == me.as_str(),
        "{hello:?}"
    );

    let mut dashboard = Sse::connect(&game.events_url(&stack.query_url), None).await?;
    game.play(&stack, 1).await?;
    let got = dashboard.until("question_closed", WAIT).await?;
    let last_id = got.last().context("closed")?.id.clone();
    drop(dashboard);

    // The result and the first rank change come in either order: answers move the board
    // before the close is applied.
    let mut mine = player.until("question_result", WAIT).await?;
    if !mine.iter().any(|e| e.event == "rank") {
        mine.extend(player.until("rank", WAIT).await?);
    }
    let result = data(
        mine.iter()
            .find(|e| e.event == "question_result")
            .context("result")?,
    );
    ensure!(
        result["answered"] == true && result["question"]["number"] == 1,
        "{result}"
    );
    ensure!(
        result["awarded"].as_i64() > Some(0),
        "player 0 chose 0, the right answer: {result}"
    );
    // Ranked for the first time: a rank change from none to a place on the board.
    let moved = data(mine.iter().find(|e| e.event == "rank").context("rank")?);
    ensure!(
        moved["from"].is_null() && moved["to"].as_u64().is_some_and(|r| (1..=3).contains(&r)),
        "{moved}"
    );

    // Missed while away: question 2's start and close.
    game.play(&stack, 2).await?;
    eventually("question 2 closed in the read model", WAIT, || async {
        let (_, state) = stack
            .get(&format!("/v1/quizzes/{}", game.quiz_id))
            .await
            .ok()?;
        (state["closed"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await?;
    let mut back = Sse::connect(&game.events_url(&stack.query_url), Some(&last_id)).await?;
    let first = back.next(WAIT).await?;
    let second = back.next(WAIT).await?;
    ensure!(
        (first.event.as_str(), second.event.as_str()) == ("question_started", "question_closed")
            && data(&first)["number"] == 2
            && data(&second)["number"] == 2,
        "the missed flow is replayed: {first:?} {second:?}"
    );
    ids_increase(&[got.last().context("closed")?.clone(), first, second])?;

    // Two missed events exceed the other instance's replay limit of one: a resync.
    let mut resynced = Sse::connect(&game.events_url(&short_url), Some(&last_id)).await?;
    let snapshot = resynced.next(WAIT).await?;
    ensure!(
        snapshot.event == "snapshot" && data(&snapshot)["resync"] == true,
        "{snapshot:?}"
    );
    ensure!(
        data(&snapshot)["quiz"]["closed"].as_array().map(Vec::len) == Some(2),
        "{}",
        snapshot.data
    );

    // Shutting an instance down tells its clients to reconnect.
    stack.stop_service("query-api-short").await;
    let bye = resynced.until("reconnect", WAIT).await?;
    ensure!(data(bye.last().context("bye")?)["reason"] == "server_shutdown");
    ensure!(
        resynced.next(Duration::from_secs(5)).await.is_err(),
        "the stream ends"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaderboard_events_are_coalesced_and_streams_are_capped() -> Result<()> {
    let mut stack = Stack::start().await?;
    let game = Game::start(&stack, 1, 20).await?;
    let mut config = stack.query_config();
    config.streams.max_connections = 1;
    config.streams.coalesce_ms = 1000;
    let url = stack
        .start_query_api_with("query-api-capped", config)
        .await?;
    wait_for_quiz(&stack, &game.quiz_id).await?;
    let mut dashboard = Sse::connect(&game.events_url(&url), None).await?;
    let refused = Sse::open(&game.events_url(&url), None)
        .await?
        .err()
        .context("capped")?;
    ensure!(
        refused.0 == 503
            && refused.1["code"] == "too_many_streams"
            && refused.1["retry_after_present"] == true,
        "{refused:?}"
    );

    game.host(&stack, "questions/1/start").await?;
    game.answer_all(&stack, 1).await?;
    let mut boards = 0;
    loop {
        let events = dashboard.until("leaderboard", WAIT).await?;
        boards += 1;
        let board = data(events.last().context("board")?);
        if board["ranked_players"] == 20 {
            break;
        }
    }
    ensure!(
        boards < 20,
        "20 answers, {boards} leaderboard events: coalesced"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_quiz_redis_lost_is_read_from_the_durable_results() -> Result<()> {
    use podium_durable::{DurableStore, MemoryDurableStore, Sourced};
    // ScyllaDB cannot run here; the memory adapter passes the same contract tests.
    let store = Arc::new(MemoryDurableStore::new());
    let log = podium_testkit::QuizLog::play("durable-quiz", 30, 3, 0.9, 11)?;
    let batch: Vec<Sourced> = (0..)
        .zip(log.events())
        .map(|(offset, event)| Sourced {
            topic: "log".into(),
            partition: 0,
            offset,
            event: event.clone(),
        })
        .collect();
    store.record(&batch).await?;
    let results = store.results("durable-quiz").await?.context("results")?;

    let mut stack = Stack::start().await?;
    let url = stack
        .start_query_api_using("query-api-durable", stack.query_config(), Some(store))
        .await?;
    let http = reqwest::Client::new();
    let board: Value = http
        .get(format!(
            "{url}/v1/quizzes/durable-quiz/leaderboard?limit=100"
        ))
        .send()
        .await?
        .json()
        .await?;
    ensure!(board["source"] == "durable", "{board}");
    let ids: Vec<&str> = board["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["player_id"].as_str())
        .collect();
    let expected: Vec<&str> = results
        .standings
        .iter()
        .map(|s| s.player_id.as_str())
        .collect();
    ensure!(
        ids == expected,
        "the durable leaderboard is the final results"
    );
    let third = &results.standings[2];
    let standing: Value = http
        .get(format!(
            "{url}/v1/quizzes/durable-quiz/players/{}",
            third.player_id
        ))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        standing["rank"] == 3 && standing["points"] == third.points,
        "{standing}"
    );
    let missing = http
        .get(format!("{url}/v1/quizzes/nope/leaderboard"))
        .send()
        .await?;
    ensure!(
        missing.status() == 404,
        "a quiz in neither store is not found"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_matches_the_routes() -> Result<()> {
    let stack = Stack::start().await?;
    let http = reqwest::Client::new();
    let document: Value = http
        .get(format!("{}/openapi.json", stack.query_url))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().context("paths")?;
    ensure!(
        paths.len() == 9,
        "every read and stream is documented: {:?}",
        paths.keys()
    );
    let mut routed: HashMap<String, u16> = HashMap::new();
    for (path, operations) in paths {
        for method in operations.as_object().into_iter().flat_map(|o| o.keys()) {
            let concrete = path.replace("{n}", "1").replace(['{', '}'], "");
            let response = http
                .request(
                    method.to_uppercase().parse()?,
                    format!("{}{concrete}", stack.query_url),
                )
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if body["code"] == "not_found" || body["code"] == "method_not_allowed" {
                bail!("{method} {path} is documented but not routed: {status} {body}");
            }
            let _ = routed.insert(format!("{method} {path}"), status);
        }
    }
    ensure!(routed.len() == 9, "{routed:?}");
    // A dashboard page on another origin may read, and preflight a stream with Last-Event-ID.
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/quizzes/q/events", stack.query_url),
        )
        .header("Origin", "https://dashboard.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "last-event-id")
        .send()
        .await?;
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    ensure!(
        allowed("access-control-allow-origin") == "*"
            && allowed("access-control-allow-headers").contains("last-event-id")
            && allowed("vary").contains("access-control-request-headers"),
        "CORS preflight: {:?}",
        preflight.headers()
    );
    // A plain read says, once, what a cache must key its CORS answer on.
    let read = http
        .get(format!("{}/healthz", stack.query_url))
        .header("Origin", "https://dashboard.example")
        .send()
        .await?;
    let vary: Vec<_> = read.headers().get_all("vary").iter().collect();
    ensure!(
        vary.len() == 1
            && vary[0].to_str().unwrap_or_default().starts_with("origin, ")
            && read.headers().contains_key("access-control-allow-origin"),
        "CORS read: {:?}",
        read.headers()
    );
    stack.stop().await;
    Ok(())
}

/// Reads a socket the way a client on a bad network would: a little at a time, slowly, until
/// the server ends the stream or nothing comes for five seconds.
async fn read_slowly(mut socket: tokio::net::TcpStream) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buffer = [0u8; 2048];
    while let Ok(read) =
        tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await
    {
        match read? {
            0 => break,
            n => received.extend_from_slice(&buffer[..n]),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_client_skips_to_the_latest_state_and_is_then_disconnected() -> Result<()> {
    use podium_projectors::read_model::{RedisReadModel, Sourced};
    use podium_schemas::read_model::Root;
    use tokio::io::AsyncWriteExt;
    let mut stack = Stack::start().await?;
    let mut config = stack.query_config();
    config.streams.client_buffer = 8;
    config.streams.max_skips = 1;
    config.streams.coalesce_ms = 10;
    config.streams.top = 100;
    let url = stack.start_query_api_with("query-api-slow", config).await?;

    // The workload goes straight into Redis through the projector's own write path, one
    // event per batch, so the quiz changes hundreds of times: as fast as a big live quiz.
    let quiz_id = podium_testkit::unique("slow");
    let log = podium_testkit::QuizLog::play(&quiz_id, 60, 4, 1.0, 3)?;
    let store = RedisReadModel::connect(&stack.redis_url(), Root::new(&stack.namespace)).await?;
    let _ = store.adopt_active().await?;
    let mut offset = 0i64;
    let mut apply = async |event: &podium_schemas::Event| -> Result<()> {
        let batch = [Sourced {
            topic: "workload".into(),
            partition: 0,
            offset,
            event: event.clone(),
        }];
        offset += 1;
        let next = [("workload:0".to_owned(), offset)].into_iter().collect();
        let _ = store.apply(&batch, &next).await?;
        Ok(())
    };
    let mut events = log.events();
    for event in events.by_ref().take(log.opening.len()) {
        apply(event).await?;
    }
    wait_for_quiz(&stack, &quiz_id).await?;

    // A client that reads far slower than the quiz changes, with a tiny receive window, so
    // the server's socket and queues fill within a few events.
    let address = url.trim_start_matches("http://").parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(2048)?;
    let mut slow = socket.connect(address).await?;
    let request = format!(
        "GET /v1/quizzes/{quiz_id}/events HTTP/1.1\r\nHost: podium\r\nAccept: text/event-stream\r\n\r\n"
    );
    slow.write_all(request.as_bytes()).await?;
    let slow = tokio::spawn(read_slowly(slow));
    // A client that keeps up, reading all the time.
    let mut fast = Sse::connect(&format!("{url}/v1/quizzes/{quiz_id}/events"), None).await?;
    let fast = tokio::spawn(async move { fast.until("quiz_finished", WAIT * 4).await });

    for event in events {
        apply(event).await?;
        // Pacing, not an assertion: each change gets a read of its own.
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    let fast_events = fast.await??;
    let fast_boards = fast_events
        .iter()
        .filter(|e| e.event == "leaderboard")
        .count();
    ensure!(
        !fast_events.iter().any(|e| e.event == "disconnect"),
        "the fast client keeps up"
    );

    let seen = slow.await??;
    let slow_boards = seen.matches("event: leaderboard").count();
    let names: Vec<&str> = seen.lines().filter(|l| l.starts_with("event:")).collect();
    ensure!(
        seen.contains("\"resync\":true"),
        "the slow client skipped to a fresh snapshot; it read {} bytes: {names:?}; the fast one got {fast_boards} leaderboards",
        seen.len(),
    );
    ensure!(
        seen.contains("event: disconnect") && seen.contains("too_slow"),
        "falling behind again, it was disconnected with a reason: {names:?}"
    );
    ensure!(
        slow_boards < fast_boards,
        "the server did not buffer everything for it: {slow_boards} of {fast_boards} leaderboards"
    );
    stack.stop().await;
    Ok(())
}

/// The lobby event that first satisfies `wanted`.
async fn lobby_where(sse: &mut Sse, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = sse.until("lobby", left).await?;
        let lobby = data(event.last().context("lobby")?);
        if wanted(&lobby) {
            return Ok(lobby);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lobby_shows_who_is_connected_and_a_kicked_player_leaves_board_and_quiz() -> Result<()>
{
    let mut stack = Stack::start().await?;
    // Phones on a second query API instance: presence is shared through Redis.
    let second_query = stack
        .start_query_api_with("second query-api", stack.query_config())
        .await?;
    let game = Game::start(&stack, 2, 3).await?;
    let quiz = format!("/v1/quizzes/{}", game.quiz_id);
    wait_for_quiz(&stack, &game.quiz_id).await?;
    let player_url = |i: usize| {
        let (id, token) = &game.players[i];
        format!(
            "{second_query}/v1/quizzes/{}/players/{id}/events?access_token={token}",
            game.quiz_id
        )
    };
    let (p0, p2) = (game.players[0].0.clone(), game.players[2].0.clone());

    // Everyone who joined is in the lobby; nobody has a stream open yet.
    let players = eventually("three players in the lobby", WAIT, || async {
        let (status, lobby) = stack.get(&format!("{quiz}/players")).await.ok()?;
        (status == 200 && lobby["player_count"] == 3).then_some(lobby)
    })
    .await?;
    ensure!(players["connected_count"] == 0, "{players}");
    ensure!(players["players"][0]["name"] == "player 0", "{players}");
    let mut dashboard = Sse::connect(&game.events_url(&stack.query_url), None).await?;
    let first = dashboard.until("lobby", WAIT).await?;
    ensure!(
        names(&first) == ["snapshot", "lobby"],
        "{:?}",
        names(&first)
    );

    // A player stream makes its player connected, on the dashboard of the other instance and in
    // every read.
    let mut phone0 = Sse::connect(&player_url(0), None).await?;
    let opened = phone0.until("lobby", WAIT).await?;
    ensure!(
        names(&opened) == ["snapshot", "lobby"],
        "{:?}",
        names(&opened)
    );
    let lobby = data(opened.last().context("lobby")?);
    ensure!(
        lobby["player_count"] == 3,
        "a phone sees who is here: {lobby}"
    );
    let lobby = lobby_where(&mut dashboard, |l| l["connected_count"] == 1).await?;
    let connected: Vec<&Value> = lobby["players"]
        .as_array()
        .context("players")?
        .iter()
        .filter(|p| p["connected"] == true)
        .map(|p| &p["player_id"])
        .collect();
    ensure!(connected == [&json!(p0)], "{lobby}");
    let (_, state) = stack.get(&quiz).await?;
    ensure!(state["connected_count"] == 1, "{state}");

    // Everyone answers question 1; then the host kicks player 2, whose phone is open.
    let mut phone2 = Sse::connect(&player_url(2), None).await?;
    let _ = phone2.until("snapshot", WAIT).await?;
    game.host(&stack, "lock").await?;
    game.host(&stack, "questions/1/start").await?;
    game.answer_all(&stack, 1).await?;
    let live = format!("{quiz}/questions/1/live");
    let counts = eventually("three answers counted", WAIT, || async {
        let response = reqwest::Client::new()
            .get(format!("{}{live}", stack.query_url))
            .bearer_auth(&game.host)
            .send()
            .await
            .ok()?;
        let counts: Value = response.json().await.ok()?;
        (counts["answers"] == 3).then_some(counts)
    })
    .await?;
    ensure!(counts["per_choice"] == json!([1, 1, 1]), "{counts}");
    ensure!(
        counts.get("correct_choice").is_none() && counts.get("correct").is_none(),
        "{counts}"
    );
    // Only the host sees live counts; the results stay sealed until the question closes.
    let (status, problem) = stack.get(&live).await?;
    ensure!(
        status == 401 && problem["code"] == "invalid_token",
        "{problem}"
    );
    let as_player = reqwest::Client::new()
        .get(format!("{}{live}", stack.query_url))
        .bearer_auth(&game.players[0].1)
        .send()
        .await?;
    ensure!(as_player.status().as_u16() == 403, "a player's token");
    let (status, _) = stack.get(&format!("{quiz}/questions/1/stats")).await?;
    ensure!(status == 403, "sealed while open");

    let kick = format!("{quiz}/players/{p2}/kick");
    let (status, problem) = stack
        .post(&kick, Some(&game.players[0].1), &json!({}))
        .await?;
    ensure!(status == 403 && problem["code"] == "not_host", "{problem}");
    let (status, after) = stack.post(&kick, Some(&game.host), &json!({})).await?;
    ensure!(status == 200 && after["players"] == 2, "{after}");
    let (status, again) = stack.post(&kick, Some(&game.host), &json!({})).await?;
    ensure!(status == 200, "kicking twice is a no-op: {again}");
    let unknown = format!("{quiz}/players/nobody/kick");
    let (status, problem) = stack.post(&unknown, Some(&game.host), &json!({})).await?;
    ensure!(
        status == 404 && problem["code"] == "player_not_found",
        "{problem}"
    );

    // The kicked phone is told, and its stream ends.
    let last = phone2.until("kicked", WAIT).await?;
    let kicked = last.last().context("kicked")?;
    ensure!(data(kicked)["reason"] == "player_kicked", "{}", kicked.data);
    ensure!(
        phone2.next(WAIT).await.is_err(),
        "the stream ends after `kicked`"
    );
    let kicked_event = dashboard.until("player_kicked", WAIT).await?;
    ensure!(
        data(kicked_event.last().context("player_kicked")?)["player_id"] == json!(p2),
        "the dashboard is told who left"
    );
    let lobby = lobby_where(&mut dashboard, |l| l["player_count"] == 2).await?;
    ensure!(
        !lobby.to_string().contains(&p2),
        "a kicked player leaves the lobby: {lobby}"
    );
    // Phones hear of it too, at most every two seconds.
    let lobby = lobby_where(&mut phone0, |l| l["player_count"] == 2).await?;
    ensure!(!lobby.to_string().contains(&p2), "{lobby}");

    // Kicked means out: no stream, no answer, no rejoin.
    match Sse::open(&player_url(2), None).await? {
        Err((403, problem)) if problem["code"] == "player_kicked" => {}
        Err((status, problem)) => bail!("reopened stream: {status} {problem}"),
        Ok(_) => bail!("a kicked player's stream opened"),
    }
    let token2 = game.players[2].1.clone();
    game.host(&stack, "questions/1/close").await?;
    game.host(&stack, "questions/2/start").await?;
    let answer = json!({"question": 2, "choice": 0});
    let path = format!("{quiz}/answers");
    let (status, problem) = stack.post(&path, Some(&token2), &answer).await?;
    ensure!(
        status == 403 && problem["code"] == "player_kicked",
        "{problem}"
    );
    let rejoin = json!({"join_code": game.join_code, "name": "player 2"});
    let (status, problem) = stack.post("/v1/join", Some(&token2), &rejoin).await?;
    ensure!(
        status == 403 && problem["code"] == "player_kicked",
        "rejoin: {problem}"
    );

    // The board drops the kicked player's score; the question's statistics keep the answer.
    let board = eventually("the board without the kicked player", WAIT, || async {
        let (_, board) = stack.get(&format!("{quiz}/leaderboard")).await.ok()?;
        (board["ranked_players"] == 2).then_some(board)
    })
    .await?;
    ensure!(!board.to_string().contains(&p2), "{board}");
    let results = eventually("question 1's results", WAIT, || async {
        let (status, results) = stack.get(&format!("{quiz}/questions/1/stats")).await.ok()?;
        (status == 200).then_some(results)
    })
    .await?;
    ensure!(results["stats"]["answers"] == 3, "{results}");

    // A phone that leaves is no longer connected.
    drop(phone0);
    let _ = lobby_where(&mut dashboard, |l| l["connected_count"] == 0).await?;

    // The Redis read model equals the pure fold of the log, kick included.
    let expected = podium_e2e::fold_of_log(stack.broker.bootstrap(), &stack.kafka).await?;
    podium_e2e::converge(&stack.redis.url(), &stack.namespace, &expected, WAIT).await?;
    stack.stop().await;
    Ok(())
}

/// How many Lua scripts Redis has run: each read of the read model is one.
async fn scripts_run(redis: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// The leaderboard's first page, as the query API answers it.
async fn top(stack: &Stack, quiz_id: &str) -> Result<Value> {
    board_page(stack, quiz_id, "?limit=5").await
}

/// The leaderboard's default first page.
async fn first_page(stack: &Stack, quiz_id: &str) -> Result<Value> {
    board_page(stack, quiz_id, "").await
}

async fn board_page(stack: &Stack, quiz_id: &str, query: &str) -> Result<Value> {
    let (status, board) = stack
        .get(&format!("/v1/quizzes/{quiz_id}/leaderboard{query}"))
        .await?;
    ensure!(status == 200, "{status} {board}");
    Ok(board)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reads_come_from_the_feed_and_never_lag_what_a_stream_showed() -> Result<()> {
    let stack = Stack::start().await?;
    let game = Game::start(&stack, 2, 4).await?;
    wait_for_quiz(&stack, &game.quiz_id).await?;
    game.host(&stack, "questions/1/start").await?;
    game.answer_all(&stack, 1).await?;
    // Once the read model holds the whole log, the quiz stands still.
    let expected = podium_e2e::fold_of_log(stack.broker.bootstrap(), &stack.kafka).await?;
    podium_e2e::converge(&stack.redis.url(), &stack.namespace, &expected, WAIT).await?;
    let version = expected.quizzes[&game.quiz_id].version;
    let first = eventually("the board at the log's version", WAIT, || async {
        let board = top(&stack, &game.quiz_id).await.ok()?;
        (board["version"] == version).then_some(board)
    })
    .await?;

    // Fifty reads of the quiz and its top cost Redis next to nothing: they come from the
    // feed's state (its own reads, one per change and one a second, are all Redis sees).
    let client = redis::Client::open(stack.redis_url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let before = scripts_run(&mut redis).await?;
    for _ in 0..25 {
        let board = top(&stack, &game.quiz_id).await?;
        ensure!(board["version"] == first["version"], "{board} {first}");
        let (status, _) = stack.get(&format!("/v1/quizzes/{}", game.quiz_id)).await?;
        ensure!(status == 200);
    }
    let scripts = scripts_run(&mut redis).await? - before;
    // Without the feed, each read is one script: 50. With it, only the reads in the feed's
    // first coalescing window, and its own reads.
    ensure!(scripts < 25, "50 reads ran {scripts} scripts in Redis");
    // The default page is written once per state of the feed and served as those bytes: the
    // same document as a page built for its request.
    let default_page = first_page(&stack, &game.quiz_id).await?;
    let (status, built) = stack
        .get(&format!(
            "/v1/quizzes/{}/leaderboard?limit=11",
            game.quiz_id
        ))
        .await?;
    ensure!(
        status == 200 && default_page == built,
        "{default_page} {built}"
    );

    // A change is announced: the next read shows it, as new as the stream showed it.
    let mut dashboard = Sse::connect(&game.events_url(&stack.query_url), None).await?;
    let _ = dashboard.until("snapshot", WAIT).await?;
    game.host(&stack, "questions/2/start").await?;
    let path = format!("/v1/quizzes/{}/answers", game.quiz_id);
    let (status, body) = stack
        .post(
            &path,
            Some(&game.players[0].1),
            &json!({"question": 2, "choice": 1}),
        )
        .await?;
    ensure!(status == 201, "{body}");
    let board_event = dashboard.until("leaderboard", WAIT).await?;
    let seen = data(board_event.last().context("leaderboard")?);
    // What the stream showed, a read on the same instance shows at least.
    let read = top(&stack, &game.quiz_id).await?;
    ensure!(
        read["version"].as_u64() >= seen["version"].as_u64(),
        "read {read} after the stream showed {seen}"
    );
    ensure!(
        read["version"].as_u64() > first["version"].as_u64(),
        "{read}"
    );
    let default_page = first_page(&stack, &game.quiz_id).await?;
    ensure!(
        default_page["version"].as_u64() >= seen["version"].as_u64(),
        "the default page {default_page} after the stream showed {seen}"
    );
    stack.stop().await;
    Ok(())
}
