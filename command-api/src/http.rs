//! The command API's HTTP edge: routes, request and response bodies, and the mapping of every
//! rejection to problem+json.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use podium_runtime::rate_limit::{RateLimiter, per_client};
use podium_schemas::domain::{AnswerCommand, Command, QuestionDraft, QuizDraft};
use podium_schemas::events::{AnswerSubmitted, Millis};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::quizzes::{QuizStatus, Quizzes};
use podium_runtime::tokens::{Role, Tokens};

/// A quiz of 100 questions with 6 choices each, at their longest, fits with room to spare.
pub const MAX_QUIZ_BODY_BYTES: usize = 1024 * 1024;
/// Every other command is small.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Idempotency keys are opaque to us, but bounded.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

#[derive(Clone, Debug)]
pub struct AppState {
    pub quizzes: Arc<Quizzes>,
    pub tokens: Tokens,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
}

/// The rate limits of the command API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Every request, by client address.
    pub per_client: RateLimiter<IpAddr>,
    /// Quiz creation, by client address: each quiz holds memory until it is finished.
    pub quizzes_per_client: RateLimiter<IpAddr>,
    /// Answers, by player.
    pub answers_per_player: RateLimiter<String>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/quizzes",
            post(create_quiz).layer(DefaultBodyLimit::max(MAX_QUIZ_BODY_BYTES)),
        )
        .route("/v1/join", post(join))
        .route("/v1/quizzes/{quiz_id}/lock", post(lock_joining))
        .route(
            "/v1/quizzes/{quiz_id}/questions/{n}/start",
            post(start_question),
        )
        .route(
            "/v1/quizzes/{quiz_id}/questions/{n}/close",
            post(close_question),
        )
        .route("/v1/quizzes/{quiz_id}/finish", post(finish))
        .route("/v1/quizzes/{quiz_id}/answers", post(answer))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.limits.per_client.clone(),
            per_client,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// JSON bodies whose every rejection is a problem document with a stable code.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> Error {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(MAX_BODY_BYTES),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => {
            Error::Rejected(podium_schemas::domain::Rejection::Validation(vec![
                podium_schemas::domain::FieldError::new("body", rejection.body_text()),
            ]))
        }
        _ => Error::MalformedJson(rejection.body_text()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn question_number(raw: &str) -> Result<i32> {
    raw.parse()
        .map_err(|_| Error::InvalidInput(format!("question number {raw:?} is not a whole number")))
}

// --- create ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuizRequest {
    pub title: String,
    pub questions: Vec<QuestionRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionRequest {
    pub text: String,
    pub choices: Vec<String>,
    pub correct_choice: i64,
    pub points: Option<i64>,
    pub time_limit_seconds: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct QuizCreatedResponse {
    pub quiz_id: String,
    pub join_code: String,
    pub title: String,
    pub questions: usize,
    /// Send as `Authorization: Bearer` on host commands. Shown once; not stored.
    pub host_token: String,
}

async fn create_quiz(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<CreateQuizRequest>,
) -> Result<Response> {
    app.limits
        .quizzes_per_client
        .check(&client.ip())
        .map_err(Error::RateLimited)?;
    let draft = QuizDraft {
        title: body.title,
        questions: body
            .questions
            .into_iter()
            .map(|q| QuestionDraft {
                text: q.text,
                choices: q.choices,
                correct_choice: q.correct_choice,
                points: q.points,
                time_limit_seconds: q.time_limit_seconds,
            })
            .collect(),
    };
    let created = app.quizzes.create(&draft).await?;
    let host_token = app
        .tokens
        .issue(&created.quiz_id, Role::Host, &created.quiz_id)?;
    let response = QuizCreatedResponse {
        questions: created.questions.len(),
        quiz_id: created.quiz_id,
        join_code: created.join_code,
        title: created.title,
        host_token,
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

// --- join ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub join_code: String,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinedResponse {
    pub quiz_id: String,
    pub player_id: String,
    pub name: String,
    /// Send as `Authorization: Bearer` on answers, and on a rejoin.
    pub player_token: String,
}

async fn join(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JoinRequest>,
) -> Result<Response> {
    let quiz_id = app.quizzes.quiz_of_code(body.join_code.trim())?;
    if let Some(token) = bearer(&headers) {
        // A rejoin: the same player, the same score, no new event.
        let claims = app.tokens.player_of(Some(token), &quiz_id)?;
        let name = app.quizzes.player_name(&quiz_id, &claims.sub).await?;
        let response = JoinedResponse {
            quiz_id,
            player_id: claims.sub,
            name,
            player_token: token.to_owned(),
        };
        return Ok((StatusCode::OK, Json(response)).into_response());
    }
    let joined = app.quizzes.join(&quiz_id, &body.name).await?;
    let player_token = app
        .tokens
        .issue(&quiz_id, Role::Player, &joined.player_id)?;
    let response = JoinedResponse {
        quiz_id,
        player_id: joined.player_id,
        name: joined.name,
        player_token,
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

// --- host commands ---

async fn host_command(
    app: &AppState,
    headers: &HeaderMap,
    quiz_id: &str,
    command: Command,
) -> Result<Json<QuizStatus>> {
    let _ = app.tokens.host_of(bearer(headers), quiz_id)?;
    Ok(Json(app.quizzes.host(quiz_id, command).await?))
}

async fn lock_joining(
    State(app): State<AppState>,
    Path(quiz_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    let at = app.clock.now();
    host_command(&app, &headers, &quiz_id, Command::LockJoining { at }).await
}

/// A host command about question `n` of the quiz.
async fn question_command(
    app: &AppState,
    headers: &HeaderMap,
    quiz_id: &str,
    n: &str,
    command: fn(i32, Millis) -> Command,
) -> Result<Json<QuizStatus>> {
    let question = question_number(n)?;
    host_command(app, headers, quiz_id, command(question, app.clock.now())).await
}

async fn start_question(
    State(app): State<AppState>,
    Path((quiz_id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    question_command(&app, &headers, &quiz_id, &n, |question, at| {
        Command::StartQuestion { question, at }
    })
    .await
}

async fn close_question(
    State(app): State<AppState>,
    Path((quiz_id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    question_command(&app, &headers, &quiz_id, &n, |question, at| {
        Command::CloseQuestion { question, at }
    })
    .await
}

async fn finish(
    State(app): State<AppState>,
    Path(quiz_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    let at = app.clock.now();
    host_command(&app, &headers, &quiz_id, Command::Finish { at }).await
}

// --- answers ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    pub question: i32,
    pub choice: i64,
}

/// The outcome of an answer, as the player sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerResult {
    pub quiz_id: String,
    pub player_id: String,
    pub question: i32,
    pub choice: i32,
    pub correct: bool,
    pub points: i32,
    pub streak: i32,
    pub streak_bonus: i32,
    pub elapsed_ms: i32,
    /// The player's total after this answer; absent where it is not known (a refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

impl AnswerResult {
    pub fn of(a: &AnswerSubmitted, total: Option<i64>) -> Self {
        Self {
            quiz_id: a.quiz_id.clone(),
            player_id: a.player_id.clone(),
            question: a.question,
            choice: a.choice,
            correct: a.correct,
            points: a.points,
            streak: a.streak,
            streak_bonus: a.streak_bonus,
            elapsed_ms: a.elapsed_ms,
            total,
        }
    }
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_CHARS)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

async fn answer(
    State(app): State<AppState>,
    Path(quiz_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AnswerRequest>,
) -> Result<Response> {
    // Taken before anything else: the answer is timed from when the server received it.
    let received_at = app.clock.now();
    let player = app.tokens.player_of(bearer(&headers), &quiz_id)?;
    app.limits
        .answers_per_player
        .check(&player.sub)
        .map_err(Error::RateLimited)?;
    let receipt = app
        .quizzes
        .answer(
            &quiz_id,
            AnswerCommand {
                player_id: player.sub,
                question: body.question,
                choice: body.choice,
                received_at,
                idempotency_key: idempotency_key(&headers)?,
            },
        )
        .await?;
    let status = if receipt.repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let result = AnswerResult::of(&receipt.answer, Some(receipt.total));
    Ok((status, Json(result)).into_response())
}
