//! The event log port and its adapters. The command side appends through it and, at start-up,
//! rebuilds its quiz state from it: the log is the truth.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use podium_runtime::KafkaArgs;
use podium_schemas::fence::{Fence, Stamp, Verdict};
use podium_schemas::topics::{self, Topics};
use podium_schemas::{Codec, Event};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The producer's queue is full: the client should retry shortly. Nothing was appended.
    #[error("the event log is busy; retry shortly")]
    Backpressure,
    /// The broker did not acknowledge the event in time. Nothing is acknowledged to the client,
    /// but the event may still be in the log (the broker may have written it and died before
    /// answering): the caller holds the entry and appends it again, unchanged, before it decides
    /// anything that depends on it.
    #[error("the event log did not acknowledge the event: {0}")]
    Failed(String),
}

/// An event and the id it is recorded under. An append whose outcome is unknown is retried as
/// the same entry, so every copy in the log carries one id and one content, and readers fold
/// the copies as one (each fact is applied once).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: uuid::Uuid,
    pub event: Event,
    /// Which owner of the quiz's shard appends it, when instances share the quizzes (ADR 0011);
    /// none for a single instance. A lifecycle entry with a stamp goes to its shard's partition.
    pub stamp: Option<Stamp>,
}

impl Entry {
    /// A new entry: a fresh, time-ordered id.
    pub fn new(event: Event) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            event,
            stamp: None,
        }
    }

    /// The entry as the owner under `stamp` appends it.
    #[must_use]
    pub fn stamped(mut self, stamp: Option<Stamp>) -> Self {
        self.stamp = stamp;
        self
    }
}

/// Where an appended event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The next offset to read, per `(topic, partition)`.
pub type Positions = BTreeMap<(String, i32), i64>;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's value as the log holds it.
    pub payload: Vec<u8>,
    /// The decoded event; `None` for a record this build cannot read (logged, and skipped by
    /// every fold: the projectors dead-letter it).
    pub event: Option<Event>,
}

/// What [`EventLog::read_from`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRead {
    pub records: Vec<Recorded>,
    /// Where the next read resumes: each partition's end as of this read.
    pub end: Positions,
    /// Partitions whose given position was beyond their end (the topic was recreated) or before
    /// their start (retention removed records), as `topic/partition: position not in low..high`.
    pub out_of_range: Vec<String>,
    /// Records left out because an owner that had lost its shard appended them (ADR 0011).
    pub void: usize,
}

/// Appends events durably and reads them back.
#[async_trait]
pub trait EventLog: Send + Sync + Debug + 'static {
    /// Appends one entry. Resolves only once the log has durably acknowledged it.
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError>;

    /// Appends entries of one record key in order, and each outcome in that order. An entry is
    /// handed to the log only once every entry before it was, so the log never holds a later
    /// entry without the earlier ones having been sent; those not sent fail as backpressure.
    /// Kafka pipelines them: one broker round trip for all, not one each.
    async fn append_all(&self, entries: &[Entry]) -> Vec<Result<Position, AppendError>> {
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            let outcome = self.append(entry).await;
            let failed = outcome.is_err();
            outcomes.push(outcome);
            if failed {
                break;
            }
        }
        while outcomes.len() < entries.len() {
            outcomes.push(Err(AppendError::Backpressure));
        }
        outcomes
    }

    /// The records after `from` (the next offset per partition; a partition it does not name is
    /// read from its start) up to the log's end as of now: all lifecycle records, then all
    /// answers, each partition in order. If a position of `from` lies outside its partition, it
    /// reads nothing and names the partition in [`LogRead::out_of_range`].
    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError>;

    /// As [`EventLog::read_from`], judging each record with `fence` as it stood at `from`: a
    /// group member reads its shards' tail knowing their epochs (ADR 0012). A log that holds no
    /// stamps has nothing to judge.
    async fn read_fenced(&self, from: &Positions, fence: Fence) -> Result<LogRead, AppendError> {
        let _ = fence;
        self.read_from(from).await
    }

    /// Every event recorded so far: all lifecycle events, then all answers. Within a record key
    /// the order is the order of appends. Records that cannot be decoded are skipped with a
    /// warning; the projectors dead-letter them.
    async fn history(&self) -> Result<Vec<Event>, AppendError> {
        let read = self.read_from(&Positions::new()).await?;
        Ok(read.records.into_iter().filter_map(|r| r.event).collect())
    }

    /// Waits until everything handed to the log has been acknowledged or has failed.
    async fn flush(&self);

    /// Appends a claim marker for `stamp` to its shard's lifecycle partition and to every
    /// answers partition, and waits until every one is acknowledged: from then on, every reader
    /// voids what an earlier owner of the shard appends (ADR 0011). A log with one reader and
    /// one writer has nothing to fence.
    async fn claim(&self, stamp: Stamp) -> Result<(), AppendError> {
        let _ = stamp;
        Ok(())
    }

    /// How many shards the quizzes are spread over: the lifecycle topic's partitions.
    async fn shard_count(&self) -> Result<i32, AppendError> {
        Ok(1)
    }
}

