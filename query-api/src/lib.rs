//! Podium's query side: leaderboards and ranks from the Redis read models. It never writes
//! events.

pub mod board_copy;
pub mod error;
pub mod http;
pub mod live;
pub mod lookups;
pub mod read_model;
pub mod reads;
pub mod views;

use std::net::SocketAddr;

use std::sync::Arc;

use clap::Parser;
use podium_durable::{DurableStore, ScyllaConfig};
use podium_runtime::health::Health;
use podium_runtime::metrics::AdminServer;
use podium_runtime::rate_limit::ClientRateArgs;
use podium_runtime::tokens::TokenSecretArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use crate::live::{Hub, StreamArgs};
use crate::read_model::ReadModel;
use crate::reads::Reads;

/// Configuration, from flags or the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "podium-query-api",
    version,
    about = "Podium's query API: quiz state, leaderboards, player ranks and live SSE streams \
             from the read models."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PODIUM_QUERY_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub redis: podium_runtime::RedisArgs,

    #[command(flatten)]
    pub tokens: TokenSecretArgs,

    #[command(flatten)]
    pub client_rate: ClientRateArgs,

    /// Origins whose pages may read the API and its streams (CORS), comma separated; `*` for
    /// any. Reads are public and use no cookies, so any origin is the default.
    #[arg(
        long,
        env = "PODIUM_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,

    #[command(flatten)]
    pub streams: StreamArgs,

    /// ScyllaDB, for the results of finished quizzes Redis no longer holds.
    #[command(flatten)]
    pub scylla: ScyllaConfig,

    #[command(flatten)]
    pub drain: podium_runtime::DrainArgs,

    /// Address of the admin listener (`/metrics`, `/livez`, `/readyz`), apart from the public
    /// one; `off` for none.
    #[arg(
        long,
        env = "PODIUM_QUERY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9466"
    )]
    pub admin_listen: String,
}

/// Connects to the read models, waiting for Redis as long as it takes: a query API started
/// while Redis is away (or restarting) waits for it instead of exiting. The listener is bound
/// only once Redis answered, so an orchestrator sees the instance as not yet ready.
async fn connect_until_done(redis: &podium_runtime::RedisArgs) -> ReadModel {
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        let connected = match redis.client() {
            Ok(client) => ReadModel::connect_client(client, redis.root()).await,
            Err(e) => Err(e.into()),
        };
        match connected {
            Ok(live) => return live,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "connecting to Redis failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// A built query API; the listener is bound.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    hub: Hub,
    send_buffer: usize,
    drain: std::time::Duration,
    admin: AdminServer,
    /// Stops the Redis probe.
    probe: CancellationToken,
}

/// How often `/readyz`'s `redis` check asks Redis.
const REDIS_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps `check` equal to whether Redis answers, until `stop`.
fn probe_redis(live: ReadModel, check: podium_runtime::health::Check, stop: CancellationToken) {
    drop(tokio::spawn(async move {
        loop {
            match live.ping().await {
                Ok(()) => check.pass(),
                Err(e) => check.fail(format!("Redis does not answer: {e}")),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REDIS_PROBE) => {}
            }
        }
    }));
}

impl App {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let durable = podium_durable::connect(&config.scylla)
            .await?
            .map(|store| Arc::new(store) as Arc<dyn DurableStore>);
        Self::build_with(config, durable).await
    }

    /// Builds with the given durable store (tests pass the memory adapter).
    pub async fn build_with(
        config: &Config,
        durable: Option<Arc<dyn DurableStore>>,
    ) -> anyhow::Result<Self> {
        // Before waiting for Redis: a bad secret is said at once.
        let tokens = config.tokens.tokens()?;
        let health = Health::new();
        let redis = health.check("redis", "connecting to Redis");
        let listen = podium_runtime::metrics::admin_address(&config.admin_listen)
            .map_err(|e| anyhow::anyhow!("PODIUM_QUERY_ADMIN_LISTEN: {e}"))?;
        let admin = AdminServer::start(listen, &health).await?;
        let live = connect_until_done(&config.redis).await;
        let probe = CancellationToken::new();
        probe_redis(live.clone(), redis, probe.clone());
        let hub = Hub::start(
            live.clone(),
            config.streams.clone(),
            CancellationToken::new(),
        );
        let state = http::AppState {
            reads: Reads { live, durable },
            hub: hub.clone(),
            tokens,
        };
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            router: http::with_cors(
                http::router(state, config.client_rate.limit()),
                &config.cors_origins,
            )?,
            hub,
            send_buffer: config.streams.send_buffer_bytes,
            drain: config.drain.deadline(),
            admin,
            probe,
        })
    }

    /// The admin listener's address, when it serves.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.addr()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then tells every stream's client to reconnect
    /// elsewhere and drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let streams = self.hub.shutdown().clone();
        let draining = async move {
            shutdown.await;
            streams.cancel();
        };
        let options = podium_runtime::ServeOptions {
            send_buffer: Some(self.send_buffer).filter(|&bytes| bytes > 0),
            drain: self.drain,
        };
        podium_runtime::serve_with("query API", self.listener, self.router, draining, options)
            .await?;
        self.probe.cancel();
        self.admin.stop().await;
        Ok(())
    }
}
