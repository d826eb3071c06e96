//! What every Podium binary shares: Kafka client settings, telemetry and the shutdown signal.

pub mod fencing;
pub mod health;
pub mod metrics;
pub mod problem;
pub mod rate_limit;
pub mod telemetry;
pub mod tokens;
pub mod transport;

use clap::Args;
use podium_schemas::topics::Topics;
use rdkafka::ClientConfig;

/// Where the event log lives. Flattened into each binary's configuration.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated.
    #[arg(
        long = "kafka-brokers",
        env = "PODIUM_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Prefix for every topic name, to keep deployments (or tests) apart on one cluster.
    #[arg(long = "topic-prefix", env = "PODIUM_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Longest a consumer's fetch may wait at the broker for new records. Kafka answers as soon
    /// as a record arrives; nisshi looks again after half of the wait left, so a record can
    /// wait half of it. 100 ms bounds that at 50 ms, and keeps 0.15 of nisshi's core busy
    /// while idle; 25 ms kept 0.33, and librdkafka's 500 ms (0.05) made the ack → SSE p99 256 ms.
    #[arg(
        long = "kafka-fetch-wait-ms",
        env = "PODIUM_KAFKA_FETCH_WAIT_MS",
        default_value_t = DEFAULT_FETCH_WAIT_MS
    )]
    pub fetch_wait_ms: u64,

    #[command(flatten)]
    pub security: transport::KafkaSecurity,
}

/// See [`KafkaArgs::fetch_wait_ms`].
pub const DEFAULT_FETCH_WAIT_MS: u64 = 100;

impl KafkaArgs {
    pub fn new(brokers: impl Into<String>, topic_prefix: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: topic_prefix.into(),
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
            security: transport::KafkaSecurity::default(),
        }
    }

    /// A consumer's configuration: the client's, with the fetch wait bounded.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        let _ = config.set("fetch.wait.max.ms", self.fetch_wait_ms.to_string());
        config
    }

    /// A client configuration with the bootstrap servers set; callers add their own settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let _ = config
            .set("bootstrap.servers", &self.brokers)
            .set("client.dns.lookup", "use_all_dns_ips")
            // librdkafka backs off reconnects up to 10 s: measured after a 5 s broker outage,
            // answers were refused for 5 s after the broker was back. A second at most is a
            // reconnect per second per client while it is away.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000");
        self.security.apply(&mut config);
        config
    }

    pub fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }
}

/// Where the Redis read models live: the projectors write them, the query API reads them.
/// Flattened into both binaries' configurations.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis holding the hot read models: `redis://`, or `rediss://` for TLS. A password in it
    /// never prints.
    #[arg(
        long,
        env = "PODIUM_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        value_parser = transport::secret,
        hide_env_values = true
    )]
    pub redis_url: secrecy::SecretString,

    /// PEM file of the CA that signed Redis's certificate, for `rediss://`; without it, the
    /// system's roots.
    #[arg(long, env = "PODIUM_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Root of every read-model key; generations of the read models live under it.
    #[arg(long, env = "PODIUM_READ_MODEL_NAMESPACE", default_value = "podium")]
    pub namespace: String,
}

impl RedisArgs {
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            redis_url: secrecy::SecretString::from(url.into()),
            redis_ca_file: None,
            namespace: namespace.into(),
        }
    }

    /// A client for the configured Redis, over TLS for `rediss://`.
    pub fn client(&self) -> Result<redis::Client, redis::RedisError> {
        transport::redis_client(&self.redis_url, self.redis_ca_file.as_deref())
    }

    pub fn root(&self) -> podium_schemas::read_model::Root {
        podium_schemas::read_model::Root::new(&self.namespace)
    }
}

/// Logging and trace export for `service`; see [`telemetry::init`]. Hold the guard until the
/// process ends.
pub fn init_telemetry(service: &'static str) -> telemetry::Telemetry {
    telemetry::init(service)
}

/// Resolves on SIGTERM or Ctrl-C: the moment to stop taking work and drain. The handlers are
/// installed when this is called, not when it is first awaited: a signal that arrives while the
/// service still starts (restoring its state, binding) is kept, and the service drains as soon
/// as it runs, instead of dying by the signal's default action. Call it first.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| signal(kind).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let [terminate, interrupt] = signals.map(|signal| async move {
                match signal {
                    Some(mut signal) => {
                        let _ = signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
            tokio::select! {
                () = terminate => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested");
    }
}

/// How long a service may take to drain once told to stop. Flattened into each binary's
/// configuration.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// Seconds a shutdown may take to finish in-flight work (requests, a batch, the producer's
    /// queue); past them the process exits anyway. Keep it below the orchestrator's grace period
    /// (Kubernetes' `terminationGracePeriodSeconds`).
    #[arg(
        long = "drain-seconds",
        env = "PODIUM_DRAIN_SECONDS",
        default_value_t = 15
    )]
    pub drain_seconds: u64,
}

impl Default for DrainArgs {
    fn default() -> Self {
        Self { drain_seconds: 15 }
    }
}

impl DrainArgs {
    pub fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_seconds)
    }
}

/// Resolves `drain` after `shutdown` does: the moment a drain has taken too long.
pub async fn drain_deadline(
    shutdown: impl std::future::Future<Output = ()>,
    drain: std::time::Duration,
) {
    shutdown.await;
    tokio::time::sleep(drain).await;
}

/// How [`serve_with`] serves, beyond the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Each connection's kernel send buffer, in bytes; the kernel's default if `None`.
    pub send_buffer: Option<usize>,
    /// How long in-flight requests may run on after the shutdown signal.
    pub drain: std::time::Duration,
}

/// Serves `router` on `listener`, with each client's address available to handlers and the
/// rate limits, until `shutdown` resolves; then waits up to `drain` for in-flight requests.
pub async fn serve(
    name: &str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
) -> std::io::Result<()> {
    let options = ServeOptions {
        send_buffer: None,
        drain,
    };
    serve_with(name, listener, router, shutdown, options).await
}

/// [`serve`], with options. A fixed send buffer matters to a server holding many long-lived
/// streams: Linux grows it to 4 MiB for a peer that stops reading, so bounding it keeps a
/// stalled client cheap and soon noticed.
pub async fn serve_with(
    name: &str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    use futures::FutureExt;
    tracing::info!(addr = %listener.local_addr()?, "{name} listening");
    let send_buffer = options.send_buffer;
    let listener = listener.tap_io(move |stream| {
        if let Some(bytes) = send_buffer
            && let Err(cause) = socket2::SockRef::from(&*stream).set_send_buffer_size(bytes)
        {
            tracing::warn!(%cause, "could not set the send buffer");
        }
    });
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let shutdown = shutdown.shared();
    tokio::select! {
        served = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone()) => served?,
        () = drain_deadline(shutdown, options.drain) => {
            tracing::warn!(drain = ?options.drain, "{name}: requests still in flight at the drain deadline; closing them");
        }
    }
    tracing::info!("{name} stopped");
    Ok(())
}