/// The event log in process memory, for tests of the layers above the log.
#[derive(Debug, Default)]
pub struct MemoryEventLog {
    events: Mutex<Vec<(Position, Event)>>,
    topics: Topics,
    codec: Codec,
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError> {
        let event = &entry.event;
        let mut events = self
            .events
            .lock()
            .map_err(|e| AppendError::Failed(e.to_string()))?;
        let topic = self.topics.topic_of(event).to_owned();
        let offset = events.iter().filter(|(p, _)| p.topic == topic).count();
        let position = Position {
            topic,
            partition: 0,
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
        };
        events.push((position.clone(), event.clone()));
        Ok(position)
    }

    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError> {
        let events = self
            .events
            .lock()
            .map_err(|e| AppendError::Failed(e.to_string()))?;
        let mut read = LogRead::default();
        for topic in self.topics.all() {
            let end = events.iter().filter(|(p, _)| p.topic == topic).count();
            let end = i64::try_from(end).unwrap_or(i64::MAX);
            let start = from.get(&(topic.to_owned(), 0)).copied().unwrap_or(0);
            if !(0..=end).contains(&start) {
                read.out_of_range
                    .push(format!("{topic}/0: {start} not in 0..{end}"));
            }
            let _ = read.end.insert((topic.to_owned(), 0), end);
            for (position, event) in events.iter().filter(|(p, _)| p.topic == topic) {
                if position.offset >= start {
                    read.records.push(Recorded {
                        topic: position.topic.clone(),
                        partition: 0,
                        offset: position.offset,
                        payload: self
                            .codec
                            .encode(event)
                            .map_err(|e| AppendError::Failed(e.to_string()))?,
                        event: Some(event.clone()),
                    });
                }
            }
        }
        if !read.out_of_range.is_empty() {
            read.records.clear();
        }
        Ok(read)
    }

    async fn flush(&self) {}
}

/// The producer's `linger.ms` unless configured: chosen by `podium-bench settings`
/// (docs/performance.md, "Producer settings by measurement"). At 1 ms librdkafka's broker
/// thread spun while its five requests were in flight, 200 µs of CPU per record at 64 in
/// flight; at 10 ms it spends 17, for 7 % less throughput and 0.6 ms more at the median.
pub const DEFAULT_LINGER_MS: u64 = 10;

/// Kafka through librdkafka: an idempotent producer with `acks=all`.
///
/// An idempotent producer that meets a fatal error (the broker lost or refused its producer
/// state, as after a restart without it) refuses every later record. The log then builds a new
/// producer, with a new producer id, in its place: the appends that failed were answered 503 and
/// are retried by their clients as the same entries; none was acknowledged, so none is lost, and
/// one that reached the log anyway is not counted twice.
pub struct KafkaEventLog {
    producer: RwLock<Generation>,
    config: ClientConfig,
    kafka: KafkaArgs,
    topics: Topics,
    codec: Codec,
    ack_timeout: Duration,
    /// How long the start-up replay waits for the next record before it gives up.
    replay_stall: Duration,
    /// Passes on every acknowledged append, fails on every failed one.
    broker: Option<podium_runtime::health::Check>,
}

