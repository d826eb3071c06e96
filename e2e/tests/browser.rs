//! A dashboard in a real browser: headless Debian Chromium opens a page on another origin whose
//! `EventSource` follows a quiz played through the whole stack, and reports what it received.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use podium_e2e::Stack;
use podium_testkit::Browser;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const PAGE: &str = r#"<!doctype html>
<title>Podium dashboard</title>
<script>
  const seen = [];
  const report = (what) =>
    fetch("/report", { method: "POST", body: JSON.stringify({ what, seen }) });
  const source = new EventSource("QUERY/v1/quizzes/QUIZ/events");
  for (const name of ["snapshot", "question_started", "question_closed", "leaderboard", "quiz_finished"]) {
    source.addEventListener(name, (e) => {
      seen.push({ name, id: e.lastEventId, data: JSON.parse(e.data) });
      if (name === "snapshot") report("connected");
      if (name === "quiz_finished") report("finished");
    });
  }
</script>
"#;

async fn page(State((page, _)): State<(String, mpsc::Sender<Value>)>) -> Html<String> {
    Html(page)
}

async fn report(State((_, reports)): State<(String, mpsc::Sender<Value>)>, body: String) {
    let _ = reports
        .send(serde_json::from_str(&body).unwrap_or(Value::Null))
        .await;
}

/// The page's next report of `what`.
async fn wait_for(received: &mut mpsc::Receiver<Value>, what: &str) -> Result<Value> {
    loop {
        let report = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .with_context(|| format!("the browser did not report {what}"))?
            .context("the page server stopped")?;
        if report["what"] == what {
            return Ok(report);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_dashboard_follows_a_quiz_over_event_source() -> Result<()> {
    let stack = Stack::start().await?;
    let quiz = json!({
        "title": "In a browser",
        "questions": [
            {"text": "1 + 1?", "choices": ["1", "2"], "correct_choice": 1},
            {"text": "2 + 2?", "choices": ["4", "5"], "correct_choice": 0}
        ]
    });
    let (status, created) = stack.post("/v1/quizzes", None, &quiz).await?;
    ensure!(status == 201, "{created}");
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let (quiz_id, host) = (text(&created, "quiz_id"), text(&created, "host_token"));
    let (status, joined) = stack
        .post(
            "/v1/join",
            None,
            &json!({"join_code": text(&created, "join_code"), "name": "Ada"}),
        )
        .await?;
    ensure!(status == 201, "{joined}");
    let player = text(&joined, "player_token");
    podium_testkit::eventually(
        "the quiz in the read model",
        Duration::from_secs(30),
        || async {
            let (status, _) = stack.get(&format!("/v1/quizzes/{quiz_id}")).await.ok()?;
            (status == 200).then_some(())
        },
    )
    .await?;

    // The page comes from another origin than the query API, as a real dashboard would.
    let (reports, mut received) = mpsc::channel(16);
    let html = PAGE
        .replace("QUERY", &stack.query_url)
        .replace("QUIZ", &quiz_id);
    let site = axum::Router::new()
        .route("/", get(page))
        .route("/report", post(report))
        .with_state((html, reports));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, site).await });
    let _browser = Browser::open(&url)?;

    let _ = wait_for(&mut received, "connected").await?;

    let host_post = |path: String| {
        let (stack, host) = (&stack, &host);
        async move {
            let (status, body) = stack.post(&path, Some(host), &json!({})).await?;
            ensure!(status == 200, "{path}: {status} {body}");
            Ok(())
        }
    };
    for question in 1..=2 {
        host_post(format!("/v1/quizzes/{quiz_id}/questions/{question}/start")).await?;
        let (status, body) = stack
            .post(
                &format!("/v1/quizzes/{quiz_id}/answers"),
                Some(&player),
                &json!({"question": question, "choice": 0}),
            )
            .await?;
        ensure!(status == 201, "{body}");
        host_post(format!("/v1/quizzes/{quiz_id}/questions/{question}/close")).await?;
    }
    host_post(format!("/v1/quizzes/{quiz_id}/finish")).await?;

    let finished = wait_for(&mut received, "finished").await?;
    let seen = finished["seen"].as_array().context("seen")?;
    let flow: Vec<String> = seen
        .iter()
        .filter(|e| e["name"] != "leaderboard")
        .map(|e| {
            format!(
                "{} {}",
                e["name"].as_str().unwrap_or(""),
                e["data"]["number"]
            )
        })
        .collect();
    ensure!(
        flow == [
            "snapshot null",
            "question_started 1",
            "question_closed 1",
            "question_started 2",
            "question_closed 2",
            "quiz_finished null"
        ],
        "the browser saw the whole flow: {flow:?}"
    );
    let ids: Vec<u64> = seen
        .iter()
        .filter_map(|e| e["id"].as_str()?.parse().ok())
        .collect();
    ensure!(
        ids.len() == seen.len() && ids.windows(2).all(|w| w[0] < w[1]),
        "lastEventId increases: {ids:?}"
    );
    server.abort();
    stack.stop().await;
    Ok(())
}
