//! Random and malformed input at every endpoint of both APIs: the answer is always a deliberate
//! status with a problem+json body and a stable code, never a 5xx and never a panic.

use anyhow::Result;
use podium_command_api::http::{MAX_BODY_BYTES, MAX_QUIZ_BODY_BYTES};
use podium_e2e::Stack;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// Statuses a client error may get. 5xx is never among them.
const DELIBERATE: [u16; 12] = [200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("")),
        Just(json!(-1)),
        Just(json!(i64::MAX)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("title".to_owned()),
                    Just("questions".to_owned()),
                    Just("text".to_owned()),
                    Just("choices".to_owned()),
                    Just("correct_choice".to_owned()),
                    Just("points".to_owned()),
                    Just("time_limit_seconds".to_owned()),
                    Just("join_code".to_owned()),
                    Just("name".to_owned()),
                    Just("question".to_owned()),
                    Just("choice".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

struct Target {
    method: reqwest::Method,
    url: String,
    token: Option<String>,
}

/// Sends `body` with `content_type` and checks the answer is deliberate and well-formed.
async fn check(
    stack: &Stack,
    target: &Target,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut request = stack
        .http
        .request(target.method.clone(), &target.url)
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some(token) = &target.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{}: {e}", target.url))?;
    let status = response.status().as_u16();
    let is_problem = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    let text = response.text().await.unwrap_or_default();
    if !DELIBERATE.contains(&status) {
        return Err(format!(
            "{} {} answered {status}: {text}",
            target.method, target.url
        ));
    }
    if status >= 400 {
        let problem: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{status} body is not JSON ({e}): {text}"))?;
        let code = problem["code"].as_str().unwrap_or_default();
        if !is_problem || code.is_empty() || problem["status"].as_u64() != Some(u64::from(status)) {
            return Err(format!(
                "{} {}: {status} is not a problem document: {text}",
                target.method, target.url
            ));
        }
    }
    Ok(())
}

#[test]
fn every_endpoint_answers_bad_input_with_a_problem() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stack = runtime.block_on(Stack::start())?;
    let command = |path: &str| format!("{}{path}", stack.command_url);
    let query = |path: &str| format!("{}{path}", stack.query_url);

    // A real quiz and player, so tokens and ids are valid and the body is what is tested.
    let (quiz_id, host, player, player_id) = runtime.block_on(async {
        let (_, quiz) = stack
            .post("/v1/quizzes", None, &json!({"title": "Fuzz", "questions": [{"text": "q", "choices": ["a", "b"], "correct_choice": 0}]}))
            .await?;
        let (_, joined) = stack
            .post("/v1/join", None, &json!({"join_code": quiz["join_code"], "name": "fuzzer"}))
            .await?;
        let s = |v: &Value, f: &str| v[f].as_str().unwrap_or_default().to_owned();
        Ok::<_, anyhow::Error>((s(&quiz, "quiz_id"), s(&quiz, "host_token"), s(&joined, "player_token"), s(&joined, "player_id")))
    })?;

    let post = |url: String, token: Option<&str>| Target {
        method: reqwest::Method::POST,
        url,
        token: token.map(str::to_owned),
    };
    let get = |url: String| Target {
        method: reqwest::Method::GET,
        url,
        token: None,
    };
    let targets = vec![
        post(command("/v1/quizzes"), None),
        post(command("/v1/join"), None),
        post(command("/v1/join"), Some(&player)),
        post(command(&format!("/v1/quizzes/{quiz_id}/lock")), Some(&host)),
        post(
            command(&format!("/v1/quizzes/{quiz_id}/questions/1/start")),
            Some(&host),
        ),
        post(
            command(&format!("/v1/quizzes/{quiz_id}/questions/x/close")),
            Some(&host),
        ),
        post(
            command(&format!(
                "/v1/quizzes/{quiz_id}/questions/99999999999/start"
            )),
            Some(&host),
        ),
        post(
            command(&format!("/v1/quizzes/{quiz_id}/answers")),
            Some(&player),
        ),
        post(
            command(&format!("/v1/quizzes/{quiz_id}/answers")),
            Some("not-a-token"),
        ),
        post(command("/v1/quizzes/unknown/answers"), Some(&player)),
        post(
            command(&format!("/v1/quizzes/{quiz_id}/finish")),
            Some(&player),
        ),
        post(command("/v1/nowhere"), None),
        get(command("/v1/quizzes")),
        get(query(&format!("/v1/quizzes/{quiz_id}/leaderboard?limit=0"))),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/leaderboard?limit=abc"
        ))),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/leaderboard?limit=101"
        ))),
        get(query(&format!("/v1/quizzes/{quiz_id}/players/{player_id}"))),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/players/{}",
            "p".repeat(500)
        ))),
        post(query(&format!("/v1/quizzes/{quiz_id}/leaderboard")), None),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/leaderboard?cursor=not-a-cursor"
        ))),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/leaderboard/around/{player_id}?radius=abc"
        ))),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/leaderboard/around/{player_id}?radius=51"
        ))),
        get(query(&format!("/v1/quizzes/{quiz_id}/questions/0/stats"))),
        get(query(&format!("/v1/quizzes/{quiz_id}/questions/x/stats"))),
        get(query(&format!("/v1/quizzes/{quiz_id}/questions/99/stats"))),
        get(query(&format!("/v1/quizzes/{}", "q".repeat(500)))),
        // Streams that are refused before they start; an accepted one never ends.
        get(query("/v1/quizzes/unknown/events")),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/players/{player_id}/events"
        ))),
        get(query(&format!(
            "/v1/quizzes/{quiz_id}/players/{player_id}/events?access_token=forged"
        ))),
    ];

    // Fixed malformations at every endpoint.
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // Just over the limits: a server may close the connection before reading a far larger body,
    // which a client sees as a broken pipe rather than as the 413 it was sent.
    let oversize = format!("{{\"title\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES + 1024));
    let fixed: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("application/json"), b"".to_vec()),
        (Some("application/json"), b"{".to_vec()),
        (Some("application/json"), b"\xff\xfe\x00garbage".to_vec()),
        (Some("application/json"), b"null".to_vec()),
        (Some("application/json"), b"[]".to_vec()),
        (
            Some("application/json"),
            b"{\"question\": \"1\", \"choice\": 1}".to_vec(),
        ),
        (
            Some("application/json"),
            b"{\"question\": 1, \"choice\": 1, \"extra\": true}".to_vec(),
        ),
        (
            Some("application/json"),
            b"{\"question\": 99999999999, \"choice\": -99999999999}".to_vec(),
        ),
        (Some("application/json"), nested.into_bytes()),
        (Some("application/json"), oversize.into_bytes()),
        (Some("text/plain"), b"{}".to_vec()),
        (None, b"{}".to_vec()),
    ];
    runtime.block_on(async {
        let huge_quiz = format!(
            "{{\"title\": \"{}\"}}",
            "x".repeat(MAX_QUIZ_BODY_BYTES + 1024)
        );
        let create = post(command("/v1/quizzes"), None);
        let response = stack
            .http
            .post(&create.url)
            .header("content-type", "application/json")
            .body(huge_quiz)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 413,
            "an oversized quiz is refused: {}",
            response.status()
        );
        for target in &targets {
            for (content_type, body) in &fixed {
                check(&stack, target, *content_type, body.clone())
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;

    // Random JSON at every endpoint.
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    for target in &targets {
        runner
            .run(&any_json(), |value| {
                let body = serde_json::to_vec(&value).unwrap_or_default();
                runtime
                    .block_on(check(&stack, target, Some("application/json"), body))
                    .map_err(TestCaseError::fail)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }

    runtime.block_on(stack.stop());
    Ok(())
}
