//! The stack under measurement: a real broker (nisshi) and Redis (started as the tests start them,
//! on free ports under a temporary directory), and Podium's three release binaries as separate
//! processes, as they run in production.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podium_runtime::KafkaArgs;
use podium_testkit::{Broker, Redis, free_port, unique};
use rand::Rng;
use rand::distr::Alphanumeric;

/// What the services are told beyond their defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Streams one query API may hold.
    pub max_streams: usize,
    /// Which broker the stack runs on.
    pub broker: BrokerKind,
    /// `PODIUM_COMMAND_INSTANCES` of the command API.
    pub command_instances: &'static str,
}

/// The broker under the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// nisshi, the local stack's broker: every figure but the ceiling.
    Nisshi,
    /// librdkafka's mock cluster in a process of its own (`podium-bench mock-broker`): keeps
    /// records in memory and is never the bottleneck, so what is measured is Podium's own.
    Mock,
}

#[derive(Debug)]
pub struct Stack {
    pub broker: Broker,
    pub redis: Redis,
    pub kafka: KafkaArgs,
    pub namespace: String,
    pub command_url: String,
    pub query_url: String,
    /// The projector's metrics listener, `host:port`.
    projector_metrics: String,
    /// The query API's admin listener (`/metrics`), `host:port`.
    pub query_metrics: String,
    pub logs: tempfile::TempDir,
    services: Vec<(&'static str, Child)>,
}

/// A service binary next to the bench's own, or in `bin_dir`.
fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build the services first (cargo build --release --bins) or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}

impl Stack {
    pub async fn start(bin_dir: &Path, settings: &Settings) -> Result<Self> {
        let prefix = format!("{}.", unique("bench"));
        let broker = match settings.broker {
            BrokerKind::Nisshi => {
                let broker = Broker::start().await.context("starting the broker")?;
                broker
                    .create_topics(
                        &KafkaArgs::new(broker.bootstrap(), &prefix)
                            .topics()
                            .with_partitions(),
                    )
                    .await?;
                broker
            }
            // The mock creates the topics itself: they are gone with its process.
            BrokerKind::Mock => Broker::start_mock(
                &std::env::current_exe()?,
                &["mock-broker", "--topic-prefix", &prefix],
            )
            .await
            .context("starting the mock broker")?,
        };
        let redis = Redis::start().await.context("starting redis-server")?;
        let kafka = KafkaArgs::new(broker.bootstrap(), prefix);
        let secret: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        let command_port = free_port()?;
        let command_admin_port = free_port()?;
        let query_port = free_port()?;
        let projector_metrics_port = free_port()?;
        let query_admin_port = free_port()?;
        let mut stack = Self {
            kafka,
            namespace: unique("bench"),
            command_url: format!("http://127.0.0.1:{command_port}"),
            query_url: format!("http://127.0.0.1:{query_port}"),
            projector_metrics: format!("127.0.0.1:{projector_metrics_port}"),
            query_metrics: format!("127.0.0.1:{query_admin_port}"),
            logs: tempfile::Builder::new().prefix("podium-bench").tempdir()?,
            services: Vec::new(),
            broker,
            redis,
        };
        // Every request comes from this one address, as from a stadium behind one NAT; the
        // per-address limits would measure themselves. The per-player limit is raised: the
        // one-quiz phase's players answer a question every few tens of milliseconds, faster
        // than people can, and 5 a second would refuse most of them (the e2e tests check it).
        let common = [
            ("PODIUM_KAFKA_BROKERS", stack.kafka.brokers.clone()),
            ("PODIUM_TOPIC_PREFIX", stack.kafka.topic_prefix.clone()),
            ("PODIUM_REDIS_URL", stack.redis.url()),
            ("PODIUM_READ_MODEL_NAMESPACE", stack.namespace.clone()),
            ("PODIUM_TOKEN_SECRET", secret),
            ("PODIUM_RATE_PER_CLIENT", "0".into()),
            ("PODIUM_RATE_QUIZZES_PER_MINUTE", "0".into()),
            ("PODIUM_RATE_ANSWERS_PER_PLAYER", "1000".into()),
            (
                "PODIUM_PROJECTOR_METRICS_LISTEN",
                format!("127.0.0.1:{projector_metrics_port}"),
            ),
            // On for a group, whose shards are waited for below.
            (
                "PODIUM_COMMAND_ADMIN_LISTEN",
                if settings.command_instances == "group" {
                    format!("127.0.0.1:{command_admin_port}")
                } else {
                    "off".into()
                },
            ),
            // The reads phase waits on its counters for the copy of the board (ADR 0013).
            (
                "PODIUM_QUERY_ADMIN_LISTEN",
                format!("127.0.0.1:{query_admin_port}"),
            ),
            (
                "PODIUM_SSE_MAX_CONNECTIONS",
                settings.max_streams.to_string(),
            ),
            ("PODIUM_COMMAND_LISTEN", format!("127.0.0.1:{command_port}")),
            ("PODIUM_QUERY_LISTEN", format!("127.0.0.1:{query_port}")),
            (
                "PODIUM_COMMAND_INSTANCES",
                settings.command_instances.to_owned(),
            ),
        ];
        for name in ["podium-projector", "podium-command-api", "podium-query-api"] {
            let program = binary(bin_dir, name)?;
            let log = std::fs::File::create(stack.logs.path().join(format!("{name}.log")))?;
            let child = Command::new(&program)
                .envs(common.iter().map(|(k, v)| (k, v)))
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", program.display()))?;
            stack.services.push((name, child));
        }
        stack.wait_until_up(command_port).await?;
        stack.wait_until_up(query_port).await?;
        if settings.command_instances == "group" {
            stack.wait_for_shards(command_admin_port).await?;
        }
        Ok(stack)
    }

