//! Test harness: each test starts its own broker and Redis on free ports, under a
//! temporary directory, and both stop when the handles drop. Nothing depends on a service a
//! person started by hand, and [`unique`] keeps topic, group and key names apart.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tempfile::TempDir;
use tokio::process::{Child, Command};

mod log;
mod quiz_log;
pub use log::{EventWriter, LogRecord, read_log};
pub use quiz_log::{QuizLog, Round};

/// How long a broker or Redis may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A name no other test uses: `prefix` plus a random suffix.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Ports handed out below Linux's default ephemeral range (32768-60999).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A TCP port that was free a moment ago. It is drawn at random below the ephemeral range,
/// where neither a `bind(0)` nor an outgoing connection of some other test can take it: tests
/// restart services on the ports they had, and a port from that range was once taken by
/// another process in the seconds between the stop and the start. Two draws of the same port
/// are left to chance (one in 12,768 a draw).
pub fn free_port() -> Result<u16> {
    use rand::Rng;
    for _ in 0..100 {
        let port = rand::rng().random_range(TEST_PORTS);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `probe` until it returns `Some`, or fails with `what` once `timeout` has passed.
/// Tests wait with this, never with a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Finds a program the local stack installs; `env` overrides the lookup.
fn program(env: &str, name: &str) -> Result<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Ok(PathBuf::from(path));
    }
    let in_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(name));
    // Debian puts servers such as nginx in /usr/sbin, which is not on a user's PATH.
    let sbin = Path::new("/usr/sbin").join(name);
    in_path
        .into_iter()
        .chain(cargo_bin)
        .chain(Some(sbin))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found (set {env}, or run deploy/local/install.sh)"))
}

fn spawn(program: &Path, args: &[&str], log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)?;
    let dir = log.parent().unwrap_or_else(|| Path::new("."));
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

async fn wait_for_port(port: u16, child: &mut Child, log: &Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("exited with {status} before listening on {port}:\n{log}");
        }
        if Instant::now() > deadline {
            bail!("nothing listening on {port} after {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Kafka-compatible broker the tests run: nisshi (tansu's successor, see
/// `docs/adr/0006-broker.md`), storing its log in SQLite under a temporary directory.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    port: u16,
    bootstrap: String,
    dir: TempDir,
    /// Whether this is librdkafka's mock cluster, which keeps nothing across a restart.
    mock: bool,
}

/// What a mock broker process prints once it serves, before its address.
pub const MOCK_BROKER_READY: &str = "mock broker listening on ";

impl Broker {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("podium-broker").tempdir()?;
        let port = free_port()?;
        let child = Self::spawn(dir.path(), port).await?;
        let broker = Self {
            child,
            port,
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
            mock: false,
        };
        broker.wait_for_metadata().await?;
        Ok(broker)
    }

    /// librdkafka's mock cluster, served by `program args…` in a process of its own, which
    /// prints [`MOCK_BROKER_READY`] and its address once it serves. It keeps records in memory
    /// and is never the bottleneck: the bench measures Podium's own ceiling on it. Not for
    /// tests of correctness, which run on the real broker.
    pub async fn start_mock(program: &Path, args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("podium-mock").tempdir()?;
        let log = dir.path().join("broker.log");
        let mut child = spawn(program, args, &log)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let bootstrap = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(address) = text.lines().find_map(|l| l.split_once(MOCK_BROKER_READY)) {
                break address.1.trim().to_owned();
            }
            if let Some(status) = child.try_wait()? {
                bail!("the mock broker exited with {status}:\n{text}");
            }
            if Instant::now() > deadline {
                bail!(
                    "the mock broker did not say where it listens after {START_TIMEOUT:?}:\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let port = bootstrap
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .with_context(|| format!("the mock broker's address {bootstrap}"))?;
        let broker = Self {
            child,
            port,
            bootstrap,
            dir,
            mock: true,
        };
        broker.wait_for_metadata().await?;
        Ok(broker)
    }

    async fn spawn(dir: &Path, port: u16) -> Result<Child> {
        let broker = program("PODIUM_BROKER_BIN", "nisshi")?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join("broker.log");
        let mut child = spawn(
            &broker,
            &[
                "broker",
                "--storage-engine",
                // sqlite, not memory://: tansu 0.6's memory engine lost acknowledged records
                // under concurrent produce, and a file survives a restart.
                "sqlite://broker.db",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ],
            &log,
        )?;
        wait_for_port(port, &mut child, &log)
            .await
            .context("the broker")?;
        Ok(child)
    }

    /// Starts the broker again on the same port and data, after [`Broker::kill`] or
    /// [`Broker::terminate`].
    pub async fn restart(&mut self) -> Result<()> {
        if self.mock {
            bail!("the mock broker keeps nothing across a restart");
        }
        let _ = self.child.kill().await;
        self.child = Self::spawn(self.dir.path(), self.port).await?;
        self.wait_for_metadata().await
    }

    /// The broker's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// The broker's process id, while it runs: the bench reads its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let _ = config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    async fn wait_for_metadata(&self) -> Result<()> {
        let consumer: BaseConsumer = self.client().create()?;
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, START_TIMEOUT)
                .map(|_| ())
                .context("broker metadata")
        })
        .await?
    }

    /// Creates topics with explicit partition counts and waits until their metadata shows them.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client().create()?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        for result in admin.create_topics(&new, &AdminOptions::new()).await? {
            let _ = result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
        }
        let consumer: BaseConsumer = self.client().create()?;
        let wanted: Vec<(String, usize)> = topics
            .iter()
            .map(|(n, p)| ((*n).to_owned(), usize::try_from(*p).unwrap_or_default()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + START_TIMEOUT;
            for (topic, partitions) in wanted {
                loop {
                    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
                    let seen = metadata
                        .topics()
                        .first()
                        .map_or(0, |t| t.partitions().len());
                    if seen == partitions {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("{topic} has {seen} of {partitions} partitions");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Ok(())
        })
        .await?
    }

    /// Stops the broker at once, as a crash would.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await.context("killing the broker")
    }

    /// Stops the broker with SIGTERM and waits for it to exit, as an operator would.
    pub async fn terminate(&mut self) -> Result<()> {
        terminate(&mut self.child).await
    }
}

