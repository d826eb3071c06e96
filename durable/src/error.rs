//! The crate's one error type.

use scylla::errors::{
    DeserializationError, ExecutionError, IntoRowsResultError, MaybeFirstRowError, NewSessionError,
    NextRowError, PagerExecutionError, PrepareError, RowsError, TypeCheckError, UseKeyspaceError,
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid keyspace name {0:?}: use 1 to 48 lowercase letters, digits or underscores, \
         starting with a letter"
    )]
    InvalidKeyspace(String),
    #[error(
        "invalid consistency level {0:?}: use one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, \
         LOCAL_ONE (one level serves both reads and writes)"
    )]
    InvalidConsistency(String),
    #[error("invalid migration file name {0:?}: expected NNNN_name.cql with NNNN > 0")]
    InvalidMigrationName(String),
    #[error("migration version {0} appears twice")]
    DuplicateMigration(i32),
    #[error("could not connect to ScyllaDB: {0}")]
    Connect(Box<NewSessionError>),
    #[error("could not prepare a ScyllaDB statement: {0}")]
    Prepare(Box<PrepareError>),
    #[error("a ScyllaDB request failed: {0}")]
    Execute(Box<ExecutionError>),
    #[error("a paged ScyllaDB request failed: {0}")]
    Page(Box<PagerExecutionError>),
    #[error("could not switch to the keyspace: {0}")]
    UseKeyspace(Box<UseKeyspaceError>),
    #[error("migration {version} ({name}) failed on `{statement}`: {source}")]
    Migration {
        version: i32,
        name: String,
        statement: String,
        source: Box<ExecutionError>,
    },
    /// A response had an unexpected shape: the schema and this binary disagree.
    #[error("could not read a ScyllaDB response: {0}")]
    Decode(Box<dyn std::error::Error + Send + Sync>),
    /// A stored value this crate never writes, e.g. a negative rank.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

// The driver's errors are large; boxing keeps `Result` small on the hot path.
macro_rules! boxed_errors {
    ($($variant:ident($source:ty)),* $(,)?) => {
        $(impl From<$source> for Error {
            fn from(source: $source) -> Self {
                Error::$variant(Box::new(source))
            }
        })*
    };
}

boxed_errors!(
    Connect(NewSessionError),
    Prepare(PrepareError),
    Execute(ExecutionError),
    Page(PagerExecutionError),
    UseKeyspace(UseKeyspaceError),
);

macro_rules! decode_errors {
    ($($source:ty),* $(,)?) => {
        $(impl From<$source> for Error {
            fn from(source: $source) -> Self {
                Error::Decode(Box::new(source))
            }
        })*
    };
}

decode_errors!(
    IntoRowsResultError,
    MaybeFirstRowError,
    RowsError,
    DeserializationError,
    NextRowError,
    TypeCheckError,
);
