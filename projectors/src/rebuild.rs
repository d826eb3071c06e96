//! Rebuilds the Redis read models without downtime: fold the whole log into a fresh generation
//! while the active one keeps serving, switch the active pointer in one step once caught up, then
//! drop the old generation after a grace period. Readers resolve the pointer once per read, so
//! each read sees one generation, never a mix.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use podium_schemas::fence::Fence;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::projector::{admitted, next_offsets};
use crate::read_model::{RedisReadModel, Sourced, new_generation};

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Most messages folded in one atomic step.
    pub batch_max: usize,
    /// How long the old generation stays after the switch, for reads already under way. A
    /// query API reads the generation it knows for up to 250 ms after the switch: keep more.
    pub grace: Duration,
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub from: Option<String>,
    pub to: String,
    pub events: u64,
    /// Records that could not be decoded: skipped here, as the live projector dead-letters them.
    pub undecodable: u64,
    pub dropped_keys: usize,
    /// From the start until the new generation was active: the fold itself.
    pub switched_after: Duration,
    /// Until the end, the grace period and the old generation's removal included.
    pub elapsed: Duration,
}

/// Generous: tansu answers metadata only after the storage requests queued before it.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);

/// Low and high watermarks by (topic, partition).
pub type Partitions = HashMap<(String, i32), (i64, i64)>;

/// Low and high watermarks of every partition of `topics`.
pub fn watermarks(consumer: &BaseConsumer, topics: &[String]) -> Result<Partitions> {
    let mut marks = HashMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), WATERMARK_TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let range = consumer.fetch_watermarks(topic, p.id(), WATERMARK_TIMEOUT)?;
                let _ = marks.insert((topic.clone(), p.id()), range);
            }
        }
    }
    Ok(marks)
}

/// How the rebuild reads the log, in consumer group `group` (never committed): what a bare
/// consumer that the rebuild is measured against reads with too.
pub fn log_reader_config(kafka: &KafkaArgs, group: &str) -> rdkafka::ClientConfig {
    let mut config = kafka.consumer_config();
    let _ = config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        // Small fetches: tansu serves one storage request at a time, and a megabyte per
        // partition from the start of the log held its answers to every other request,
        // metadata included, past their 10 s timeout. With 64 KiB they came back in time.
        .set("max.partition.fetch.bytes", "65536")
        .set("fetch.max.bytes", "1048576");
    config
}