impl Debug for KafkaEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEventLog")
            .field("brokers", &self.kafka.brokers)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaEventLog {
    /// `ack_timeout` bounds how long an append waits for the broker before the client is told
    /// to retry; `queue_messages` bounds the producer queue, beyond which appends are refused
    /// as backpressure instead of blocking the runtime.
    pub fn new(
        kafka: &KafkaArgs,
        ack_timeout: Duration,
        queue_messages: usize,
    ) -> Result<Self, KafkaError> {
        Self::with_linger(kafka, ack_timeout, queue_messages, DEFAULT_LINGER_MS)
    }

    /// [`KafkaEventLog::new`] with the producer's `linger.ms`: how long a record waits for
    /// others to share its batch.
    pub fn with_linger(
        kafka: &KafkaArgs,
        ack_timeout: Duration,
        queue_messages: usize,
        linger_ms: u64,
    ) -> Result<Self, KafkaError> {
        let mut config = kafka.client_config();
        let _ = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", ack_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", queue_messages.to_string());
        Ok(Self {
            producer: RwLock::new(Generation {
                number: 0,
                producer: config.create()?,
            }),
            config,
            kafka: kafka.clone(),
            topics: kafka.topics(),
            codec: Codec::new(),
            ack_timeout,
            replay_stall: Duration::from_secs(60),
            broker: None,
        })
    }

    /// Reports the broker's state to `check`: the start-up replay and each append's outcome.
    #[must_use]
    pub fn with_broker_check(mut self, check: podium_runtime::health::Check) -> Self {
        self.broker = Some(check);
        self
    }

    fn broker_answered(&self, outcome: Result<(), &str>) {
        let label = if outcome.is_ok() {
            "acknowledged"
        } else {
            "failed"
        };
        metrics::counter!("podium_command_appends_total", "outcome" => label).increment(1);
        if let Some(check) = &self.broker {
            match outcome {
                Ok(()) => check.pass(),
                Err(reason) => check.fail(format!("an append failed: {reason}")),
            }
        }
    }
}

/// One producer and how many were built before it.
struct Generation {
    number: u64,
    producer: FutureProducer,
}

impl KafkaEventLog {
    fn producer(&self) -> (u64, FutureProducer) {
        let current = self.producer.read().unwrap_or_else(PoisonError::into_inner);
        (current.number, current.producer.clone())
    }

    /// After a failed append: if the producer that failed is in a fatal state, replace it,
    /// unless another append already did.
    async fn replace_if_fatal(&self, number: u64, failed: &FutureProducer) {
        let Some((code, reason)) = failed.client().fatal_error() else {
            return;
        };
        let fresh: FutureProducer = match self.config.create() {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, "building a new producer failed; the next failed append tries again");
                return;
            }
        };
        let old = {
            let mut current = self
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if current.number != number {
                return;
            }
            let old = std::mem::replace(&mut current.producer, fresh);
            current.number += 1;
            old
        };
        tracing::error!(?code, %reason, "the producer hit a fatal error; replaced it with a new one");
        metrics::counter!("podium_command_producer_replacements_total").increment(1);
        // Dropping a producer purges and waits for its queue: off the runtime.
        drop(tokio::task::spawn_blocking(move || drop(old)));
    }
}

