//! The raw components, measured in the same run as Podium: a bare rdkafka producer, pipelined
//! `ZINCRBY`, and a bare axum hello-world. Every Podium figure is reported as a ratio to one of
//! them, because absolute numbers on a shared machine drift.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use podium_runtime::KafkaArgs;
use rand::Rng;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::measure::{Recorded, Recorder, rate};

/// The raw broker: records of an answer's size and headers, produced with the command API's
/// own producer settings (idempotent, `acks=all`, `linger_ms`) to a topic with the answers
/// topic's partitions, `in_flight` at a time, for `duration`.
pub async fn raw_producer(
    kafka: &KafkaArgs,
    topic: &str,
    payload: Vec<u8>,
    in_flight: usize,
    linger_ms: u64,
    duration: Duration,
) -> Result<Recorded> {
    let producer = Arc::new(RawProducer::new(kafka, topic, payload, linger_ms)?);
    let recorder = Arc::new(Recorder::new());
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..in_flight)
        .map(|w| {
            let (producer, recorder) = (producer.clone(), recorder.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let _ = producer
                        .send(&format!("quiz/player-{w}-{n}"), &recorder, Instant::now())
                        .await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    Ok(recorder.finish())
}

/// The same records at a fixed `rate` a second, open loop (as the ingest phases' open loops
/// send answers): the broker's own latency at a given load. Each acknowledgement goes to
/// `deliveries`.
pub async fn raw_producer_at_rate(
    kafka: &KafkaArgs,
    topic: &str,
    payload: Vec<u8>,
    rate: f64,
    duration: Duration,
    deliveries: Arc<Deliveries>,
) -> Result<Recorded> {
    let producer = Arc::new(RawProducer::new(
        kafka,
        topic,
        payload,
        podium_command_api::event_log::DEFAULT_LINGER_MS,
    )?);
    // The first record waits for the producer id and the topic's metadata: not the load's.
    let _ = producer
        .send("quiz/warm-up", &Recorder::new(), Instant::now())
        .await;
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Ok(
        crate::ingest::open_loop(rate, duration, "producer", |recorder, since| {
            let (producer, deliveries) = (producer.clone(), deliveries.clone());
            let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let key = format!("quiz/player-{n}");
                if let Some(acked) = producer.send(&key, &recorder, since).await {
                    deliveries.acked(key.into_bytes(), acked);
                }
            }
        })
        .await,
    )
}

/// A producer with the command API's settings and one answer's payload and headers.
struct RawProducer {
    producer: FutureProducer,
    topic: String,
    payload: Vec<u8>,
}

impl RawProducer {
    fn new(kafka: &KafkaArgs, topic: &str, payload: Vec<u8>, linger_ms: u64) -> Result<Self> {
        let producer: FutureProducer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", "5000")
            .create()?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            payload,
        })
    }

    /// Sends one record under `key` and records its outcome, timed from `since`; returns when
    /// it was acknowledged.
    async fn send(&self, key: &str, recorder: &Recorder, since: Instant) -> Option<Instant> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_type",
                value: Some("AnswerSubmitted"),
            })
            .insert(Header {
                key: "event_id",
                value: Some("0190c0a0-0000-7000-8000-000000000000"),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("00-00000000000000000000000000000000-0000000000000000-01"),
            });
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(self.payload.as_slice())
            .headers(headers);
        let outcome = self.producer.send(record, Duration::from_secs(5)).await;
        let now = Instant::now();
        match outcome {
            Ok(_) => {
                recorder.ok(now - since, now);
                Some(now)
            }
            Err((e, _)) => {
                recorder.error(&format!("kafka: {e}"), now);
                None
            }
        }
    }
}

/// When each record of a bare producer was acknowledged and when a bare reader received it, by
/// key: the broker's own ack → delivery latency, the raw part of a dashboard's ack → SSE.
#[derive(Debug)]
pub struct Deliveries {
    started: Instant,
    acked: Mutex<HashMap<Vec<u8>, Instant>>,
    received: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl Deliveries {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            acked: Mutex::default(),
            received: Mutex::default(),
        }
    }

    fn acked(&self, key: Vec<u8>, at: Instant) {
        let _ = lock(&self.acked).insert(key, at);
    }

    pub fn received(&self, key: &[u8], at: Instant) {
        let _ = lock(&self.received).insert(key.to_vec(), at);
    }

    /// Waits until the reader has every acknowledged record, for at most `limit`.
    pub async fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.all_received() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn all_received(&self) -> bool {
        let received = lock(&self.received);
        lock(&self.acked)
            .keys()
            .all(|key| received.contains_key(key))
    }

    /// Received − acknowledged for each acknowledged record. One the reader had before its
    /// producer heard the acknowledgement took 0; one it never had is `not_delivered`.
    pub fn finish(&self) -> Recorded {
        let recorder = Recorder::starting_at(self.started);
        let received = lock(&self.received);
        for (key, &acked) in lock(&self.acked).iter() {
            match received.get(key) {
                Some(&at) => recorder.ok(at.saturating_duration_since(acked), at),
                None => recorder.error("not_delivered", acked),
            }
        }
        recorder.finish()
    }
}

