//! Podium's projectors fold events from the log into read models, exactly once per event, and
//! the operator tools that act on the log.

pub mod admin;
mod backoff;
pub mod dead_letters;
pub mod durable;
pub mod error;
pub mod projector;
pub mod read_model;
pub mod rebuild;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use podium_runtime::KafkaArgs;

pub use error::{Error, Result};

use crate::projector::{Batching, Projector};
use crate::read_model::RedisReadModel;

pub use podium_runtime::RedisArgs;

/// Connects to the read models `args` names.
pub async fn connect(args: &RedisArgs) -> Result<RedisReadModel> {
    RedisReadModel::connect(&args.redis_url, args.root()).await
}

/// Configuration of the projector service, from flags or the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "podium-projector",
    version,
    about = "Podium's projector: folds the quiz lifecycle and answers from Kafka into the Redis \
             read models (leaderboards, player cards, question stats, quiz state), exactly once \
             per event. Records it cannot read go to the dead-letter topic."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// The durable read model; without SCYLLA_NODES it is disabled.
    #[command(flatten)]
    pub scylla: podium_durable::ScyllaConfig,

    /// Consumer group; instances with the same group share the partitions.
    #[arg(
        long,
        env = "PODIUM_PROJECTOR_GROUP",
        default_value = "podium-read-models"
    )]
    pub group: String,

    /// Most messages folded in one atomic step.
    #[arg(long, env = "PODIUM_BATCH_MAX", default_value_t = 1000)]
    pub batch_max: usize,

    /// A stable name of this instance (a pod name) for static group membership: a restarted
    /// instance takes its partitions back at once instead of waiting out the session timeout.
    #[arg(long, env = "PODIUM_PROJECTOR_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Milliseconds without a heartbeat after which the group hands a dead instance's
    /// partitions to the others: how long a crash stalls its partitions.
    #[arg(
        long,
        env = "PODIUM_PROJECTOR_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u64,

    /// Milliseconds to wait for more messages once a batch has begun.
    #[arg(long, env = "PODIUM_BATCH_LINGER_MS", default_value_t = 5)]
    pub batch_linger_ms: u64,

    /// Address serving Prometheus metrics at /metrics (consumer lag per partition, apply
    /// latency per batch, dead letters); `off` serves none.
    #[arg(
        long,
        env = "PODIUM_PROJECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
}

impl Config {
    fn metrics_listen(&self) -> Result<Option<SocketAddr>> {
        if self.metrics_listen == "off" {
            return Ok(None);
        }
        self.metrics_listen.parse().map(Some).map_err(|_| {
            Error::Config(format!(
                "PODIUM_PROJECTOR_METRICS_LISTEN: not an address: {}",
                self.metrics_listen
            ))
        })
    }
}

/// Runs the projector until `shutdown` resolves.
pub async fn run(
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = futures::FutureExt::shared(shutdown);
    if let Some(listen) = config.metrics_listen()? {
        let _ = podium_runtime::metrics::serve_metrics(listen, shutdown.clone()).await?;
    }
    let store = connect(&config.redis).await?;
    let batching = Batching {
        max_messages: config.batch_max.max(1),
        linger: Duration::from_millis(config.batch_linger_ms),
        session_timeout: Duration::from_millis(config.session_timeout_ms),
        instance_id: config.instance_id.clone(),
        ..Batching::default()
    };
    // Its own consumer group: the durable model moves at its own pace and never holds the hot
    // one back.
    let durable = match podium_durable::connect(&config.scylla).await? {
        Some(store) => Some(tokio::spawn(
            durable::DurableProjector::new(
                &config.kafka,
                &format!("{}-durable", config.group),
                Arc::new(store),
                batching.clone(),
            )?
            .run_until(shutdown.clone()),
        )),
        None => None,
    };
    Projector::new(&config.kafka, &config.group, store, batching)?
        .run_until(shutdown)
        .await?;
    if let Some(durable) = durable {
        durable
            .await
            .map_err(|e| Error::Config(format!("durable projector: {e}")))??;
    }
    Ok(())
}
