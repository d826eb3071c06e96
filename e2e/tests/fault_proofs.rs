//! The projector's fault proofs, against a real broker and a real Redis: whatever happens
//! to the projector processes or to Redis, the read models end equal to a pure fold of the log.
//! Projectors run as real `podium-projector` processes, so a crash is a real `kill -9`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use podium_projectors::read_model::RedisReadModel;
use podium_projectors::rebuild::{RebuildOptions, rebuild};
use podium_query_api::read_model::{PageOf, ReadModel};
use podium_runtime::KafkaArgs;
use podium_schemas::Event;
use podium_schemas::domain::ReadModels;
use podium_schemas::read_model::Root;
use podium_schemas::topics::{
    HEADER_DEAD_LETTER_REASON, HEADER_ORIGIN_OFFSET, HEADER_ORIGIN_PARTITION, HEADER_ORIGIN_TOPIC,
};
use podium_testkit::{
    Broker, EventWriter, QuizLog, Redis, eventually, free_port, read_log, terminate, unique,
    workspace_binary,
};
use rand::Rng;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long a projector may take to reach the fold once the log stops growing.
const CONVERGE: Duration = Duration::from_secs(120);

struct Harness {
    broker: Broker,
    redis: Redis,
    kafka: KafkaArgs,
    namespace: String,
    group: String,
    writer: EventWriter,
    logs: TempDir,
}

impl Harness {
    async fn start() -> Result<Self> {
        let broker = Broker::start().await?;
        let redis = Redis::start().await?;
        let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("t")));
        broker
            .create_topics(&kafka.topics().with_partitions())
            .await?;
        let writer = EventWriter::new(broker.bootstrap())?;
        Ok(Self {
            broker,
            redis,
            kafka,
            namespace: unique("podium"),
            group: unique("projectors"),
            writer,
            logs: tempfile::Builder::new()
                .prefix("podium-projectors")
                .tempdir()?,
        })
    }

    /// Starts a `podium-projector` process of this harness's group; a static member (one with
    /// a `group.instance.id`) takes its partitions back at once after a restart.
    fn projector(&self, name: &str, metrics: Option<u16>, static_member: bool) -> Result<Child> {
        let log = self.logs.path().join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = Command::new(workspace_binary("podium-projector")?);
        if static_member {
            let _ = command.env("PODIUM_PROJECTOR_INSTANCE_ID", name);
        }
        command
            .env("PODIUM_KAFKA_BROKERS", self.broker.bootstrap())
            .env("PODIUM_TOPIC_PREFIX", &self.kafka.topic_prefix)
            .env("PODIUM_REDIS_URL", self.redis.url())
            .env("PODIUM_READ_MODEL_NAMESPACE", &self.namespace)
            .env("PODIUM_PROJECTOR_GROUP", &self.group)
            .env("PODIUM_BATCH_MAX", "500")
            // A static member keeps its partitions through a restart within the timeout; a
            // dynamic one leaves a dead member behind that long.
            .env(
                "PODIUM_PROJECTOR_SESSION_TIMEOUT_MS",
                if static_member { "30000" } else { "6000" },
            )
            .env(
                "PODIUM_PROJECTOR_METRICS_LISTEN",
                metrics.map_or("off".to_owned(), |port| format!("127.0.0.1:{port}")),
            )
            .env("RUST_LOG", "warn,podium_projectors=info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting podium-projector")
    }

    fn log_of(&self, name: &str) -> PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    fn topic_of(&self, event: &Event) -> String {
        self.kafka.topics().topic_of(event).to_owned()
    }

    /// Appends events concurrently (up to 256 in flight), as many players would.
    async fn append_all(&self, events: &[Event]) -> Result<()> {
        let mut results = futures::stream::iter(events)
            .map(|e| {
                let topic = self.topic_of(e);
                async move { self.writer.append(&topic, e).await }
            })
            .buffer_unordered(256);
        while let Some(result) = results.next().await {
            result?;
        }
        Ok(())
    }

    async fn append(&self, event: &Event) -> Result<()> {
        self.writer.append(&self.topic_of(event), event).await
    }

    /// Streams a played quiz into the log: the opening, then each round, pausing between
    /// rounds so the stream lasts long enough to be interrupted.
    async fn stream(&self, quiz: &QuizLog, pause: Duration) -> Result<()> {
        self.append(&quiz.opening[0]).await?;
        self.append_all(&quiz.opening[1..]).await?;
        for round in &quiz.rounds {
            self.append(&round.start).await?;
            self.append_all(&round.answers).await?;
            self.append(&round.close).await?;
            tokio::time::sleep(pause).await;
        }
        self.append(&quiz.finish).await
    }

    /// The pure fold of everything in the log now.
    async fn fold_of_log(&self) -> Result<ReadModels> {
        podium_e2e::fold_of_log(self.broker.bootstrap(), &self.kafka).await
    }

    /// Waits until every quiz in Redis equals the fold: every field of every card, question and
    /// state, the leaderboard order, and the version.
    async fn converges_to(&self, expected: &ReadModels) -> Result<()> {
        podium_e2e::converge(&self.redis.url(), &self.namespace, expected, CONVERGE).await
    }
}

