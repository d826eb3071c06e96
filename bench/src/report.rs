//! What a run found: the JSON results (with the git revision and the machine), the table on
//! stdout, and the chart of ingest over time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use serde::Serialize;

use crate::baseline::{self, Baselines};
use crate::measure::{Recorded, ratio};
use crate::probe::{FanOut, Freshness};
use crate::reads::{Reads, Rebuild, Seeded};
use crate::stack::{CpuUse, Stack};
use crate::{Plan, Profile};
use podium_runtime::KafkaArgs;
use podium_testkit::Broker;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

/// The machine a run came from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub broker: String,
    pub redis: String,
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let kib: f64 = field(&meminfo, "MemTotal")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu: field(&cpuinfo, "model name"),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            broker: command_output("nisshi", &["--version"]),
            redis: command_output("redis-server", &["--version"]),
        }
    }
}

/// A run under way: what is known before measuring.
/// The git revision measured, with `-dirty` when tracked files differ from it.
pub fn revision() -> String {
    let mut revision = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    if revision.is_empty() {
        revision = "unknown".into();
    } else if !command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty()
    {
        revision.push_str("-dirty");
    }
    revision
}

#[derive(Debug)]
pub struct Run {
    pub revision: String,
    pub build: &'static str,
    plan: Plan,
    started_at: String,
    machine: Machine,
}

impl Run {
    pub fn begin(plan: &Plan, bin_dir: &Path) -> Result<Self> {
        let revision = revision();
        // Cargo's profile directories say which build it is; binaries copied elsewhere (to
        // compare two builds side by side) are not taken for debug ones.
        let build = if bin_dir.ends_with("debug") {
            "debug"
        } else if bin_dir.ends_with("release") {
            "release"
        } else {
            "unknown"
        };
        Ok(Self {
            revision,
            build,
            plan: plan.clone(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine::read(),
        })
    }

    pub fn finish(self, measured: Measured) -> Results {
        Results {
            revision: self.revision,
            build: self.build.to_owned(),
            started_at: self.started_at,
            machine: self.machine,
            plan: self.plan,
            measured,
        }
    }
}

/// Cores each process kept busy during a phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseCpu {
    pub phase: String,
    pub cores: CpuUse,
}

/// Every figure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub baselines: Baselines,
    pub ingest: Ingest,
    pub freshness: Freshness,
    pub fan_out: FanOut,
    pub seeded: Seeded,
    pub reads: Reads,
    pub rebuild: Rebuild,
    pub cpu: Vec<PhaseCpu>,
    pub ceiling: Ceiling,
}

/// Podium's own ceiling: the ingest loops again, on a stack whose broker is librdkafka's mock
/// cluster, which keeps records in memory and is never the bottleneck.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub max: Option<Recorded>,
    pub more: Vec<InFlight>,
    pub open_loops: Vec<OpenLoop>,
    /// Cores each process used in each phase.
    pub cpu: Vec<PhaseCpu>,
    /// Why the ceiling was not measured, if it was not.
    pub error: Option<String>,
}

impl Ceiling {
    pub fn failed(error: String) -> Self {
        Self {
            max: None,
            more: Vec::new(),
            open_loops: Vec::new(),
            cpu: Vec::new(),
            error: Some(error),
        }
    }

    /// The closed loops, `(in flight, what they recorded)`: the first, then the others.
    fn closed(&self, first: usize) -> Vec<(usize, &Recorded)> {
        self.max
            .iter()
            .map(|r| (first, r))
            .chain(self.more.iter().map(|m| (m.in_flight, &m.recorded)))
            .collect()
    }

