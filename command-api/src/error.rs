//! The one error type of the command side, and its mapping to RFC 9457 problem+json. Internals
//! are logged, never shown.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use podium_runtime::problem::Problem;
use podium_schemas::domain::Rejection;

use crate::event_log::AppendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The quiz rules refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("no quiz has this id or join code")]
    QuizNotFound,
    #[error("missing or invalid bearer token")]
    InvalidToken,
    #[error("this token does not belong to the quiz's host")]
    NotHost,
    #[error("this token does not belong to a player of this quiz")]
    NotThisPlayer,
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    InvalidInput(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("too many requests")]
    RateLimited(std::time::Duration),
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The quiz's shard is moving between instances, or this instance lost it: the retry
    /// reaches its owner (ADR 0011).
    #[error("the quiz is moving to another instance; retry the same request: it counts once")]
    QuizMoved,
    /// The store of snapshots and finished quizzes failed.
    #[error("the quiz records are unavailable: {0}")]
    Snapshots(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<redis::RedisError> for Error {
    fn from(error: redis::RedisError) -> Self {
        Error::Snapshots(error.to_string())
    }
}

impl From<podium_runtime::tokens::Error> for Error {
    fn from(error: podium_runtime::tokens::Error) -> Self {
        use podium_runtime::tokens::Error as E;
        match error {
            E::InvalidToken => Error::InvalidToken,
            E::NotHost => Error::NotHost,
            E::NotThisPlayer => Error::NotThisPlayer,
            E::Signing(cause) => Error::Internal(cause),
            // Refused at start-up, before any request.
            weak @ E::WeakSecret(_) => Error::Internal(weak.to_string()),
        }
    }
}

impl Error {
    /// The HTTP status and the stable, machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Error::Rejected(r) => match r {
                Rejection::Validation(_) => (S::UNPROCESSABLE_ENTITY, "validation_failed"),
                Rejection::NameTaken => (S::CONFLICT, "name_taken"),
                Rejection::JoiningLocked => (S::CONFLICT, "joining_locked"),
                Rejection::QuizFinished => (S::CONFLICT, "quiz_finished"),
                Rejection::QuestionNotFound(_) => (S::NOT_FOUND, "question_not_found"),
                Rejection::QuestionOutOfOrder { .. } => (S::CONFLICT, "question_out_of_order"),
                Rejection::QuestionNotActive(_) => (S::CONFLICT, "question_not_active"),
                Rejection::QuestionClosed(_) => (S::CONFLICT, "question_closed"),
                Rejection::InvalidChoice { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_choice"),
                Rejection::PlayerNotFound => (S::NOT_FOUND, "player_not_found"),
                Rejection::PlayerKicked => (S::FORBIDDEN, "player_kicked"),
                Rejection::AlreadyAnswered(_) => (S::CONFLICT, "already_answered"),
            },
            Error::QuizNotFound => (S::NOT_FOUND, "quiz_not_found"),
            Error::InvalidToken => (S::UNAUTHORIZED, "invalid_token"),
            Error::NotHost => (S::FORBIDDEN, "not_host"),
            Error::NotThisPlayer => (S::FORBIDDEN, "not_this_player"),
            Error::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json"),
            Error::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Error::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::InvalidInput(_) => (S::BAD_REQUEST, "invalid_input"),
            Error::NotFound => (S::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Append(AppendError::Backpressure) => (S::SERVICE_UNAVAILABLE, "event_log_busy"),
            Error::Append(_) => (S::SERVICE_UNAVAILABLE, "event_log_unavailable"),
            Error::Snapshots(_) => (S::SERVICE_UNAVAILABLE, "quiz_records_unavailable"),
            Error::QuizMoved => (S::SERVICE_UNAVAILABLE, "quiz_moved"),
            Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The problem document of this error. Internals stay in the log.
    pub fn problem(&self) -> Problem {
        let (status, code) = self.status_and_code();
        let detail = match self {
            Error::Internal(_) | Error::Append(AppendError::Failed(_)) => {
                "the event log did not confirm the event; retry the same request: it counts once"
                    .to_owned()
            }
            Error::Snapshots(_) => {
                "the records of finished quizzes cannot be read now; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem::new(status, code, detail);
        match self {
            Error::Rejected(Rejection::Validation(errors)) => problem.with("errors", errors),
            // The answer that stands, so a client can show it.
            Error::Rejected(Rejection::AlreadyAnswered(a)) => {
                problem.with("original", crate::http::AnswerResult::of(a, None))
            }
            Error::InvalidToken => problem.header(header::WWW_AUTHENTICATE, "Bearer"),
            Error::Append(_) | Error::Snapshots(_) | Error::QuizMoved => {
                problem.header(header::RETRY_AFTER, "1")
            }
            _ => problem,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::RateLimited(wait) = self {
            return podium_runtime::rate_limit::too_many_requests(wait);
        }
        let (_, code) = self.status_and_code();
        match &self {
            Error::Internal(cause) => tracing::error!(%cause, code, "request failed"),
            Error::Append(cause) => tracing::warn!(%cause, code, "append failed"),
            Error::Snapshots(cause) => {
                tracing::warn!(%cause, code, "reading a finished quiz failed")
            }
            _ => tracing::debug!(error = %self, code, "request refused"),
        }
        self.problem().into_response()
    }
}