/// The W3C traceparent for the record: the request's trace when spans are exported, so the
/// projector continues it; otherwise a trace of its own, so a record can still be followed
/// across services by this id.
fn traceparent() -> String {
    if let Some(current) = podium_runtime::telemetry::current_traceparent() {
        return current;
    }
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// A record the producer has queued, until the broker acknowledges it.
struct Pending {
    topic: String,
    number: u64,
    producer: FutureProducer,
    started: Instant,
    delivery: rdkafka::producer::DeliveryFuture,
}

impl Pending {
    async fn delivered(self, log: &KafkaEventLog) -> Result<Position, AppendError> {
        let outcome = self.delivery.await;
        metrics::histogram!("podium_command_append_seconds")
            .record(self.started.elapsed().as_secs_f64());
        let failure = match outcome {
            Ok(Ok(delivered)) => {
                log.broker_answered(Ok(()));
                return Ok(Position {
                    topic: self.topic,
                    partition: delivered.partition,
                    offset: delivered.offset,
                });
            }
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "the producer was dropped".to_owned(),
        };
        log.broker_answered(Err(&failure));
        log.replace_if_fatal(self.number, &self.producer).await;
        Err(AppendError::Failed(failure))
    }
}

impl KafkaEventLog {
    /// Queues the entry's record without waiting for the broker.
    async fn enqueue(&self, entry: &Entry) -> Result<Pending, AppendError> {
        let event = &entry.event;
        let payload = self
            .codec
            .encode(event)
            .map_err(|e| AppendError::Failed(e.to_string()))?;
        let key = topics::record_key(event);
        let topic = self.topics.topic_of(event);
        let event_id = entry.id.to_string();
        let traceparent = traceparent();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: topics::HEADER_EVENT_TYPE,
                value: Some(event.event_type()),
            })
            .insert(Header {
                key: topics::HEADER_EVENT_ID,
                value: Some(&event_id),
            })
            .insert(Header {
                key: topics::HEADER_TRACEPARENT,
                value: Some(&traceparent),
            });
        if let Some(stamp) = entry.stamp {
            headers = podium_runtime::fencing::with_stamp(headers, stamp);
        }
        let mut record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        // Owners and readers agree on a quiz's shard because its lifecycle goes there by name.
        if let Some(stamp) = entry.stamp
            && topic == self.topics.lifecycle
        {
            record = record.partition(stamp.shard);
        }
        let (number, producer) = self.producer();
        let started = Instant::now();
        // send_result never waits for queue space: a full queue is refused at once.
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                metrics::counter!("podium_command_appends_total", "outcome" => "busy").increment(1);
                return Err(AppendError::Backpressure);
            }
            Err((e, _)) => {
                let failure = e.to_string();
                self.broker_answered(Err(&failure));
                self.replace_if_fatal(number, &producer).await;
                return Err(AppendError::Failed(failure));
            }
        };
        metrics::gauge!("podium_command_producer_in_flight")
            .set(f64::from(producer.in_flight_count()));
        Ok(Pending {
            topic: topic.to_owned(),
            number,
            producer,
            started,
            delivery,
        })
    }
}

#[async_trait]
impl EventLog for KafkaEventLog {
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError> {
        self.enqueue(entry).await?.delivered(self).await
    }

    async fn append_all(&self, entries: &[Entry]) -> Vec<Result<Position, AppendError>> {
        // Every record is queued before the first acknowledgement is awaited, and none after a
        // refused one: the idempotent producer keeps them in order on their partition.
        let mut queued = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.enqueue(entry).await {
                Ok(pending) => queued.push(Ok(pending)),
                Err(e) => {
                    queued.push(Err(e));
                    break;
                }
            }
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        for pending in queued {
            outcomes.push(match pending {
                Ok(pending) => pending.delivered(self).await,
                Err(e) => Err(e),
            });
        }
        while outcomes.len() < entries.len() {
            outcomes.push(Err(AppendError::Backpressure));
        }
        outcomes
    }

    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError> {
        // With no epochs seen: right for a read from the start, and for a snapshot's tail
        // while no instance stamps (one instance).
        self.read_fenced(from, Fence::default()).await
    }

    async fn read_fenced(&self, from: &Positions, fence: Fence) -> Result<LogRead, AppendError> {
        let mut config = self.kafka.consumer_config();
        let _ = config
            .set("group.id", "podium-command-api-history")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let topics = self.topics.clone();
        let timeout = self.ack_timeout.max(Duration::from_secs(10));
        let stall = self.replay_stall;
        let from = from.clone();
        let read = tokio::task::spawn_blocking(move || {
            let codec = Codec::new();
            let mut read = LogRead::default();
            let mut fence = fence;
            for topic in topics.all() {
                let reading = Reading {
                    config: &config,
                    topic,
                    from: &from,
                    timeout,
                    stall,
                    codec: &codec,
                };
                reading.read(&mut fence, &mut read)?;
            }
            if !read.out_of_range.is_empty() {
                read.records.clear();
            }
            Ok(read)
        })
        .await
        .map_err(|e| AppendError::Failed(e.to_string()))?;
        // The log was read: the broker answers.
        if let (Ok(_), Some(check)) = (&read, &self.broker) {
            check.pass();
        }
        read
    }

    async fn flush(&self) {
        let (_, producer) = self.producer();
        let timeout = self.ack_timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }

