//! Podium's projectors fold events from the log into read models, exactly once per event, and
//! the operator tools that act on the log.

pub mod admin;
pub mod error;
pub mod leaderboard;
pub mod projector;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use podium_runtime::KafkaArgs;
use podium_schemas::read_model::Keys;

pub use error::{Error, Result};

use crate::leaderboard::RedisLeaderboard;
use crate::projector::{Batching, LeaderboardProjector};

/// Configuration of the projector service, from flags or the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "podium-projector",
    version,
    about = "Podium's projector: folds answers from Kafka into the Redis leaderboards, exactly once per event."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Redis holding the hot read models.
    #[arg(
        long,
        env = "PODIUM_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// Namespace of every read-model key.
    #[arg(long, env = "PODIUM_READ_MODEL_NAMESPACE", default_value = "podium")]
    pub namespace: String,

    /// Consumer group; instances with the same group share the partitions.
    #[arg(
        long,
        env = "PODIUM_PROJECTOR_GROUP",
        default_value = "podium-leaderboard"
    )]
    pub group: String,

    /// Most messages folded in one atomic step.
    #[arg(long, env = "PODIUM_BATCH_MAX", default_value_t = 1000)]
    pub batch_max: usize,

    /// Milliseconds to wait for more messages once a batch has begun.
    #[arg(long, env = "PODIUM_BATCH_LINGER_MS", default_value_t = 5)]
    pub batch_linger_ms: u64,
}

/// Runs the leaderboard projector until `shutdown` resolves.
pub async fn run(config: &Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let store = RedisLeaderboard::connect(&config.redis_url, Keys::new(&config.namespace)).await?;
    let batching = Batching {
        max_messages: config.batch_max.max(1),
        linger: Duration::from_millis(config.batch_linger_ms),
    };
    LeaderboardProjector::new(&config.kafka, &config.group, Arc::new(store), batching)?
        .run_until(shutdown)
        .await
}
