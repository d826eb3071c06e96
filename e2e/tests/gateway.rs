//! The gateway: Debian's nginx with the template Kubernetes, Compose and the local stack use,
//! in front of the real APIs. A quiz played through its one origin, a dashboard stream that
//! delivers each event through it while the stream stays open, and the APIs' per-client limit
//! keyed on the client the gateway forwards. (Turning `proxy_buffering` on did not hold this
//! stream's events back here, so the test does not prove that setting; it is there for
//! proxies and bodies where nginx would buffer.)

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use podium_e2e::Stack;
use podium_testkit::{Gateway, eventually};
use serde_json::{Value, json};

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiz_played_through_the_gateway_streams_as_it_happens() -> Result<()> {
    let mut stack = Stack::start().await?;
    // The query API behind the gateway limits each forwarded client to one request a second.
    let mut config = stack.query_config();
    config.client_rate.rate_per_client = 1;
    config.client_rate.rate_burst_per_client = 1;
    config.client_rate.trusted_proxies = vec!["127.0.0.1/32".parse()?];
    let limited_query = stack
        .start_query_api_with("limited query-api", config)
        .await?;
    let gateway = Gateway::start(
        host_port(&stack.command_url),
        &[host_port(&stack.query_url)],
    )
    .await?;
    let limited =
        Gateway::start(host_port(&stack.command_url), &[host_port(&limited_query)]).await?;
    // Every request from here on goes through the one origin.
    stack.command_url = gateway.url();
    stack.query_url = gateway.url();

    let quiz = json!({
        "title": "Through the gateway",
        "questions": [{"text": "Pick b", "choices": ["a", "b"], "correct_choice": 1, "time_limit_seconds": 120}]
    });
    let game = stack.create_and_join(&quiz, 2).await?;
    let path = format!("/v1/quizzes/{}", game.quiz_id);
    let _ = eventually(
        "the quiz to be readable",
        Duration::from_secs(20),
        || async {
            stack
                .get(&path)
                .await
                .ok()
                .filter(|(status, _)| *status == 200)
        },
    )
    .await?;
    let stream = stack
        .http
        .get(format!(
            "{}/v1/quizzes/{}/events",
            gateway.url(),
            game.quiz_id
        ))
        .send()
        .await?;
    ensure!(stream.status() == 200, "stream: {}", stream.status());
    let mut events = stream.bytes_stream().eventsource();
    let mut next_named = async |name: &str| -> Result<Value> {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), events.next())
                .await
                .map_err(|_| anyhow!("no {name} within 20 s through the gateway"))?
                .ok_or_else(|| anyhow!("the stream ended"))??;
            if event.event == name {
                return Ok(serde_json::from_str(&event.data)?);
            }
        }
    };
    let _ = next_named("snapshot").await?;

    let (status, started) = stack
        .post(
            &format!("/v1/quizzes/{}/questions/1/start", game.quiz_id),
            Some(&game.host),
            &json!({}),
        )
        .await?;
    ensure!(
        status == 200,
        "start through the gateway: {status} {started}"
    );
    let _ = next_named("question_started").await?;
    let (status, answered) = stack
        .post(
            &format!("/v1/quizzes/{}/answers", game.quiz_id),
            Some(&game.players[0].1),
            &json!({"question": 1, "choice": 1}),
        )
        .await?;
    ensure!(
        status == 201,
        "answer through the gateway: {status} {answered}"
    );
    // The leaderboard change reaches the dashboard while the stream stays open.
    let board = next_named("leaderboard").await?;
    ensure!(board.to_string().contains(&game.players[0].0), "{board}");

    // Behind the gateway, each client keeps its own bucket at the query API: the gateway
    // forwards the client's address (here taken from the test's header, which it believes
    // from 127.0.0.1), and the query API believes the gateway.
    let from = |client: &'static str| {
        stack
            .http
            .get(format!("{}/v1/quizzes/{}", limited.url(), game.quiz_id))
            .header("x-forwarded-for", client)
            .send()
    };
    let first = eventually(
        "the limited query API to serve",
        Duration::from_secs(10),
        || async { from("203.0.113.1").await.ok().filter(|r| r.status() != 502) },
    )
    .await
    .context("first request")?;
    ensure!(first.status() != 429, "the first request of a client");
    ensure!(
        from("203.0.113.2").await?.status() != 429,
        "another client has its own bucket"
    );
    ensure!(
        from("203.0.113.1").await?.status() == 429,
        "the first client's second request"
    );

    stack.stop().await;
    Ok(())
}
