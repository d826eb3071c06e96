//! Reading the event topics: partitions and their watermarks, offsets-for-times hints, a bounded
//! read of one partition, and a live follow of many. Nothing here joins a consumer group or
//! commits an offset: the tool reads by manual assignment only, so it never disturbs the
//! projectors.

use std::time::{Duration, Instant};

use podium_runtime::KafkaArgs;
use podium_runtime::fencing::header_text;
use podium_schemas::events::Millis;
use podium_schemas::fence::{Fence, HEADER_EPOCH, HEADER_SHARD, SHARD_CLAIMED, Stamp, Verdict};
use podium_schemas::topics::{HEADER_EVENT_ID, HEADER_EVENT_TYPE};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::{Error, Result};

/// How long a metadata, watermark or offsets-for-times request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a bounded read may go without a record before it gives up.
const STALLED: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// One record of an event topic, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (the producer's create time, or the broker's append time when the
    /// topic says so), ms since the epoch; -1 when the broker gave none.
    pub timestamp: Millis,
    pub key: Option<String>,
    /// The `event_id` header, when present.
    pub event_id: Option<String>,
    /// The owner's stamp, in a group of command-side instances (ADR 0011).
    pub stamp: Option<Stamp>,
    /// Whether the record is a claim marker, not an event.
    pub claim: bool,
    pub payload: Vec<u8>,
}

impl LogRecord {
    fn of(m: &BorrowedMessage<'_>) -> Self {
        let event_id = header_text(m, HEADER_EVENT_ID).map(str::to_owned);
        let stamp = Stamp::parse(header_text(m, HEADER_SHARD), header_text(m, HEADER_EPOCH));
        let claim = header_text(m, HEADER_EVENT_TYPE) == Some(SHARD_CLAIMED);
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            event_id,
            stamp,
            claim,
            payload: m.payload().unwrap_or_default().to_vec(),
        }
    }

    /// Judges the record, read in its partition's order, as every reader does: a read that
    /// starts mid-partition does not know the epochs before it, so only a read from a
    /// partition's start voids exactly what the projectors void.
    pub fn judge(&self, fence: &mut Fence) -> Verdict {
        fence.judge(&self.topic, self.partition, self.stamp, self.claim)
    }
}

/// A partition and the offsets it held when asked: `low` is the first offset still kept,
/// `high` the offset the next record will get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMarks {
    pub topic: String,
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// What a broker answers to offsets-for-times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeHint {
    /// The first record at or after the time should be at this offset. Only a hint: some
    /// brokers (tansu among them) answer 0 for a time past the end of the partition.
    At(i64),
    /// No record at or after the time.
    End,
}

/// The event topics, read by manual assignment.
pub struct EventLog {
    consumer: BaseConsumer,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    /// A reader of bounded ranges, one partition after another.
    pub fn connect(kafka: &KafkaArgs) -> Result<Self> {
        // A fetch waiting at the end of the partition just read would hold up the first fetch
        // of the next one by up to fetch.wait.max.ms (500 ms by default).
        Self::with(kafka, "10")
    }

    /// A reader that follows the partitions' ends live.
    pub fn connect_live(kafka: &KafkaArgs) -> Result<Self> {
        Self::with(kafka, "500")
    }

    fn with(kafka: &KafkaArgs, fetch_wait_ms: &str) -> Result<Self> {
        let consumer: BaseConsumer = kafka
            .client_config()
            // Required by librdkafka for a consumer; never used to commit or to join a group.
            .set("group.id", "podium-analyst")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", fetch_wait_ms)
            .create()?;
        Ok(Self { consumer })
    }

    /// Every partition of `topic` with its watermarks, by partition number.
    pub fn partitions(&self, topic: &str) -> Result<Vec<PartitionMarks>> {
        let metadata = self.consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        let mut ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if ids.is_empty() {
            return Err(Error::NoSuchTopic(topic.to_owned()));
        }
        ids.sort_unstable();
        ids.into_iter()
            .map(|partition| {
                let (low, high) =
                    self.consumer
                        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?;
                Ok(PartitionMarks {
                    topic: topic.to_owned(),
                    partition,
                    low,
                    high,
                })
            })
            .collect()
    }

    /// Where the broker says the first record at or after `at` is.
    pub fn offset_for_time(&self, topic: &str, partition: i32, at: Millis) -> Result<TimeHint> {
        let mut query = TopicPartitionList::new();
        query.add_partition_offset(topic, partition, Offset::Offset(at))?;
        let answer = self.consumer.offsets_for_times(query, REQUEST_TIMEOUT)?;
        Ok(
            match answer.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => TimeHint::At(offset),
                Some(Offset::End) => TimeHint::End,
                // Anything else tells nothing: read from the beginning and filter.
                _ => TimeHint::At(0),
            },
        )
    }

    /// The record at `offset`, or the first one after it if it is gone; `None` if the partition
    /// ends first.
    pub fn record_at(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        end: i64,
    ) -> Result<Option<LogRecord>> {
        let mut found = None;
        self.read(topic, partition, offset, end, |record| {
            found = Some(record);
            Ok(Flow::Stop)
        })?;
        Ok(found)
    }

    /// Hands every record of `topic`/`partition` from offset `from` up to, not including, `end`
    /// to `each`, in offset order, until `each` says stop. Ends early when the partition ends
    /// before `end` (records deleted or compacted away).
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        mut each: impl FnMut(LogRecord) -> Result<Flow>,
    ) -> Result<()> {
        if from >= end {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        self.consumer.assign(&assignment)?;
        let result = self.read_assigned(topic, partition, from, end, &mut each);
        self.consumer.unassign()?;
        result
    }

    fn read_assigned(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        each: &mut impl FnMut(LogRecord) -> Result<Flow>,
    ) -> Result<()> {
        let mut last_progress = Instant::now();
        let mut next = from;
        loop {
            match self.consumer.poll(POLL) {
                None => {
                    if last_progress.elapsed() > STALLED {
                        return Err(Error::Stalled {
                            topic: topic.to_owned(),
                            partition,
                            at: next,
                            end,
                            idle_seconds: STALLED.as_secs(),
                        });
                    }
                }
                // The partition ends before `end`: the rest is gone.
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    if m.topic() != topic || m.partition() != partition || m.offset() < from {
                        continue;
                    }
                    if m.offset() >= end {
                        return Ok(());
                    }
                    next = m.offset() + 1;
                    if each(LogRecord::of(&m))? == Flow::Stop || next >= end {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Follows `starts` (topic, partition, where to start) live, handing each record to `each`
    /// as it arrives, until `each` says stop.
    pub fn follow(
        &self,
        starts: &[(String, i32, Offset)],
        mut each: impl FnMut(LogRecord) -> Result<Flow>,
    ) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        for (topic, partition, offset) in starts {
            assignment.add_partition_offset(topic, *partition, *offset)?;
        }
        self.consumer.assign(&assignment)?;
        loop {
            match self.consumer.poll(POLL) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    if each(LogRecord::of(&m))? == Flow::Stop {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Whether a reader wants more records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}
