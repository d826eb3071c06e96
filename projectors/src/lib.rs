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
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use podium_runtime::KafkaArgs;

pub use error::{Error, Result};

use crate::projector::{Batching, OnLogReset, Projector, ProjectorHealth};
use crate::read_model::RedisReadModel;

pub use podium_runtime::RedisArgs;

/// Connects to the read models `args` names.
pub async fn connect(args: &RedisArgs) -> Result<RedisReadModel> {
    RedisReadModel::connect_client(args.client()?, args.root()).await
}

/// Connects to the read models, waiting for Redis as long as it takes: a projector started
/// before Redis (or while it restarts) waits for it instead of exiting.
async fn connect_until_done(
    args: &RedisArgs,
    redis: &podium_runtime::health::Check,
) -> RedisReadModel {
    let mut backoff = backoff::Backoff::new();
    loop {
        match connect(args).await {
            Ok(store) => return store,
            Err(e) => {
                redis.fail(e.to_string());
                backoff.wait("connecting to Redis", &e).await;
            }
        }
    }
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

    /// What to do when the log ends before the read model's positions (its topics were
    /// recreated or truncated): `rebuild` folds it again from the beginning into a fresh
    /// generation; `halt` stops applying and reports not ready until an operator acts.
    #[arg(
        long,
        env = "PODIUM_PROJECTOR_ON_LOG_RESET",
        value_enum,
        default_value_t = OnLogReset::Rebuild
    )]
    pub on_log_reset: OnLogReset,

    /// The batch in hand and the commit get this long; exiting before is safe, since the
    /// resume positions in Redis are a lower bound: nothing is lost, at most re-read.
    #[command(flatten)]
    pub drain: podium_runtime::DrainArgs,

    /// Address serving Prometheus metrics at /metrics (consumer lag per partition, apply
    /// latency per batch, dead letters), liveness at /livez and readiness at /readyz (broker
    /// and Redis reachable, partitions held, the log consistent with the read model); `off`
    /// serves none.
    #[arg(
        long,
        env = "PODIUM_PROJECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
}

impl Config {
    fn metrics_listen(&self) -> Result<Option<SocketAddr>> {
        podium_runtime::metrics::admin_address(&self.metrics_listen)
            .map_err(|e| Error::Config(format!("PODIUM_PROJECTOR_METRICS_LISTEN: {e}")))
    }
}

/// Runs the projector until `shutdown` resolves, then drains for at most `drain_seconds`.
pub async fn run(
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = futures::FutureExt::shared(shutdown);
    let drain = config.drain.deadline();
    tokio::select! {
        result = run_projectors(config, shutdown.clone()) => result,
        () = podium_runtime::drain_deadline(shutdown, drain) => {
            tracing::warn!(?drain, "the drain took too long; exiting without it");
            Ok(())
        }
    }
}

async fn run_projectors(
    config: &Config,
    shutdown: futures::future::Shared<impl std::future::Future<Output = ()> + Send + 'static>,
) -> Result<()> {
    let health = podium_runtime::health::Health::new();
    let tasks = tokio_util::task::TaskTracker::new();
    if let Some(listen) = config.metrics_listen()? {
        let _ =
            podium_runtime::metrics::serve_admin(listen, &health, &tasks, shutdown.clone()).await?;
    }
    let checks = ProjectorHealth::new(&health);
    let store = connect_until_done(&config.redis, &checks.redis).await;
    let batching = Batching {
        max_messages: config.batch_max.max(1),
        linger: Duration::from_millis(config.batch_linger_ms),
        session_timeout: Duration::from_millis(config.session_timeout_ms),
        instance_id: config.instance_id.clone(),
        ..Batching::default()
    };
    // Its own consumer group: the durable model moves at its own pace and never holds the hot
    // one back.
    if let Some(store) = podium_durable::connect(&config.scylla).await? {
        let durable = durable::DurableProjector::new(
            &config.kafka,
            &format!("{}-durable", config.group),
            Arc::new(store),
            batching.clone(),
        )?;
        let shutdown = shutdown.clone();
        drop(tasks.spawn(async move {
            if let Err(e) = durable.run_until(shutdown).await {
                tracing::error!(error = %e, "the durable projector stopped");
            }
        }));
    }
    let result = Projector::new(
        &config.kafka,
        &config.group,
        store,
        batching,
        checks,
        config.on_log_reset,
    )?
    .run_until(shutdown)
    .await;
    let _ = tasks.close();
    tasks.wait().await;
    result
}
