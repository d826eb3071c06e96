//! Podium's benchmark: starts the stack (the nisshi broker, Redis and the three release binaries), drives it
//! over HTTP and SSE, measures the raw broker, Redis and axum in the same run, and reports every
//! figure beside its baseline as a ratio. See docs/performance.md.

pub mod baseline;

/// Players of the one-quiz phase: the workload a peer implementation was measured with, 50
/// players answering each question as it starts, the host moving on when all are back.
pub const PEER_PLAYERS: usize = 50;
pub mod chaos;
pub mod failover;
pub mod ingest;
pub mod measure;
pub mod mock_broker;
pub mod podium;
pub mod probe;
pub mod reads;
pub mod report;
pub mod restart;
pub mod stack;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use podium_runtime::RedisArgs;

use crate::podium::{Api, Game, create_games};
use crate::report::{Results, Run};

#[derive(Debug, Parser)]
#[command(
    name = "podium-bench",
    version,
    about = "Podium's benchmark: starts the whole stack, drives it over HTTP and SSE, and reports \
             ingest, freshness, reads, fan-out and rebuild beside the raw broker, Redis and axum \
             measured in the same run.",
    long_about = None,
    after_help = "Run it through deploy/local/bench.sh, which installs what is missing and builds \
                  the release binaries first. Results go to <out>/<profile>.json and the chart to \
                  <out>/<profile>.svg."
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Break the stack on purpose (broker, projector, Redis, command API), mid-burst, and
    /// record how long each recovery takes: until answers are accepted again and until the
    /// read models equal a fold of the log. Results go to <out>/chaos.json.
    Chaos {
        /// Where the services' binaries are; by default, beside this one.
        #[arg(long)]
        bin_dir: Option<PathBuf>,

        /// Directory for the JSON results.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Three command APIs in a group (ADR 0011); kill -9 one while its quizzes are answered, and
    /// record how long until an answer to one of them is accepted through a survivor, and until
    /// the survivors serve every shard. Results go to <out>/failover.json.
    Failover {
        /// Where the services' binaries are; by default, beside this one.
        #[arg(long)]
        bin_dir: Option<PathBuf>,

        /// Directory for the JSON results.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,

        /// Events of finished quizzes written to the log before the group starts (0: none).
        /// The survivors' claims read each shard's snapshot and the log after it (ADR 0012),
        /// so the window should not grow with them; the report says what each claim read.
        #[arg(long, default_value_t = 0)]
        log_events: usize,
    },
    /// Restart the command API on logs of finished quizzes of each size, four ways (snapshots
    /// off, first start, after kill -9, after a clean stop), and record how long each start
    /// takes and the memory it holds. Results go to <out>/restart.json.
    Restart {
        /// Where the services' binaries are; by default, beside this one.
        #[arg(long)]
        bin_dir: Option<PathBuf>,

        /// Directory for the JSON results.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,

        /// Sizes of the log, in events, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [100_000, 1_000_000])]
        events: Vec<usize>,
    },
    /// The producer settings the command API's defaults come from: the bare producer with a
    /// live reader, on a fresh broker each time, at each linger, number in flight and
    /// partition count. Results go to <out>/settings.json.
    Settings {
        /// Directory for the JSON results.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,

        /// Values of the producer's `linger.ms` to try, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2, 5, 10])]
        lingers: Vec<u64>,

        /// Records in flight to try each linger at, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [64, 512])]
        in_flight: Vec<usize>,

        /// Partitions of the measured topic (the answers topic's), comma-separated; try each
        /// with each linger and number in flight.
        #[arg(long, value_delimiter = ',', default_values_t = [podium_schemas::topics::ANSWERS_PARTITIONS])]
        partitions: Vec<i32>,

        /// Seconds each combination is measured for.
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    /// Serve a bare axum hello-world: the bench's HTTP baseline, started as a child process.
    #[command(hide = true)]
    HelloWorld {
        #[arg(long)]
        listen: SocketAddr,
        /// Also serve `/rank/{player}` from this Redis: the bare rank lookup.
        #[arg(long)]
        redis: Option<String>,
    },
    /// Serve librdkafka's mock cluster with the event topics under `topic_prefix`: the broker
    /// of the ceiling phases, started as a child process.
    #[command(hide = true)]
    MockBroker {
        #[arg(long)]
        topic_prefix: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// How long and how large: `quick` takes about ten minutes, `full` about forty with a
    /// million-player quiz and 10,000 streams (nearly half of it reading the log it grew);
    /// `smoke` runs each phase for a few seconds to show that everything works, and its figures
    /// mean nothing.
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,

    /// Where the services' binaries are; by default, beside this one.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,

    /// Directory for the JSON results and the SVG chart.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,

    /// Answers in flight in the closed-loop ingest phase; by default the profile's.
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// SSE streams in the fan-out phase; by default the profile's.
    #[arg(long)]
    pub streams: Option<usize>,

    /// Players of the quiz the reads run on; by default the profile's.
    #[arg(long)]
    pub read_players: Option<usize>,

    /// Small quizzes (10 players each) beside the huge one in the ingest phases; by default
    /// the profile's. Each of their question changes is a host command the answers wait for,
    /// so 0 shows ingest without most of those stalls.
    #[arg(long)]
    pub small_quizzes: Option<usize>,

    /// Runs the command API as a group of one (`PODIUM_COMMAND_INSTANCES=group`, ADR 0011): it
    /// owns every shard, stamps what it appends and checks its epoch after every
    /// acknowledgement, so the figures show what sharing the quizzes costs one instance.
    #[arg(long)]
    pub command_group: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Smoke,
    Quick,
    Full,
}

/// The sizes and durations of a profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub profile: Profile,
    pub baseline: Duration,
    pub ingest: Duration,
    pub in_flight: usize,
    /// More closed loops after the first, at these numbers in flight: a stadium has thousands
    /// of phones.
    pub more_in_flight: Vec<usize>,
    /// Open loops at these rates (answers a second), each for `open_loop`: the seed's peak is
    /// 6,000.
    pub open_rates: Vec<f64>,
    pub open_loop: Duration,
    /// Players of one more quiz among the open loops' (0: none): the seed's stadium.
    pub open_huge_players: usize,
    pub huge_quiz_players: usize,
    pub small_quizzes: usize,
    pub small_quiz_players: usize,
    pub probes: usize,
    pub read_players: usize,
    pub reads: Duration,
    pub read_in_flight: usize,
    pub streams: usize,
    pub fan_out_probes: usize,
    /// `single`, or `group` (`--command-group`).
    pub command_instances: &'static str,
}

impl Plan {
    pub fn of(args: &RunArgs) -> Self {
        let s = Duration::from_secs;
        let mut plan = match args.profile {
            Profile::Smoke => Self {
                profile: Profile::Smoke,
                baseline: s(2),
                ingest: s(3),
                in_flight: 16,
                more_in_flight: vec![128],
                open_rates: vec![300.0],
                open_loop: s(3),
                open_huge_players: 0,
                huge_quiz_players: 100,
                small_quizzes: 5,
                small_quiz_players: 10,
                probes: 5,
                read_players: 1_000,
                reads: s(2),
                read_in_flight: 8,
                streams: 50,
                fan_out_probes: 3,
                command_instances: "single",
            },
            Profile::Quick => Self {
                profile: Profile::Quick,
                baseline: s(5),
                ingest: s(15),
                in_flight: 64,
                more_in_flight: vec![512],
                open_rates: vec![6_000.0],
                open_loop: s(15),
                open_huge_players: 0,
                huge_quiz_players: 3_000,
                small_quizzes: 100,
                small_quiz_players: 10,
                probes: 100,
                read_players: 100_000,
                reads: s(5),
                read_in_flight: 32,
                streams: 1_000,
                fan_out_probes: 10,
                command_instances: "single",
            },
            Profile::Full => Self {
                profile: Profile::Full,
                baseline: s(10),
                ingest: s(45),
                in_flight: 64,
                more_in_flight: vec![512, 2_048],
                open_rates: vec![6_000.0, 12_000.0],
                open_loop: s(60),
                open_huge_players: 100_000,
                huge_quiz_players: 10_000,
                small_quizzes: 300,
                small_quiz_players: 10,
                probes: 300,
                read_players: 1_000_000,
                reads: s(15),
                read_in_flight: 32,
                streams: 10_000,
                fan_out_probes: 20,
                command_instances: "single",
            },
        };
        if let Some(n) = args.concurrency {
            plan.in_flight = n.max(1);
        }
        if let Some(n) = args.streams {
            plan.streams = n;
        }
        if let Some(n) = args.read_players {
            plan.read_players = n.max(1);
        }
        if let Some(n) = args.small_quizzes {
            plan.small_quizzes = n;
        }
        if args.command_group {
            plan.command_instances = "group";
        }
        plan
    }
}

/// Serves the hello-world baseline until killed.
pub async fn hello_world(listen: SocketAddr, redis: Option<String>) -> Result<()> {
    baseline::serve_hello_world(listen, redis).await
}

/// The directory of the services' binaries: `bin_dir`, or the bench's own.
fn services_dir(bin_dir: Option<&PathBuf>) -> Result<PathBuf> {
    match bin_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("the bench's own directory")?
            .to_path_buf()),
    }
}