pub use rustix::process::Signal;

/// Sends `signal` to the process `pid`, as `kill` does.
pub fn send_signal(pid: u32, signal: Signal) -> Result<()> {
    let process = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .with_context(|| format!("{pid} is not a process id"))?;
    rustix::process::kill_process(process, signal)
        .with_context(|| format!("signal {signal:?} to process {pid}"))
}

/// Sends SIGTERM and waits up to 30 s for the process to exit, then kills it.
pub async fn terminate(child: &mut Child) -> Result<()> {
    if let Some(pid) = child.id() {
        send_signal(pid, Signal::TERM)?;
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        child.kill().await?;
        bail!("did not exit within 30 s of SIGTERM");
    }
    Ok(())
}

/// A binary of this workspace, in the target directory of the test binary running now. Cargo
/// builds a package's binaries only for that package's own tests, so `deploy/local/test.sh`
/// builds them all first. Tests that crash real processes of other packages find them here.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary has no target directory")?;
    let path = profile_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not built: cargo builds a package's binaries only for its own tests, so run \
             `cargo build --workspace --bins` first (deploy/local/test.sh does)",
            path.display()
        );
    }
    Ok(path)
}

/// Where [`Redis`] keeps a snapshot, written only when a test asks for one.
const SNAPSHOT: &str = "dump.rdb";

/// A Redis server that saves only when a test asks it to (`SAVE`), and loads its snapshot at
/// start if there is one.
#[derive(Debug)]
pub struct Redis {
    child: Child,
    port: u16,
    dir: TempDir,
    /// Serving TLS only, with a certificate made for it (the CA file is its own certificate).
    tls: bool,
}

/// The self-signed certificate and key of a TLS Redis, in its directory.
const TLS_CERT: &str = "redis.crt";
const TLS_KEY: &str = "redis.key";

impl Redis {
    pub async fn start() -> Result<Self> {
        Self::start_with(false).await
    }