/// Folds the whole log into a new generation, makes it active, and drops the old one.
pub async fn rebuild(
    kafka: &KafkaArgs,
    store: &RedisReadModel,
    options: &RebuildOptions,
) -> Result<RebuildReport> {
    let started = Instant::now();
    let from = store.active().await?;
    let to = new_generation();
    let topics = kafka.topics();
    let topics = [topics.lifecycle, topics.answers];
    let consumer: StreamConsumer =
        log_reader_config(kafka, &format!("podium-rebuild-{to}")).create()?;
    // Watermarks through a client of their own: tansu answers a connection's requests in order,
    // and behind a large fetch the rebuild's metadata requests timed out.
    let marks_client: BaseConsumer = kafka.client_config().create()?;
    let marks = watermarks(&marks_client, &topics)?;
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in marks.keys() {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    tracing::info!(from = from.as_deref().unwrap_or("none"), %to, partitions = marks.len(), "rebuild started");

    let total: i64 = marks.values().map(|(low, high)| high - low).sum();
    let bar = if options.progress {
        ProgressBar::new(u64::try_from(total).unwrap_or(0))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("rebuild {bar:40} {pos}/{len} records, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let codec = Codec::new();
    // From the beginning: the fence starts empty, as for every replay.
    let mut fence = Fence::default();
    let mut read: HashMap<(String, i32), i64> = HashMap::new();
    let (mut events, mut undecodable) = (0u64, 0u64);
    let mut near_head = 0;
    let mut checked = Instant::now();
    // The ends last asked for, and when: see `HEAD_REFRESH`.
    let mut known = marks.clone();
    let mut known_at = Instant::now();
    loop {
        let batch = next_batch(&consumer, options.batch_max).await?;
        apply(
            store,
            &to,
            (&codec, &mut fence),
            &batch,
            &mut events,
            &mut undecodable,
        )
        .await?;
        for m in &batch {
            let _ = read.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
        }
        bar.inc(u64::try_from(batch.len()).unwrap_or(0));
        // Asking for the watermarks costs the broker a request per partition: measured on
        // tansu, asking after every short batch slowed the rebuild and timed its requests out.
        if batch.len() < options.batch_max && checked.elapsed() >= HEAD_CHECK_INTERVAL {
            checked = Instant::now();
            // The log only grows: while more than CAUGHT_UP is left up to the ends last seen,
            // the ends now leave at least as much, and asking would change nothing. On nisshi,
            // whose reads fill a core, asking four times a second cost a quarter more broker
            // CPU per record than a bare consumer spends.
            let far = left(&known, &read) > CAUGHT_UP && known_at.elapsed() < HEAD_REFRESH;
            let remaining = if far {
                None
            } else {
                known = watermarks_retrying(&marks_client, &topics).await?;
                known_at = Instant::now();
                Some(left(&known, &read))
            };
            match remaining {
                Some(0) => break,
                Some(n) if n <= CAUGHT_UP => near_head += 1,
                _ => near_head = 0,
            }
            if near_head >= NEAR_HEAD_TURNS {
                break;
            }
        }
    }
    bar.finish_and_clear();

    store.switch(from.as_deref(), &to).await?;
    let switched_after = started.elapsed();
    tracing::info!(%to, events, "rebuild caught up; switched");
    let mut dropped_keys = 0;
    if let Some(old) = &from {
        tokio::time::sleep(options.grace).await;
        dropped_keys = store.drop_generation(old).await?;
    }
    Ok(RebuildReport {
        from,
        to,
        events,
        undecodable,
        dropped_keys,
        switched_after,
        elapsed: started.elapsed(),
    })
}

/// Folds one batch's admitted records into `to`, and stores the epochs seen with its positions.
async fn apply(
    store: &RedisReadModel,
    to: &str,
    (codec, fence): (&Codec, &mut Fence),
    batch: &[OwnedMessage],
    events: &mut u64,
    undecodable: &mut u64,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let admitted = admitted(fence, batch);
    let mut decoded = Vec::with_capacity(admitted.len());
    for m in admitted {
        match codec.decode(m.payload().unwrap_or_default()) {
            Ok(event) => decoded.push(Sourced {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                event,
            }),
            Err(e) => {
                *undecodable += 1;
                tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "undecodable record skipped by the rebuild");
            }
        }
    }
    let _ = store
        .apply_to(to, &decoded, &next_offsets(batch, fence))
        .await?;
    *events += u64::try_from(decoded.len()).unwrap_or(0);
    Ok(())
}

/// Up to `max` messages; empty after a short idle wait.
async fn next_batch(consumer: &StreamConsumer, max: usize) -> Result<Vec<OwnedMessage>> {
    let mut batch = Vec::new();
    let idle = Duration::from_millis(200);
    while batch.len() < max {
        let wait = if batch.is_empty() {
            idle
        } else {
            Duration::from_millis(5)
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(message) => batch.push(message?.detach()),
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// How many records the rebuild may still be behind when it switches: the live projector
/// continues the new generation from its resume positions, so a live quiz cannot keep a rebuild
/// from ever finishing.
const CAUGHT_UP: i64 = 100;
/// How many turns in a row the rebuild must be within [`CAUGHT_UP`] before it switches.
const NEAR_HEAD_TURNS: u32 = 10;

/// How often the rebuild asks how far it is from the head, at most.
const HEAD_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How long the ends last seen stand for the head while the rebuild is far from them: a
/// partition that retention emptied before the rebuild read it is seen as empty by then.
const HEAD_REFRESH: Duration = Duration::from_secs(10);
/// Tries at asking for the watermarks before the rebuild gives up.
const HEAD_CHECK_TRIES: u32 = 5;

/// [`watermarks`], retried with backoff: a broker too busy to answer in time is not a reason
/// to throw away a rebuild's work.
async fn watermarks_retrying(consumer: &BaseConsumer, topics: &[String]) -> Result<Partitions> {
    let mut backoff = crate::backoff::Backoff::new();
    let mut tries = 1;
    loop {
        match watermarks(consumer, topics) {
            Err(Error::Kafka(e)) if tries < HEAD_CHECK_TRIES => {
                backoff
                    .wait("asking the broker for the watermarks", &e)
                    .await;
                tries += 1;
            }
            Ok(marks) if marks.is_empty() => {
                return Err(Error::Rebuild("the event topics have no partitions".into()));
            }
            other => return other,
        }
    }
}

/// How many records are left to read up to `marks`, having read up to `read` (the next
/// offset per partition; a partition not read yet from its low watermark).
fn left(marks: &Partitions, read: &HashMap<(String, i32), i64>) -> i64 {
    marks
        .iter()
        .map(|(tp, (low, high))| (high - read.get(tp).copied().unwrap_or(*low)).max(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_counts_unread_partitions_from_their_low_watermark() {
        let tp = |p: i32| ("podium.answers.v1".to_owned(), p);
        let marks: Partitions = [(tp(0), (0, 500)), (tp(1), (100, 300)), (tp(2), (0, 50))]
            .into_iter()
            .collect();
        // Partition 0 read to 450, partition 1 not at all, partition 2 past the ends seen.
        let read: HashMap<(String, i32), i64> = [(tp(0), 450), (tp(2), 70)].into_iter().collect();
        assert_eq!(left(&marks, &read), 50 + 200);
        assert_eq!(left(&Partitions::new(), &read), 0);
    }
}
