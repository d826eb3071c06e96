//! The whole of Podium in one test process: a real broker and a real Redis (started by the
//! testkit), topics under a unique prefix, and the command API, the projector and the query API
//! running in-process on free ports.

pub mod game;
pub mod processes;
pub mod sse;

use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context, Result};
use podium_command_api::clock::{Clock, ManualClock, SystemClock};
use podium_command_api::event_log::KafkaEventLog;
use podium_runtime::KafkaArgs;
use podium_runtime::rate_limit::ClientRateArgs;
use podium_schemas::fence::{Fence, HEADER_EPOCH, HEADER_SHARD, SHARD_CLAIMED, Stamp, Verdict};
use podium_schemas::topics::HEADER_EVENT_TYPE;
use podium_testkit::{Broker, Redis, unique};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A test's token secret; any 32 bytes do.
pub const TOKEN_SECRET: &str = "podium-test-secret-of-at-least-32-bytes";

/// Every service of Podium, running.
#[derive(Debug)]
pub struct Stack {
    pub broker: Broker,
    pub redis: Redis,
    pub kafka: KafkaArgs,
    pub namespace: String,
    pub command_url: String,
    pub query_url: String,
    pub http: reqwest::Client,
    /// The command API's clock when a test controls time; the wall clock otherwise.
    pub clock: Option<Arc<ManualClock>>,
    services: Vec<Service>,
    runtime: tokio::runtime::Handle,
}

/// A service running in a task of this process.
#[derive(Debug)]
struct Service {
    name: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Service {
    /// Stops it the way SIGTERM would, and waits for it to drain.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

fn stop_signal() -> (oneshot::Sender<()>, impl std::future::Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// A quiz created through the command API, and the players who joined it.
#[derive(Debug, Clone)]
pub struct Created {
    pub quiz_id: String,
    pub host: String,
    pub join_code: String,
    /// Each player's id and token, in the order they joined.
    pub players: Vec<(String, String)>,
}

/// ScyllaDB cannot run here: the durable read model stays disabled.
fn no_scylla() -> podium_durable::ScyllaConfig {
    podium_durable::ScyllaConfig {
        nodes: None,
        keyspace: "podium".parse().unwrap_or_else(|_| unreachable!()),
        consistency: podium_durable::parse_consistency("ONE").unwrap_or_else(|_| unreachable!()),
        replication: 1,
    }
}

impl Stack {
    pub async fn start() -> Result<Self> {
        Self::start_with(None).await
    }

    /// A stack whose command API reads time from `clock`, so tests move time instead of
    /// sleeping.
    pub async fn start_with_clock(clock: Arc<ManualClock>) -> Result<Self> {
        Self::start_with(Some(clock)).await
    }

    /// A stack whose Redis speaks only TLS: the projector and the query API reach it over
    /// `rediss://`, trusting the certificate the test made for it.
    pub async fn start_with_redis_tls() -> Result<Self> {
        Self::start_on(None, Redis::start_tls().await?).await
    }

    async fn start_with(clock: Option<Arc<ManualClock>>) -> Result<Self> {
        Self::start_on(clock, Redis::start().await?).await
    }

    async fn start_on(clock: Option<Arc<ManualClock>>, redis: Redis) -> Result<Self> {
        let broker = Broker::start().await?;
        let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("t")));
        broker
            .create_topics(&kafka.topics().with_partitions())
            .await?;
        let namespace = unique("podium");
        let mut stack = Self {
            broker,
            redis,
            kafka,
            namespace,
            command_url: String::new(),
            query_url: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            clock,
            services: vec![],
            runtime: tokio::runtime::Handle::current(),
        };
        stack.command_url = stack.start_command_api().await?;
        stack.start_projector();
        stack.query_url = stack.start_query_api().await?;
        Ok(stack)
    }

    fn spawn<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let (stop, signal) = stop_signal();
        let service = run(Box::pin(signal));
        let task = tokio::spawn(async move {
            if let Err(e) = service.await {
                eprintln!("{name} failed: {e:#}");
            }
        });
        self.services.push(Service { name, stop, task });
    }

    /// Stops the service `name` and waits for it to drain.
    pub async fn stop_service(&mut self, name: &str) {
        if let Some(i) = self.services.iter().position(|s| s.name == name) {
            self.services.remove(i).stop().await;
        }
    }

    /// Stops the command API and starts a new one on the same log: it must rebuild every quiz
    /// from the log alone.
    pub async fn restart_command_api(&mut self) -> Result<()> {
        self.stop_service("command-api").await;
        self.command_url = self.start_command_api().await?;
        Ok(())
    }