    async fn claim(&self, stamp: Stamp) -> Result<(), AppendError> {
        let answers = self.partitions_of(self.topics.answers.clone()).await?;
        let key = format!("shard/{}", stamp.shard);
        let (_, producer) = self.producer();
        let markers = std::iter::once((self.topics.lifecycle.as_str(), stamp.shard)).chain(
            answers
                .into_iter()
                .map(|p| (self.topics.answers.as_str(), p)),
        );
        let mut deliveries = Vec::new();
        for (topic, partition) in markers {
            let headers = podium_runtime::fencing::marker_headers(stamp);
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&[][..])
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => return Err(AppendError::Failed(e.to_string())),
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(AppendError::Failed(e.to_string())),
                Err(_) => return Err(AppendError::Failed("the producer was dropped".into())),
            }
        }
        Ok(())
    }

    async fn shard_count(&self) -> Result<i32, AppendError> {
        let partitions = self.partitions_of(self.topics.lifecycle.clone()).await?;
        i32::try_from(partitions.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| AppendError::Failed("the lifecycle topic has no partitions".into()))
    }
}

impl KafkaEventLog {
    /// The partitions of `topic`, from the broker's metadata.
    async fn partitions_of(&self, topic: String) -> Result<Vec<i32>, AppendError> {
        let (_, producer) = self.producer();
        let timeout = self.ack_timeout.max(Duration::from_secs(10));
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| AppendError::Failed(format!("reading {topic}'s metadata: {e}")))?;
            Ok(metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect())
        })
        .await
        .map_err(|e| AppendError::Failed(e.to_string()))?
    }
}

/// How often a long replay reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A read of one topic.
struct Reading<'a> {
    config: &'a ClientConfig,
    topic: &'a str,
    from: &'a Positions,
    timeout: Duration,
    stall: Duration,
    codec: &'a Codec,
}

impl Reading<'_> {
    /// Reads one topic from `from` (or each partition's start) to its end as of now, leaving out
    /// what `fence` voids. A long log takes as long as it takes: the read gives up only when no
    /// record arrived for `stall`.
    fn read(&self, fence: &mut Fence, out: &mut LogRead) -> Result<(), AppendError> {
        let Self {
            config,
            topic,
            from,
            timeout,
            stall,
            codec,
        } = *self;
        let failed = |e: KafkaError| AppendError::Failed(format!("reading {topic}: {e}"));
        let consumer: BaseConsumer = config.create().map_err(failed)?;
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(failed)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut assignment = TopicPartitionList::new();
        let mut remaining = std::collections::HashMap::new();
        let mut total = 0;
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .map_err(failed)?;
            let start = match from.get(&(topic.to_owned(), p)) {
                Some(&start) if (low..=high).contains(&start) => start,
                Some(&start) => {
                    out.out_of_range
                        .push(format!("{topic}/{p}: {start} not in {low}..{high}"));
                    high
                }
                None => low,
            };
            let _ = out.end.insert((topic.to_owned(), p), high);
            if high > start {
                assignment
                    .add_partition_offset(topic, p, Offset::Offset(start))
                    .map_err(failed)?;
                let _ = remaining.insert(p, high);
                total += high - start;
            }
        }
        if remaining.is_empty() || !out.out_of_range.is_empty() {
            return Ok(());
        }
        consumer.assign(&assignment).map_err(failed)?;
        let started = Instant::now();
        let (mut read, mut last_record, mut reported) = (0i64, Instant::now(), Instant::now());
        while !remaining.is_empty() {
            if last_record.elapsed() > stall {
                return Err(AppendError::Failed(format!(
                    "reading {topic}: no record for {stall:?}, {} partitions not read to their end ({read} of {total} records read)",
                    remaining.len()
                )));
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                tracing::info!(topic, read, total, elapsed = ?started.elapsed(), "reading the log");
            }
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.map_err(failed)?;
            read += 1;
            last_record = Instant::now();
            let (p, offset) = (message.partition(), message.offset());
            if remaining.get(&p).is_some_and(|&high| offset + 1 >= high) {
                let _ = remaining.remove(&p);
            }
            match podium_runtime::fencing::judge(fence, &message) {
                Verdict::Count => {}
                Verdict::Claim => continue,
                Verdict::Void => {
                    out.void += 1;
                    continue;
                }
            }
            let payload = message.payload().unwrap_or_default();
            let event = match codec.decode(payload) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::warn!(topic, partition = p, offset, error = %e, "skipping undecodable record");
                    None
                }
            };
            out.records.push(Recorded {
                topic: topic.to_owned(),
                partition: p,
                offset,
                payload: payload.to_vec(),
                event,
            });
        }
        Ok(())
    }
}