    /// A Redis that speaks only TLS (`rediss://`), with a self-signed certificate for
    /// 127.0.0.1 made by `openssl` for this server; [`Redis::ca_file`] is what clients trust.
    pub async fn start_tls() -> Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("podium-redis").tempdir()?;
        let port = free_port()?;
        if tls {
            let status = std::process::Command::new("openssl")
                .current_dir(dir.path())
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args([
                    "-keyout",
                    TLS_KEY,
                    "-out",
                    TLS_CERT,
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .context("running openssl to make a certificate")?;
            anyhow::ensure!(status.success(), "openssl could not make a certificate");
        }
        let child = Self::spawn(dir.path(), port, tls).await?;
        Ok(Self {
            child,
            port,
            dir,
            tls,
        })
    }

    async fn spawn(dir: &Path, port: u16, tls: bool) -> Result<Child> {
        let redis = program("REDIS_SERVER_BIN", "redis-server")?;
        let log = dir.join("redis.log");
        let port_arg = port.to_string();
        let dir_arg = dir.display().to_string();
        let (cert, key) = (
            dir.join(TLS_CERT).display().to_string(),
            dir.join(TLS_KEY).display().to_string(),
        );
        let listen: Vec<&str> = if tls {
            vec![
                "--port",
                "0",
                "--tls-port",
                &port_arg,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &cert,
                "--tls-auth-clients",
                "no",
            ]
        } else {
            vec!["--port", &port_arg]
        };
        let mut child = spawn(
            &redis,
            &[
                listen.as_slice(),
                &[
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &dir_arg,
                ],
            ]
            .concat(),
            &log,
        )?;
        wait_for_port(port, &mut child, &log)
            .await
            .context("redis-server")?;
        Ok(child)
    }

    /// Kills Redis and starts an empty one on the same port: Redis lost its data.
    pub async fn restart_empty(&mut self) -> Result<()> {
        self.child.kill().await.context("killing redis")?;
        let _ = std::fs::remove_file(self.dir.path().join(SNAPSHOT));
        self.child = Self::spawn(self.dir.path(), self.port, self.tls).await?;
        Ok(())
    }

    /// Writes a snapshot, kills Redis, and starts it again from the snapshot, as a Redis with
    /// persistence comes back after a crash: its data as of the snapshot, its script cache empty.
    pub async fn restart_with_data(&mut self) -> Result<()> {
        let mut connection = self.connection().await?;
        let () = redis::cmd("SAVE").query_async(&mut connection).await?;
        self.child.kill().await.context("killing redis")?;
        self.child = Self::spawn(self.dir.path(), self.port, self.tls).await?;
        Ok(())
    }

    /// Writes a snapshot now; [`Redis::start_again`] after [`Redis::stop`] comes back to it.
    pub async fn save(&self) -> Result<()> {
        let mut connection = self.connection().await?;
        let () = redis::cmd("SAVE").query_async(&mut connection).await?;
        Ok(())
    }

    /// Stops Redis until [`Redis::start_again`]: an outage.
    pub async fn stop(&mut self) -> Result<()> {
        self.child.kill().await.context("killing redis")
    }

    /// Starts Redis again after [`Redis::stop`], from its last snapshot if there is one.
    pub async fn start_again(&mut self) -> Result<()> {
        self.child = Self::spawn(self.dir.path(), self.port, self.tls).await?;
        Ok(())
    }

    /// SIGTERM: Redis saves a snapshot (its `dbfilename`) and exits; [`Redis::start_again`]
    /// loads it.
    pub async fn terminate(&mut self) -> Result<()> {
        let mut connection = self.connection().await?;
        let () = redis::cmd("SAVE").query_async(&mut connection).await?;
        terminate(&mut self.child).await
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The CA file a client of a TLS Redis trusts; `None` for a plain one.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join(TLS_CERT))
    }

    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = match self.ca_file() {
            None => redis::Client::open(self.url())?,
            Some(ca) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca)?),
                },
            )?,
        };
        Ok(client.get_multiplexed_async_connection().await?)
    }
}

/// Headless Debian Chromium showing one page, for tests of what a real browser does (its
/// `EventSource`, CORS). Closed when dropped.
#[derive(Debug)]
pub struct Browser {
    _child: Child,
    _profile: TempDir,
}

