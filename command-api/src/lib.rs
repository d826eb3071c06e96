//! Podium's command side: validates host and player commands against the quiz rules and
//! appends the resulting events to the log, answering only after the log acknowledged them.

pub mod clock;
pub mod error;
pub mod event_log;
pub mod http;
pub mod openapi;
pub mod quizzes;
pub mod routing;
pub mod shard_snapshots;
pub mod shards;
pub mod snapshots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use podium_runtime::KafkaArgs;
use podium_runtime::rate_limit::{ClientRateArgs, Rate, RateLimiter};
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::clock::{Clock, SystemClock};
use crate::event_log::{EventLog, KafkaEventLog};
use crate::http::{AppState, Limits};
use crate::quizzes::Quizzes;
use crate::routing::Router;
use crate::shard_snapshots::ShardSnapshotter;
use crate::shards::Shards;
use crate::snapshots::{RedisSnapshotStore, SnapshotStore, Snapshotter};
use podium_runtime::health::Health;
use podium_runtime::metrics::AdminServer;
use podium_runtime::tokens::TokenSecretArgs;

/// Configuration, from flags or the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "podium-command-api",
    version,
    about = "Podium's command API: hosts create and drive quizzes, players join and answer. Every accepted command is an event in Kafka."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PODIUM_COMMAND_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub tokens: TokenSecretArgs,

    /// How long an append may wait for the broker's acknowledgement before the client is told
    /// to retry (503).
    #[arg(long, env = "PODIUM_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,

    /// Producer queue size; beyond it, appends are refused with 503 and Retry-After.
    #[arg(long, env = "PODIUM_PRODUCER_QUEUE", default_value_t = 100_000)]
    pub producer_queue: usize,

    /// Milliseconds an append waits for others to share its batch to the broker (the
    /// producer's `linger.ms`). A longer linger makes fewer, larger requests and spares the
    /// producer's thread, at the cost of latency when the load is low; the default was chosen
    /// by `podium-bench settings` (docs/performance.md).
    #[arg(long, env = "PODIUM_PRODUCER_LINGER_MS", default_value_t = event_log::DEFAULT_LINGER_MS)]
    pub producer_linger_ms: u64,

    #[command(flatten)]
    pub client_rate: ClientRateArgs,

    /// Quizzes one client address may create per minute; 0 turns the limit off.
    #[arg(long, env = "PODIUM_RATE_QUIZZES_PER_MINUTE", default_value_t = 30)]
    pub quizzes_per_minute: u32,

    /// Answers per second one player may send (the first per question counts; the rest are
    /// retries); 0 turns the limit off.
    #[arg(long, env = "PODIUM_RATE_ANSWERS_PER_PLAYER", default_value_t = 5)]
    pub answers_per_player: u32,

    #[command(flatten)]
    pub drain: podium_runtime::DrainArgs,

    /// Where snapshots of the quizzes are kept: `redis` (the Redis of PODIUM_REDIS_URL, under
    /// the read-model namespace), so a start reads only the log after the last snapshot and
    /// finished quizzes leave memory; `off` reads the whole log at every start and keeps every
    /// quiz in memory. Snapshots are derived from the log: losing them costs a longer start.
    #[arg(long, env = "PODIUM_COMMAND_SNAPSHOTS", value_enum, default_value_t = SnapshotMode::Redis)]
    pub snapshots: SnapshotMode,

    /// Milliseconds between snapshots: a start reads about this much of the log, and a
    /// finished quiz leaves memory within about twice it.
    #[arg(long, env = "PODIUM_SNAPSHOT_INTERVAL_MS", default_value_t = 5000)]
    pub snapshot_interval_ms: u64,

    #[command(flatten)]
    pub redis: podium_runtime::RedisArgs,

    /// `single`: this instance owns every quiz (one instance, the local default). `group`:
    /// instances share the quizzes through the Kafka consumer group `podium-command` (ADR 0011).
    /// Each owns the shards (lifecycle partitions) the group assigns it and forwards the
    /// others' commands to their owners. A dead instance's shards move within the session
    /// timeout. A group needs Redis. Each shard has its own snapshot (ADR 0012): a claim reads
    /// the log after it, and each member reads its shards' new records every snapshot interval.
    #[arg(long, env = "PODIUM_COMMAND_INSTANCES", value_enum, default_value_t = Instances::Single)]
    pub instances: Instances,

    /// Where the other instances of a group reach this one, as a base URL; by default
    /// `http://` and the listen address.
    #[arg(long, env = "PODIUM_COMMAND_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// How long a group member may go unheard before its shards move to the others: most of
    /// the failover window.
    #[arg(
        long,
        env = "PODIUM_COMMAND_SESSION_TIMEOUT_MS",
        default_value_t = 6000
    )]
    pub session_timeout_ms: u64,

    /// Address of the admin listener (`/metrics`, `/livez`, `/readyz`), apart from the public
    /// one; `off` for none.
    #[arg(
        long,
        env = "PODIUM_COMMAND_ADMIN_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    pub admin_listen: String,
}

