//! The query API's HTTP edge. Routes and the OpenAPI document come from the same
//! `routes!` calls, so the document cannot drift from what is served.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{KeepAlive, Sse};
use podium_runtime::problem::Problem;
use podium_runtime::rate_limit;
use podium_runtime::tokens::{Tokens, bearer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::live::{Hub, Resume, StreamOf};
use crate::read_model::{Cursor, Page};
use crate::reads::{Reads, now_millis};
use crate::views::{
    Leaderboard, LiveCounts, Lobby, PlayerStanding, QuestionResults, QuizState, Source,
};

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_RADIUS: usize = 5;
pub const MAX_RADIUS: usize = 50;
/// Ids are UUIDs; anything much longer cannot exist and is refused before touching Redis.
pub const MAX_ID_CHARS: usize = 64;
/// Cursors we issue are far shorter.
const MAX_CURSOR_CHARS: usize = 256;

/// What the handlers share. The router holds it in an `Arc`: axum clones the state for every
/// request, and a deep clone of the keys and clients cost allocations on each.
#[derive(Clone, Debug)]
pub struct AppState {
    pub reads: Reads,
    pub hub: Hub,
    pub tokens: Tokens,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Podium query API",
        description = "Live quiz state, leaderboards, player ranks and Server-Sent Event streams, \
                       read from the projectors' read models. Errors are RFC 9457 problem \
                       documents with a stable `code`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "reads", description = "Point reads of the read models"),
        (name = "streams", description = "Server-Sent Event streams")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// The routes and their OpenAPI document.
pub fn router(state: AppState, per_client: rate_limit::ClientLimit) -> axum::Router {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(quiz))
        .routes(routes!(leaderboard))
        .routes(routes!(around))
        .routes(routes!(player))
        .routes(routes!(lobby))
        .routes(routes!(question_stats))
        .routes(routes!(live_counts))
        .routes(routes!(quiz_events))
        .routes(routes!(player_events))
        .with_state(Arc::new(state))
        .split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { Json(document) }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            per_client,
            rate_limit::per_client,
        ));
    podium_runtime::metrics::with_request_metrics(router, "query-api")
        .layer(podium_runtime::telemetry::request_tracing())
}

/// Lets dashboards on other origins read, and open streams with `EventSource`.
pub fn with_cors(router: axum::Router, origins: &[String]) -> anyhow::Result<axum::Router> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer, preflight_request_headers};
    use tower_http::set_header::SetResponseHeaderLayer;
    // The CORS layer builds its `Vary` value anew for every response, and growing it took
    // 7.5% of the query API's CPU in rank lookups (glibc's realloc skips its thread cache):
    // the layer's default value, made once here, is appended instead.
    let names: Vec<_> = preflight_request_headers()
        .map(|name| name.to_string())
        .collect();
    let vary = HeaderValue::from_str(&names.join(", "))?;
    let layer = CorsLayer::new()
        .allow_methods([Method::GET])
        .allow_headers([
            header::AUTHORIZATION,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
        .vary(Vec::<HeaderName>::new());
    let layer = if origins.iter().any(|o| o.trim() == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let origins = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim())
                    .map_err(|_| anyhow::anyhow!("PODIUM_CORS_ORIGINS: {o:?} is not an origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        layer.allow_origin(AllowOrigin::list(origins))
    };
    Ok(router
        .layer(layer)
        .layer(SetResponseHeaderLayer::appending(header::VARY, vary)))
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_CHARS {
        return Err(Error::InvalidQuery(format!(
            "{what} must be 1 to {MAX_ID_CHARS} characters"
        )));
    }
    Ok(())
}

fn bounded(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
    min: usize,
) -> Result<usize> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Error::InvalidQuery(format!("{name} must be a whole number from {min} to {max}"))
            }),
    }
}

