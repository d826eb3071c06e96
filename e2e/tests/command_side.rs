//! The command side's promises, against a real broker: state comes from the log alone, and a
//! full producer queue is backpressure, not a blocked runtime.

use std::time::Duration;

use anyhow::{Result, ensure};
use podium_e2e::Stack;
use serde_json::{Value, json};

fn one_question_quiz() -> Value {
    json!({
        "title": "Restart",
        "questions": [{"text": "Pick b", "choices": ["a", "b"], "correct_choice": 1, "time_limit_seconds": 120}]
    })
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

/// Answers with an idempotency key; returns the status and body.
async fn keyed(
    stack: &Stack,
    path: &str,
    token: &str,
    key: &str,
    choice: i64,
) -> Result<(u16, Value)> {
    let response = stack
        .http
        .post(format!("{}{path}", stack.command_url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"question": 1, "choice": choice}))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_command_api_rebuilds_every_quiz_from_the_log() -> Result<()> {
    let mut stack = Stack::start().await?;
    let (status, quiz) = stack
        .post("/v1/quizzes", None, &one_question_quiz())
        .await?;
    ensure!(status == 201, "{quiz}");
    let (quiz_id, host, code) = (
        text(&quiz, "quiz_id"),
        text(&quiz, "host_token"),
        text(&quiz, "join_code"),
    );
    let (_, ann) = stack
        .post("/v1/join", None, &json!({"join_code": code, "name": "Ann"}))
        .await?;
    let ann_token = text(&ann, "player_token");
    let (status, _) = stack
        .post(
            &format!("/v1/quizzes/{quiz_id}/questions/1/start"),
            Some(&host),
            &json!({}),
        )
        .await?;
    ensure!(status == 200);
    let answer_path = format!("/v1/quizzes/{quiz_id}/answers");
    let (status, first) = keyed(&stack, &answer_path, &ann_token, "k-1", 1).await?;
    ensure!(status == 201, "{first}");

    stack.restart_command_api().await?;

    // The same request: the original result. A different answer: refused, with the original.
    let (status, again) = keyed(&stack, &answer_path, &ann_token, "k-1", 1).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    let (status, refused) = keyed(&stack, &answer_path, &ann_token, "k-2", 0).await?;
    assert_eq!(
        (status, text(&refused, "code")),
        (409, "already_answered".into()),
        "{refused}"
    );
    assert_eq!(refused["original"]["points"], first["points"]);
    // Names, join codes, players and the question state came back too.
    let (status, taken) = stack
        .post("/v1/join", None, &json!({"join_code": code, "name": "ANN"}))
        .await?;
    assert_eq!(
        (status, text(&taken, "code")),
        (409, "name_taken".into()),
        "{taken}"
    );
    let (status, rejoined) = stack
        .post(
            "/v1/join",
            Some(&ann_token),
            &json!({"join_code": code, "name": "x"}),
        )
        .await?;
    assert_eq!(
        (status, text(&rejoined, "player_id")),
        (200, text(&ann, "player_id")),
        "{rejoined}"
    );
    let (status, out_of_order) = stack
        .post(
            &format!("/v1/quizzes/{quiz_id}/questions/1/start"),
            Some(&host),
            &json!({}),
        )
        .await?;
    assert_eq!(
        (status, text(&out_of_order, "code")),
        (409, "question_out_of_order".into())
    );

    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_producer_queue_is_a_503_and_the_runtime_keeps_serving() -> Result<()> {
    let mut stack = Stack::start().await?;
    // A command API whose producer holds one message at most.
    let mut config = stack.command_config();
    config.producer_queue = 1;
    config.ack_timeout_ms = 3_000;
    let url = stack
        .start_command_api_with("one-slot command-api", config)
        .await?;

    let created = stack
        .http
        .post(format!("{url}/v1/quizzes"))
        .json(&one_question_quiz())
        .send()
        .await?;
    ensure!(created.status() == 201);
    let code = text(&created.json::<Value>().await?, "join_code");

    // With the broker gone, five joins at once: one waits in the one-message queue, and the
    // other four find it full and are refused at once.
    stack.broker.kill().await?;
    let joins: Vec<_> = (0..5)
        .map(|i| {
            let request = stack
                .http
                .post(format!("{url}/v1/join"))
                .json(&json!({"join_code": code, "name": format!("player {i}")}));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    podium_testkit::eventually(
        "four joins to be refused",
        Duration::from_secs(2),
        || async { (joins.iter().filter(|j| j.is_finished()).count() >= 4).then_some(()) },
    )
    .await?;

    // The runtime is not blocked: other requests are served while one join still waits.
    assert!(
        joins.iter().any(|j| !j.is_finished()),
        "one join waits for the broker"
    );
    let health = stack.http.get(format!("{url}/healthz")).send().await?;
    assert_eq!(health.status(), 200);

    let mut codes = Vec::new();
    for join in joins {
        let response = join.await??;
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        codes.push(text(&response.json::<Value>().await?, "code"));
    }
    codes.sort();
    // Nothing was acknowledged, so nothing can be lost: the waiting join timed out unacknowledged.
    assert_eq!(
        codes,
        [
            "event_log_busy",
            "event_log_busy",
            "event_log_busy",
            "event_log_busy",
            "event_log_unavailable"
        ]
    );

    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_answer_429_with_retry_after() -> Result<()> {
    let mut stack = Stack::start().await?;
    let mut config = stack.command_config();
    config.quizzes_per_minute = 2;
    config.answers_per_player = 1;
    let url = stack
        .start_command_api_with("limited command-api", config)
        .await?;
    let mut query_config = stack.query_config();
    query_config.client_rate.rate_per_client = 1;
    query_config.client_rate.rate_burst_per_client = 2;
    let query_url = stack
        .start_query_api_with("limited query-api", query_config)
        .await?;
    let post = |path: String, token: Option<String>, body: Value| {
        let mut request = stack.http.post(format!("{url}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let assert_limited = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 429);
        let wait: u64 = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(wait >= 1, "Retry-After names a wait");
        let problem: Value = response.json().await?;
        assert_eq!(text(&problem, "code"), "rate_limited", "{problem}");
        Ok::<(), anyhow::Error>(())
    };

    // Two quizzes a minute from one address: the third is refused.
    let mut quizzes = vec![];
    for _ in 0..2 {
        let response = post("/v1/quizzes".into(), None, one_question_quiz()).await?;
        assert_eq!(response.status(), 201);
        quizzes.push(response.json::<Value>().await?);
    }
    assert_limited(post("/v1/quizzes".into(), None, one_question_quiz()).await?).await?;

    // One answer a second (burst two) per player: a flood is refused, other players are not.
    let quiz = &quizzes[0];
    let (quiz_id, host) = (text(quiz, "quiz_id"), text(quiz, "host_token"));
    let mut tokens = vec![];
    for name in ["flooder", "bystander"] {
        let joined: Value = post(
            "/v1/join".into(),
            None,
            json!({"join_code": quiz["join_code"], "name": name}),
        )
        .await?
        .json()
        .await?;
        tokens.push(text(&joined, "player_token"));
    }
    let started = post(
        format!("/v1/quizzes/{quiz_id}/questions/1/start"),
        Some(host),
        json!({}),
    )
    .await?;
    assert_eq!(started.status(), 200);
    let answer = |token: &String| {
        post(
            format!("/v1/quizzes/{quiz_id}/answers"),
            Some(token.clone()),
            json!({"question": 1, "choice": 1}),
        )
    };
    let mut statuses = vec![];
    for _ in 0..3 {
        statuses.push(answer(&tokens[0]).await?.status().as_u16());
    }
    assert_eq!(
        statuses,
        [201, 409, 429],
        "an answer, a refused repeat, then the limit"
    );
    assert_limited(answer(&tokens[0]).await?).await?;
    assert_eq!(
        answer(&tokens[1]).await?.status(),
        201,
        "the limit is per player"
    );

    // Every request, per client address: a query API allowing two at once refuses the third.
    let query_url = format!("{query_url}/v1/quizzes/{quiz_id}/leaderboard");
    for _ in 0..2 {
        // 404 until the projector has applied the quiz: anything but the limit.
        assert_ne!(stack.http.get(&query_url).send().await?.status(), 429);
    }
    assert_limited(stack.http.get(&query_url).send().await?).await?;

    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() -> Result<()> {
    let mut stack = Stack::start().await?;
    // One request per second per client, no burst beyond it.
    let limited = |mut config: podium_query_api::Config, trusted: &[&str]| {
        config.client_rate.rate_per_client = 1;
        config.client_rate.rate_burst_per_client = 1;
        config.client_rate.trusted_proxies =
            trusted.iter().filter_map(|n| n.parse().ok()).collect();
        config
    };
    let config = limited(stack.query_config(), &["127.0.0.1/32"]);
    let behind_gateway = stack
        .start_query_api_with("query-api behind a gateway", config)
        .await?;
    let config = limited(stack.query_config(), &[]);
    let exposed = stack
        .start_query_api_with("query-api without a gateway", config)
        .await?;
    let from = |url: &str, client: &str| {
        stack
            .http
            .get(format!("{url}/healthz"))
            .header("x-forwarded-for", client)
            .send()
    };

    // The test's address (127.0.0.1) is the trusted gateway: each forwarded client has a bucket.
    assert_eq!(from(&behind_gateway, "203.0.113.1").await?.status(), 200);
    assert_eq!(from(&behind_gateway, "203.0.113.2").await?.status(), 200);
    assert_eq!(
        from(&behind_gateway, "203.0.113.1").await?.status(),
        429,
        "the first client's second request within the second"
    );
    // A client that forges an earlier hop is still known by the hop the gateway appended.
    assert_eq!(
        from(&behind_gateway, "198.51.100.9, 203.0.113.2")
            .await?
            .status(),
        429
    );

    // Not a trusted proxy: the header is ignored, and every request is the peer's.
    assert_eq!(from(&exposed, "203.0.113.1").await?.status(), 200);
    assert_eq!(
        from(&exposed, "203.0.113.2").await?.status(),
        429,
        "a client cannot choose its bucket by sending the header"
    );

    stack.stop().await;
    Ok(())
}