/// How many instances share the quizzes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Instances {
    Single,
    Group,
}

/// Where the command side keeps its snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotMode {
    Redis,
    Off,
}

/// A built command API: the listener is bound, so its port is known before it runs.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    log: Arc<dyn EventLog>,
    quizzes: Arc<Quizzes>,
    snapshots: Option<Snapshots>,
    snapshot_interval: Duration,
    drain: Duration,
    admin: AdminServer,
    group: Option<Group>,
}

/// This instance's membership of a group, and what follows it.
#[derive(Debug)]
struct Group {
    stop: Arc<std::sync::atomic::AtomicBool>,
    member: std::thread::JoinHandle<()>,
    claims: tokio::task::JoinHandle<()>,
}

impl App {
    /// Serves the admin listener, connects to Kafka, rebuilds quiz state from the log and binds
    /// the listener. `/readyz` fails on `log` until the quizzes are restored, and on `broker`
    /// while appends fail.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let health = Health::new();
        let restored = health.check("log", "restoring the quizzes from the log");
        let listen = podium_runtime::metrics::admin_address(&config.admin_listen)
            .map_err(|e| anyhow::anyhow!("PODIUM_COMMAND_ADMIN_LISTEN: {e}"))?;
        // Up before the log is restored, so probes see the restore; down after the drain.
        let admin = AdminServer::start(listen, &health).await?;
        let log = KafkaEventLog::with_linger(
            &config.kafka,
            Duration::from_millis(config.ack_timeout_ms),
            config.producer_queue,
            config.producer_linger_ms,
        )?
        .with_broker_check(health.check("broker", "the log is not read yet"));
        let mut app = Self::with_parts(config, Arc::new(log), Arc::new(SystemClock)).await?;
        restored.pass();
        app.admin = admin;
        Ok(app)
    }

    /// The admin listener's address, when it serves.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.addr()
    }

    /// Builds with a given log and clock; tests use it to control time.
    pub async fn with_parts(
        config: &Config,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // Before the replay, which waits for the broker: a bad secret is said at once.
        let tokens = config.tokens.tokens()?;
        if config.instances == Instances::Group {
            return Self::in_group(config, log, clock, tokens).await;
        }
        let store = snapshot_store(config).await;
        // A gap in the acknowledged appends stands at least as long as an append can take to
        // be reported: only then is the log read to fill it.
        let gap_wait = Duration::from_millis(config.ack_timeout_ms + config.snapshot_interval_ms);
        let snapshots_on = store.is_some();
        let (quizzes, snapshotter) =
            Quizzes::restore_with(log.clone(), clock.clone(), store, gap_wait).await?;
        let state = AppState {
            quizzes: quizzes.clone(),
            tokens,
            clock,
            limits: limits(config),
            routing: None,
        };
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            router: http::router(state),
            log,
            quizzes,
            snapshots: snapshots_on.then(|| Snapshots::Single(Box::new(snapshotter))),
            snapshot_interval: Duration::from_millis(config.snapshot_interval_ms.max(100)),
            drain: config.drain.deadline(),
            admin: AdminServer::default(),
            group: None,
        })
    }

    /// An instance of a group: binds first, so it can say where it is, joins the group, and
    /// takes on the quizzes of each shard the group gives it.
    async fn in_group(
        config: &Config,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        tokens: podium_runtime::tokens::Tokens,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let address = match &config.advertise_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", listener.local_addr()?),
        };
        let count = log.shard_count().await?;
        let (shards, moves) = Shards::connect(
            config.redis.client()?,
            &config.redis.namespace,
            address,
            count,
        )
        .await?;
        let store = snapshot_store(config).await;
        let snapshots = Arc::new(tokio::sync::Mutex::new(ShardSnapshotter::new(
            store.clone(),
            count,
        )));
        let snapshots_on = store.is_some();
        let quizzes = Quizzes::in_group(log.clone(), clock.clone(), shards.clone(), store);
        let claims = tokio::spawn(shards::follow_moves(
            moves,
            shards.clone(),
            quizzes.clone(),
            log.clone(),
            snapshots.clone(),
        ));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let member = shards.join_group(
            &config.kafka,
            Duration::from_millis(config.session_timeout_ms),
            stop.clone(),
        )?;
        let forward_timeout = Duration::from_millis(config.ack_timeout_ms * 2);
        let state = AppState {
            quizzes: quizzes.clone(),
            tokens,
            clock,
            limits: limits(config),
            routing: Some(Router::new(shards, quizzes.clone(), forward_timeout)?),
        };
        Ok(Self {
            listener,
            router: http::router(state),
            log,
            quizzes,
            snapshots: snapshots_on.then_some(Snapshots::Group(snapshots)),
            snapshot_interval: Duration::from_millis(config.snapshot_interval_ms.max(100)),
            drain: config.drain.deadline(),
            admin: AdminServer::default(),
            group: Some(Group {
                stop,
                member,
                claims,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and flushes the
    /// producer, so every acknowledged answer is in the log before the process exits.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_snapshots, stopped) = tokio::sync::watch::channel(false);
        let snapshots = self.snapshots.map(|snapshots| {
            tokio::spawn(keep_snapshots(
                snapshots,
                self.log.clone(),
                self.quizzes.clone(),
                self.snapshot_interval,
                stopped,
            ))
        });
        podium_runtime::serve(
            "command API",
            self.listener,
            self.router,
            shutdown,
            self.drain,
        )
        .await?;
        self.quizzes.stop_clocks().await;
        // What was acknowledged is in the log already; this bounds the wait for the rest.
        self.log.flush().await;
        // A last snapshot, so the next start, or the next owner of a shard, reads little:
        // bounded by the drain.
        let _ = stop_snapshots.send(true);
        if let Some(snapshots) = snapshots
            && tokio::time::timeout(self.drain, snapshots).await.is_err()
        {
            tracing::warn!(
                "the last snapshot took longer than the drain; the next start reads more of the log"
            );
        }
        if let Some(group) = self.group {
            // Leaves the group at once, so the others take the shards without waiting for the
            // session to time out.
            group.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(move || group.member.join()).await;
            group.claims.abort();
        }
        self.admin.stop().await;
        Ok(())
    }
}

/// The command API's rate limits, as configured.
fn limits(config: &Config) -> Limits {
    Limits {
        per_client: config.client_rate.limit(),
        quizzes_per_client: RateLimiter::new(Rate::per_minute(config.quizzes_per_minute)),
        answers_per_player: RateLimiter::new(Rate::per_second(
            config.answers_per_player,
            config.answers_per_player.saturating_mul(2),
        )),
    }
}

/// The snapshot store the configuration names. Without it (off, or Redis unreachable at the
/// start) every start reads the whole log: slower, never wrong.
async fn snapshot_store(config: &Config) -> Option<Arc<dyn SnapshotStore>> {
    if config.snapshots == SnapshotMode::Off {
        return None;
    }
    let connected = match config.redis.client() {
        Ok(client) => RedisSnapshotStore::connect(client, &config.redis.namespace).await,
        Err(e) => Err(e.into()),
    };
    match connected {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            tracing::warn!(error = %e, "the snapshot store is unreachable: reading the whole log, and finished quizzes stay in memory until the next start");
            None
        }
    }
}

/// What takes the snapshots: one instance's, cut at its acknowledged appends (ADR 0010), or a
/// group member's, per shard (ADR 0012).
#[derive(Debug)]
enum Snapshots {
    Single(Box<Snapshotter>),
    Group(Arc<tokio::sync::Mutex<ShardSnapshotter>>),
}

impl Snapshots {
    async fn catch_up(
        &mut self,
        log: &Arc<dyn EventLog>,
    ) -> Result<Option<crate::snapshots::Saved>> {
        match self {
            Self::Single(snapshotter) => snapshotter.catch_up(log).await,
            Self::Group(snapshotter) => snapshotter.lock().await.catch_up(log).await,
        }
    }
}

/// Every `interval`, catches up with the log and saves what changed; the finished quizzes a
/// save holds then leave memory. Once `stop` turns true, one last round.
async fn keep_snapshots(
    mut snapshotter: Snapshots,
    log: Arc<dyn EventLog>,
    quizzes: Arc<Quizzes>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let last = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        let started = std::time::Instant::now();
        match snapshotter.catch_up(&log).await {
            Ok(Some(saved)) => {
                quizzes.saved(&saved);
                metrics::histogram!("podium_command_snapshot_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::debug!(live = saved.live, finished = saved.finished.len(), read_the_log = saved.read_the_log, elapsed = ?started.elapsed(), "snapshot saved");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "a snapshot failed; the next round tries again"),
        }
        if last {
            return;
        }
    }
}
