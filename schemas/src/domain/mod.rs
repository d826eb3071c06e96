//! The quiz rules as pure functions with no I/O: [`decide`] turns a command and the current state
//! into events or a [`Rejection`]; [`Quiz::evolve`] folds an event into the state. The command
//! side decides with them, and the projectors and analyst tools fold with them.

mod projection;
mod quiz;
pub mod scoring;
mod standings;
mod validation;

pub use projection::{PlayerCard, QuestionStats, QuestionView, QuizView, ReadModels, Reveal};
pub use quiz::{ActiveQuestion, AnswerCommand, Command, Decision, Quiz, decide};
pub use standings::{PlayerScore, Standing, Standings, leaderboard_order};
pub use validation::{
    FieldError, JOIN_CODE_ALPHABET, JOIN_CODE_LEN, Limits, QuestionDraft, QuizDraft, create_quiz,
    is_join_code, normalize_name,
};

use crate::events::AnswerSubmitted;

/// Why a command was refused. Each maps to one stable error code at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the display name is already taken in this quiz")]
    NameTaken,
    #[error("joining this quiz is locked")]
    JoiningLocked,
    #[error("the quiz is finished")]
    QuizFinished,
    #[error("the quiz has no question {0}")]
    QuestionNotFound(i32),
    #[error("question {requested} cannot start now; the next question is {next}")]
    QuestionOutOfOrder { requested: i32, next: i32 },
    #[error("question {0} is not active")]
    QuestionNotActive(i32),
    #[error("question {0} is closed")]
    QuestionClosed(i32),
    #[error("choice {choice} does not exist; the question has {choices} choices")]
    InvalidChoice { choice: i64, choices: usize },
    #[error("the player is not part of this quiz")]
    PlayerNotFound,
    #[error("the host removed this player from the quiz")]
    PlayerKicked,
    #[error("the player already answered question {}", .0.question)]
    AlreadyAnswered(Box<AnswerSubmitted>),
}