/// The quiz state: the open question without its answer, closed questions with their reveal.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}", tag = "reads",
    params(("quiz_id" = String, Path, description = "The quiz")),
    responses(
        (status = 200, description = "The quiz state", body = QuizState),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz (`quiz_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn quiz(
    State(app): State<Arc<AppState>>,
    Path(quiz_id): Path<String>,
) -> Result<Json<QuizState>> {
    check_id("quiz_id", &quiz_id)?;
    if let Some(snapshot) = app.hub.cached(&quiz_id) {
        return Ok(Json(QuizState::of(
            &snapshot.view,
            snapshot.player_count,
            snapshot.connected,
            now_millis(),
        )));
    }
    let state = app.reads.quiz(&quiz_id).await?;
    if state.source == Source::Live {
        app.hub.warm(&quiz_id);
    }
    Ok(Json(state))
}

/// A page of the leaderboard. Follow `next_cursor` for the next page: keyset paging neither
/// repeats nor skips players while scores move elsewhere.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/leaderboard", tag = "reads",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("limit" = Option<u32>, Query, description = "Players per page, 1 to 100 (default 10)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the leaderboard", body = Leaderboard),
        (status = 400, description = "Invalid limit (`invalid_query`) or cursor (`invalid_cursor`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz (`quiz_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn leaderboard(
    State(app): State<Arc<AppState>>,
    Path(quiz_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<axum::response::Response> {
    check_id("quiz_id", &quiz_id)?;
    let limit = bounded(&params, "limit", DEFAULT_LIMIT, MAX_LIMIT, 1)?;
    let cursor = match params.get("cursor") {
        None => None,
        Some(raw) if raw.len() <= MAX_CURSOR_CHARS => {
            Some(Cursor::decode(raw).ok_or(Error::InvalidCursor)?)
        }
        Some(_) => return Err(Error::InvalidCursor),
    };
    // The first page of a quiz someone follows, from the feed's state.
    let first_page = cursor.is_none() && limit <= usize::from(app.hub.settings().top);
    if first_page && let Some(snapshot) = app.hub.cached(&quiz_id) {
        let page = || {
            let page = Page {
                version: snapshot.view.version,
                entries: snapshot.top.iter().take(limit).cloned().collect(),
                ranked_players: snapshot.ranked_players,
                found: true,
            };
            Reads::leaderboard_of(&quiz_id, page, Some(limit))
        };
        if limit == DEFAULT_LIMIT {
            let body = snapshot.first_page.get_or_init(|| {
                serde_json::to_vec(&page())
                    .ok()
                    .map(axum::body::Bytes::from)
            });
            if let Some(body) = body {
                let json = axum::http::HeaderValue::from_static("application/json");
                return Ok(
                    ([(axum::http::header::CONTENT_TYPE, json)], body.clone()).into_response()
                );
            }
        }
        return Ok(Json(page()).into_response());
    }
    let board = app.reads.leaderboard(&quiz_id, cursor, limit).await?;
    if first_page && board.source == Source::Live {
        app.hub.warm(&quiz_id);
    }
    Ok(Json(board).into_response())
}

/// The player and `radius` players on each side of them.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/leaderboard/around/{player_id}", tag = "reads",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("player_id" = String, Path, description = "The player at the centre"),
        ("radius" = Option<u32>, Query, description = "Players on each side, 0 to 50 (default 5)"),
    ),
    responses(
        (status = 200, description = "The neighbourhood, in leaderboard order", body = Leaderboard),
        (status = 400, description = "Invalid id or radius", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz, or the player has no counted answer (`player_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn around(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, player_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Leaderboard>> {
    check_id("quiz_id", &quiz_id)?;
    check_id("player_id", &player_id)?;
    let radius = bounded(&params, "radius", DEFAULT_RADIUS, MAX_RADIUS, 0)?;
    Ok(Json(app.reads.around(&quiz_id, &player_id, radius).await?))
}

/// A player's points, rank, percentile, streak and answers given.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/players/{player_id}", tag = "reads",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("player_id" = String, Path, description = "The player"),
    ),
    responses(
        (status = 200, description = "The player's standing", body = PlayerStanding),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz or player", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn player(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, player_id)): Path<(String, String)>,
) -> Result<Json<PlayerStanding>> {
    check_id("quiz_id", &quiz_id)?;
    check_id("player_id", &player_id)?;
    if let Some(standing) = app.hub.rank(&quiz_id, &player_id) {
        return Ok(Json(standing));
    }
    let standing = app.reads.player(&quiz_id, &player_id).await?;
    if standing.source == Source::Live {
        app.hub.warm(&quiz_id);
    }
    Ok(Json(standing))
}

/// Who is in the quiz: the players who joined and were not kicked, in order of arrival (the
/// first 500), and whether each has a player stream open. The `lobby` event of the quiz
/// stream carries the same body.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/players", tag = "reads",
    params(("quiz_id" = String, Path, description = "The quiz")),
    responses(
        (status = 200, description = "The lobby", body = Lobby),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz (`quiz_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn lobby(
    State(app): State<Arc<AppState>>,
    Path(quiz_id): Path<String>,
) -> Result<Json<Lobby>> {
    check_id("quiz_id", &quiz_id)?;
    Ok(Json(app.reads.lobby(&quiz_id).await?))
}

fn question_number(n: &str) -> Result<i32> {
    n.parse::<i32>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| Error::InvalidQuery("n must be a question number from 1".into()))
}

/// A question's answer counts while it is open, for the quiz's host alone: players never
/// see the counts (nor the answer key) before the question closes.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/questions/{n}/live", tag = "reads",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("n" = i32, Path, description = "The question number, from 1"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The answer counts so far", body = LiveCounts),
        (status = 400, description = "Invalid id or number", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (`invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not this quiz's host token (`not_host`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz or question", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn live_counts(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<LiveCounts>> {
    check_id("quiz_id", &quiz_id)?;
    let number = question_number(&n)?;
    let _ = app.tokens.host_of(bearer(&headers), &quiz_id)?;
    Ok(Json(app.reads.live_counts(&quiz_id, number).await?))
}

/// A closed question's reveal and answer statistics. Sealed until the question closes.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/questions/{n}/stats", tag = "reads",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("n" = i32, Path, description = "The question number, from 1"),
    ),
    responses(
        (status = 200, description = "The question's results", body = QuestionResults),
        (status = 400, description = "Invalid id or number", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The question has not closed (`question_not_closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz or question", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn question_stats(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, n)): Path<(String, String)>,
) -> Result<Json<QuestionResults>> {
    check_id("quiz_id", &quiz_id)?;
    let number = question_number(&n)?;
    Ok(Json(app.reads.question(&quiz_id, number).await?))
}

fn last_event_id(headers: &HeaderMap, params: &HashMap<String, String>) -> Resume {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Resume(
        header
            .or_else(|| params.get("last_event_id").cloned())
            .filter(|id| id.len() <= 32),
    )
}

fn sse_response(
    heartbeat: std::time::Duration,
    stream: impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>
    + Send
    + 'static,
) -> impl IntoResponse {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat))
}

/// The quiz live: a `snapshot` and a `lobby`, then `question_started`, `question_closed`,
/// `player_kicked`, `leaderboard` (coalesced), `lobby` (whenever players join, are kicked,
/// connect or leave; it has no id) and `quiz_finished`. Reconnect with `Last-Event-ID` (or `last_event_id`) to
/// get what was missed, or a `snapshot` with `resync: true` when the gap is too long.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/events", tag = "streams",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received"),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers"),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams on this instance (`too_many_streams`), or the read model is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn quiz_events(
    State(app): State<Arc<AppState>>,
    Path(quiz_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    check_id("quiz_id", &quiz_id)?;
    let stream = app
        .hub
        .open(&quiz_id, StreamOf::Quiz, last_event_id(&headers, &params))
        .await?;
    Ok(sse_response(app.hub.settings().heartbeat(), stream))
}

/// One player's view live: a `snapshot` with `you` and a short `lobby` (the first 24 players
/// and the counts; again on changes, at most every 2 s), the question flow, a
/// `question_result` with the player's own result as each question closes, and `rank` changes. If the host
/// kicks the player, the stream ends with a `kicked` event. An open stream marks the player
/// as connected (`connected` in the lobby). Needs the
/// player's token, as a bearer token or, for `EventSource`, the `access_token` parameter.
#[utoipa::path(
    get, path = "/v1/quizzes/{quiz_id}/players/{player_id}/events", tag = "streams",
    params(
        ("quiz_id" = String, Path, description = "The quiz"),
        ("player_id" = String, Path, description = "The player"),
        ("access_token" = Option<String>, Query, description = "The player's token, for clients that cannot set headers"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received"),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (`invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not this player's (`not_this_player`), or the host removed the player (`player_kicked`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such quiz or player", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams on this instance, or the read model is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn player_events(
    State(app): State<Arc<AppState>>,
    Path((quiz_id, player_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    check_id("quiz_id", &quiz_id)?;
    check_id("player_id", &player_id)?;
    let token = bearer(&headers).or_else(|| params.get("access_token").map(String::as_str));
    let claims = app.tokens.player_of(token, &quiz_id)?;
    if claims.sub != player_id {
        return Err(Error::NotThisPlayer);
    }
    let stream = app
        .hub
        .open(
            &quiz_id,
            StreamOf::Player(player_id),
            last_event_id(&headers, &params),
        )
        .await?;
    Ok(sse_response(app.hub.settings().heartbeat(), stream))
}
