//! The served OpenAPI document and the router agree: every documented operation is routed (not
//! answered by the fallback), and every documented error is a problem document.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use podium_command_api::clock::SystemClock;
use podium_command_api::event_log::MemoryEventLog;
use podium_command_api::http::{AppState, Limits, router};
use podium_command_api::quizzes::Quizzes;
use podium_runtime::rate_limit::{ClientRateArgs, Rate, RateLimiter};
use podium_runtime::tokens::Tokens;
use serde_json::Value;
use tower::ServiceExt;

const PROBLEM_SCHEMA: &str = "#/components/schemas/ProblemDetails";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The real router on an in-memory log, without rate limits.
async fn app() -> Result<Router> {
    let clock = Arc::new(SystemClock);
    let quizzes = Quizzes::restore(Arc::new(MemoryEventLog::default()), clock.clone()).await?;
    let off = Rate::per_second(0, 0);
    let state = AppState {
        quizzes,
        tokens: Tokens::new(b"openapi-test-secret-of-32-bytes!"),
        clock,
        limits: Limits {
            per_client: ClientRateArgs::off().limit(),
            quizzes_per_client: RateLimiter::new(off),
            answers_per_player: RateLimiter::new(off),
        },
        routing: None,
    };
    // The per-client limit reads the peer address, which a served app gets from its listener.
    Ok(router(state).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)))))
}

/// Sends one request; returns the status, the content type and the body as JSON (null if not).
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    json: Option<&str>,
) -> Result<(StatusCode, String, Value)> {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match json {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_owned())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(request.body(body)?).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok((
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// The router's own answers for what it does not route.
fn is_fallback(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body["code"] == "not_found")
}

async fn document(app: &Router) -> Result<Value> {
    let (status, content_type, doc) = send(app, Method::GET, "/openapi.json", None).await?;
    ensure!(status == StatusCode::OK, "GET /openapi.json: {status}");
    ensure!(content_type == "application/json", "{content_type}");
    Ok(doc)
}

/// Every `(method, path)` the document names.
fn operations(doc: &Value) -> Result<Vec<(String, String)>> {
    let paths = doc["paths"].as_object().context("no paths")?;
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                found.push((method.to_owned(), path.clone()));
            }
        }
    }
    Ok(found)
}