    pub fn command_config(&self) -> podium_command_api::Config {
        podium_command_api::Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            kafka: self.kafka.clone(),
            tokens: podium_runtime::tokens::TokenSecretArgs::new(TOKEN_SECRET),
            ack_timeout_ms: 10_000,
            producer_queue: 100_000,
            producer_linger_ms: podium_command_api::event_log::DEFAULT_LINGER_MS,
            // Every test client shares one address, so the per-address limit is off here; the
            // rate-limit test sets its own.
            client_rate: ClientRateArgs::off(),
            quizzes_per_minute: 30,
            answers_per_player: 5,
            drain: podium_runtime::DrainArgs::default(),
            admin_listen: "off".into(),
            // Snapshots on, as deployed, and often, so tests see finished quizzes leave memory.
            snapshots: podium_command_api::SnapshotMode::Redis,
            snapshot_interval_ms: 300,
            redis: self.redis_args(),
            instances: podium_command_api::Instances::Single,
            advertise_url: None,
            session_timeout_ms: 6000,
        }
    }

    async fn start_command_api(&mut self) -> Result<String> {
        self.start_command_api_with("command-api", self.command_config())
            .await
    }

    /// Starts a command API with its own configuration on this stack's log and clock. It is
    /// stopped with the stack.
    pub async fn start_command_api_with(
        &mut self,
        name: &'static str,
        config: podium_command_api::Config,
    ) -> Result<String> {
        let log = KafkaEventLog::with_linger(
            &config.kafka,
            Duration::from_millis(config.ack_timeout_ms),
            config.producer_queue,
            config.producer_linger_ms,
        )?;
        let clock: Arc<dyn Clock> = match &self.clock {
            Some(manual) => manual.clone(),
            None => Arc::new(SystemClock),
        };
        let app = podium_command_api::App::with_parts(&config, Arc::new(log), clock).await?;
        let url = format!("http://{}", app.local_addr()?);
        self.spawn(name, |signal| app.run_until(signal));
        Ok(url)
    }

    pub fn projector_config(&self) -> podium_projectors::Config {
        podium_projectors::Config {
            kafka: self.kafka.clone(),
            redis: self.redis_args(),
            scylla: no_scylla(),
            group: format!("{}read-models", self.kafka.topic_prefix),
            batch_max: 500,
            session_timeout_ms: 6_000,
            instance_id: None,
            batch_linger_ms: 5,
            metrics_listen: "off".into(),
            on_log_reset: podium_projectors::projector::OnLogReset::Rebuild,
            drain: podium_runtime::DrainArgs::default(),
        }
    }

    fn start_projector(&mut self) {
        let config = self.projector_config();
        self.spawn("projector", |signal| async move {
            Ok(podium_projectors::run(&config, signal).await?)
        });
    }

    pub fn query_config(&self) -> podium_query_api::Config {
        podium_query_api::Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            redis: self.redis_args(),
            tokens: podium_runtime::tokens::TokenSecretArgs::new(TOKEN_SECRET),
            client_rate: ClientRateArgs::off(),
            cors_origins: vec!["*".into()],
            streams: podium_query_api::live::StreamArgs::default(),
            scylla: no_scylla(),
            drain: podium_runtime::DrainArgs::default(),
            admin_listen: "off".into(),
        }
    }

    async fn start_query_api(&mut self) -> Result<String> {
        self.start_query_api_with("query-api", self.query_config())
            .await
    }

    /// Starts a query API with its own configuration on this stack's Redis. It is stopped with
    /// the stack.
    pub async fn start_query_api_with(
        &mut self,
        name: &'static str,
        config: podium_query_api::Config,
    ) -> Result<String> {
        self.start_query_api_using(name, config, None).await
    }

    /// Starts a query API that falls back to `durable` for finished quizzes.
    pub async fn start_query_api_using(
        &mut self,
        name: &'static str,
        config: podium_query_api::Config,
        durable: Option<Arc<dyn podium_durable::DurableStore>>,
    ) -> Result<String> {
        let app = podium_query_api::App::build_with(&config, durable).await?;
        let url = format!("http://{}", app.local_addr()?);
        self.spawn(name, |signal| app.run_until(signal));
        Ok(url)
    }

    pub fn redis_args(&self) -> podium_runtime::RedisArgs {
        let mut args = podium_runtime::RedisArgs::new(self.redis.url(), self.namespace.clone());
        args.redis_ca_file = self.redis.ca_file();
        args
    }

    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// Sends a JSON command; returns the status and the JSON body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        post_json(
            &self.http,
            &format!("{}{path}", self.command_url),
            token,
            None,
            body,
        )
        .await
        .with_context(|| format!("POST {path}"))
    }

    /// Creates `quiz` and has `players` players join it, named `player 0`, `player 1`, ….
    pub async fn create_and_join(
        &self,
        quiz: &serde_json::Value,
        players: usize,
    ) -> Result<Created> {
        let (status, created) = self.post("/v1/quizzes", None, quiz).await?;
        anyhow::ensure!(status == 201, "create: {status} {created}");
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let mut game = Created {
            quiz_id: text(&created, "quiz_id"),
            host: text(&created, "host_token"),
            join_code: text(&created, "join_code"),
            players: Vec::with_capacity(players),
        };
        for i in 0..players {
            let body =
                serde_json::json!({"join_code": game.join_code, "name": format!("player {i}")});
            let (status, joined) = self.post("/v1/join", None, &body).await?;
            anyhow::ensure!(status == 201, "join: {status} {joined}");
            game.players
                .push((text(&joined, "player_id"), text(&joined, "player_token")));
        }
        Ok(game)
    }

    /// Reads from the query API; returns the status and the JSON body.
    pub async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.query_url))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        Ok((
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        ))
    }

    /// Stops every service the way SIGTERM would, and waits for them to drain.
    pub async fn stop(mut self) {
        for service in self.services.drain(..) {
            service.stop().await;
        }
    }
}

