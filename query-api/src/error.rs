//! The one error type of the query side, rendered as problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use podium_runtime::problem::Problem;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("no such quiz")]
    QuizNotFound,
    #[error("the player has no score in this quiz")]
    PlayerNotFound,
    #[error("question {0} does not exist in this quiz")]
    QuestionNotFound(i32),
    #[error("question {0} has not closed yet; its results are sealed until then")]
    QuestionNotClosed(i32),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("the cursor is not one this API issued")]
    InvalidCursor,
    #[error("missing or invalid token")]
    InvalidToken,
    #[error("this token does not belong to this player of this quiz")]
    NotThisPlayer,
    #[error("this is not this quiz's host token")]
    NotHost,
    #[error("the host removed this player from the quiz")]
    PlayerKicked,
    #[error("this instance holds its maximum of live streams; try again shortly")]
    TooManyStreams,
    #[error("durable read model unavailable: {0}")]
    Durable(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("read model unavailable: {0}")]
    ReadModel(#[from] redis::RedisError),
    /// A read shared by several requests ended without an answer.
    #[error("a shared read of the read model failed")]
    SharedReadFailed,
}

impl Error {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::QuizNotFound => (StatusCode::NOT_FOUND, "quiz_not_found"),
            Error::PlayerNotFound => (StatusCode::NOT_FOUND, "player_not_found"),
            Error::QuestionNotFound(_) => (StatusCode::NOT_FOUND, "question_not_found"),
            Error::QuestionNotClosed(_) => (StatusCode::FORBIDDEN, "question_not_closed"),
            Error::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Error::InvalidCursor => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            Error::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Error::NotThisPlayer => (StatusCode::FORBIDDEN, "not_this_player"),
            Error::NotHost => (StatusCode::FORBIDDEN, "not_host"),
            Error::PlayerKicked => (StatusCode::FORBIDDEN, "player_kicked"),
            Error::TooManyStreams => (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams"),
            Error::Durable(_) => (StatusCode::SERVICE_UNAVAILABLE, "read_model_unavailable"),
            Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::ReadModel(_) | Error::SharedReadFailed => {
                (StatusCode::SERVICE_UNAVAILABLE, "read_model_unavailable")
            }
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
            Error::Durable(cause) => {
                tracing::warn!(%cause, "durable read model unavailable");
                Problem::new(status, code, "the read model is unavailable; try again")
                    .header(axum::http::header::RETRY_AFTER, "1")
            }
            Error::TooManyStreams => Problem::new(status, code, self.to_string())
                .header(axum::http::header::RETRY_AFTER, "5"),
            Error::InvalidToken => Problem::new(status, code, self.to_string())
                .header(axum::http::header::WWW_AUTHENTICATE, "Bearer"),
            other => Problem::new(status, code, other.to_string()),
        };
        problem.into_response()
    }
}

impl From<podium_runtime::tokens::Error> for Error {
    fn from(error: podium_runtime::tokens::Error) -> Self {
        match error {
            podium_runtime::tokens::Error::InvalidToken => Error::InvalidToken,
            podium_runtime::tokens::Error::NotHost => Error::NotHost,
            _ => Error::NotThisPlayer,
        }
    }
}
