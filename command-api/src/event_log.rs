//! The event log port and its adapters. The command side appends through it and, at start-up,
//! rebuilds its quiz state from it: the log is the truth.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use podium_runtime::KafkaArgs;
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
    /// The broker did not acknowledge the event in time. Nothing is acknowledged to the client.
    #[error("the event log did not acknowledge the event: {0}")]
    Failed(String),
}

/// Where an appended event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Appends events durably and reads them back.
#[async_trait]
pub trait EventLog: Send + Sync + Debug + 'static {
    /// Appends one event. Resolves only once the log has durably acknowledged it.
    async fn append(&self, event: &Event) -> Result<Position, AppendError>;

    /// Every event recorded so far: all lifecycle events, then all answers. Within a record key
    /// the order is the order of appends. Records that cannot be decoded are skipped with a
    /// warning; the projectors dead-letter them.
    async fn history(&self) -> Result<Vec<Event>, AppendError>;

    /// Waits until everything handed to the log has been acknowledged or has failed.
    async fn flush(&self);
}

/// The event log in process memory, for tests of the layers above the log.
#[derive(Debug, Default)]
pub struct MemoryEventLog {
    events: Mutex<Vec<(Position, Event)>>,
    topics: Topics,
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(&self, event: &Event) -> Result<Position, AppendError> {
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

    async fn history(&self) -> Result<Vec<Event>, AppendError> {
        let events = self
            .events
            .lock()
            .map_err(|e| AppendError::Failed(e.to_string()))?;
        let (lifecycle, answers): (Vec<_>, Vec<_>) = events
            .iter()
            .map(|(p, e)| (p.topic.clone(), e.clone()))
            .partition(|(t, _)| *t == self.topics.lifecycle);
        Ok(lifecycle
            .into_iter()
            .chain(answers)
            .map(|(_, e)| e)
            .collect())
    }

    async fn flush(&self) {}
}

/// Kafka through librdkafka: an idempotent producer with `acks=all`.
pub struct KafkaEventLog {
    producer: FutureProducer,
    kafka: KafkaArgs,
    topics: Topics,
    codec: Codec,
    ack_timeout: Duration,
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
        let producer: FutureProducer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", ack_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", queue_messages.to_string())
            .create()?;
        Ok(Self {
            producer,
            kafka: kafka.clone(),
            topics: kafka.topics(),
            codec: Codec::new(),
            ack_timeout,
        })
    }
}

/// A W3C traceparent for the record. Until OpenTelemetry export is configured, each append
/// starts its own trace, so a record can still be followed across services by this id.
fn traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

#[async_trait]
impl EventLog for KafkaEventLog {
    async fn append(&self, event: &Event) -> Result<Position, AppendError> {
        let payload = self
            .codec
            .encode(event)
            .map_err(|e| AppendError::Failed(e.to_string()))?;
        let key = topics::record_key(event);
        let topic = self.topics.topic_of(event);
        let event_id = uuid::Uuid::now_v7().to_string();
        let traceparent = traceparent();
        let headers = OwnedHeaders::new()
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
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        // send_result never waits for queue space: a full queue is refused at once.
        let delivery = match self.producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(AppendError::Backpressure);
            }
            Err((e, _)) => return Err(AppendError::Failed(e.to_string())),
        };
        match delivery.await {
            Ok(Ok(delivered)) => Ok(Position {
                topic: topic.to_owned(),
                partition: delivered.partition,
                offset: delivered.offset,
            }),
            Ok(Err((e, _))) => Err(AppendError::Failed(e.to_string())),
            Err(_) => Err(AppendError::Failed("the producer was dropped".into())),
        }
    }

    async fn history(&self) -> Result<Vec<Event>, AppendError> {
        let mut config = self.kafka.consumer_config();
        let _ = config
            .set("group.id", "podium-command-api-history")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let topics = self.topics.clone();
        let timeout = self.ack_timeout.max(Duration::from_secs(10));
        let codec = Codec::new();
        tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            for topic in topics.all() {
                read_topic(&config, topic, timeout, &codec, &mut events)?;
            }
            Ok(events)
        })
        .await
        .map_err(|e| AppendError::Failed(e.to_string()))?
    }

    async fn flush(&self) {
        let producer = self.producer.clone();
        let timeout = self.ack_timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}

/// Reads one topic from its start to its end as of now.
fn read_topic(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
    codec: &Codec,
    out: &mut Vec<Event>,
) -> Result<(), AppendError> {
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
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(failed)?;
        if high > low {
            assignment
                .add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(failed)?;
            let _ = remaining.insert(p, high);
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment).map_err(failed)?;
    let deadline = Instant::now() + timeout * 6;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(AppendError::Failed(format!(
                "reading {topic}: {} partitions not read to their end",
                remaining.len()
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(failed)?;
        let (p, offset) = (message.partition(), message.offset());
        if remaining.get(&p).is_some_and(|&high| offset + 1 >= high) {
            let _ = remaining.remove(&p);
        }
        match codec.decode(message.payload().unwrap_or_default()) {
            Ok(event) => out.push(event),
            Err(e) => {
                tracing::warn!(topic, partition = p, offset, error = %e, "skipping undecodable record")
            }
        }
    }
    Ok(())
}