impl Browser {
    pub fn open(url: &str) -> Result<Self> {
        let chromium = program("CHROMIUM_BIN", "chromium")?;
        let profile = tempfile::Builder::new()
            .prefix("podium-chromium")
            .tempdir()?;
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        // No sandbox (tests may run as root); no background traffic: the machine's network is
        // closed and Chromium would retry its own services forever.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            profile_arg.as_str(),
            url,
        ];
        let child = spawn(&chromium, &args, &profile.path().join("chromium.log"))?;
        Ok(Self {
            _child: child,
            _profile: profile,
        })
    }
}

/// The gateway template that Kubernetes, Compose and the local stack use.
pub const GATEWAY_TEMPLATE: &str = include_str!("../../deploy/k8s/base/podium.conf.template");

/// Fills in the gateway template's `${PODIUM_...}` placeholders, as nginx's container
/// entrypoint does with envsubst; fails on one left unfilled.
pub fn render_gateway(values: &[(&str, &str)]) -> Result<String> {
    let mut text = GATEWAY_TEMPLATE.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    let left = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find(|line| line.contains("${PODIUM_"));
    match left {
        Some(line) => bail!("the gateway template has a placeholder left: {line}"),
        None => Ok(text),
    }
}

/// The main nginx configuration around the rendered template, for nginx run by hand (the local
/// stack writes the same): its files under `dir`, and nothing written to disk per request, so
/// unprivileged workers need no writable directory (bodies up to the template's 256 KiB limit
/// stay in memory).
pub fn gateway_main(dir: &Path, routes: &Path) -> String {
    let dir = dir.display();
    format!(
        "pid {dir}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_buffer_size 256k;\n  proxy_max_temp_file_size 0;\n  client_body_temp_path {dir}/client_body;\n  proxy_temp_path {dir}/proxy;\n  include {routes};\n}}\n",
        routes = routes.display()
    )
}

/// The built web app the gateway serves: `PODIUM_WEB_ROOT`, or the repository's `web/dist`
/// (`npm run build` in `web/`; test.sh builds it before the tests).
pub fn web_root() -> PathBuf {
    std::env::var_os("PODIUM_WEB_ROOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"),
        PathBuf::from,
    )
}

/// Debian's nginx in front of the APIs, with the gateway template: one origin, method routing,
/// unbuffered streams, and `X-Forwarded-For` believed from 127.0.0.1, where the tests run.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Gateway {
    /// The child's SIGKILL on drop would leave nginx's worker serving without its master;
    /// SIGTERM makes the master stop its workers and then exit.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        let _ = send_signal(pid, Signal::TERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Gateway {
    /// `command` and each of `queries` are `host:port`.
    pub async fn start(command: &str, queries: &[&str]) -> Result<Self> {
        Self::start_many(&[command], queries).await
    }

    /// [`Gateway::start`] with several command APIs, which share the quizzes (ADR 0011).
    pub async fn start_many(commands: &[&str], queries: &[&str]) -> Result<Self> {
        let nginx = program("NGINX_BIN", "nginx")?;
        let dir = tempfile::Builder::new()
            .prefix("podium-gateway")
            .tempdir()?;
        let port = free_port()?;
        let port_text = port.to_string();
        let command_servers: String = commands.iter().map(|c| format!("server {c}; ")).collect();
        let query_servers: String = queries.iter().map(|q| format!("server {q}; ")).collect();
        let web_root = web_root().display().to_string();
        let routes = render_gateway(&[
            ("PODIUM_GATEWAY_PORT", &port_text),
            ("PODIUM_COMMAND_SERVERS", &command_servers),
            ("PODIUM_QUERY_SERVERS", &query_servers),
            ("PODIUM_GATEWAY_REAL_IP", "127.0.0.1/32"),
            ("PODIUM_WEB_ROOT", &web_root),
        ])?;
        let path = dir.path();
        std::fs::write(path.join("podium.conf"), routes)?;
        let main = gateway_main(path, &path.join("podium.conf"));
        std::fs::write(path.join("nginx.conf"), main)?;
        let conf = path.join("nginx.conf").display().to_string();
        let prefix = path.display().to_string();
        let log = path.join("gateway.log");
        let mut child = spawn(
            &nginx,
            &[
                "-p",
                &prefix,
                "-c",
                &conf,
                "-e",
                "stderr",
                "-g",
                "daemon off;",
            ],
            &log,
        )?;
        wait_for_port(port, &mut child, &log)
            .await
            .context("the gateway")?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