impl Drop for Stack {
    /// A test that failed before `stop` still stops the services while the broker runs:
    /// a Kafka client dropped after its broker waits for it forever, and the test would hang.
    fn drop(&mut self) {
        if self.services.is_empty() {
            return;
        }
        let services = std::mem::take(&mut self.services);
        let stop_all = async move {
            for service in services {
                service.stop().await;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| current.block_on(stop_all));
            }
            Ok(_) => eprintln!("services left running: stop a Stack before its test ends"),
            Err(_) => self.runtime.block_on(stop_all),
        }
    }
}

/// POSTs `body` as JSON, with a bearer token and an idempotency key when given; returns the
/// status and the JSON body (null when there is none). A failed connection is an error.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    idempotency_key: Option<&str>,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    ))
}

/// The pure fold of everything in the log now, by the readers' rule: records of a deposed owner
/// are void (ADR 0011), and records that cannot be decoded are left out, as the projector
/// dead-letters them. `read_log` sorts by partition and offset, the order the fence needs.
pub async fn fold_of_log(
    bootstrap: &str,
    kafka: &KafkaArgs,
) -> Result<podium_schemas::domain::ReadModels> {
    let topics = kafka.topics();
    let records =
        podium_testkit::read_log(bootstrap, &[&topics.lifecycle, &topics.answers]).await?;
    let codec = podium_schemas::Codec::new();
    let mut fence = Fence::default();
    let events: Vec<podium_schemas::Event> = records
        .iter()
        .filter(|r| judge(&mut fence, r) == Verdict::Count)
        .filter_map(|r| codec.decode(&r.payload).ok())
        .collect();
    Ok(podium_schemas::domain::ReadModels::fold(&events))
}

/// Judges a record read back by `read_log`, in its partition's order, as every reader does.
pub fn judge(fence: &mut Fence, record: &podium_testkit::LogRecord) -> Verdict {
    let header = |name: &str| {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let claim = header(HEADER_EVENT_TYPE) == Some(SHARD_CLAIMED);
    let stamp = Stamp::parse(header(HEADER_SHARD), header(HEADER_EPOCH));
    fence.judge(&record.topic, record.partition, stamp, claim)
}

/// Waits up to `within` until every quiz of `expected` reads in Redis exactly as the fold has
/// it; fails with the last difference seen.
pub async fn converge(
    redis_url: &str,
    namespace: &str,
    expected: &podium_schemas::domain::ReadModels,
    within: Duration,
) -> Result<()> {
    let reader = podium_query_api::read_model::ReadModel::connect(
        redis_url,
        podium_schemas::read_model::Root::new(namespace),
    )
    .await?;
    let deadline = std::time::Instant::now() + within;
    loop {
        let last = match differences(&reader, expected).await {
            Ok(None) => return Ok(()),
            Ok(Some(diff)) => diff,
            Err(e) => format!("{e:#}"),
        };
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the read models did not reach the fold in {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first difference between the read models in Redis and a fold of the log, if any: every
/// field of every card, question and state, the leaderboard order, and the version.
pub async fn differences(
    reader: &podium_query_api::read_model::ReadModel,
    expected: &podium_schemas::domain::ReadModels,
) -> Result<Option<String>> {
    for (quiz_id, want) in &expected.quizzes {
        let (got, board) = reader.quiz_view(quiz_id).await?;
        if got.version != want.version {
            return Ok(Some(format!(
                "{quiz_id}: version {} of {}",
                got.version, want.version
            )));
        }
        if got != *want {
            return Ok(Some(format!(
                "{quiz_id}: views differ at version {}",
                got.version
            )));
        }
        let ranked: Vec<(String, i64, i64)> = want
            .ranked()
            .into_iter()
            .map(|s| (s.player_id, s.points, s.elapsed_ms))
            .collect();
        if board != ranked {
            return Ok(Some(format!("{quiz_id}: leaderboard order differs")));
        }
    }
    Ok(None)
}
