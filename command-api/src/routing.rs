//! Any instance of a group takes any request (ADR 0011): a command for a quiz whose shard
//! another instance owns is forwarded to it, one internal hop, marked so that it is never
//! forwarded twice. While a shard moves, or its owner does not answer, the client is told
//! `503 quiz_moved` and retries.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use podium_runtime::rate_limit::ClientIp;

use crate::error::{Error, Result};
use crate::http::{MAX_BODY_BYTES, MAX_QUIZ_BODY_BYTES};
use crate::quizzes::Quizzes;
use crate::shards::Shards;

/// Marks a request one instance forwarded to another: the owner serves it or refuses it, and
/// never forwards it again. A client that sends it gains nothing: a non-owner refuses it.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-podium-forwarded");

/// What the routing layer needs.
#[derive(Clone, Debug)]
pub struct Router {
    pub shards: Arc<Shards>,
    pub quizzes: Arc<Quizzes>,
    pub client: reqwest::Client,
}

impl Router {
    pub fn new(shards: Arc<Shards>, quizzes: Arc<Quizzes>, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("building the forwarding client: {e}")))?;
        Ok(Self {
            shards,
            quizzes,
            client,
        })
    }
}

/// Which shard a request's command belongs to, if any; a join by code reads its body for the
/// code, and hands the body back.
async fn shard_of_request(router: &Router, request: Request) -> Result<(Option<i32>, Request)> {
    let path = request.uri().path();
    if let Some(rest) = path.strip_prefix("/v1/quizzes/") {
        let quiz_id = rest.split('/').next().unwrap_or_default();
        let shard = router.shards.of(quiz_id);
        return Ok((Some(shard), request));
    }
    if request.method() == Method::POST && path == "/v1/quizzes" {
        // Created here whenever this instance owns a shard; otherwise by any owner.
        let owned = router.shards.owned();
        let shard = owned
            .is_empty()
            .then(|| rand::random_range(0..router.shards.count()));
        return Ok((shard, request));
    }
    if request.method() == Method::POST && path == "/v1/join" {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| Error::PayloadTooLarge(MAX_BODY_BYTES))?;
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|body| body.get("join_code")?.as_str().map(str::to_owned));
        // A body without a code is refused by the handler, here, with its usual problem.
        let shard = match code {
            Some(code) => match router.quizzes.quiz_of_code(code.trim()).await {
                Ok(quiz_id) => Some(router.shards.of(&quiz_id)),
                Err(Error::QuizNotFound) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        return Ok((shard, Request::from_parts(parts, Body::from(bytes))));
    }
    Ok((None, request))
}

/// The routing middleware: serves what this instance owns, forwards the rest.
pub async fn route_to_owner(
    State(router): State<Router>,
    request: Request,
    next: Next,
) -> Response {
    match route(&router, request, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn route(router: &Router, request: Request, next: Next) -> Result<Response> {
    let (shard, request) = shard_of_request(router, request).await?;
    let Some(shard) = shard.filter(|s| !router.shards.owns(*s)) else {
        return Ok(next.run(request).await);
    };
    if request.headers().contains_key(&FORWARDED) {
        return Err(Error::QuizMoved);
    }
    let owner = router.shards.owner(shard).await?.ok_or(Error::QuizMoved)?;
    forward(router, &owner, request).await
}

/// Sends the request to `owner` as it came, with the client's address forwarded, and returns
/// the owner's answer as it is. An owner that does not answer is a shard moving.
async fn forward(router: &Router, owner: &str, request: Request) -> Result<Response> {
    let client = request.extensions().get::<ClientIp>().map(|c| c.0);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_QUIZ_BODY_BYTES)
        .await
        .map_err(|_| Error::PayloadTooLarge(MAX_QUIZ_BODY_BYTES))?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let mut headers = parts.headers;
    for hop in [header::HOST, header::CONNECTION, header::CONTENT_LENGTH] {
        let _ = headers.remove(hop);
    }
    if let Some(client) = client
        && let Ok(value) = HeaderValue::from_str(&client.to_string())
    {
        // The owner limits the client, not this instance, when it trusts this instance.
        let _ = headers.append("x-forwarded-for", value);
    }
    let _ = headers.insert(FORWARDED, HeaderValue::from_static("1"));
    metrics::counter!("podium_command_forwarded_total").increment(1);
    let answer = router
        .client
        .request(parts.method, format!("{owner}{path}"))
        .headers(headers)
        .body(bytes)
        .send()
        .await
        .map_err(|e| {
            tracing::debug!(owner, error = %e, "forwarding to the shard's owner failed");
            Error::QuizMoved
        })?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let body: Bytes = answer.bytes().await.map_err(|e| {
        tracing::debug!(owner, error = %e, "reading the owner's answer failed");
        Error::QuizMoved
    })?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != header::CONNECTION && name != header::TRANSFER_ENCODING {
            let _ = response.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(response)
}