/// The chaos run: prints a table of recovery times and writes `<out>/chaos.json`.
pub async fn chaos(bin_dir: Option<&PathBuf>, out: &std::path::Path) -> Result<()> {
    let bin_dir = services_dir(bin_dir)?;
    let revision = report::revision();
    eprintln!("podium-bench: chaos run, revision {revision}");
    step("starting the stack, then breaking it one part at a time");
    let report = chaos::run(&bin_dir, revision).await?;
    save_report(out, "chaos", &report, |r| r.print_table())
}

/// Writes a run's report to `<out>/<name>.json`, then prints its table and where it went.
fn save_report<R: serde::Serialize>(
    out: &std::path::Path,
    name: &str,
    report: &R,
    print_table: impl FnOnce(&R),
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    print_table(report);
    println!("results: {}", path.display());
    Ok(())
}

/// The failover run: prints a table and writes `<out>/failover.json`.
pub async fn failover(
    bin_dir: Option<&PathBuf>,
    out: &std::path::Path,
    log_events: usize,
) -> Result<()> {
    let bin_dir = services_dir(bin_dir)?;
    let revision = report::revision();
    eprintln!("podium-bench: failover run, revision {revision}");
    step("starting three command APIs in a group, then killing one");
    let report = failover::run(&bin_dir, revision, log_events).await?;
    save_report(out, "failover", &report, |r| r.print_table())
}

