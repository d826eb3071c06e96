//! A client that goes away mid-request does not cut its command in half. hyper drops a
//! request's future when its client disconnects. Cut off between the log's acknowledgement and
//! the quiz's state, a command would leave a recorded answer out of the state, and the
//! client's retry would be decided afresh, beside the first decision in the log.
//!
//! The log is the in-memory adapter behind a wrapper that writes each answer at once and holds
//! its acknowledgement until the test releases it: a real broker cannot be made to hold an
//! acknowledgement at a chosen moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, header};
use podium_command_api::clock::SystemClock;
use podium_command_api::event_log::{
    AppendError, Entry, EventLog, LogRead, MemoryEventLog, Position, Positions,
};
use podium_command_api::http::{AppState, Limits, router};
use podium_command_api::quizzes::Quizzes;
use podium_runtime::rate_limit::{ClientRateArgs, Rate, RateLimiter};
use podium_runtime::tokens::Tokens;
use podium_schemas::events::Event;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Only a guard against a hang.
const GUARD: Duration = Duration::from_secs(10);

/// Writes every entry at once; holds the acknowledgement of answers while closed.
#[derive(Debug)]
struct HeldAcks {
    log: MemoryEventLog,
    open: watch::Sender<bool>,
    written: Notify,
}

#[async_trait]
impl EventLog for HeldAcks {
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError> {
        let position = self.log.append(entry).await?;
        if matches!(entry.event, Event::AnswerSubmitted(_)) {
            self.written.notify_one();
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        Ok(position)
    }

    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError> {
        self.log.read_from(from).await
    }

    async fn flush(&self) {}
}

async fn send(
    app: &Router,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Value,
) -> Result<(u16, Value)> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string()))?)
        .await?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[tokio::test]
async fn an_answer_whose_client_went_away_is_recorded_in_full_and_its_retry_repeats_it()
-> Result<()> {
    let log = Arc::new(HeldAcks {
        log: MemoryEventLog::default(),
        open: watch::Sender::new(true),
        written: Notify::new(),
    });
    let clock = Arc::new(SystemClock);
    let quizzes = Quizzes::restore(log.clone(), clock.clone()).await?;
    let off = Rate::per_second(0, 0);
    let app = router(AppState {
        quizzes,
        tokens: Tokens::new(b"cancelled-requests-secret-32-byt"),
        clock,
        limits: Limits {
            per_client: ClientRateArgs::off().limit(),
            quizzes_per_client: RateLimiter::new(off),
            answers_per_player: RateLimiter::new(off),
        },
        routing: None,
    })
    .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));

    let (status, created) = send(
        &app,
        "/v1/quizzes",
        None,
        None,
        json!({"title": "Gone", "questions": [
            {"text": "One?", "choices": ["A", "B"], "correct_choice": 0, "time_limit_seconds": 60}
        ]}),
    )
    .await?;
    ensure!(status == 201, "create: {status} {created}");
    let quiz_id = created["quiz_id"].as_str().context("quiz_id")?.to_owned();
    let host = created["host_token"]
        .as_str()
        .context("host_token")?
        .to_owned();
    let (status, joined) = send(
        &app,
        "/v1/join",
        None,
        None,
        json!({"join_code": created["join_code"], "name": "Ann"}),
    )
    .await?;
    ensure!(status == 201, "join: {status} {joined}");
    let player = joined["player_token"]
        .as_str()
        .context("player_token")?
        .to_owned();
    let (status, started) = send(
        &app,
        &format!("/v1/quizzes/{quiz_id}/questions/1/start"),
        Some(&host),
        None,
        json!({}),
    )
    .await?;
    ensure!(status == 200, "start: {status} {started}");

    // The answer reaches the log; its client goes away before the acknowledgement.
    let _ = log.open.send_replace(false);
    let path = format!("/v1/quizzes/{quiz_id}/answers");
    // Ann answers question 1 with A, under one idempotency key each time.
    let answer = |app: Router, path: String, player: String| async move {
        send(
            &app,
            &path,
            Some(&player),
            Some("k1"),
            json!({"question": 1, "choice": 0}),
        )
        .await
    };
    let first = tokio::spawn(answer(app.clone(), path.clone(), player.clone()));
    tokio::time::timeout(GUARD, log.written.notified())
        .await
        .context("the answer never reached the log")?;
    first.abort();
    let _ = first.await;
    let _ = log.open.send_replace(true);

    // The retry under the same key gets the recorded answer back, not a second decision.
    let (status, retried) = tokio::time::timeout(GUARD, answer(app.clone(), path, player))
        .await
        .context("the retry hung")??;
    let answers = log
        .log
        .history()
        .await?
        .into_iter()
        .filter(|e| matches!(e, Event::AnswerSubmitted(_)))
        .count();
    ensure!(
        status == 200 && answers == 1,
        "the retry got {status} {retried}, and the log holds {answers} answers"
    );
    Ok(())
}
