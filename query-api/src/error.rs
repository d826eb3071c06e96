//! The one error type of the query side, rendered as problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use podium_runtime::problem::Problem;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such quiz")]
    QuizNotFound,
    #[error("the player has no score in this quiz")]
    PlayerNotFound,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("read model unavailable: {0}")]
    ReadModel(#[from] redis::RedisError),
}

impl Error {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::QuizNotFound => (StatusCode::NOT_FOUND, "quiz_not_found"),
            Error::PlayerNotFound => (StatusCode::NOT_FOUND, "player_not_found"),
            Error::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::ReadModel(_) => (StatusCode::SERVICE_UNAVAILABLE, "read_model_unavailable"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let problem = match &self {
            Error::ReadModel(cause) => {
                tracing::warn!(%cause, "read model unavailable");
                Problem::new(status, code, "the read model is unavailable; try again")
                    .header(axum::http::header::RETRY_AFTER, "1")
            }
            other => Problem::new(status, code, other.to_string()),
        };
        problem.into_response()
    }
}
