//! The one error type of the analyst tool.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("topic {0} does not exist or has no partitions")]
    NoSuchTopic(String),
    #[error(
        "partition {topic}/{partition} stopped at offset {at} before {end}: nothing arrived for {idle_seconds} s"
    )]
    Stalled {
        topic: String,
        partition: i32,
        at: i64,
        end: i64,
        idle_seconds: u64,
    },
    #[error("invalid usage: {0}")]
    Usage(String),
    #[error(
        "{0} exists: an earlier export was interrupted. Pass --resume to continue it, or delete the file to start over"
    )]
    CheckpointExists(PathBuf),
    #[error("{path} belongs to a different export ({reason}); delete it to start over")]
    CheckpointMismatch { path: PathBuf, reason: String },
    #[error("quiz {0} is not in the log")]
    QuizNotFound(String),
    #[error("quiz {quiz_id}: {reason}")]
    Quiz { quiz_id: String, reason: String },
    #[error("there is no scoring rule version {0}; known versions: {1}")]
    UnknownRules(i32, String),
}

impl From<apache_avro::Error> for Error {
    fn from(e: apache_avro::Error) -> Self {
        Self::Avro(Box::new(e))
    }
}

impl Error {
    pub(crate) fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { path, source }
    }

    /// A closed pipe on the reader's side (`podium-analyst tail | head`): a normal end, not a
    /// failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Output(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
            Self::Json(e) => e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe),
            _ => false,
        }
    }
}
