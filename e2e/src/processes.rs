//! The whole of Podium as real processes: the release-shaped binaries of the projector, the
//! command API and the query API, on a real broker and a real Redis, each service on a fixed
//! port of its own so it comes back at the same address. A crash here is a real `kill -9`, a
//! stop a real SIGTERM. The fault tests drive it as players do, over HTTP, and compare what was
//! acknowledged with the log, and the read models with a pure fold of the log.
//!
//! The binaries are the target directory's: build them first (`cargo build --workspace --bins`,
//! as `deploy/local/test.sh` does), since cargo builds a package's binaries only for its own tests.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podium_runtime::KafkaArgs;
use podium_schemas::domain::ReadModels;
use podium_schemas::events::AnswerSubmitted;
use podium_schemas::fence::{Fence, Verdict};
use podium_schemas::{Codec, Event, topics};
use podium_testkit::{Broker, Redis, eventually, free_port, read_log, unique, workspace_binary};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::TOKEN_SECRET;

/// How long a read model may take to reach the fold once the log stops growing.
pub const CONVERGE: Duration = Duration::from_secs(120);

/// A Podium service run as its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Projector,
    CommandApi,
    QueryApi,
}

impl Service {
    pub const ALL: [Self; 3] = [Self::Projector, Self::CommandApi, Self::QueryApi];

    fn binary(self) -> &'static str {
        match self {
            Self::Projector => "podium-projector",
            Self::CommandApi => "podium-command-api",
            Self::QueryApi => "podium-query-api",
        }
    }
}

/// Every service of Podium, each a process of its own.
#[derive(Debug)]
pub struct Processes {
    pub broker: Broker,
    pub redis: Redis,
    pub kafka: KafkaArgs,
    pub namespace: String,
    pub http: reqwest::Client,
    ports: BTreeMap<Service, u16>,
    /// Each service's admin listener (the projector's is its only one).
    admin_ports: BTreeMap<Service, u16>,
    /// Added to every service's environment.
    env: Vec<(String, String)>,
    bin_dir: Option<PathBuf>,
    children: BTreeMap<Service, Child>,
    /// More instances of a service, by name.
    instances: BTreeMap<String, Instance>,
    logs: TempDir,
}

/// One more instance of a service.
#[derive(Debug)]
struct Instance {
    port: u16,
    admin: u16,
    child: Option<Child>,
}

/// An answer a player was told was recorded: its status (201, or 200 for a repeat) and result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    pub points: i64,
    pub choice: i64,
}

/// What the check of acknowledged answers against the log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswersChecked {
    pub acknowledged: usize,
    /// Extra copies of acknowledged answers' entries: appends retried after an unknown outcome.
    pub copies: usize,
}

impl Processes {
    /// Starts the broker and Redis, creates the topics, and starts every service, from the
    /// binaries of this workspace's target directory.
    pub async fn start() -> Result<Self> {
        Self::start_from(None).await
    }

    /// [`Processes::start`], with the services' binaries taken from `bin_dir` when given.
    pub async fn start_from(bin_dir: Option<PathBuf>) -> Result<Self> {
        Self::start_with(bin_dir, Vec::new()).await
    }

