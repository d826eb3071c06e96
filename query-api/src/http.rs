//! The query API's HTTP edge.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use podium_runtime::rate_limit::{self, RateLimiter};
use tower_http::trace::TraceLayer;

use crate::error::{Error, Result};
use crate::read_model::{Leaderboard, PlayerStanding, ReadModel};

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;
/// Ids are UUIDs; anything much longer cannot exist and is refused before touching Redis.
pub const MAX_ID_CHARS: usize = 64;

pub fn router(read_model: ReadModel, per_client: RateLimiter<IpAddr>) -> Router {
    Router::new()
        .route("/v1/quizzes/{quiz_id}/leaderboard", get(leaderboard))
        .route("/v1/quizzes/{quiz_id}/players/{player_id}", get(player))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            per_client,
            rate_limit::per_client,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(read_model)
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_CHARS {
        return Err(Error::InvalidQuery(format!(
            "{what} must be 1 to {MAX_ID_CHARS} characters"
        )));
    }
    Ok(())
}

async fn leaderboard(
    State(read_model): State<ReadModel>,
    Path(quiz_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Leaderboard>> {
    check_id("quiz_id", &quiz_id)?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::InvalidQuery(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    Ok(Json(read_model.top(&quiz_id, limit).await?))
}

async fn player(
    State(read_model): State<ReadModel>,
    Path((quiz_id, player_id)): Path<(String, String)>,
) -> Result<Json<PlayerStanding>> {
    check_id("quiz_id", &quiz_id)?;
    check_id("player_id", &player_id)?;
    Ok(Json(read_model.player(&quiz_id, &player_id).await?))
}
