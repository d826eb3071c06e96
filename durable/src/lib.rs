//! Podium's durable read model: every accepted answer, each finished quiz's final results and
//! each player's quiz history, kept in ScyllaDB behind the [`DurableStore`] port.
//!
//! - The durable projector feeds [`DurableStore::record`] batches of [`Sourced`] events, each with
//!   its Kafka position. Kafka delivers at least once, so recording is idempotent: a batch applied
//!   twice, or the whole log replayed, leaves the same state as a pure fold of the log.
//! - Facts follow the log's first-wins rule: the first `AnswerSubmitted` per (quiz, player,
//!   question) counts; a retried append at a higher offset changes nothing.
//! - Results and history are a pure function of the recorded answers, names, title and finish
//!   time ([`FinalResults::fold`], the reference `Standings` fold). Answers and the quiz lifecycle
//!   arrive on different topics, so answers may be recorded after `QuizFinished`; every batch
//!   therefore recomputes the finished quizzes it touches.
//! - [`MemoryDurableStore`] is the reference adapter; [`ScyllaDurableStore`] the real one, enabled
//!   by `SCYLLA_NODES` ([`ScyllaConfig`], [`connect`]). Migrations live in `deploy/scylla/`.

mod config;
mod error;
mod memory;
mod migrations;
mod model;
mod scylla_store;

use async_trait::async_trait;
use podium_schemas::events::AnswerSubmitted;

pub use config::{Keyspace, ScyllaConfig, connect, parse_consistency};
pub use error::{Error, Result};
pub use memory::MemoryDurableStore;
pub use migrations::{Migration, migrate, pending, split_statements};
pub use model::{
    ClaimMarker, FinalResults, FinalStanding, QuizHistoryEntry, Sourced, epochs_before,
};
pub use scylla_store::ScyllaDurableStore;

/// The port the durable projector writes through and the query side reads from.
#[async_trait]
pub trait DurableStore: Send + Sync + std::fmt::Debug {
    /// Records a batch of events from the log. Idempotent, and the order of batches from
    /// different partitions or topics does not matter. Returns once the effects are durable, so
    /// the caller may then store its Kafka offsets.
    async fn record(&self, batch: &[Sourced]) -> Result<()>;

    /// The player's accepted answers in the quiz, by question number.
    async fn answers(&self, quiz_id: &str, player_id: &str) -> Result<Vec<AnswerSubmitted>>;

    /// The final results, or `None` until the quiz's `QuizFinished` is recorded.
    async fn results(&self, quiz_id: &str) -> Result<Option<FinalResults>>;

    /// The finished quizzes the player scored in, most recently finished first.
    async fn history(&self, player_id: &str) -> Result<Vec<QuizHistoryEntry>>;

    /// Records claim markers of one log partition (ADR 0011). Idempotent, like `record`; the
    /// durable projector records a batch's markers before it stores the batch's offsets.
    async fn record_claims(
        &self,
        topic: &str,
        partition: i32,
        markers: &[ClaimMarker],
    ) -> Result<()>;

    /// Every claim marker recorded for one log partition, in offset order: the durable
    /// projector's fence where it resumes the partition ([`epochs_before`]).
    async fn claims(&self, topic: &str, partition: i32) -> Result<Vec<ClaimMarker>>;
}