/// The restart run: prints a table and writes `<out>/restart.json`.
pub async fn restart(
    bin_dir: Option<&PathBuf>,
    out: &std::path::Path,
    events: &[usize],
) -> Result<()> {
    let bin_dir = services_dir(bin_dir)?;
    let revision = report::revision();
    eprintln!("podium-bench: restart run, revision {revision}");
    let report = restart::run(&bin_dir, events, revision).await?;
    save_report(out, "restart", &report, |r| r.print_table())
}

/// One combination of the settings run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    pub linger_ms: u64,
    pub in_flight: usize,
    pub partitions: i32,
    pub recorded: measure::Recorded,
    /// CPU microseconds this process (the producer and its reader) spent per record: what the
    /// setting costs a command API on a machine it shares.
    pub cpu_us_per_record: Option<f64>,
}

/// The settings run: prints a table and writes `<out>/settings.json`.
pub async fn settings(
    out: &std::path::Path,
    lingers: &[u64],
    in_flights: &[usize],
    partition_counts: &[i32],
    seconds: u64,
) -> Result<()> {
    let revision = report::revision();
    eprintln!("podium-bench: producer settings, revision {revision}");
    let mut plan = Plan::of(&RunArgs {
        profile: Profile::Quick,
        bin_dir: None,
        out: out.to_path_buf(),
        concurrency: None,
        streams: None,
        read_players: None,
        small_quizzes: None,
        command_group: false,
    });
    plan.baseline = Duration::from_secs(seconds.max(1));
    let mut settings = Vec::new();
    let combinations = in_flights.iter().flat_map(|&in_flight| {
        partition_counts.iter().flat_map(move |&partitions| {
            lingers
                .iter()
                .map(move |&linger_ms| report::ProducerSettings {
                    in_flight,
                    linger_ms,
                    partitions,
                })
        })
    });
    for at in combinations {
        step(&format!(
            "linger.ms = {}, {} in flight, {} partitions, with a reader",
            at.linger_ms, at.in_flight, at.partitions
        ));
        let broker = podium_testkit::Broker::start()
            .await
            .context("starting a broker")?;
        let name = format!("linger-{}-{}-{}", at.linger_ms, at.in_flight, at.partitions);
        let cpu_before = stack::cpu_seconds(std::process::id());
        let recorded =
            report::producer_baseline_at(&broker, &plan, &name, true, report::Load::Closed(at))
                .await?;
        let cpu_us_per_record = cpu_before
            .zip(stack::cpu_seconds(std::process::id()))
            .filter(|_| recorded.ok > 0)
            .map(|(before, after)| (after - before) * 1e6 / recorded.ok as f64);
        settings.push(Setting {
            linger_ms: at.linger_ms,
            in_flight: at.in_flight,
            partitions: at.partitions,
            recorded,
            cpu_us_per_record,
        });
    }
    std::fs::create_dir_all(out)?;
    let path = out.join("settings.json");
    let json = serde_json::json!({
        "revision": revision,
        "machine": report::Machine::read(),
        "seconds": seconds,
        "settings": settings,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!(
        "\nin flight  partitions  linger.ms  records/s  µs CPU/record  p50 ms  p99 ms  errors"
    );
    for s in &settings {
        let r = &s.recorded;
        println!(
            "{:>9}  {:>10}  {:>9}  {:>9.0}  {:>13.0}  {:>6.1}  {:>6.1}  {:>6}",
            s.in_flight,
            s.partitions,
            s.linger_ms,
            r.per_second,
            s.cpu_us_per_record.unwrap_or(f64::NAN),
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.errors.values().sum::<u64>()
        );
    }
    println!("results: {}", path.display());
    Ok(())
}

/// Runs every phase and writes the results.
pub async fn run(args: &RunArgs) -> Result<Results> {
    let plan = Plan::of(args);
    let bin_dir = services_dir(args.bin_dir.as_ref())?;
    let run = Run::begin(&plan, &bin_dir)?;
    eprintln!(
        "podium-bench: {:?} profile, {} build, revision {}",
        plan.profile, run.build, run.revision
    );

    step("starting the stack: broker, Redis, projector, command API, query API");
    let (mut stack, api) = measured_stack(
        &bin_dir,
        stack::Settings {
            max_streams: plan.streams + 1_000,
            broker: stack::BrokerKind::Nisshi,
            command_instances: plan.command_instances,
        },
    )
    .await?;
    let mut phases = Phases::new(&stack);
    let mut phase_done = |stack: &stack::Stack, phase: &str| phases.done(stack, phase);

    step("baselines: bare producer, pipelined ZINCRBY, axum hello-world");
    let mut baselines = report::measure_baselines(&stack, &plan, &bin_dir, &api.http).await?;
    phase_done(&stack, "baselines");

    // Before the loops, so the projector has shown them by the time the probes read them.
    let probe_games = create_games(&api, "Probe", 2, probe::PROBE_PLAYERS, 10).await?;
    let loops = ingest_loops(
        &mut stack,
        &api,
        &plan,
        plan.small_quizzes,
        true,
        true,
        &mut phase_done,
    )
    .await?;
    baselines.producer_with_reader_again = loops.with_reader_after_max;
    let (max, more, open_loops, answers) =
        (loops.max, loops.more, loops.open_loops, loops.open_answers);
    let half = (max.per_second / 2.0).max(1.0);
    // The open loops overload the stack on purpose; the half-rate phase measures it at rest.
    match stack
        .wait_projector_caught_up(Duration::from_secs(180))
        .await
    {
        Ok(took) => eprintln!(
            "  settled        the projector caught up {:.1} s after the open loops",
            took.as_secs_f64()
        ),
        Err(e) => eprintln!("  settled        not confirmed: {e:#}"),
    }
    step(&format!(
        "ingest at half of it, {half:.0} answers/s (open loop), with freshness probes"
    ));
    let probe_interval = plan.ingest / u32::try_from(plan.probes.max(1)).unwrap_or(1);
    let (half_rate, freshness) = tokio::join!(
        ingest::at_rate(&api, &answers, half, plan.ingest, "ingest half"),
        probe::freshness(&api, probe_games[0].clone(), plan.probes, probe_interval)
    );
    let freshness = freshness?;
    stack.check()?;
    phase_done(&stack, "ingest half");

    step(
        "the bare producer with a reader, open loop at the same rates, each on a broker of its own",
    );
    let rates = std::iter::once(half).chain(open_loops.iter().map(|o| o.rate));
    for rate in rates {
        match report::producer_open_baseline(&plan, &format!("open-{rate:.0}"), rate).await {
            Ok((recorded, delivered)) => {
                baselines.producer_open.push((rate, recorded));
                baselines.delivered_open.push((rate, delivered));
            }
            Err(e) => eprintln!("  producer at {rate:.0}/s not measured: {e:#}"),
        }
    }
    phase_done(&stack, "producer open loops");

    step(&format!(
        "one quiz of {PEER_PLAYERS} players, each answering as each question starts, the host moving on when all are back"
    ));
    let peer_game = create_games(&api, "Peer", 1, PEER_PLAYERS, 10).await?;
    let peer_answers = Arc::new(ingest::Answers::new(peer_game));
    let peer = ingest::saturate(&api, &peer_answers, PEER_PLAYERS, plan.ingest, "one quiz").await;
    eprintln!(
        "  one quiz       {:.0} answers/s, p50 {:.1} ms, p99 {:.1} ms",
        peer.per_second, peer.latency.p50_ms, peer.latency.p99_ms
    );
    stack.check()?;
    phase_done(&stack, "one quiz");

    step(&format!(
        "ingest direct, then through nginx, {} in flight (closed loops), on quizzes of their own",
        plan.in_flight
    ));
    let gateway = match through_gateway(&stack, &api, &plan, max.per_second).await {
        Ok(gateway) => Some(gateway),
        Err(e) => {
            eprintln!("  through nginx  not measured: {e:#}");
            None
        }
    };
    stack.check()?;
    phase_done(&stack, "through nginx");

    step(&format!(
        "fan-out: {} SSE streams on one query API",
        plan.streams
    ));
    let fan_out = probe::fan_out(
        &api,
        probe_games[1].clone(),
        plan.streams,
        plan.fan_out_probes,
        Duration::from_millis(500),
        || stack.query_api_rss(),
    )
    .await?;
    stack.check()?;
    phase_done(&stack, "fan-out");

    step(&format!("reads on a quiz of {} players", plan.read_players));
    let redis = RedisArgs::new(stack.redis.url(), stack.namespace.clone());
    let seeded = reads::seed(&redis, &api, plan.read_players).await?;
    phase_done(&stack, "seeding");
    baselines.hello_world_before_reads =
        match report::hello_world_again(&stack, &plan, &bin_dir, &api.http).await {
            Ok(again) => Some(again),
            Err(e) => {
                eprintln!("  hello-world    not measured again: {e:#}");
                None
            }
        };
    phase_done(&stack, "hello-world again");
    let reads = reads::reads(
        &api,
        &redis,
        &seeded,
        &stack.query_metrics,
        plan.read_in_flight,
        plan.reads,
    )
    .await;
    stack.check()?;
    phase_done(&stack, "reads");

    step("the bare producer again, on the stack's broker and the log the run has grown");
    baselines.producer_after =
        Some(report::producer_baseline(&stack.broker, &plan, "producer-end", false).await?);
    phase_done(&stack, "producer after");

    step("a bare consumer reading the whole log, as the rebuild will");
    let consumer = baseline::bare_consumer(&stack.kafka, Duration::from_secs(600)).await?;
    eprintln!(
        "  bare consumer  {} records ({:.1} MB) in {:.1} s{}",
        consumer.records,
        consumer.bytes as f64 / 1e6,
        consumer.seconds,
        consumer
            .error
            .as_deref()
            .map_or_else(String::new, |e| format!(": {e}"))
    );
    baselines.consumer = Some(consumer);
    phase_done(&stack, "bare consumer");

    // Last, because on tansu a rebuild of a large log can take the broker down with it: the
    // figures above are kept, and the failure is recorded with the reason.
    step("rebuild: every read model, from the whole log");
    let mut rebuilt = reads::full_rebuild(&stack.kafka, &redis).await?;
    if let Err(e) = stack.check() {
        let _ = rebuilt.error.get_or_insert_with(|| format!("{e:#}"));
    }
    match &rebuilt.error {
        None => eprintln!(
            "  rebuild        {} events in {:.1} s, switched; {:.1} s with the grace period",
            rebuilt.events, rebuilt.seconds, rebuilt.total_seconds
        ),
        Some(e) => eprintln!(
            "  rebuild        failed after {:.1} s: {e}",
            rebuilt.seconds
        ),
    }
    phase_done(&stack, "rebuild");
    stack.stop();
    drop(stack);

    let ceiling = match ceiling(&plan, &bin_dir).await {
        Ok(ceiling) => ceiling,
        Err(e) => {
            eprintln!("  ceiling        failed: {e:#}");
            report::Ceiling::failed(format!("{e:#}"))
        }
    };

    let results = run.finish(report::Measured {
        baselines,
        ingest: report::Ingest {
            max,
            more,
            half_rate,
            open_loops,
            one_quiz: peer,
            question_starts: api.starts.finish(),
            gateway,
        },
        freshness,
        fan_out,
        seeded,
        reads,
        rebuild: rebuilt,
        cpu: phases.cpu,
        ceiling,
    });
    results.write(&args.out)?;
    Ok(results)
}

/// The closed and open loops of the ingest phases, and the quizzes left for more open loops.
struct Loops {
    max: measure::Recorded,
    /// The bare producer with a reader right after the first closed loop, when asked for.
    with_reader_after_max: Option<measure::Recorded>,
    more: Vec<report::InFlight>,
    open_loops: Vec<report::OpenLoop>,
    open_answers: Arc<ingest::Answers>,
}

/// Creates the quizzes, then runs the closed loops at each number in flight and the open loops
/// at each rate, on quizzes of their own. With `half_after`, the open quizzes also have room
/// for a half-rate phase after them. With `bracket`, the bare producer with a reader is
/// measured again right after the first closed loop.
async fn ingest_loops(
    stack: &mut stack::Stack,
    api: &Api,
    plan: &Plan,
    small_quizzes: usize,
    half_after: bool,
    bracket: bool,
    phase_done: &mut impl FnMut(&stack::Stack, &str),
) -> Result<Loops> {
    step("creating quizzes and joining players over HTTP");
    let mut games = create_games(api, "Huge", 1, plan.huge_quiz_players, 64).await?;
    games.extend(create_games(api, "Small", small_quizzes, plan.small_quiz_players, 64).await?);
    let answers = Arc::new(ingest::Answers::new(games));
    phase_done(stack, "joins");

    step("ingest at the maximum rate (closed loop)");
    let max = ingest::saturate(api, &answers, plan.in_flight, plan.ingest, "ingest max").await;
    stack.check()?;
    phase_done(stack, "ingest max");
    let with_reader_after_max = if bracket {
        step(&format!(
            "the bare producer with a reader again, {} in flight, on a broker of its own",
            plan.in_flight
        ));
        let broker = podium_testkit::Broker::start()
            .await
            .context("starting a broker for the baseline")?;
        let again = report::producer_baseline(&broker, plan, "with-reader-again", true).await?;
        drop(broker);
        phase_done(stack, "producer with reader again");
        Some(again)
    } else {
        None
    };
    let mut more = Vec::new();
    for &in_flight in &plan.more_in_flight {
        step(&format!(
            "ingest with {in_flight} answers in flight (closed loop)"
        ));
        let recorded = ingest::saturate(
            api,
            &answers,
            in_flight,
            plan.ingest,
            &format!("ingest {in_flight}"),
        )
        .await;
        stack.check()?;
        phase_done(stack, &format!("ingest {in_flight}"));
        more.push(report::InFlight {
            in_flight,
            recorded,
        });
    }
    // The open loops (and the half-rate phase) answer quizzes of their own: the closed loops
    // may have used up every question of the first ones (the full profile does).
    let half = if half_after {
        (max.per_second / 2.0).max(1.0) * plan.ingest.as_secs_f64()
    } else {
        0.0
    };
    let open_answers = plan.open_rates.iter().sum::<f64>() * plan.open_loop.as_secs_f64() + half;
    let open_players = players_for(open_answers * 1.2);
    step(&format!(
        "creating quizzes of {open_players} players in all for the open loops"
    ));
    let mut open_games = quizzes_of_a_thousand(api, "Open", open_players).await?;
    if plan.open_huge_players > 0 {
        step(&format!(
            "and one quiz of {} players among them",
            plan.open_huge_players
        ));
        open_games.extend(create_games(api, "Stadium", 1, plan.open_huge_players, 64).await?);
    }
    let answers = Arc::new(ingest::Answers::new(open_games));
    phase_done(stack, "joins for the open loops");
    let mut open_loops = Vec::new();
    for &rate in &plan.open_rates {
        step(&format!(
            "ingest at {rate:.0} answers/s (open loop) for {} s",
            plan.open_loop.as_secs()
        ));
        let recorded = ingest::at_rate(
            api,
            &answers,
            rate,
            plan.open_loop,
            &format!("open {rate:.0}/s"),
        )
        .await;
        stack.check()?;
        phase_done(stack, &format!("open {rate:.0}/s"));
        open_loops.push(report::OpenLoop { rate, recorded });
    }
    Ok(Loops {
        max,
        with_reader_after_max,
        more,
        open_loops,
        open_answers: answers,
    })
}

/// Answers a second the ceiling's closed loops have questions enough for; beyond it, their
/// last seconds run dry, which their timelines show.
const CEILING_SIZED_FOR: f64 = 20_000.0;

/// Podium's own ceiling: the same ingest loops on a stack whose broker is librdkafka's mock
/// cluster, which is never the bottleneck, with the cores each process used in each.
async fn ceiling(plan: &Plan, bin_dir: &std::path::Path) -> Result<report::Ceiling> {
    step("Podium's own ceiling: the stack again, on librdkafka's mock cluster");
    let (mut stack, api) = measured_stack(
        bin_dir,
        stack::Settings {
            max_streams: 1_000,
            broker: stack::BrokerKind::Mock,
            // librdkafka's mock cluster is not measured with consumer groups of the command
            // side: the ceiling is one instance's.
            command_instances: "single",
        },
    )
    .await?;
    let mut phases = Phases::new(&stack);
    let mut phase_done = |stack: &stack::Stack, phase: &str| phases.done(stack, phase);
    // Enough small quizzes that the closed loops do not run out of questions at this rate.
    let loops_seconds = plan.ingest.as_secs_f64() * (1 + plan.more_in_flight.len()) as f64;
    let per_quiz = (plan.small_quiz_players.max(1) * usize::try_from(podium::QUESTIONS)?) as f64;
    let small_quizzes = plan
        .small_quizzes
        .max((CEILING_SIZED_FOR * loops_seconds * 1.2 / per_quiz).ceil() as usize);
    let loops = ingest_loops(
        &mut stack,
        &api,
        plan,
        small_quizzes,
        false,
        false,
        &mut phase_done,
    )
    .await?;
    stack.stop();
    Ok(report::Ceiling {
        max: Some(loops.max),
        more: loops.more,
        open_loops: loops.open_loops,
        cpu: phases.cpu,
        error: None,
    })
}

/// Players enough for `answers` answers, each answering every question.
fn players_for(answers: f64) -> usize {
    (answers / f64::from(podium::QUESTIONS)).ceil() as usize
}

/// `players` players in quizzes of up to 1,000.
async fn quizzes_of_a_thousand(api: &Api, prefix: &str, players: usize) -> Result<Vec<Arc<Game>>> {
    create_games(api, prefix, players.div_ceil(1_000), 1_000.min(players), 64).await
}

/// The same closed loop straight to the command API and then through Debian's nginx with the
/// gateway template every deployment uses, each player a client address of its own.
async fn through_gateway(
    stack: &stack::Stack,
    api: &Api,
    plan: &Plan,
    rate: f64,
) -> Result<report::ThroughGateway> {
    // Both loops, with room to spare.
    let players = players_for(rate * plan.ingest.as_secs_f64() * 2.0 * 1.3);
    let games = quizzes_of_a_thousand(api, "Gateway", players).await?;
    let answers = Arc::new(ingest::Answers::new(games));
    let address = |url: &str| url.trim_start_matches("http://").to_owned();
    let gateway =
        podium_testkit::Gateway::start(&address(&stack.command_url), &[&address(&stack.query_url)])
            .await?;
    let direct = ingest::saturate(api, &answers, plan.in_flight, plan.ingest, "direct").await;
    let via = Api {
        command_url: gateway.url(),
        forwarded: true,
        ..api.clone()
    };
    let through =
        ingest::saturate(&via, &answers, plan.in_flight, plan.ingest, "through nginx").await;
    eprintln!(
        "  through nginx  {:.0} answers/s (p99 {:.1} ms) against {:.0} direct (p99 {:.1} ms)",
        through.per_second, through.latency.p99_ms, direct.per_second, direct.latency.p99_ms
    );
    Ok(report::ThroughGateway {
        in_flight: plan.in_flight,
        direct,
        through,
    })
}

/// A stack started for measuring, and the load generator's client for it.
async fn measured_stack(
    bin_dir: &std::path::Path,
    settings: stack::Settings,
) -> Result<(stack::Stack, Api)> {
    let stack = stack::Stack::start(bin_dir, &settings).await?;
    let api = Api {
        http: podium::http_client()?,
        command_url: stack.command_url.clone(),
        query_url: stack.query_url.clone(),
        starts: Arc::default(),
        forwarded: false,
    };
    Ok((stack, api))
}

/// The cores each process used in each phase, phase after phase.
struct Phases {
    cpu: Vec<report::PhaseCpu>,
    mark: stack::CpuMark,
}

impl Phases {
    fn new(stack: &stack::Stack) -> Self {
        Self {
            cpu: Vec::new(),
            mark: stack.cpu_mark(),
        }
    }

    /// `phase` ended now.
    fn done(&mut self, stack: &stack::Stack, phase: &str) {
        self.cpu.push(report::PhaseCpu {
            phase: phase.to_owned(),
            cores: stack.cpu_since(&self.mark),
        });
        self.mark = stack.cpu_mark();
    }
}

pub(crate) fn step(what: &str) {
    eprintln!("\n==> {what}");
}
