//! The command API's HTTP edge: routes, request and response bodies, and the mapping of every
//! rejection to problem+json.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use std::net::IpAddr;

use axum::extract::{DefaultBodyLimit, Extension, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use podium_runtime::problem::Problem;
use podium_runtime::rate_limit::{ClientIp, ClientLimit, RateLimiter, per_client};
use podium_schemas::domain::{AnswerCommand, Command, QuestionDraft, QuizDraft};
use podium_schemas::events::{AnswerSubmitted, Millis};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::quizzes::{QuizStatus, Quizzes};
use podium_runtime::tokens::{Role, Tokens, bearer};

/// A quiz of 100 questions with 6 choices each, at their longest, fits with room to spare.
pub const MAX_QUIZ_BODY_BYTES: usize = 1024 * 1024;
/// Every other command is small.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Player ids are UUIDs; anything much longer cannot exist.
pub const MAX_PLAYER_ID_CHARS: usize = 64;
/// Idempotency keys are opaque to us, but bounded.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;
/// Every error response is a problem document.
const PROBLEM: &str = "application/problem+json";

/// What the handlers share. The router holds it in an `Arc`: axum clones the state for every
/// request, and a deep clone of the keys and clients cost allocations on each.
#[derive(Clone, Debug)]
pub struct AppState {
    pub quizzes: Arc<Quizzes>,
    pub tokens: Tokens,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    /// Forwarding to other instances' quizzes, in a group (ADR 0011).
    pub routing: Option<crate::routing::Router>,
}

/// The rate limits of the command API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Every request, by client address.
    pub per_client: ClientLimit,
    /// Quiz creation, by client address: each quiz holds memory until it is finished.
    pub quizzes_per_client: RateLimiter<IpAddr>,
    /// Answers, by player.
    pub answers_per_player: RateLimiter<String>,
}

/// The documented routes. Each is routed by the same `#[utoipa::path]` that documents it, so the
/// document cannot drift from the router.
fn documented_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(create_quiz).layer(DefaultBodyLimit::max(MAX_QUIZ_BODY_BYTES)))
        .routes(routes!(join))
        .routes(routes!(lock_joining))
        .routes(routes!(kick))
        .routes(routes!(start_question))
        .routes(routes!(close_question))
        .routes(routes!(finish))
        .routes(routes!(answer))
}

/// The OpenAPI 3.1 document of the command API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

pub fn router(state: AppState) -> Router {
    let (routes, document) = documented_routes().split_for_parts();
    let document = Arc::new(document);
    let mut routes = routes
        .route(
            "/openapi.json",
            get(move || serve_document(document.clone())),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    if let Some(routing) = state.routing.clone() {
        // Inside the per-client limit, which names the client the forward passes on.
        routes = routes.layer(axum::middleware::from_fn_with_state(
            routing,
            crate::routing::route_to_owner,
        ));
    }
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        state.limits.per_client.clone(),
        per_client,
    ));
    podium_runtime::metrics::with_request_metrics(routes, "command-api")
        .layer(podium_runtime::telemetry::request_tracing())
        .with_state(Arc::new(state))
}