    /// [`Processes::start_from`], with `env` added to every service's environment.
    pub async fn start_with(bin_dir: Option<PathBuf>, env: Vec<(String, String)>) -> Result<Self> {
        let broker = Broker::start().await?;
        let redis = Redis::start().await?;
        let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("t")));
        broker
            .create_topics(&kafka.topics().with_partitions())
            .await?;
        let (mut ports, mut admin_ports) = (BTreeMap::new(), BTreeMap::new());
        for service in Service::ALL {
            let _ = ports.insert(service, free_port()?);
            let _ = admin_ports.insert(service, free_port()?);
        }
        // The projector's only listener is its admin listener.
        let _ = admin_ports.insert(Service::Projector, ports[&Service::Projector]);
        let mut stack = Self {
            broker,
            redis,
            kafka,
            namespace: unique("podium"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            ports,
            admin_ports,
            env,
            bin_dir,
            children: BTreeMap::new(),
            instances: BTreeMap::new(),
            logs: tempfile::Builder::new()
                .prefix("podium-processes")
                .tempdir()?,
        };
        for service in Service::ALL {
            stack.start_on_free_ports(service).await?;
        }
        Ok(stack)
    }

    /// Starts `service` on the ports picked for it, or on fresh ones if another process took
    /// one of them between the pick and the bind (every test picks ports at the same time).
    async fn start_on_free_ports(&mut self, service: Service) -> Result<()> {
        let mut tries = 0;
        loop {
            match self.start_service(service).await {
                Err(cause) if tries < 3 && format!("{cause:#}").contains(PORT_TAKEN) => {
                    tries += 1;
                    let port = free_port()?;
                    let _ = self.ports.insert(service, port);
                    // The projector's only listener is its admin listener.
                    let admin = if service == Service::Projector {
                        port
                    } else {
                        free_port()?
                    };
                    let _ = self.admin_ports.insert(service, admin);
                }
                other => return other,
            }
        }
    }

    /// Sets a variable of every service's environment from their next start on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Waits until the command API holds no quiz in memory: every quiz it had finished and a
    /// snapshot holds them.
    pub async fn command_api_holds_no_quiz(&self, timeout: Duration) -> Result<()> {
        eventually("the finished quizzes leave memory", timeout, || async {
            let in_memory = self
                .metric(Service::CommandApi, "podium_command_quizzes_in_memory", "")
                .await
                .ok()?;
            (in_memory == 0.0).then_some(())
        })
        .await
    }

    /// The process id of a running service.
    pub fn pid(&self, service: Service) -> Option<u32> {
        self.children.get(&service).and_then(Child::id)
    }

    fn port(&self, service: Service) -> u16 {
        self.ports.get(&service).copied().unwrap_or_default()
    }

    pub fn command_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port(Service::CommandApi))
    }

    pub fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port(Service::QueryApi))
    }

    /// The projector's admin listener: `/metrics`, `/livez`, `/readyz`.
    pub fn projector_admin_url(&self) -> String {
        self.admin_url(Service::Projector)
    }

    /// A service's admin listener: `/metrics`, `/livez`, `/readyz`.
    pub fn admin_url(&self, service: Service) -> String {
        let port = self.admin_ports.get(&service).copied().unwrap_or_default();
        format!("http://127.0.0.1:{port}")
    }

    fn log_path(&self, service: Service) -> PathBuf {
        self.logs.path().join(format!("{}.log", service.binary()))
    }

    /// Everything `service` logged, over all its runs.
    pub fn log_of(&self, service: Service) -> String {
        std::fs::read_to_string(self.log_path(service)).unwrap_or_default()
    }

    /// Every log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for service in Service::ALL {
            let log = self.log_of(service);
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            all.push_str(&format!("--- {} (last lines)\n", service.binary()));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// Starts `service` and waits until it listens. The command API listens once it restored
    /// its quizzes from the log, which takes a while on a long log.
    pub async fn start_service(&mut self, service: Service) -> Result<()> {
        let (port, admin) = (self.port(service), self.admin_port(service));
        let child = self
            .spawn(service, service.binary(), port, admin, &[])
            .await?;
        let _ = self.children.insert(service, child);
        Ok(())
    }

    /// Starts one more instance of `service`, named `name` (its log and, for a projector, its
    /// group member id), on ports of its own; returns the URL of its listener. It shares the
    /// broker, Redis, topics and namespace with the first.
    pub async fn start_instance(&mut self, service: Service, name: &str) -> Result<String> {
        self.start_instance_with(service, name, &[]).await
    }

    /// [`Processes::start_instance`] with variables of its own added to its environment.
    pub async fn start_instance_with(
        &mut self,
        service: Service,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<String> {
        let (port, admin) = match self.instances.get(name) {
            Some(instance) => (instance.port, instance.admin),
            None => (free_port()?, free_port()?),
        };
        // The projector's only listener is its admin listener.
        let admin = if service == Service::Projector {
            port
        } else {
            admin
        };
        let mut own_env = vec![("PODIUM_PROJECTOR_INSTANCE_ID", name)];
        own_env.extend_from_slice(env);
        let child = self.spawn(service, name, port, admin, &own_env).await?;
        let _ = self.instances.insert(
            name.to_owned(),
            Instance {
                port,
                admin,
                child: Some(child),
            },
        );
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// `kill -9` of an instance started by [`Processes::start_instance`].
    pub async fn kill_instance(&mut self, name: &str) -> Result<()> {
        if let Some(mut child) = self.instances.get_mut(name).and_then(|i| i.child.take()) {
            child.kill().await?;
        }
        Ok(())
    }

    /// The process id of an instance started by [`Processes::start_instance`].
    pub fn instance_pid(&self, name: &str) -> Option<u32> {
        self.instances
            .get(name)
            .and_then(|i| i.child.as_ref())
            .and_then(Child::id)
    }

    /// Waits until the live command APIs of a group (the first, then the instances named in
    /// `others`, as `alive` says) serve every shard between them, each at least one; returns
    /// how long it took. A paused instance is not asked: it would hold the request.
    pub async fn command_shards_settled(
        &self,
        others: &[&str],
        alive: &[bool],
        limit: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let mut held = Vec::new();
            for (i, _) in alive.iter().enumerate().filter(|(_, alive)| **alive) {
                let owned = match i.checked_sub(1) {
                    None => {
                        self.metric(Service::CommandApi, "podium_command_shards_owned", "")
                            .await
                    }
                    Some(other) => {
                        let name = others.get(other).context("an instance per flag")?;
                        self.instance_metric(name, "podium_command_shards_owned")
                            .await
                    }
                };
                held.push(owned.ok());
            }
            let spread = held.iter().all(|h| h.is_some_and(|h| h >= 1.0))
                && held.iter().flatten().sum::<f64>()
                    == f64::from(podium_schemas::topics::LIFECYCLE_PARTITIONS);
            if spread {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!(
                    "the shards were not spread over the live command APIs in {limit:?} ({held:?}):\n{}{}",
                    self.logs(),
                    self.membership_lines(others)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What each command API logged of the group and its shards: the first instance's, then
    /// the named others', whole, so that a rebalance that never settled can be read back.
    fn membership_lines(&self, others: &[&str]) -> String {
        let logs = std::iter::once(("command-api", self.log_of(Service::CommandApi))).chain(
            others
                .iter()
                .map(|name| (*name, self.log_of_instance(name))),
        );
        let mut all = String::new();
        for (name, log) in logs {
            all.push_str(&format!("--- {name}: the group and its shards\n"));
            for line in log
                .lines()
                .filter(|line| line.contains("shard") || line.contains("group"))
            {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// Everything an instance started by [`Processes::start_instance`] logged.
    pub fn log_of_instance(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn admin_port(&self, service: Service) -> u16 {
        self.admin_ports.get(&service).copied().unwrap_or_default()
    }

    /// Starts `binary` of `service` logging to `<name>.log`, and waits until it listens.
    async fn spawn(
        &self,
        service: Service,
        name: &str,
        port: u16,
        admin_port: u16,
        env: &[(&str, &str)],
    ) -> Result<Child> {
        let binary = match &self.bin_dir {
            Some(dir) => dir.join(service.binary()),
            None => workspace_binary(service.binary())?,
        };
        let log_path = self.logs.path().join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        // A restart appends to the log: only what this start writes says it listens.
        let logged_before = usize::try_from(log.metadata()?.len())?;
        let listen = format!("127.0.0.1:{port}");
        let admin = format!("127.0.0.1:{admin_port}");
        let mut command = Command::new(binary);
        let _ = command
            .env_clear()
            .env("RUST_LOG", "info")
            .env("PODIUM_KAFKA_BROKERS", self.broker.bootstrap())
            .env("PODIUM_TOPIC_PREFIX", &self.kafka.topic_prefix)
            .env("PODIUM_REDIS_URL", self.redis.url())
            .env("PODIUM_READ_MODEL_NAMESPACE", &self.namespace)
            .env("PODIUM_TOKEN_SECRET", TOKEN_SECRET)
            // All load comes from one address; the limits have tests of their own.
            .env("PODIUM_RATE_PER_CLIENT", "0")
            .env("PODIUM_RATE_BURST_PER_CLIENT", "0")
            .env("PODIUM_RATE_ANSWERS_PER_PLAYER", "0")
            .env("PODIUM_RATE_QUIZZES_PER_MINUTE", "0")
            // Snapshots often, so tests see finished quizzes leave memory soon.
            .env("PODIUM_SNAPSHOT_INTERVAL_MS", "1000")
            .env(
                "PODIUM_PROJECTOR_GROUP",
                format!("{}read-models", self.kafka.topic_prefix),
            )
            // Static membership, as the local stack and Kubernetes run it.
            .env("PODIUM_PROJECTOR_INSTANCE_ID", "projector-0")
            .env("PODIUM_PROJECTOR_SESSION_TIMEOUT_MS", "6000")
            .env("PODIUM_PROJECTOR_METRICS_LISTEN", &listen)
            .env("PODIUM_COMMAND_LISTEN", &listen)
            .env("PODIUM_QUERY_LISTEN", &listen)
            .env("PODIUM_COMMAND_ADMIN_LISTEN", &admin)
            .env("PODIUM_QUERY_ADMIN_LISTEN", &admin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", service.binary()))?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            // A port that accepts is not proof enough: another test's process may hold it, and
            // answer in this one's place. The child's own log names the address it bound.
            let logged = std::fs::read(&log_path).unwrap_or_default();
            if listens_on(logged.get(logged_before..).unwrap_or_default(), port)
                && tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening:\n{}",
                    service.binary(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("{} did not listen within 300 s", service.binary());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }

    /// `kill -9`: no drain, no commit.
    pub async fn kill(&mut self, service: Service) -> Result<()> {
        if let Some(mut child) = self.children.remove(&service) {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM, and waits for the service to drain and exit; fails if it exits with an error.
    pub async fn terminate(&mut self, service: Service) -> Result<()> {
        if let Some(mut child) = self.children.remove(&service) {
            podium_testkit::terminate(&mut child).await?;
            let status = child.wait().await?;
            if !status.success() {
                bail!("{} exited with {status} on SIGTERM", service.binary());
            }
        }
        Ok(())
    }

    /// True while `service`'s process runs: a service must outlive its dependencies' outages.
    pub fn running(&mut self, service: Service) -> bool {
        self.children
            .get_mut(&service)
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// A client of the command API, for players and hosts; it outlives restarts of the API.
    pub fn client(&self) -> Client {
        self.client_at(&self.command_url())
    }

    /// Players and hosts sending their commands to `url`: a gateway in front of the APIs.
    pub fn client_at(&self, url: &str) -> Client {
        Client {
            http: self.http.clone(),
            command_url: url.to_owned(),
            refused: Arc::default(),
        }
    }

    /// Every answer in the log that readers count, by (quiz, player, question), in log order
    /// within a key, each with its `event_id` header; and how many records readers void,
    /// appended by an owner that had lost its shard (ADR 0011). Markers are in every answers
    /// partition, so the answers topic alone is judged as every reader judges it.
    pub async fn answers_in_log(
        &self,
    ) -> Result<HashMap<(String, String, i32), Vec<(Option<String>, AnswerSubmitted)>>> {
        Ok(self.judged_answers().await?.0)
    }

    /// Records of the answers topic that every reader voids.
    pub async fn void_answers(&self) -> Result<usize> {
        Ok(self.judged_answers().await?.1)
    }

    #[allow(clippy::type_complexity)]
    async fn judged_answers(
        &self,
    ) -> Result<(
        HashMap<(String, String, i32), Vec<(Option<String>, AnswerSubmitted)>>,
        usize,
    )> {
        let records = read_log(self.broker.bootstrap(), &[&self.kafka.topics().answers]).await?;
        let codec = Codec::new();
        let mut answers: HashMap<_, Vec<_>> = HashMap::new();
        let (mut fence, mut void) = (Fence::default(), 0);
        for record in records {
            match crate::judge(&mut fence, &record) {
                Verdict::Count => {}
                Verdict::Void => {
                    void += 1;
                    continue;
                }
                Verdict::Claim => continue,
            }
            if let Ok(Event::AnswerSubmitted(a)) = codec.decode(&record.payload) {
                let id = record
                    .headers
                    .iter()
                    .find(|(k, _)| k == topics::HEADER_EVENT_ID)
                    .map(|(_, v)| v.clone());
                answers
                    .entry((a.quiz_id.clone(), a.player_id.clone(), a.question))
                    .or_default()
                    .push((id, a));
            }
        }
        Ok((answers, void))
    }

    /// Checks acknowledged answers against the log: each is there, with the points the player
    /// was told, as one entry. An append retried after its outcome was unknown may have put
    /// copies of that entry in the log (same id, same content), which every reader folds once;
    /// two different entries for one answer would be a double count.
    pub async fn every_acknowledged_answer_is_in_the_log_once(
        &self,
        acknowledged: &HashMap<(String, String, i32), Acknowledged>,
    ) -> Result<AnswersChecked> {
        let in_log = self.answers_in_log().await?;
        let (mut lost, mut doubled, mut differ, mut copies) = (vec![], vec![], vec![], 0);
        for (key, ack) in acknowledged {
            let Some([(id, first), rest @ ..]) = in_log.get(key).map(Vec::as_slice) else {
                lost.push(key.clone());
                continue;
            };
            if rest.iter().any(|(i, a)| i != id || a != first) || id.is_none() && !rest.is_empty() {
                doubled.push(key.clone());
            }
            copies += rest.len();
            if first.awarded() != ack.points || i64::from(first.choice) != ack.choice {
                differ.push(key.clone());
            }
        }
        if !(lost.is_empty() && doubled.is_empty() && differ.is_empty()) {
            bail!(
                "of {} acknowledged answers, {} are not in the log (e.g. {:?}), {} are there as different entries (e.g. {:?}), {} differ from what the player was told (e.g. {:?})",
                acknowledged.len(),
                lost.len(),
                lost.first(),
                doubled.len(),
                doubled.first(),
                differ.len(),
                differ.first()
            );
        }
        Ok(AnswersChecked {
            acknowledged: acknowledged.len(),
            copies,
        })
    }

    /// The pure fold of everything in the log now.
    pub async fn fold_of_log(&self) -> Result<ReadModels> {
        crate::fold_of_log(self.broker.bootstrap(), &self.kafka).await
    }

    /// Waits until every quiz of `expected` reads in Redis exactly as the fold has it.
    pub async fn converges_to(&self, expected: &ReadModels) -> Result<()> {
        crate::converge(&self.redis.url(), &self.namespace, expected, CONVERGE)
            .await
            .with_context(|| self.logs())
    }

    /// The projector's `/readyz` status, or `None` while it does not answer.
    pub async fn projector_ready(&self) -> Option<u16> {
        self.ready(Service::Projector).await
    }

    /// A service's `/readyz` status, or `None` while it does not answer.
    pub async fn ready(&self, service: Service) -> Option<u16> {
        let response = self
            .http
            .get(format!("{}/readyz", self.admin_url(service)))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// One counter or gauge of the projector's `/metrics`, summed over its labels.
    pub async fn projector_metric(&self, name: &str) -> Result<f64> {
        self.metric(Service::Projector, name, "").await
    }

    /// One metric of a service's `/metrics`, summed over the series whose labels contain
    /// `labels` (for example `route="/v1/quizzes/{quiz_id}/answers",status="201"`).
    pub async fn metric(&self, service: Service, name: &str, labels: &str) -> Result<f64> {
        self.metric_at(&self.admin_url(service), name, labels).await
    }

    /// One metric of an instance started by [`Processes::start_instance`].
    pub async fn instance_metric(&self, instance: &str, name: &str) -> Result<f64> {
        self.instance_metric_with(instance, name, "").await
    }

    /// One metric of an instance, summed over the series whose labels hold each of `labels`
    /// (comma-separated).
    pub async fn instance_metric_with(
        &self,
        instance: &str,
        name: &str,
        labels: &str,
    ) -> Result<f64> {
        let admin = self
            .instances
            .get(instance)
            .map(|i| format!("http://127.0.0.1:{}", i.admin))
            .with_context(|| format!("no instance {instance}"))?;
        self.metric_at(&admin, name, labels).await
    }

    async fn metric_at(&self, admin: &str, name: &str, labels: &str) -> Result<f64> {
        let text = self
            .http
            .get(format!("{admin}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter(|l| labels.split(',').all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// Players and hosts, over HTTP.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    command_url: String,
    /// Attempts that got no final answer (a 503, a 429, no connection), over every clone.
    refused: Arc<AtomicU64>,
}

impl Client {
    /// Attempts so far that got no final answer and were retried.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Sends a JSON command to the command API; returns the status and the JSON body. A
    /// connection that fails (the API is down) is an error the caller may retry.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        let url = format!("{}{path}", self.command_url);
        crate::post_json(&self.http, &url, token, idempotency_key, body).await
    }

    /// Sends a command until the command API gives a final answer: a connection failure, a
    /// 503 (the log is unavailable), a 429, or a gateway's 502 or 504 on a request with a token
    /// is retried after a pause, for up to two minutes.
    pub async fn post_until_final(
        &self,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        // A gateway's 502 or 504 leaves the outcome unknown. Host commands and answers (the
        // requests with a token) are safe to send again, as a real client would; a create or
        // a join is not.
        let retried = |status: u16| {
            matches!(status, 503 | 429) || (token.is_some() && matches!(status, 502 | 504))
        };
        loop {
            let last = match self.post(path, token, idempotency_key, body).await {
                Ok((status, body)) if !retried(status) => {
                    return Ok((status, body));
                }
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => format!("{e:#}"),
            };
            let _ = self.refused.fetch_add(1, Ordering::Relaxed);
            if Instant::now() > deadline {
                bail!("POST {path} got no final answer in two minutes; last: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Answers for a player until the answer is final, under one idempotency key. Returns
    /// what the player was told was recorded: the result of a 201, of a 200 (the same key
    /// again, after an acknowledgement the client did not see) or the `original` of a 409
    /// `already_answered`.
    pub async fn answer(
        &self,
        quiz_id: &str,
        token: &str,
        question: i64,
        choice: i64,
    ) -> Result<Acknowledged> {
        let key = unique("answer");
        let body = serde_json::json!({"question": question, "choice": choice});
        let path = format!("/v1/quizzes/{quiz_id}/answers");
        let (status, reply) = self
            .post_until_final(&path, Some(token), Some(&key), &body)
            .await?;
        let result = match (status, reply["code"].as_str()) {
            (200 | 201, _) => &reply,
            (409, Some("already_answered")) => &reply["original"],
            _ => bail!("answer to question {question}: {status} {reply}"),
        };
        Ok(Acknowledged {
            points: result["points"].as_i64().unwrap_or(-1)
                + result["streak_bonus"].as_i64().unwrap_or(0),
            choice,
        })
    }
}

/// What a service logs when its port is taken (the OS error's text).
const PORT_TAKEN: &str = "Address already in use";

/// Whether `log` has the line a service writes once it listens on `port` (`podium_runtime`'s
/// `serve`: "... listening addr=127.0.0.1:<port>", or the same fields as JSON).
fn listens_on(log: &[u8], port: u16) -> bool {
    let addr = format!("127.0.0.1:{port}");
    String::from_utf8_lossy(log).lines().any(|line| {
        line.contains(" listening")
            && line
                .match_indices(&addr)
                .any(|(at, _)| !line[at + addr.len()..].starts_with(|c: char| c.is_ascii_digit()))
    })
}
