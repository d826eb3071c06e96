//! Writing events straight to the log, and reading a whole log back: what the fault proofs
//! produce and what they fold as the reference.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use podium_runtime::fencing::{marker_headers, with_stamp};
use podium_schemas::fence::Stamp;
use podium_schemas::topics::{HEADER_EVENT_TYPE, record_key};
use podium_schemas::{Codec, Event};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Appends events the way the command side does: Avro single-object values, keyed by
/// `record_key`, with the `event_type` header, acked by the broker.
#[derive(Clone)]
pub struct EventWriter {
    producer: FutureProducer,
    codec: std::sync::Arc<Codec>,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").finish_non_exhaustive()
    }
}

impl EventWriter {
    pub fn new(bootstrap: &str) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .create()?;
        Ok(Self {
            producer,
            codec: std::sync::Arc::new(Codec::new()),
        })
    }

    /// Appends one event to `topic` and waits for the ack.
    pub async fn append(&self, topic: &str, event: &Event) -> Result<()> {
        let payload = self.codec.encode(event)?;
        self.raw(
            topic,
            &record_key(event),
            &payload,
            Some(event.event_type()),
        )
        .await
    }

    /// Appends one event to a partition of `topic` as the owner under `stamp` does in a group
    /// (ADR 0011), or the shard's claim marker when `event` is `None`.
    pub async fn append_stamped(
        &self,
        topic: &str,
        partition: i32,
        event: Option<&Event>,
        stamp: Stamp,
    ) -> Result<()> {
        let (key, payload, headers) = match event {
            Some(event) => {
                let headers = OwnedHeaders::new().insert(Header {
                    key: HEADER_EVENT_TYPE,
                    value: Some(event.event_type()),
                });
                (
                    record_key(event),
                    self.codec.encode(event)?,
                    with_stamp(headers, stamp),
                )
            }
            None => (
                format!("shard/{}", stamp.shard),
                Vec::new(),
                marker_headers(stamp),
            ),
        };
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let _ = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("appending to {topic}/{partition}"))?;
        Ok(())
    }

    /// Appends any bytes, with an optional `event_type` header: how poison gets into a log.
    pub async fn raw(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        event_type: Option<&str>,
    ) -> Result<()> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(event_type) = event_type {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: HEADER_EVENT_TYPE,
                value: Some(event_type),
            }));
        }
        let _ = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("appending to {topic}"))?;
        Ok(())
    }
}

/// How long reading a log may go without a record before it fails.
const STALLED: Duration = Duration::from_secs(60);

/// One record of a log, as read back.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

/// Every record of `topics`, from the beginning to the high watermark at the time of the call,
/// sorted by topic, partition and offset.
pub async fn read_log(bootstrap: &str, topics: &[&str]) -> Result<Vec<LogRecord>> {
    let bootstrap = bootstrap.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || read_log_blocking(&bootstrap, &topics)).await?
}

fn read_log_blocking(bootstrap: &str, topics: &[String]) -> Result<Vec<LogRecord>> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("read-log"))
        .set("enable.auto.commit", "false")
        .create()?;
    // Assign every partition at once and read until each reaches its high watermark.
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                if high > low {
                    assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
                    let _ = remaining.insert((topic.clone(), p.id()), high);
                }
            }
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    // A busy broker may take a while to serve a large log; give up only when it stops moving.
    let mut last_progress = std::time::Instant::now();
    while !remaining.is_empty() {
        let Some(message) = consumer.poll(Duration::from_secs(1)) else {
            if last_progress.elapsed() > STALLED {
                anyhow::bail!("the log stopped short: {remaining:?} left");
            }
            continue;
        };
        let message = message?;
        last_progress = std::time::Instant::now();
        let key = (message.topic().to_owned(), message.partition());
        let Some(high) = remaining.get(&key).copied() else {
            continue;
        };
        if message.offset() + 1 >= high {
            let _ = remaining.remove(&key);
        }
        if message.offset() >= high {
            continue;
        }
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(LogRecord {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
    }
    records
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    Ok(records)
}