impl Default for Deliveries {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisBaseline {
    pub pipeline: usize,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_second: f64,
}

/// Raw Redis: `ZINCRBY` in pipelines of `pipeline` over `members` members, on one connection,
/// for `duration`.
pub async fn pipelined_zincrby(
    redis: &mut redis::aio::MultiplexedConnection,
    key: &str,
    members: u32,
    pipeline: usize,
    duration: Duration,
) -> Result<RedisBaseline> {
    let started = Instant::now();
    let mut ops = 0u64;
    while started.elapsed() < duration {
        let mut pipe = redis::pipe();
        {
            let mut rng = rand::rng();
            for _ in 0..pipeline {
                let _ = pipe
                    .cmd("ZINCRBY")
                    .arg(key)
                    .arg(rng.random_range(1..1000))
                    .arg(format!("p{}", rng.random_range(0..members)))
                    .ignore();
            }
        }
        pipe.query_async::<()>(redis).await?;
        ops += pipeline as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _: () = redis::cmd("DEL").arg(key).query_async(redis).await?;
    Ok(RedisBaseline {
        pipeline,
        ops,
        seconds,
        ops_per_second: rate(ops, seconds),
    })
}

/// The bare axum hello-world the bench starts as a child process of its own binary
/// (`podium-bench hello-world`), so it runs as the APIs do: in a process of its own.
///
/// With `redis`, it also serves `/rank/{player}`: the barest rank lookup, one pipelined
/// `ZRANK` and `HGETALL` on a board [`seed_bare_board`] filled, answered as JSON. It is what a
/// rank lookup cannot be faster than while it reads Redis per request.
pub async fn serve_hello_world(listen: SocketAddr, redis: Option<String>) -> Result<()> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    // `/events`: the barest axum SSE stream, with the query API's heartbeat, that never sends:
    // the baseline of what one idle stream costs a server.
    let idle = || async {
        Sse::new(futures::stream::pending::<
            Result<Event, std::convert::Infallible>,
        >())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    };
    let mut router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "Hello, world!" }))
        .route("/events", axum::routing::get(idle));
    if let Some(url) = redis {
        let connection = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let rank = move |axum::extract::Path(player): axum::extract::Path<String>| {
            let mut connection = connection.clone();
            async move {
                let (rank, card): (Option<u64>, HashMap<String, String>) = redis::pipe()
                    .cmd("ZRANK")
                    .arg(BARE_BOARD)
                    .arg(&player)
                    .cmd("HGETALL")
                    .arg(format!("{BARE_CARD}{player}"))
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
                Ok::<_, (axum::http::StatusCode, String)>(axum::Json(
                    serde_json::json!({ "player_id": player, "rank": rank, "card": card }),
                ))
            }
        };
        router = router.route("/rank/{player}", axum::routing::get(rank));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// The bare rank lookup's board and the prefix of its players' cards.
pub const BARE_BOARD: &str = "bench:bare:board";
pub const BARE_CARD: &str = "bench:bare:card:";

/// Fills the bare rank lookup's board with `players` players named as the reads phase names
/// them, each with a card of as many fields as Podium's.
pub async fn seed_bare_board(
    redis: &mut redis::aio::MultiplexedConnection,
    players: usize,
) -> Result<()> {
    per_player(redis, players, |pipe, p, player| {
        let _ = pipe
            .cmd("ZADD")
            .arg(BARE_BOARD)
            .arg(p)
            .arg(player)
            .ignore()
            .cmd("HSET")
            .arg(format!("{BARE_CARD}{player}"))
            .arg(&[
                ("name", player),
                ("points", "900"),
                ("elapsed_ms", "1234"),
                ("answers", "1"),
                ("streak", "1"),
                ("a:1", "900"),
            ])
            .ignore();
    })
    .await
}

/// Removes what [`seed_bare_board`] wrote.
pub async fn drop_bare_board(
    redis: &mut redis::aio::MultiplexedConnection,
    players: usize,
) -> Result<()> {
    per_player(redis, players, |pipe, _, player| {
        let _ = pipe
            .cmd("UNLINK")
            .arg(format!("{BARE_CARD}{player}"))
            .ignore();
    })
    .await?;
    let _: () = redis::cmd("UNLINK")
        .arg(BARE_BOARD)
        .query_async(redis)
        .await?;
    Ok(())
}

/// Runs what `add` puts in a pipeline for each of `players` players (`p000000` on), 1,000
/// players a pipeline.
async fn per_player(
    redis: &mut redis::aio::MultiplexedConnection,
    players: usize,
    add: impl Fn(&mut redis::Pipeline, usize, &str),
) -> Result<()> {
    for start in (0..players).step_by(1000) {
        let mut pipe = redis::pipe();
        for p in start..(start + 1000).min(players) {
            add(&mut pipe, p, &format!("p{p:06}"));
        }
        pipe.query_async::<()>(redis).await?;
    }
    Ok(())
}

/// Closed-loop GETs of whatever `path_of` names, `in_flight` at a time, for `duration`.
pub async fn get_loop(
    http: &reqwest::Client,
    in_flight: usize,
    duration: Duration,
    path_of: Arc<dyn Fn() -> String + Send + Sync>,
) -> Recorded {
    let recorder = Arc::new(Recorder::new());
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (http, recorder, path_of) = (http.clone(), recorder.clone(), path_of.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let outcome = http.get(path_of()).send().await;
                    let outcome = match outcome {
                        Ok(r) if r.status().is_success() => r
                            .bytes()
                            .await
                            .map(|_| ())
                            .map_err(|e| crate::podium::transport_kind(&e)),
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.bytes().await.unwrap_or_default();
                            Err(crate::podium::failure_kind(status, &body))
                        }
                        Err(e) => Err(crate::podium::transport_kind(&e)),
                    };
                    let now = Instant::now();
                    match outcome {
                        Ok(()) => recorder.ok(now - sent, now),
                        Err(kind) => recorder.error(&kind, now),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    recorder.finish()
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerBaseline {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_second: f64,
    /// Why it stopped short, if it did.
    pub error: Option<String>,
}

/// The raw broker read back: a bare consumer reading both event topics from the beginning to
/// their ends as they were when it started, with the rebuild's own consumer settings, touching
/// each payload and nothing more. The rebuild reads the same log and folds it into Redis.
pub async fn bare_consumer(kafka: &KafkaArgs, limit: Duration) -> Result<ConsumerBaseline> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};

    let topics = kafka.topics();
    let topics = [topics.lifecycle, topics.answers];
    let marks_client: BaseConsumer = kafka.client_config().create()?;
    let marks = podium_projectors::rebuild::watermarks(&marks_client, &topics)?;
    let group = format!("podium-bench-reader-{}", uuid::Uuid::now_v7().simple());
    let consumer: StreamConsumer =
        podium_projectors::rebuild::log_reader_config(kafka, &group).create()?;
    let mut assignment = TopicPartitionList::new();
    let mut left = 0;
    for ((topic, partition), (low, high)) in &marks {
        if high > low {
            assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
            left += 1;
        }
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut error = None;
    while left > 0 {
        let Some(wait) = limit.checked_sub(started.elapsed()) else {
            error = Some(format!("{left} partitions unread after {limit:?}"));
            break;
        };
        let message = match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => {
                error = Some(format!("kafka: {e}"));
                break;
            }
            Err(_) => continue,
        };
        records += 1;
        bytes += message.payload().map_or(0, |p| p.len() as u64);
        let end = marks
            .get(&(message.topic().to_owned(), message.partition()))
            .map_or(0, |(_, high)| *high);
        if message.offset() + 1 == end {
            left -= 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ConsumerBaseline {
        records,
        bytes,
        seconds,
        records_per_second: rate(records, seconds),
        error,
    })
}

/// A figure and the raw component it is measured against.
#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    /// Records per second a bare producer gets acknowledged, at the ingest phase's concurrency.
    pub producer: Recorded,
    /// The same while a bare consumer follows the topic, as the projector follows the answers.
    pub producer_with_reader: Recorded,
    /// The same, measured again at the end of the run on the log the run has grown.
    pub producer_after: Option<Recorded>,
    /// The producer with a reader again, on a fresh broker right after the first closed loop:
    /// with [`Baselines::producer_with_reader`] before it, the loop is bracketed, and the two
    /// say how far the raw part itself moved meanwhile on this shared machine.
    #[serde(default)]
    pub producer_with_reader_again: Option<Recorded>,
    pub redis: RedisBaseline,
    /// Requests per second a bare axum answers, at the reads phase's concurrency.
    pub hello_world: Recorded,
    /// The same just before the reads phase, which runs most of an hour later in `full`.
    #[serde(default)]
    pub hello_world_before_reads: Option<Recorded>,
    /// A bare consumer reading the whole log, just before the rebuild reads it.
    pub consumer: Option<ConsumerBaseline>,
    /// The producer with a reader again, at each more-in-flight count of the closed loops, so
    /// each loop has a baseline at its own concurrency.
    #[serde(default)]
    pub producer_with_reader_at: Vec<(usize, Recorded)>,
    /// What an idle stream of a bare axum SSE endpoint costs its server.
    pub bare_streams: Option<BareStreams>,
    /// Bare rank lookups: the hello-world's `/rank/{player}` on a board as large as the reads
    /// phase's quiz, at the reads phase's concurrency.
    #[serde(default)]
    pub bare_rank: Option<Recorded>,
    /// The producer with a reader in open loop, at the rate of each open-loop phase (half of
    /// the maximum first): the broker's own latency at that load.
    #[serde(default)]
    pub producer_open: Vec<(f64, Recorded)>,
    /// In the same runs, how long after each acknowledgement the reader had the record.
    #[serde(default)]
    pub delivered_open: Vec<(f64, Recorded)>,
}

impl Baselines {
    /// The hello-world the reads are set beside: the one just before them when measured.
    pub fn hello_world_for_reads(&self) -> &Recorded {
        self.hello_world_before_reads
            .as_ref()
            .unwrap_or(&self.hello_world)
    }

    /// The producer with a reader at the first closed loop's concurrency: the mean of the runs
    /// before and after the loop, and their lowest and highest rates.
    pub fn with_reader_bracket(&self) -> (f64, f64, f64) {
        let before = self.producer_with_reader.per_second;
        match &self.producer_with_reader_again {
            Some(after) => {
                let after = after.per_second;
                ((before + after) / 2.0, before.min(after), before.max(after))
            }
            None => (before, before, before),
        }
    }

    /// The open-loop producer measured nearest `rate`, within a tenth of it.
    pub fn producer_at(&self, rate: f64) -> Option<&Recorded> {
        nearest(&self.producer_open, rate)
    }

    /// The bare reader's ack → delivery in the open-loop run nearest `rate`.
    pub fn delivered_at(&self, rate: f64) -> Option<&Recorded> {
        nearest(&self.delivered_open, rate)
    }
}

/// The run of `runs` nearest `rate`, within a tenth of it.
fn nearest(runs: &[(f64, Recorded)], rate: f64) -> Option<&Recorded> {
    runs.iter()
        .filter(|(at, _)| (at - rate).abs() <= 0.1 * rate)
        .min_by(|a, b| (a.0 - rate).abs().total_cmp(&(b.0 - rate).abs()))
        .map(|(_, recorded)| recorded)
}

/// Idle bare axum SSE streams held open, and the server's resident memory for them.
#[derive(Debug, Clone, Serialize)]
pub struct BareStreams {
    pub streams: usize,
    pub bytes_per_stream: u64,
}

/// Opens `streams` SSE streams to `url` and holds them until the returned tasks are aborted;
/// returns once every one got its response head.
pub async fn hold_streams(
    http: &reqwest::Client,
    url: &str,
    streams: usize,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    use futures::StreamExt;
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut held = Vec::with_capacity(streams);
    for i in 0..streams {
        let (http, url, open) = (http.clone(), url.to_owned(), open.clone());
        held.push(tokio::spawn(async move {
            let Ok(response) = http.get(&url).send().await else {
                return;
            };
            let _ = open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut body = response.bytes_stream();
            while body.next().await.is_some() {}
        }));
        // Opened in waves, as the fan-out phase opens its streams.
        if i % 250 == 249 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while open.load(std::sync::atomic::Ordering::Relaxed) < streams {
        if Instant::now() > deadline || held.iter().all(tokio::task::JoinHandle::is_finished) {
            anyhow::bail!(
                "only {} of {streams} bare streams opened",
                open.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_timed_from_its_ack_and_a_record_never_read_is_counted() {
        let deliveries = Deliveries::new();
        let acked = Instant::now();
        deliveries.acked(b"a".to_vec(), acked);
        deliveries.received(b"a", acked + Duration::from_millis(30));
        // Read before its producer heard the ack: it took no time after the ack.
        deliveries.received(b"b", acked);
        deliveries.acked(b"b".to_vec(), acked + Duration::from_millis(5));
        deliveries.acked(b"lost".to_vec(), acked);
        // Read but never acknowledged (the warm-up record): not a delivery.
        deliveries.received(b"warm-up", acked);
        assert!(!deliveries.all_received());
        let recorded = deliveries.finish();
        assert_eq!(recorded.ok, 2);
        assert_eq!(recorded.errors.get("not_delivered"), Some(&1));
        assert!(
            (29.0..31.0).contains(&recorded.latency.max_ms),
            "{recorded:?}"
        );
        assert!(recorded.latency.p50_ms < 1.0, "{recorded:?}");
    }
}