/// A projector killed three times mid-stream, each restart within a second of the kill: every
/// partition is assigned again and the read model ends equal to the fold.
async fn killed_three_times_mid_stream(static_member: bool) -> Result<()> {
    let harness = Harness::start().await?;
    // 2,000 players answering all of 10 questions: 20,000 answers, and a small quiz beside it.
    let big = QuizLog::play(&unique("big"), 2_000, 10, 1.0, 7)?;
    let small = QuizLog::play(&unique("small"), 20, 10, 0.8, 8)?;
    assert_eq!(big.answer_count(), 20_000);

    let mut projector = harness.projector("crash", None, static_member)?;
    let stream = async {
        harness.stream(&small, Duration::ZERO).await?;
        harness.stream(&big, Duration::from_millis(400)).await
    };
    let crashes = async {
        let mut kills = 0;
        while kills < 3 {
            let wait = rand::rng().random_range(700..1_600);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            projector.start_kill()?; // SIGKILL: no batch finished, nothing committed.
            let _ = projector.wait().await?;
            kills += 1;
            projector = harness.projector("crash", None, static_member)?;
        }
        anyhow::Ok(projector)
    };
    let (streamed, projector) = tokio::join!(stream, crashes);
    streamed?;
    let _projector = projector?;

    let expected = harness.fold_of_log().await?;
    assert_eq!(expected.quizzes.len(), 2);
    harness
        .converges_to(&expected)
        .await
        .with_context(|| std::fs::read_to_string(harness.log_of("crash")).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_three_times_mid_stream_the_read_model_equals_the_fold() -> Result<()> {
    killed_three_times_mid_stream(true).await
}

/// Without static membership each restart is a new member beside the dead one, until the
/// group's session timeout removes it: the case that once left a member with no partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_three_times_without_static_membership_every_partition_is_read_again() -> Result<()>
{
    killed_three_times_mid_stream(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_mid_stream_hands_over_without_loss_or_double_count() -> Result<()> {
    let harness = Harness::start().await?;
    let quiz = QuizLog::play(&unique("quiz"), 500, 10, 0.9, 11)?;
    let mut first = harness.projector("first", None, false)?;
    let _second = harness.projector("second", None, false)?;
    let stream = harness.stream(&quiz, Duration::from_millis(200));
    let leave = async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        // SIGTERM: it finishes its batch, commits and leaves; the other takes its partitions.
        terminate(&mut first).await
    };
    let (streamed, left) = tokio::join!(stream, leave);
    streamed?;
    left?;
    let status = first.wait().await?;
    assert!(
        status.success(),
        "the leaving projector exited with {status}"
    );

    let expected = harness.fold_of_log().await?;
    harness
        .converges_to(&expected)
        .await
        .with_context(|| std::fs::read_to_string(harness.log_of("second")).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_the_projector_rebuilds_from_the_beginning() -> Result<()> {
    let mut harness = Harness::start().await?;
    let quiz = QuizLog::play(&unique("quiz"), 300, 6, 0.9, 21)?;
    let _projector = harness.projector("projector", None, false)?;
    let (opening, rest) = quiz.rounds.split_at(3);
    harness.append(&quiz.opening[0]).await?;
    harness.append_all(&quiz.opening[1..]).await?;
    for round in opening {
        harness.append(&round.start).await?;
        harness.append_all(&round.answers).await?;
        harness.append(&round.close).await?;
    }
    harness.converges_to(&harness.fold_of_log().await?).await?;

    harness.redis.restart_empty().await?;
    for round in rest {
        harness.append(&round.start).await?;
        harness.append_all(&round.answers).await?;
        harness.append(&round.close).await?;
    }
    harness.append(&quiz.finish).await?;
    let expected = harness.fold_of_log().await?;
    harness
        .converges_to(&expected)
        .await
        .with_context(|| std::fs::read_to_string(harness.log_of("projector")).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letters_and_every_answer_around_it_counts() -> Result<()> {
    let harness = Harness::start().await?;
    let metrics_port = free_port()?;
    let _projector = harness.projector("projector", Some(metrics_port), false)?;
    let quiz = QuizLog::play(&unique("quiz"), 100, 2, 1.0, 31)?;
    let answers = harness.kafka.topics().answers;
    let round = &quiz.rounds[0];
    harness.append(&quiz.opening[0]).await?;
    harness.append_all(&quiz.opening[1..]).await?;
    harness.append(&round.start).await?;
    let (before, after) = round.answers.split_at(50);
    harness.append_all(before).await?;
    // Garbage, a newer AnswerSubmitted schema, and an event type nobody knows.
    let unknown_fingerprint = [0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0];
    let poison: [(&[u8], Option<&str>, &str); 3] = [
        (b"not avro at all", None, "undecodable"),
        (
            &unknown_fingerprint,
            Some("AnswerSubmitted"),
            "newer_schema",
        ),
        (
            &unknown_fingerprint,
            Some("QuizRenamed"),
            "unknown_event_type",
        ),
    ];
    for (payload, event_type, _) in &poison {
        let key = format!("{}/p000001", quiz.quiz_id);
        harness
            .writer
            .raw(&answers, &key, payload, *event_type)
            .await?;
    }
    harness.append_all(after).await?;
    harness.append(&round.close).await?;
    harness.append(&quiz.finish).await?;

    let expected = harness.fold_of_log().await?;
    assert_eq!(expected.quizzes[&quiz.quiz_id].ranked().len(), 100);
    harness.converges_to(&expected).await?;

    let dead_letters = harness.kafka.topics().dead_letters;
    let letters = eventually("three dead letters", CONVERGE, || async {
        read_log(harness.broker.bootstrap(), &[&dead_letters])
            .await
            .ok()
            .filter(|l| l.len() >= 3)
    })
    .await?;
    let header = |record: &podium_testkit::LogRecord, name: &str| {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| header(l, HEADER_DEAD_LETTER_REASON))
        .collect();
    let expected_reasons: Vec<String> = poison.iter().map(|p| p.2.to_owned()).collect();
    assert_eq!(reasons, expected_reasons);
    for (letter, (payload, _, _)) in letters.iter().zip(&poison) {
        assert_eq!(letter.payload, *payload, "the record is kept as it was");
        assert_eq!(header(letter, HEADER_ORIGIN_TOPIC), answers);
        assert!(
            header(letter, HEADER_ORIGIN_PARTITION)
                .parse::<i32>()
                .is_ok()
        );
        assert!(header(letter, HEADER_ORIGIN_OFFSET).parse::<i64>().is_ok());
    }

    // The counter, the lag gauges and the apply latency are on /metrics.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await?
        .text()
        .await?;
    let counted: BTreeMap<&str, bool> = ["undecodable", "newer_schema", "unknown_event_type"]
        .into_iter()
        .map(|reason| {
            let line = format!("podium_projector_dead_letters_total{{reason=\"{reason}\"}} 1");
            (reason, metrics.contains(&line))
        })
        .collect();
    assert!(counted.values().all(|c| *c), "{counted:?} in\n{metrics}");
    assert!(metrics.contains("podium_projector_batch_apply_seconds_bucket"));
    let lag = eventually("lag gauges", Duration::from_secs(30), || async {
        let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        // Statistics arrive per partition: wait for the answers topic's gauge itself.
        let answers_lag = text.lines().any(|line| {
            line.starts_with("podium_projector_consumer_lag{")
                && line.contains(&format!("topic=\"{answers}\""))
        });
        answers_lag.then_some(text)
    })
    .await?;
    assert!(lag.contains(&format!("topic=\"{answers}\"")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_switches_readers_to_a_fresh_generation_without_downtime() -> Result<()> {
    let harness = Harness::start().await?;
    let _projector = harness.projector("projector", None, false)?;
    let quiz = QuizLog::play(&unique("quiz"), 300, 8, 0.9, 41)?;
    let (first, second) = quiz.rounds.split_at(4);
    harness.append(&quiz.opening[0]).await?;
    harness.append_all(&quiz.opening[1..]).await?;
    for round in first {
        harness.append(&round.start).await?;
        harness.append_all(&round.answers).await?;
        harness.append(&round.close).await?;
    }
    harness.converges_to(&harness.fold_of_log().await?).await?;

    let store =
        RedisReadModel::connect(&harness.redis.url(), Root::new(&harness.namespace)).await?;
    let old = store
        .active()
        .await?
        .context("the projector made a generation")?;
    let reader = ReadModel::connect(&harness.redis.url(), Root::new(&harness.namespace)).await?;
    let done = tokio::sync::Notify::new();
    // A reader keeps reading the leaderboard throughout: it must never fail.
    let reads = async {
        let mut reads = 0u32;
        loop {
            tokio::select! {
                () = done.notified() => return anyhow::Ok(reads),
                board = reader.page(&quiz.quiz_id, &PageOf::Top { limit: 10 }) => {
                    let board = board.context("a read during the rebuild failed")?;
                    assert!(!board.entries.is_empty());
                    reads += 1;
                }
            }
        }
    };
    let work = async {
        let options = RebuildOptions {
            batch_max: 200,
            grace: Duration::from_millis(500),
            progress: false,
        };
        let rebuilding = rebuild(&harness.kafka, &store, &options);
        // The quiz goes on during the rebuild.
        let playing = async {
            for round in second {
                harness.append(&round.start).await?;
                harness.append_all(&round.answers).await?;
                harness.append(&round.close).await?;
            }
            harness.append(&quiz.finish).await
        };
        let (report, played) = tokio::join!(rebuilding, playing);
        played?;
        done.notify_one();
        anyhow::Ok(report?)
    };
    let (reads, report) = tokio::join!(reads, work);
    let (reads, report) = (reads?, report?);
    assert!(reads > 0);
    assert_eq!(report.from.as_deref(), Some(old.as_str()));
    assert_ne!(report.to, old);
    assert_eq!(store.active().await?.as_deref(), Some(report.to.as_str()));
    assert!(report.dropped_keys > 0, "the old generation is deleted");

    harness.converges_to(&harness.fold_of_log().await?).await?;
    // Nothing of the old generation is left behind, not even a batch in flight at the switch.
    let connection = harness.redis.connection().await?;
    let pattern = Root::new(&harness.namespace).generation(&old).pattern();
    eventually(
        "the old generation to be gone",
        Duration::from_secs(30),
        || async {
            let leftovers: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut connection.clone())
                .await
                .ok()?;
            leftovers.is_empty().then_some(())
        },
    )
    .await
}