async fn serve_document(document: Arc<utoipa::openapi::OpenApi>) -> Result<Response> {
    let json = document
        .to_json()
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
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

fn question_number(raw: &str) -> Result<i32> {
    raw.parse()
        .map_err(|_| Error::InvalidInput(format!("question number {raw:?} is not a whole number")))
}

// --- create ---

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQuizRequest {
    pub title: String,
    /// Asked in this order, numbered from 1.
    pub questions: Vec<QuestionRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionRequest {
    pub text: String,
    pub choices: Vec<String>,
    /// Index into `choices`, from 0.
    pub correct_choice: i64,
    /// Points for a correct answer at once; fewer the longer the player takes.
    pub points: Option<i64>,
    pub time_limit_seconds: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuizCreatedResponse {
    pub quiz_id: String,
    /// Players join with it.
    pub join_code: String,
    pub title: String,
    /// How many questions the quiz has.
    pub questions: usize,
    /// Send as `Authorization: Bearer` on host commands. Shown once; not stored.
    pub host_token: String,
}

/// Create a quiz
///
/// Validates the quiz, records it, and returns its join code and the host token that drives it.
/// Limited per client address.
#[utoipa::path(
    post,
    path = "/v1/quizzes",
    tag = "host",
    request_body = CreateQuizRequest,
    responses(
        (status = CREATED, description = "The quiz is recorded.", body = QuizCreatedResponse),
        (status = BAD_REQUEST, description = "`malformed_json`.", body = Problem, content_type = PROBLEM),
        (status = PAYLOAD_TOO_LARGE, description = "`payload_too_large`.", body = Problem, content_type = PROBLEM),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "`unsupported_media_type`.", body = Problem, content_type = PROBLEM),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed`, with `errors`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn create_quiz(
    State(app): State<Arc<AppState>>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    JsonBody(body): JsonBody<CreateQuizRequest>,
) -> Result<Response> {
    app.limits
        .quizzes_per_client
        .check(&client)
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
    let quizzes = app.quizzes.clone();
    let created = to_completion(async move { quizzes.create(&draft).await }).await?;
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// As the host shared it; case does not matter.
    pub join_code: String,
    /// Shown on the leaderboard; unique in the quiz, ignoring case.
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JoinedResponse {
    pub quiz_id: String,
    pub player_id: String,
    pub name: String,
    /// Send as `Authorization: Bearer` on answers, and on a rejoin.
    pub player_token: String,
}

/// Join a quiz
///
/// Joins by code under a name unique in the quiz. With the player token of an earlier join, it is
/// a rejoin: the same player and score, and nothing new is recorded.
#[utoipa::path(
    post,
    path = "/v1/join",
    tag = "player",
    request_body = JoinRequest,
    security((), ("bearer" = [])),
    responses(
        (status = OK, description = "Rejoined with the player token sent.", body = JoinedResponse),
        (status = CREATED, description = "Joined as a new player.", body = JoinedResponse),
        (status = BAD_REQUEST, description = "`malformed_json`.", body = Problem, content_type = PROBLEM),
        (status = UNAUTHORIZED, description = "`invalid_token` (a rejoin with a bad token).", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_this_player`: the token is not a player's of this quiz; `player_kicked`: the host removed this player.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found` or, on a rejoin, `player_not_found`.", body = Problem, content_type = PROBLEM),
        (status = CONFLICT, description = "`name_taken`, `joining_locked` or `quiz_finished`.", body = Problem, content_type = PROBLEM),
        (status = PAYLOAD_TOO_LARGE, description = "`payload_too_large`.", body = Problem, content_type = PROBLEM),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "`unsupported_media_type`.", body = Problem, content_type = PROBLEM),
        (status = UNPROCESSABLE_ENTITY, description = "`validation_failed`, with `errors`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn join(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JoinRequest>,
) -> Result<Response> {
    let quiz_id = app.quizzes.quiz_of_code(body.join_code.trim()).await?;
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
    let (quizzes, id, name) = (app.quizzes.clone(), quiz_id.clone(), body.name);
    let joined = to_completion(async move { quizzes.join(&id, &name).await }).await?;
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
    let (quizzes, quiz_id) = (app.quizzes.clone(), quiz_id.to_owned());
    let status = to_completion(async move { quizzes.host(&quiz_id, command).await }).await?;
    Ok(Json(status))
}

/// Runs a command to its end even if the client goes away meanwhile (hyper then drops the
/// request's future). An append the log acknowledged must reach the quiz's state: cut off
/// between the two, the state would lack a recorded event, and the client's retry would be
/// decided afresh, beside the first decision in the log.
async fn to_completion<T: Send + 'static>(
    command: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    // In the request's span: the appended events carry its trace on to the projector.
    tokio::spawn(tracing::Instrument::in_current_span(command))
        .await
        .map_err(|e| Error::Internal(format!("a command's task ended early: {e}")))?
}

/// Lock joining
///
/// No one else may join; players already in keep playing.
#[utoipa::path(
    post,
    path = "/v1/quizzes/{quiz_id}/lock",
    tag = "host",
    params(("quiz_id" = String, Path, description = "The quiz, as created.")),
    security(("bearer" = [])),
    responses(
        (status = OK, description = "The quiz after the command.", body = QuizStatus),
        (status = UNAUTHORIZED, description = "`invalid_token`.", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_host`: not this quiz's host token.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found`.", body = Problem, content_type = PROBLEM),
        (status = CONFLICT, description = "`quiz_finished`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn lock_joining(
    State(app): State<Arc<AppState>>,
    Path(quiz_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    let at = app.clock.now();
    host_command(&app, &headers, &quiz_id, Command::LockJoining { at }).await
}

/// Kick a player
///
/// Removes the player from the quiz: they can no longer answer or rejoin, and their score leaves
/// the leaderboard; their answers stay in the questions' statistics. Kicking twice is a no-op.
#[utoipa::path(
    post,
    path = "/v1/quizzes/{quiz_id}/players/{player_id}/kick",
    tag = "host",
    params(
        ("quiz_id" = String, Path, description = "The quiz, as created."),
        ("player_id" = String, Path, description = "The player, as joined."),
    ),
    security(("bearer" = [])),
    responses(
        (status = OK, description = "The quiz after the command.", body = QuizStatus),
        (status = BAD_REQUEST, description = "`invalid_input`: the player id is too long.", body = Problem, content_type = PROBLEM),
        (status = UNAUTHORIZED, description = "`invalid_token`.", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_host`: not this quiz's host token.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found` or `player_not_found`.", body = Problem, content_type = PROBLEM),
        (status = CONFLICT, description = "`quiz_finished`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn kick(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, player_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    if player_id.len() > MAX_PLAYER_ID_CHARS {
        return Err(Error::InvalidInput(format!(
            "player_id is at most {MAX_PLAYER_ID_CHARS} characters"
        )));
    }
    let at = app.clock.now();
    host_command(&app, &headers, &quiz_id, Command::Kick { player_id, at }).await
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

/// Start a question
///
/// Questions start in order; the clock runs from now, and the question closes by itself at its
/// time limit.
#[utoipa::path(
    post,
    path = "/v1/quizzes/{quiz_id}/questions/{n}/start",
    tag = "host",
    params(
        ("quiz_id" = String, Path, description = "The quiz, as created."),
        ("n" = i32, Path, description = "The question's number, from 1."),
    ),
    security(("bearer" = [])),
    responses(
        (status = OK, description = "The quiz after the command.", body = QuizStatus),
        (status = BAD_REQUEST, description = "`invalid_input`: `n` is not a whole number.", body = Problem, content_type = PROBLEM),
        (status = UNAUTHORIZED, description = "`invalid_token`.", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_host`: not this quiz's host token.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found` or `question_not_found`.", body = Problem, content_type = PROBLEM),
        (status = CONFLICT, description = "`question_out_of_order` or `quiz_finished`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn start_question(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    question_command(&app, &headers, &quiz_id, &n, |question, at| {
        Command::StartQuestion { question, at }
    })
    .await
}

/// Close a question
///
/// Closes the running question before its time limit. Closing a closed question again succeeds
/// and changes nothing, so a retry is safe.
#[utoipa::path(
    post,
    path = "/v1/quizzes/{quiz_id}/questions/{n}/close",
    tag = "host",
    params(
        ("quiz_id" = String, Path, description = "The quiz, as created."),
        ("n" = i32, Path, description = "The question's number, from 1."),
    ),
    security(("bearer" = [])),
    responses(
        (status = OK, description = "The quiz after the command.", body = QuizStatus),
        (status = BAD_REQUEST, description = "`invalid_input`: `n` is not a whole number.", body = Problem, content_type = PROBLEM),
        (status = UNAUTHORIZED, description = "`invalid_token`.", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_host`: not this quiz's host token.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found` or `question_not_found`.", body = Problem, content_type = PROBLEM),
        (status = CONFLICT, description = "`question_not_active`: it has not started.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn close_question(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    question_command(&app, &headers, &quiz_id, &n, |question, at| {
        Command::CloseQuestion { question, at }
    })
    .await
}

/// Finish the quiz
///
/// Closes the running question, if any, and ends the quiz. Finishing a finished quiz succeeds and
/// changes nothing.
#[utoipa::path(
    post,
    path = "/v1/quizzes/{quiz_id}/finish",
    tag = "host",
    params(("quiz_id" = String, Path, description = "The quiz, as created.")),
    security(("bearer" = [])),
    responses(
        (status = OK, description = "The quiz after the command.", body = QuizStatus),
        (status = UNAUTHORIZED, description = "`invalid_token`.", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_host`: not this quiz's host token.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited`, with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn finish(
    State(app): State<Arc<AppState>>,
    Path(quiz_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<QuizStatus>> {
    let at = app.clock.now();
    host_command(&app, &headers, &quiz_id, Command::Finish { at }).await
}

// --- answers ---

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The question's number, from 1.
    pub question: i32,
    /// Index into the question's choices, from 0.
    pub choice: i64,
}

/// The outcome of an answer, as the player sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    #[schema(nullable = false)]
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

/// Answer a question
///
/// One answer per player and question, timed from when the server received it. It is
/// acknowledged only once recorded. A retry with the same `Idempotency-Key` returns the original
/// result; any other second answer is refused with the one that stands.
#[utoipa::path(
    post,
    path = "/v1/quizzes/{quiz_id}/answers",
    tag = "player",
    params(
        ("quiz_id" = String, Path, description = "The quiz joined."),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 128, description = "Makes a retry safe: the same key returns the original result."),
    ),
    request_body = AnswerRequest,
    security(("bearer" = [])),
    responses(
        (status = OK, description = "A retry with the same `Idempotency-Key`: the original result.", body = AnswerResult),
        (status = CREATED, description = "The answer is recorded and scored.", body = AnswerResult),
        (status = BAD_REQUEST, description = "`malformed_json`, or `invalid_input` for a bad `Idempotency-Key`.", body = Problem, content_type = PROBLEM),
        (status = UNAUTHORIZED, description = "`invalid_token`.", body = Problem, content_type = PROBLEM),
        (status = FORBIDDEN, description = "`not_this_player`: not a player token of this quiz; `player_kicked`: the host removed this player.", body = Problem, content_type = PROBLEM),
        (status = NOT_FOUND, description = "`quiz_not_found`, `question_not_found` or `player_not_found`.", body = Problem, content_type = PROBLEM),
        (status = CONFLICT, description = "`already_answered` (with the `original` result), `question_not_active`, `question_closed` or `quiz_finished`.", body = Problem, content_type = PROBLEM),
        (status = PAYLOAD_TOO_LARGE, description = "`payload_too_large`.", body = Problem, content_type = PROBLEM),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "`unsupported_media_type`.", body = Problem, content_type = PROBLEM),
        (status = UNPROCESSABLE_ENTITY, description = "`invalid_choice`, or `validation_failed` with `errors`.", body = Problem, content_type = PROBLEM),
        (status = TOO_MANY_REQUESTS, description = "`rate_limited` (per client or per player), with `Retry-After`.", body = Problem, content_type = PROBLEM),
        (status = SERVICE_UNAVAILABLE, description = "`event_log_busy`, `event_log_unavailable` or `quiz_records_unavailable`: nothing was recorded; retry.", body = Problem, content_type = PROBLEM),
    )
)]
async fn answer(
    State(app): State<Arc<AppState>>,
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
    let command = AnswerCommand {
        player_id: player.sub,
        question: body.question,
        choice: body.choice,
        received_at,
        idempotency_key: idempotency_key(&headers)?,
    };
    let quizzes = app.quizzes.clone();
    let receipt = to_completion(async move { quizzes.answer(&quiz_id, command).await }).await?;
    let status = if receipt.repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let result = AnswerResult::of(&receipt.answer, Some(receipt.total));
    Ok((status, Json(result)).into_response())
}