    /// CPU microseconds one answer cost each process in `phase`, at `per_second` answers.
    pub fn cost_per_answer(&self, phase: &str, per_second: f64) -> Vec<(String, f64)> {
        self.cpu
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| {
                p.cores
                    .iter()
                    .map(|(name, cores)| ((*name).to_owned(), cores * 1e6 / per_second.max(1.0)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The raw broker: a bare producer on a topic laid out as the answers topic, on `broker`.
/// With `reader`, a bare consumer follows what the projector follows meanwhile, with its
/// fetch settings: that topic and an idle one laid out as the lifecycle topic. The idle
/// partitions matter on nisshi, which reads storage for every partition a fetch names.
pub async fn producer_baseline(
    broker: &Broker,
    plan: &Plan,
    name: &str,
    reader: bool,
) -> Result<Recorded> {
    let load = Load::Closed(ProducerSettings::at(plan.in_flight));
    producer_baseline_at(broker, plan, name, reader, load).await
}

/// How a producer baseline loads the broker.
#[derive(Debug, Clone)]
pub enum Load {
    /// A closed loop with these settings.
    Closed(ProducerSettings),
    /// An open loop at `rate` records a second, with the command API's settings; the reader
    /// notes in `deliveries` when it has each record.
    Open {
        rate: f64,
        deliveries: Arc<baseline::Deliveries>,
    },
}

/// The bare producer with a reader, open loop at `rate`, on a broker of its own: the broker's
/// latency at the load an open-loop phase put on the stack.
/// Returns the producer's figures, and how long after each acknowledgement the reader had the
/// record.
pub async fn producer_open_baseline(
    plan: &Plan,
    name: &str,
    rate: f64,
) -> Result<(Recorded, Recorded)> {
    let broker = Broker::start()
        .await
        .context("starting a broker for the baseline")?;
    let deliveries = Arc::new(baseline::Deliveries::new());
    let load = Load::Open {
        rate,
        deliveries: deliveries.clone(),
    };
    let producer = producer_baseline_at(&broker, plan, name, true, load).await?;
    let delivered = deliveries.finish();
    eprintln!(
        "  {name:<14} the reader had each record p50 {:.2} ms, p99 {:.2} ms after its ack, {} never",
        delivered.latency.p50_ms,
        delivered.latency.p99_ms,
        delivered.errors.values().sum::<u64>()
    );
    Ok((producer, delivered))
}

/// What the producer baselines vary: the command API's settings unless a settings run asks
/// otherwise.
#[derive(Debug, Clone, Copy)]
pub struct ProducerSettings {
    pub in_flight: usize,
    pub linger_ms: u64,
    /// The measured topic's partitions (the answers topic's).
    pub partitions: i32,
}

impl ProducerSettings {
    /// The command API's own settings, `in_flight` at a time.
    pub fn at(in_flight: usize) -> Self {
        Self {
            in_flight,
            linger_ms: podium_command_api::event_log::DEFAULT_LINGER_MS,
            partitions: podium_schemas::topics::ANSWERS_PARTITIONS,
        }
    }
}

/// [`producer_baseline`] at `in_flight` records in flight.
pub async fn producer_baseline_at(
    broker: &Broker,
    plan: &Plan,
    name: &str,
    reader: bool,
    load: Load,
) -> Result<Recorded> {
    let (partitions, deliveries) = match &load {
        Load::Closed(settings) => (settings.partitions, None),
        Load::Open { deliveries, .. } => (
            podium_schemas::topics::ANSWERS_PARTITIONS,
            Some(deliveries.clone()),
        ),
    };
    let kafka = KafkaArgs::new(broker.bootstrap(), "bench.");
    let topic = format!("bench.{name}");
    let idle = format!("bench.{name}-lifecycle");
    broker
        .create_topics(&[
            (&topic, partitions),
            (&idle, podium_schemas::topics::LIFECYCLE_PARTITIONS),
        ])
        .await?;
    let reader = if reader {
        let consumer: StreamConsumer = kafka
            .consumer_config()
            .set("group.id", format!("bench-reader-{name}"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[topic.as_str(), idle.as_str()])?;
        let consumer = Arc::new(consumer);
        let reading = {
            let (consumer, deliveries) = (consumer.clone(), deliveries.clone());
            tokio::spawn(async move {
                while let Ok(message) = consumer.recv().await {
                    if let (Some(deliveries), Some(key)) = (&deliveries, message.key()) {
                        deliveries.received(key, std::time::Instant::now());
                    }
                }
            })
        };
        // Joining the group takes seconds: a producer measured meanwhile has no reader for
        // most of its run (seen: 3 of 5 s, at twice the rate it kept once the reader fetched).
        let partitions = partitions + podium_schemas::topics::LIFECYCLE_PARTITIONS;
        let assigned = async {
            while consumer.assignment().map_or(0, |a| a.count()) < usize::try_from(partitions)? {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(60), assigned)
            .await
            .context("the baseline reader was not assigned its partitions within 60 s")??;
        Some(reading)
    } else {
        None
    };
    let sample = podium_testkit::QuizLog::play("baseline-quiz-0000000000000000000", 1, 1, 1.0, 1)?;
    let answer = sample
        .rounds
        .first()
        .and_then(|r| r.answers.first())
        .context("a sample answer")?;
    let payload = podium_schemas::Codec::new().encode(answer)?;
    let producer = match load {
        Load::Closed(settings) => {
            baseline::raw_producer(
                &kafka,
                &topic,
                payload,
                settings.in_flight,
                settings.linger_ms,
                plan.baseline,
            )
            .await?
        }
        Load::Open { rate, deliveries } => {
            let recorded = baseline::raw_producer_at_rate(
                &kafka,
                &topic,
                payload,
                rate,
                plan.baseline,
                deliveries.clone(),
            )
            .await?;
            deliveries.settle(Duration::from_secs(5)).await;
            recorded
        }
    };
    if let Some(reader) = reader {
        // Dropped before its broker stops, so it does not log the broker going away.
        reader.abort();
        let _ = reader.await;
    }
    eprintln!(
        "  {name:<14} {:.0} records/s, p50 {:.2} ms, p99 {:.2} ms",
        producer.per_second, producer.latency.p50_ms, producer.latency.p99_ms
    );
    Ok(producer)
}

/// The hello-world baseline's server, in a process of its own, once it answers.
async fn hello_world_server(
    stack: &Stack,
    bin_dir: &Path,
    http: &reqwest::Client,
) -> Result<(std::process::Child, SocketAddr)> {
    let port = podium_testkit::free_port()?;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = Command::new(bin_dir.join("podium-bench"))
        .args(["hello-world", "--listen", &listen.to_string()])
        .args(["--redis", &stack.redis.url()])
        .stdin(Stdio::null())
        .spawn()
        .context("starting the hello-world baseline")?;
    let url = format!("http://{listen}/");
    for _ in 0..200 {
        if http.get(&url).send().await.is_ok() {
            return Ok((server, listen));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    bail!("the hello-world baseline did not start")
}

/// The reads phase's readers on the hello-world's `/`.
async fn hello_world_loop(http: &reqwest::Client, plan: &Plan, listen: &SocketAddr) -> Recorded {
    let url = format!("http://{listen}/");
    baseline::get_loop(
        http,
        plan.read_in_flight,
        plan.baseline,
        std::sync::Arc::new(move || url.clone()),
    )
    .await
}

/// The hello-world again, just before the reads: the run is long, and on this shared machine
/// the one measured at its start can stand for another hour than the reads'.
pub async fn hello_world_again(
    stack: &Stack,
    plan: &Plan,
    bin_dir: &Path,
    http: &reqwest::Client,
) -> Result<Recorded> {
    let (mut server, listen) = hello_world_server(stack, bin_dir, http).await?;
    let again = hello_world_loop(http, plan, &listen).await;
    let _ = server.kill();
    let _ = server.wait();
    eprintln!("  hello-world    {:.0} requests/s", again.per_second);
    Ok(again)
}

/// Measures the three raw components, on the stack's own broker and Redis.
pub async fn measure_baselines(
    stack: &Stack,
    plan: &Plan,
    bin_dir: &Path,
    http: &reqwest::Client,
) -> Result<Baselines> {
    // A broker of its own, as the stack's: a broker slows as its database grows, so records
    // written here would slow every phase after it.
    let broker = Broker::start()
        .await
        .context("starting a broker for the baseline")?;
    let producer = producer_baseline(&broker, plan, "producer", false).await?;
    drop(broker);
    let broker = Broker::start()
        .await
        .context("starting a broker for the baseline")?;
    let producer_with_reader = producer_baseline(&broker, plan, "with-reader", true).await?;
    drop(broker);
    let mut producer_with_reader_at = Vec::new();
    for &in_flight in &plan.more_in_flight {
        let broker = Broker::start()
            .await
            .context("starting a broker for the baseline")?;
        let name = format!("with-reader-{in_flight}");
        let recorded = producer_baseline_at(
            &broker,
            plan,
            &name,
            true,
            Load::Closed(ProducerSettings::at(in_flight)),
        )
        .await?;
        producer_with_reader_at.push((in_flight, recorded));
        drop(broker);
    }

    let mut redis = stack.redis.connection().await?;
    let zincrby =
        baseline::pipelined_zincrby(&mut redis, "bench:zincrby", 1_000_000, 1000, plan.baseline)
            .await?;
    eprintln!("  redis          {:.0} ZINCRBY/s", zincrby.ops_per_second);

    let (mut server, listen) = hello_world_server(stack, bin_dir, http).await?;
    let hello_world = hello_world_loop(http, plan, &listen).await;
    let bare_streams = bare_streams(&listen, server.id(), plan.streams).await;
    let bare_rank = bare_rank(http, &mut redis, &listen, plan).await;
    let _ = server.kill();
    let _ = server.wait();
    eprintln!("  hello-world    {:.0} requests/s", hello_world.per_second);
    Ok(Baselines {
        producer,
        producer_with_reader,
        producer_after: None,
        producer_with_reader_again: None,
        hello_world_before_reads: None,
        redis: zincrby,
        hello_world,
        consumer: None,
        producer_with_reader_at,
        bare_streams: match bare_streams {
            Ok(bare) => Some(bare),
            Err(e) => {
                eprintln!("  bare SSE       not measured: {e:#}");
                None
            }
        },
        producer_open: Vec::new(),
        delivered_open: Vec::new(),
        bare_rank: match bare_rank {
            Ok(recorded) => Some(recorded),
            Err(e) => {
                eprintln!("  bare rank      not measured: {e:#}");
                None
            }
        },
    })
}

/// Rank lookups of random players from the bare axum + Redis route, on a board of the reads
/// phase's size.
async fn bare_rank(
    http: &reqwest::Client,
    redis: &mut redis::aio::MultiplexedConnection,
    listen: &SocketAddr,
    plan: &Plan,
) -> Result<Recorded> {
    let players = plan.read_players;
    eprintln!("  bare rank      seeding a board of {players} players");
    baseline::seed_bare_board(redis, players).await?;
    let base = format!("http://{listen}/rank/");
    let recorded = baseline::get_loop(
        http,
        plan.read_in_flight,
        plan.baseline,
        std::sync::Arc::new(move || {
            let p = rand::Rng::random_range(&mut rand::rng(), 0..players);
            format!("{base}p{p:06}")
        }),
    )
    .await;
    baseline::drop_bare_board(redis, players).await?;
    eprintln!(
        "  bare rank      {:.0} lookups/s (axum + one Redis pipeline)",
        recorded.per_second
    );
    Ok(recorded)
}

/// The hello-world server's memory for `streams` idle SSE streams, as the fan-out phase
/// measures the query API's.
async fn bare_streams(
    listen: &SocketAddr,
    pid: u32,
    streams: usize,
) -> Result<baseline::BareStreams> {
    // A client of its own: the streams hold their connections until aborted.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let before = crate::stack::rss(pid)?;
    let held = baseline::hold_streams(&http, &format!("http://{listen}/events"), streams).await?;
    // Let the server settle its buffers before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = crate::stack::rss(pid)?;
    for stream in &held {
        stream.abort();
    }
    let bytes_per_stream = after.saturating_sub(before) / u64::try_from(streams.max(1))?;
    eprintln!(
        "  bare SSE       {streams} idle streams, {:.1} KiB each",
        bytes_per_stream as f64 / 1024.0
    );
    Ok(baseline::BareStreams {
        streams,
        bytes_per_stream,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Ingest {
    /// Closed loop: as fast as the stack acknowledges.
    pub max: Recorded,
    /// Closed loops at more answers in flight.
    pub more: Vec<InFlight>,
    /// Open loop at half of `max`.
    pub half_rate: Recorded,
    /// Open loops at the seed's peak and beyond, answers sent per second.
    #[serde(default)]
    pub open_loops: Vec<OpenLoop>,
    /// One quiz of 50 players, each answering as each question starts, the host starting the
    /// next when all are back: every answer waits for a question change.
    pub one_quiz: Recorded,
    /// The host's question starts during both: each closes the question before it.
    pub question_starts: Recorded,
    /// A closed loop straight to the command API, then the same through nginx.
    #[serde(default)]
    pub gateway: Option<ThroughGateway>,
}

/// Ingest through the gateway beside the same loop without it, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughGateway {
    pub in_flight: usize,
    pub direct: Recorded,
    pub through: Recorded,
}

/// An open loop sending `rate` answers a second whatever the answers take.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub rate: f64,
    pub recorded: Recorded,
}

/// A closed loop at `in_flight` answers in flight.
#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    pub in_flight: usize,
    pub recorded: Recorded,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub revision: String,
    pub build: String,
    pub started_at: String,
    pub machine: Machine,
    pub plan: Plan,
    #[serde(flatten)]
    pub measured: Measured,
}

/// One line of the table: a figure, its baseline, and the guide target if there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub figure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
}

fn line(figure: &str, value: String, baseline: String, ratio: String, target: &str) -> Line {
    Line {
        figure: figure.into(),
        value,
        baseline,
        ratio,
        target: target.into(),
    }
}

/// A figure whose baseline could not be measured in this run.
fn not_measured(figure: &str) -> Line {
    line(
        figure,
        String::new(),
        "not measured".into(),
        String::new(),
        "",
    )
}

/// A closed loop's share of slot time spent waiting for a quiz's next question.
fn waiting(recorded: &Recorded, slots: usize) -> String {
    format!(
        "{:.0}% waiting for a question",
        recorded.waiting_share(slots) * 100.0
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

impl Results {
    /// The table rows, each Podium figure beside its raw baseline.
    pub fn lines(&self) -> Vec<Line> {
        let b = &self.measured.baselines;
        let i = &self.measured.ingest;
        let f = &self.measured.freshness;
        let r = &self.measured.reads;
        let o = &self.measured.fan_out;
        let ingest_ratio = ratio(i.max.per_second, b.producer.per_second);
        let (bracket, lowest, highest) = b.with_reader_bracket();
        let with_reader = ratio(i.max.per_second, bracket);
        // The reads against the hello-world measured just before them, when there is one.
        let hello = b.hello_world_for_reads();
        let hello_cell = match &b.hello_world_before_reads {
            Some(before) => format!(
                "{:.0} hello-world req/s just before ({:.0} at the start)",
                before.per_second, b.hello_world.per_second
            ),
            None => format!("{:.0} hello-world req/s", b.hello_world.per_second),
        };
        // The baseline's cell: the mean of the runs before and after the loop, and both.
        let bracketed = match &b.producer_with_reader_again {
            Some(after) => format!(
                "{bracket:.0} rec/s with reader ({:.0} before, {:.0} after; {:.2}–{:.2})",
                b.producer_with_reader.per_second,
                after.per_second,
                ratio(i.max.per_second, highest),
                ratio(i.max.per_second, lowest)
            ),
            None => format!("{bracket:.0} rec/s with reader"),
        };
        let errors = |r: &Recorded| r.errors.values().sum::<u64>();
        let mut lines = vec![
            line(
                "ingest, answers/s (max)",
                format!("{:.0}", i.max.per_second),
                format!("{:.0} producer rec/s", b.producer.per_second),
                format!("{ingest_ratio:.2}"),
                &format!("≥ 0.60: {}", met(ingest_ratio >= 0.6)),
            ),
            line(
                "ingest vs producer with a live reader",
                format!(
                    "{:.0} ({})",
                    i.max.per_second,
                    waiting(&i.max, self.plan.in_flight)
                ),
                bracketed,
                format!("{with_reader:.2}"),
                &format!("≥ 0.80: {}", met(with_reader >= 0.8)),
            ),
            // The same closed loop on other quizzes later in the run: the direct loop of the
            // nginx phase, on quizzes of a thousand players, against the same baseline.
            match &i.gateway {
                Some(g) => {
                    let r = ratio(g.direct.per_second, bracket);
                    line(
                        &format!(
                            "ingest, {} in flight, quizzes of a thousand (p50 / p99)",
                            g.in_flight
                        ),
                        format!(
                            "{:.0} ({:.1} / {:.1} ms, {})",
                            g.direct.per_second,
                            g.direct.latency.p50_ms,
                            g.direct.latency.p99_ms,
                            waiting(&g.direct, g.in_flight)
                        ),
                        format!("{bracket:.0} rec/s with reader at {}", self.plan.in_flight),
                        format!("{r:.2}"),
                        &format!("≥ 0.80: {}", met(r >= 0.8)),
                    )
                }
                None => not_measured("ingest on quizzes of a thousand"),
            },
            line(
                "bare producer at the end, rec/s",
                b.producer_after
                    .as_ref()
                    .map_or_else(String::new, |p| format!("{:.0}", p.per_second)),
                format!("{:.0} at the start", b.producer.per_second),
                b.producer_after.as_ref().map_or_else(String::new, |p| {
                    format!("{:.2}", ratio(p.per_second, b.producer.per_second))
                }),
                "",
            ),
            line(
                "submit p50 / p99 / p99.9 at max",
                format!(
                    "{:.1} / {:.1} / {:.1} ms",
                    i.max.latency.p50_ms, i.max.latency.p99_ms, i.max.latency.p999_ms
                ),
                format!(
                    "{:.1} / {:.1} ms produce",
                    b.producer.latency.p50_ms, b.producer.latency.p99_ms
                ),
                format!(
                    "{:.1}",
                    ratio(i.max.latency.p99_ms, b.producer.latency.p99_ms)
                ),
                "",
            ),
            line(
                "one quiz of 50, answers/s (p50 / p99)",
                format!(
                    "{:.0} ({:.1} / {:.1} ms)",
                    i.one_quiz.per_second, i.one_quiz.latency.p50_ms, i.one_quiz.latency.p99_ms
                ),
                format!("{:.0} producer rec/s", b.producer.per_second),
                format!("{:.2}", ratio(i.one_quiz.per_second, b.producer.per_second)),
                "",
            ),
            line(
                "host question start p50 / p99",
                format!(
                    "{:.1} / {:.1} ms ({} starts)",
                    i.question_starts.latency.p50_ms,
                    i.question_starts.latency.p99_ms,
                    i.question_starts.latency.count
                ),
                format!(
                    "{:.1} / {:.1} ms produce",
                    b.producer.latency.p50_ms, b.producer.latency.p99_ms
                ),
                format!(
                    "{:.1}",
                    ratio(i.question_starts.latency.p50_ms, b.producer.latency.p50_ms)
                ),
                "",
            ),
            {
                let bare = b.producer_at(i.half_rate.per_second);
                line(
                    "submit p50 / p99 / p99.9 at half",
                    format!(
                        "{:.1} / {:.1} / {:.1} ms",
                        i.half_rate.latency.p50_ms,
                        i.half_rate.latency.p99_ms,
                        i.half_rate.latency.p999_ms
                    ),
                    bare.map_or_else(
                        || format!("{:.0} answers/s sent", i.half_rate.per_second),
                        |bare| {
                            format!(
                                "bare producer p99 {:.1} ms at {:.0}/s",
                                bare.latency.p99_ms, bare.per_second
                            )
                        },
                    ),
                    bare.map_or_else(String::new, |bare| {
                        format!(
                            "{:.1}",
                            ratio(i.half_rate.latency.p99_ms, bare.latency.p99_ms)
                        )
                    }),
                    &format!("p99 ≤ 20 ms: {}", met(i.half_rate.latency.p99_ms <= 20.0)),
                )
            },
            line(
                "submit errors (every ingest phase)",
                format!(
                    "{}",
                    errors(&i.max)
                        + i.more.iter().map(|m| errors(&m.recorded)).sum::<u64>()
                        + i.open_loops
                            .iter()
                            .map(|o| errors(&o.recorded))
                            .sum::<u64>()
                        + errors(&i.half_rate)
                        + errors(&i.one_quiz)
                        + i.gateway
                            .as_ref()
                            .map_or(0, |g| errors(&g.direct) + errors(&g.through))
                ),
                format!("{} producer errors", errors(&b.producer)),
                String::new(),
                "",
            ),
            match &i.gateway {
                Some(g) => line(
                    &format!("ingest through nginx, {} in flight (p99)", g.in_flight),
                    format!(
                        "{:.0}/s ({:.1} ms), {} errors",
                        g.through.per_second,
                        g.through.latency.p99_ms,
                        errors(&g.through)
                    ),
                    format!(
                        "{:.0}/s direct ({:.1} ms), same run",
                        g.direct.per_second, g.direct.latency.p99_ms
                    ),
                    format!("{:.2}", ratio(g.through.per_second, g.direct.per_second)),
                    "",
                ),
                None => not_measured("ingest through nginx"),
            },
            line(
                "ack → query API, p50 / p99",
                format!(
                    "{:.1} / {:.1} ms",
                    f.visible.latency.p50_ms, f.visible.latency.p99_ms
                ),
                format!("{} probes", f.probes),
                String::new(),
                "",
            ),
            {
                let bare = b.delivered_at(i.half_rate.per_second);
                line(
                    "ack → SSE, p50 / p99",
                    format!(
                        "{:.1} / {:.1} ms",
                        f.sse.latency.p50_ms, f.sse.latency.p99_ms
                    ),
                    bare.map_or_else(
                        || format!("{} missed", errors(&f.sse)),
                        |bare| {
                            format!(
                                "{} missed; bare reader p99 {:.1} ms after the ack",
                                errors(&f.sse),
                                bare.latency.p99_ms
                            )
                        },
                    ),
                    bare.map_or_else(String::new, |bare| {
                        format!("{:.1}", ratio(f.sse.latency.p99_ms, bare.latency.p99_ms))
                    }),
                    &format!("p99 ≤ 100 ms: {}", met(f.sse.latency.p99_ms <= 100.0)),
                )
            },
            {
                let top10 = ratio(r.top10.per_second, hello.per_second);
                line(
                    &format!("top-10 reads/s ({} players)", r.players),
                    format!("{:.0}", r.top10.per_second),
                    hello_cell.clone(),
                    format!("{top10:.2}"),
                    &format!("≥ 0.60 of hello-world: {}", met(top10 >= 0.6)),
                )
            },
            line(
                "copy of the board loaded (ADR 0013)",
                r.board_copy_seconds
                    .map_or_else(|| "not loaded".to_owned(), |s| format!("{s:.1} s")),
                format!("{} players", r.players),
                String::new(),
                "",
            ),
            {
                let rank = ratio(r.rank.per_second, hello.per_second);
                line(
                    "rank lookups/s",
                    format!("{:.0}", r.rank.per_second),
                    hello_cell,
                    format!("{rank:.2}"),
                    &format!("≥ 0.60 of hello-world: {}", met(rank >= 0.6)),
                )
            },
            match &b.bare_rank {
                Some(bare) => line(
                    "rank lookups vs bare axum + Redis",
                    format!("{:.0}", r.rank.per_second),
                    format!("{:.0} bare lookups/s", bare.per_second),
                    format!("{:.2}", ratio(r.rank.per_second, bare.per_second)),
                    &format!(
                        "≥ 0.8 of the bare lookup: {}",
                        met(ratio(r.rank.per_second, bare.per_second) >= 0.8)
                    ),
                ),
                None => not_measured("rank lookups vs bare axum + Redis"),
            },
            match &r.rank_read_model {
                Some(alone) => line(
                    "rank lookups vs the read model alone",
                    format!("{:.0}", r.rank.per_second),
                    format!("{:.0} lookups/s without HTTP", alone.per_second),
                    format!("{:.2}", ratio(r.rank.per_second, alone.per_second)),
                    "",
                ),
                None => not_measured("rank lookups vs the read model alone"),
            },
            line(
                "SSE streams held",
                format!(
                    "{} of {}",
                    o.connections as u64 - o.connect_failures - o.stream_errors,
                    o.connections
                ),
                format!(
                    "{} missed, {} resyncs, {} disconnects",
                    o.missed, o.resyncs, o.disconnects
                ),
                String::new(),
                &format!(
                    "10,000: {}",
                    met(o.connections >= 10_000 && o.connect_failures == 0 && o.missed == 0)
                ),
            ),
            line(
                "SSE delivery p50 / p99",
                format!(
                    "{:.1} / {:.1} ms",
                    o.delivery.latency.p50_ms, o.delivery.latency.p99_ms
                ),
                format!("{} deliveries", o.delivery.ok),
                String::new(),
                "",
            ),
            match &b.bare_streams {
                Some(bare) => line(
                    "query API memory per stream",
                    format!("{:.1} KiB", o.bytes_per_connection as f64 / 1024.0),
                    format!(
                        "{:.1} KiB a bare axum SSE stream",
                        bare.bytes_per_stream as f64 / 1024.0
                    ),
                    format!(
                        "{:.2}",
                        ratio(o.bytes_per_connection as f64, bare.bytes_per_stream as f64)
                    ),
                    &format!("≤ 8 KiB: {}", met(o.bytes_per_connection <= 8 * 1024)),
                ),
                None => line(
                    "query API memory per stream",
                    format!("{:.1} KiB", o.bytes_per_connection as f64 / 1024.0),
                    format!("{} MiB RSS held", o.query_api_rss_connected_bytes >> 20),
                    String::new(),
                    "",
                ),
            },
            line(
                "read-model fold, events/s (seeding)",
                format!("{:.0}", self.measured.seeded.fold_events_per_second),
                format!("{:.0} ZINCRBY/s", b.redis.ops_per_second),
                format!(
                    "{:.3}",
                    ratio(
                        self.measured.seeded.fold_events_per_second,
                        b.redis.ops_per_second
                    )
                ),
                "",
            ),
            line(
                "rebuild, events/s",
                match &self.measured.rebuild.error {
                    None => format!("{:.0}", self.measured.rebuild.events_per_second),
                    Some(_) => "failed".into(),
                },
                format!("{:.0} ZINCRBY/s", b.redis.ops_per_second),
                format!(
                    "{:.3}",
                    ratio(
                        self.measured.rebuild.events_per_second,
                        b.redis.ops_per_second
                    )
                ),
                "",
            ),
            match &b.consumer {
                Some(c) if c.error.is_none() && self.measured.rebuild.error.is_none() => {
                    let r = ratio(
                        self.measured.rebuild.events_per_second,
                        c.records_per_second,
                    );
                    line(
                        "rebuild vs a bare consumer of the log",
                        format!("{:.0}", self.measured.rebuild.events_per_second),
                        format!("{:.0} rec/s read", c.records_per_second),
                        format!("{r:.2}"),
                        &format!("≥ 0.80: {}", met(r >= 0.8)),
                    )
                }
                Some(c) => line(
                    "rebuild vs a bare consumer of the log",
                    String::new(),
                    c.error.clone().unwrap_or_else(|| "rebuild failed".into()),
                    String::new(),
                    "",
                ),
                None => not_measured("rebuild vs a bare consumer of the log"),
            },
        ];
        // The closed loops at more in flight, after the first one's lines, each against the
        // producer at its own concurrency when the run measured it.
        for (n, m) in i.more.iter().enumerate() {
            let r = &m.recorded;
            let (baseline, at) = b
                .producer_with_reader_at
                .iter()
                .find(|(at, _)| *at == m.in_flight)
                .map_or((&b.producer_with_reader, self.plan.in_flight), |(at, p)| {
                    (p, *at)
                });
            lines.insert(
                3 + n,
                line(
                    &format!("ingest, {} in flight (p50 / p99)", m.in_flight),
                    format!(
                        "{:.0} ({:.1} / {:.1} ms, {})",
                        r.per_second,
                        r.latency.p50_ms,
                        r.latency.p99_ms,
                        waiting(r, m.in_flight)
                    ),
                    format!("{:.0} rec/s with reader at {at}", baseline.per_second),
                    format!("{:.2}", ratio(r.per_second, baseline.per_second)),
                    "",
                ),
            );
        }
        // The open loops at fixed rates, after the closed loops.
        for (n, o) in i.open_loops.iter().enumerate() {
            let r = &o.recorded;
            let held = r.per_second >= 0.98 * o.rate && r.latency.p99_ms <= 50.0 && errors(r) == 0;
            // The bare producer at the same rate when it was measured; the ratio is to the
            // baseline the line names.
            let (baseline, against) = match b.producer_at(o.rate) {
                Some(bare) => (
                    format!(
                        "bare producer at the rate: {:.0} rec/s, p99 {:.1} ms",
                        bare.per_second, bare.latency.p99_ms
                    ),
                    bare,
                ),
                None => (
                    format!("{:.0} rec/s with reader", b.producer_with_reader.per_second),
                    &b.producer_with_reader,
                ),
            };
            lines.insert(
                3 + i.more.len() + n,
                line(
                    &format!("ingest, open loop at {:.0}/s (p99 / p99.9)", o.rate),
                    format!(
                        "{:.0} acked/s ({:.1} / {:.1} ms), {} errors",
                        r.per_second,
                        r.latency.p99_ms,
                        r.latency.p999_ms,
                        errors(r)
                    ),
                    baseline,
                    format!("{:.2}", ratio(r.per_second, against.per_second)),
                    &format!("rate held, p99 ≤ 50 ms, 0 errors: {}", met(held)),
                ),
            );
        }
        lines.extend(self.ceiling_lines());
        lines
    }

    /// The ceiling's lines: each loop on the mock broker beside the same loop on nisshi, and
    /// what an answer cost each process in the fastest closed loop.
    fn ceiling_lines(&self) -> Vec<Line> {
        let c = &self.measured.ceiling;
        let i = &self.measured.ingest;
        if let Some(e) = &c.error {
            return vec![line(
                "ceiling on the mock broker",
                "failed".into(),
                e.clone(),
                String::new(),
                "",
            )];
        }
        let on_nisshi: Vec<(usize, &Recorded)> = std::iter::once((self.plan.in_flight, &i.max))
            .chain(i.more.iter().map(|m| (m.in_flight, &m.recorded)))
            .collect();
        let mut lines = Vec::new();
        for (in_flight, r) in c.closed(self.plan.in_flight) {
            let nisshi = on_nisshi
                .iter()
                .find(|(n, _)| *n == in_flight)
                .map(|(_, r)| *r);
            lines.push(line(
                &format!("ceiling, {in_flight} in flight on the mock broker (p50 / p99)"),
                format!(
                    "{:.0} ({:.1} / {:.1} ms)",
                    r.per_second, r.latency.p50_ms, r.latency.p99_ms
                ),
                nisshi.map_or_else(String::new, |n| format!("{:.0} on nisshi", n.per_second)),
                nisshi.map_or_else(String::new, |n| {
                    format!("{:.2}", ratio(r.per_second, n.per_second))
                }),
                "",
            ));
        }
        for o in &c.open_loops {
            let r = &o.recorded;
            let nisshi = i.open_loops.iter().find(|n| n.rate == o.rate);
            lines.push(line(
                &format!(
                    "ceiling, open loop at {:.0}/s on the mock broker (p99)",
                    o.rate
                ),
                format!(
                    "{:.0} acked/s ({:.1} ms), {} errors",
                    r.per_second,
                    r.latency.p99_ms,
                    r.errors.values().sum::<u64>()
                ),
                nisshi.map_or_else(String::new, |n| {
                    format!(
                        "{:.0} acked/s ({:.1} ms) on nisshi",
                        n.recorded.per_second, n.recorded.latency.p99_ms
                    )
                }),
                nisshi.map_or_else(String::new, |n| {
                    format!("{:.2}", ratio(r.per_second, n.recorded.per_second))
                }),
                "",
            ));
        }
        let fastest = c
            .closed(self.plan.in_flight)
            .into_iter()
            .max_by(|a, b| a.1.per_second.total_cmp(&b.1.per_second));
        if let Some((in_flight, r)) = fastest {
            let phase = if in_flight == self.plan.in_flight && c.max.is_some() {
                "ingest max".to_owned()
            } else {
                format!("ingest {in_flight}")
            };
            let costs: Vec<String> = c
                .cost_per_answer(&phase, r.per_second)
                .into_iter()
                .map(|(name, us)| format!("{name} {us:.0}"))
                .collect();
            lines.push(line(
                "CPU µs per answer, ceiling's fastest loop",
                costs.join(", "),
                format!("{in_flight} in flight, {:.0} answers/s", r.per_second),
                String::new(),
                "",
            ));
        }
        lines
    }

    pub fn print_table(&self) {
        let lines = self.lines();
        let width = |f: fn(&Line) -> &str| {
            lines
                .iter()
                .map(|l| f(l).chars().count())
                .max()
                .unwrap_or(0)
        };
        let w = [
            width(|l| &l.figure),
            width(|l| &l.value),
            width(|l| &l.baseline),
            width(|l| &l.ratio).max(5),
        ];
        println!(
            "\nPodium {} ({} build), {} profile, {} × {}, {}",
            self.revision,
            self.build,
            serde_json::to_value(self.plan.profile)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.machine.cores,
            self.machine.cpu,
            self.started_at
        );
        println!(
            "{:<a$}  {:>b$}  {:<c$}  {:>d$}  target",
            "figure",
            "value",
            "baseline (same run)",
            "ratio",
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3]
        );
        for l in &lines {
            println!(
                "{:<a$}  {:>b$}  {:<c$}  {:>d$}  {}",
                l.figure,
                l.value,
                l.baseline,
                l.ratio,
                l.target,
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3]
            );
        }
        if self.plan.profile == Profile::Smoke || self.build == "debug" {
            println!(
                "\n(a smoke run or a debug build: these figures show that the bench works, nothing more)"
            );
        }
    }

    /// Fails if a phase measured nothing: the bench itself is broken, whatever the speed.
    pub fn check(&self) -> Result<()> {
        let empty = [
            ("ingest at max", self.measured.ingest.max.ok),
            ("ingest at half", self.measured.ingest.half_rate.ok),
            ("ack → query API", self.measured.freshness.visible.ok),
            ("ack → SSE", self.measured.freshness.sse.ok),
            ("SSE fan-out deliveries", self.measured.fan_out.delivery.ok),
            ("top-10 reads", self.measured.reads.top10.ok),
            ("rank lookups", self.measured.reads.rank.ok),
            ("rebuilt events", self.measured.rebuild.events),
            (
                "ingest on the mock broker",
                self.measured.ceiling.max.as_ref().map_or(0, |r| r.ok),
            ),
        ];
        let broken: Vec<&str> = empty
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(what, _)| *what)
            .collect();
        if !broken.is_empty() {
            bail!("these phases measured nothing: {}", broken.join(", "));
        }
        Ok(())
    }

    /// Writes `<profile>.json` and `<profile>.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = serde_json::to_value(self.plan.profile)?
            .as_str()
            .unwrap_or("run")
            .to_owned();
        let json = dir.join(format!("{name}.json"));
        let mut value = serde_json::to_value(self)?;
        value["table"] = serde_json::to_value(self.lines())?;
        std::fs::write(&json, serde_json::to_string_pretty(&value)?)?;
        let svg = dir.join(format!("{name}.svg"));
        self.chart(&svg)?;
        eprintln!("\nresults: {}\nchart:   {}", json.display(), svg.display());
        Ok(())
    }

    /// Throughput and latency of both ingest phases over time, one point per second.
    fn chart(&self, path: &Path) -> Result<()> {
        let phases = [
            ("max (closed loop)", &self.measured.ingest.max),
            ("half (open loop)", &self.measured.ingest.half_rate),
        ];
        let offset = self.measured.ingest.max.timeline.len() as f64;
        let series = |pick: fn(&crate::measure::Second) -> f64| -> Vec<Vec<(f64, f64)>> {
            phases
                .iter()
                .enumerate()
                .map(|(k, (_, r))| {
                    r.timeline
                        .iter()
                        .map(|s| (s.at as f64 + if k == 1 { offset } else { 0.0 }, pick(s)))
                        .collect()
                })
                .collect()
        };
        let throughput = series(|s| s.ok as f64);
        let p99 = series(|s| s.p99_ms);
        let p50 = series(|s| s.p50_ms);
        let top =
            |v: &[Vec<(f64, f64)>]| v.iter().flatten().map(|p| p.1).fold(1.0_f64, f64::max) * 1.1;
        let x_end = (offset + self.measured.ingest.half_rate.timeline.len() as f64).max(1.0);
        let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (upper, lower) = root.split_vertically(350);
        let title = format!(
            "Podium {} ({} profile): answers acknowledged per second",
            self.revision,
            serde_json::to_value(self.plan.profile)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_end, 0.0..top(&throughput))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("answers/s")
            .draw()
            .map_err(plot_error)?;
        for (k, points) in throughput.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let _ = chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(phases[k].0)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&lower)
            .caption(
                "submit latency, ms (p50 thin, p99 thick)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_end, 0.0..top(&p99))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()
            .map_err(plot_error)?;
        for k in 0..phases.len() {
            let color = Palette99::pick(k).to_rgba();
            let _ = chart
                .draw_series(LineSeries::new(p99[k].clone(), color.stroke_width(2)))
                .map_err(plot_error)?;
            let _ = chart
                .draw_series(LineSeries::new(p50[k].clone(), color.stroke_width(1)))
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
        Ok(())
    }
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}