    /// Waits until the projector reports no lag on any partition twice in a row (librdkafka's
    /// statistics, which it refreshes every few seconds), up to `limit`; how long it took.
    pub async fn wait_projector_caught_up(&mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        let url = format!("http://{}/metrics", self.projector_metrics);
        let http = reqwest::Client::new();
        let mut quiet = 0;
        while quiet < 2 {
            if started.elapsed() > limit {
                bail!("the projector still lagged after {} s", limit.as_secs());
            }
            self.check()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(response) = http.get(&url).send().await else {
                continue;
            };
            let text = response.text().await.unwrap_or_default();
            // No line yet means no statistics yet, not no lag.
            let lag = crate::measure::metric_sum(&text, "podium_projector_consumer_lag");
            quiet = if lag == Some(0.0) { quiet + 1 } else { 0 };
        }
        Ok(started.elapsed())
    }

    /// Waits until a command API in a group serves every shard: before, it creates no quiz.
    async fn wait_for_shards(&mut self, admin_port: u16) -> Result<()> {
        let url = format!("http://127.0.0.1:{admin_port}/metrics");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            self.check()?;
            let text = match http.get(&url).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let owned = crate::measure::metric_sum(&text, "podium_command_shards_owned");
            if owned == Some(f64::from(podium_schemas::topics::LIFECYCLE_PARTITIONS)) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the command API did not claim every shard in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_until_up(&mut self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            self.check()?;
            if Instant::now() > deadline {
                bail!("nothing listening on port {port} after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines a service logged, for an error message.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.logs.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.id())
    }

    /// The query API's resident memory, in bytes.
    pub fn query_api_rss(&self) -> Result<u64> {
        rss(self.pid("podium-query-api").context("no query API")?)
    }

    /// Fails if a service has exited.
    pub fn check(&mut self) -> Result<()> {
        let mut exited = None;
        for (name, child) in &mut self.services {
            if let Some(status) = child.try_wait()? {
                exited = Some((*name, status));
                break;
            }
        }
        match exited {
            Some((name, status)) => bail!("{name} exited with {status}:\n{}", self.log_tail(name)),
            None => Ok(()),
        }
    }

    /// SIGTERM to every service, so each drains as in production, then waits for them.
    pub fn stop(&mut self) {
        for (_, child) in &self.services {
            let _ = podium_testkit::send_signal(child.id(), podium_testkit::Signal::TERM);
        }
        for (_, child) in &mut self.services {
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.services.clear();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU seconds each process of the stack (and the load generator) has used, at an instant.
#[derive(Debug, Clone)]
pub struct CpuMark {
    at: Instant,
    seconds: BTreeMap<&'static str, f64>,
}

/// Cores each process kept busy between two marks: 1.0 is one core all the time.
pub type CpuUse = BTreeMap<&'static str, f64>;

impl Stack {
    fn processes(&self) -> Vec<(&'static str, u32)> {
        let mut all = vec![("load generator", std::process::id())];
        all.extend(self.broker.pid().map(|p| ("broker", p)));
        all.extend(self.redis.pid().map(|p| ("redis", p)));
        all.extend(self.services.iter().map(|(n, c)| (*n, c.id())));
        all
    }

    pub fn cpu_mark(&self) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            seconds: self
                .processes()
                .into_iter()
                .filter_map(|(name, pid)| Some((name, cpu_seconds(pid)?)))
                .collect(),
        }
    }

    /// What each process used since `mark`; printed, since this is what limits a phase.
    pub fn cpu_since(&self, mark: &CpuMark) -> CpuUse {
        let now = self.cpu_mark();
        let wall = now.at.duration_since(mark.at).as_secs_f64().max(1e-3);
        let used: CpuUse = now
            .seconds
            .iter()
            .map(|(name, s)| {
                let before = mark.seconds.get(name).copied().unwrap_or(0.0);
                (*name, ((s - before) / wall * 100.0).round() / 100.0)
            })
            .collect();
        let line: Vec<String> = used.iter().map(|(n, c)| format!("{n} {c:.2}")).collect();
        eprintln!("  cores used     {}", line.join(", "));
        used
    }
}

/// Clock ticks per second of `/proc/<pid>/stat`; 100 on every Linux this runs on.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User plus system CPU seconds process `pid` has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// Resident set size of process `pid`, from `/proc/<pid>/status`.
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok(kib * 1024)
}