/// A concrete URI for a templated path: ids become a UUID, anything else `1`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(name) if name.trim_end_matches('}').ends_with("_id") => {
                "0190f5a4-7b3c-7d1e-9a2b-3c4d5e6f7a8b"
            }
            Some(_) => "1",
            None => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn every_ref(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                refs.push(r.clone());
            }
            map.values().for_each(|v| every_ref(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| every_ref(v, refs)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_operation_in_it_is_routed() -> Result<()> {
    let app = app().await?;
    let doc = document(&app).await?;
    let version = doc["openapi"].as_str().context("no openapi version")?;
    ensure!(version.starts_with("3.1"), "openapi {version}");
    assert_eq!(doc["info"]["title"], "Podium command API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // The check below can tell a routed request from the fallback.
    let (status, _, body) = send(&app, Method::POST, "/v1/nowhere", Some("{}")).await?;
    assert!(is_fallback(status, &body), "{status} {body}");
    let (status, _, body) = send(&app, Method::GET, "/v1/join", None).await?;
    assert!(is_fallback(status, &body), "{status} {body}");

    let operations = operations(&doc)?;
    assert_eq!(operations.len(), 8, "{operations:?}");
    for (method, path) in &operations {
        let uri = concrete(path);
        let verb = Method::from_bytes(method.to_uppercase().as_bytes())?;
        let json = matches!(method.as_str(), "post" | "put" | "patch").then_some("{}");
        let (status, _, body) = send(&app, verb, &uri, json).await?;
        assert!(
            !is_fallback(status, &body),
            "{method} {path} is documented but not routed: {status} {body}"
        );
        // Whatever it answered to a request without a token or fields is documented too.
        let documented = &doc["paths"][path][method]["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which it does not document: {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn every_documented_error_is_a_problem_document() -> Result<()> {
    let doc = document(&app().await?).await?;
    assert!(doc["components"]["schemas"]["ProblemDetails"].is_object());
    for (method, path) in operations(&doc)? {
        let responses = doc["paths"][&path][&method]["responses"]
            .as_object()
            .context("no responses")?;
        let errors: Vec<_> = responses
            .iter()
            .filter(|(status, _)| !status.starts_with('2'))
            .collect();
        assert!(!errors.is_empty(), "{method} {path} documents no errors");
        for (status, response) in errors {
            let content = response["content"].as_object().context("no content")?;
            let types: Vec<_> = content.keys().collect();
            assert_eq!(
                types,
                ["application/problem+json"],
                "{method} {path} {status}"
            );
            assert_eq!(
                content["application/problem+json"]["schema"]["$ref"], PROBLEM_SCHEMA,
                "{method} {path} {status}"
            );
        }
    }

    // Every reference resolves.
    let mut refs = Vec::new();
    every_ref(&doc, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .with_context(|| format!("unexpected $ref {r}"))?;
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_main_operations_are_documented_as_they_behave() -> Result<()> {
    let doc = document(&app().await?).await?;
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    let schema_of = |op: &Value, status: &str| {
        op["responses"][status]["content"]["application/json"]["schema"]["$ref"].clone()
    };

    let create = op("post", "/v1/quizzes");
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateQuizRequest"
    );
    assert_eq!(
        schema_of(&create, "201"),
        "#/components/schemas/QuizCreatedResponse"
    );
    for status in ["400", "413", "415", "422", "429", "503"] {
        assert!(create["responses"][status].is_object(), "create {status}");
    }
    assert!(create["security"].is_null(), "anyone may create a quiz");

    let join = op("post", "/v1/join");
    for status in ["200", "201"] {
        assert_eq!(
            schema_of(&join, status),
            "#/components/schemas/JoinedResponse"
        );
    }
    assert!(join["responses"]["409"]["content"]["application/problem+json"].is_object());

    let answer = op("post", "/v1/quizzes/{quiz_id}/answers");
    for status in ["200", "201"] {
        assert_eq!(
            schema_of(&answer, status),
            "#/components/schemas/AnswerResult"
        );
    }
    for status in ["401", "403", "404", "409", "422", "429", "503"] {
        assert!(answer["responses"][status].is_object(), "answer {status}");
    }
    assert_eq!(answer["security"], serde_json::json!([{"bearer": []}]));
    let params = answer["parameters"].as_array().context("no parameters")?;
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
        "{params:?}"
    );

    for path in [
        "/v1/quizzes/{quiz_id}/lock",
        "/v1/quizzes/{quiz_id}/questions/{n}/start",
        "/v1/quizzes/{quiz_id}/questions/{n}/close",
        "/v1/quizzes/{quiz_id}/finish",
    ] {
        let host = op("post", path);
        assert_eq!(host["tags"], serde_json::json!(["host"]), "{path}");
        assert_eq!(
            host["security"],
            serde_json::json!([{"bearer": []}]),
            "{path}"
        );
        assert_eq!(
            schema_of(&host, "200"),
            "#/components/schemas/QuizStatus",
            "{path}"
        );
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    Ok(())
}

#[tokio::test]
async fn quiz_creation_keeps_its_larger_body_limit() -> Result<()> {
    use podium_command_api::http::{MAX_BODY_BYTES, MAX_QUIZ_BODY_BYTES};
    let app = app().await?;
    let body = |bytes: usize| format!("{{\"title\": \"{}\"}}", "x".repeat(bytes));
    let mid = body(MAX_BODY_BYTES + 1024);

    let (status, _, problem) = send(&app, Method::POST, "/v1/quizzes", Some(&mid)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _, problem) = send(&app, Method::POST, "/v1/join", Some(&mid)).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let huge = body(MAX_QUIZ_BODY_BYTES + 1024);
    let (status, _, problem) = send(&app, Method::POST, "/v1/quizzes", Some(&huge)).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    Ok(())
}
