//! The read-model projector: a consumer-group member that folds the lifecycle and answers
//! topics into the Redis read models.
//!
//! Where a partition resumes is kept in Redis next to the read model it describes (the
//! generation's resume positions), not only in Kafka's committed offsets: when Redis loses its
//! data, the positions go with it and the projector starts the partition from the beginning; when
//! a rebuild switches generations, the projector continues from where the rebuild got to.
//! Kafka offsets are still committed, for lag tooling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use podium_schemas::read_model::partition_field;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::dead_letters::{DeadLetters, Reason, event_type_header};
use crate::error::Result;
use crate::read_model::{Outcome, RedisReadModel, ResumePositions, Sourced};

/// How long a retired generation stays before a projector that saw it retire deletes it.
const RETIRED_GRACE: Duration = Duration::from_secs(5);

/// How a projector reads.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Most messages folded in one atomic step.
    pub max_messages: usize,
    /// How long to wait for more messages once a batch has begun.
    pub linger: Duration,
    /// How often an idle projector checks that its generation is still the active one.
    pub idle_check: Duration,
    /// The consumer group's session timeout.
    pub session_timeout: Duration,
    /// Static group membership (`group.instance.id`), if set.
    pub instance_id: Option<String>,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            linger: Duration::from_millis(5),
            idle_check: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            instance_id: None,
        }
    }
}

/// Sets each newly assigned partition's start to its resume position in the active generation,
/// and turns librdkafka's statistics into lag gauges.
struct ResumeContext {
    store: RedisReadModel,
}

impl ClientContext for ResumeContext {
    /// Read from the raw JSON: only the fields the gauges need, so a librdkafka that adds or
    /// changes other fields does not silence them.
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let Some(topics) = stats.get("topics").and_then(|t| t.as_object()) else {
            return;
        };
        for (topic, t) in topics {
            let Some(partitions) = t.get("partitions").and_then(|p| p.as_object()) else {
                continue;
            };
            for (partition, p) in partitions {
                let field = |name: &str| p.get(name).and_then(serde_json::Value::as_i64);
                // Partition -1 is librdkafka's internal one; -1 offsets mean "not known yet".
                let lag = match (
                    field("consumer_lag"),
                    field("hi_offset"),
                    field("app_offset"),
                ) {
                    (Some(lag), _, _) if lag >= 0 => lag,
                    (_, Some(high), Some(next)) if high >= 0 && next >= 0 => (high - next).max(0),
                    _ => continue,
                };
                if partition.starts_with('-') {
                    continue;
                }
                #[allow(clippy::cast_precision_loss)]
                let lag = lag as f64;
                metrics::gauge!(
                    "podium_projector_consumer_lag",
                    "topic" => topic.clone(),
                    "partition" => partition.clone()
                )
                .set(lag);
            }
        }
    }
}

impl ConsumerContext for ResumeContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        let resume = self.store.resume_positions_blocking().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "resume positions unreadable; starting assigned partitions from the beginning");
            ResumePositions::new()
        });
        for mut element in assigned.elements() {
            let offset = start_offset(&resume, element.topic(), element.partition());
            if let Err(e) = element.set_offset(offset) {
                tracing::error!(error = %e, "setting a start offset failed");
            }
        }
        tracing::info!(partitions = assigned.count(), generation = %self.store.generation(), "partitions assigned");
    }
}

fn start_offset(resume: &ResumePositions, topic: &str, partition: i32) -> Offset {
    resume
        .get(&(topic.to_owned(), partition))
        .map_or(Offset::Beginning, |next| Offset::Offset(*next))
}

/// `first`, then whatever else arrives within the linger, up to the batch size.
pub(crate) async fn fill_batch<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    first: OwnedMessage,
    batching: &Batching,
) -> Vec<OwnedMessage> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + batching.linger;
    while batch.len() < batching.max_messages {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error while filling a batch");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// Next offset to read per partition, after a batch.
pub(crate) fn next_offsets(batch: &[OwnedMessage]) -> BTreeMap<String, i64> {
    let mut next = BTreeMap::new();
    for m in batch {
        let entry = next
            .entry(partition_field(m.topic(), m.partition()))
            .or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
    }
    next
}

pub struct Projector {
    consumer: StreamConsumer<ResumeContext>,
    store: RedisReadModel,
    dead_letters: DeadLetters,
    codec: Codec,
    batching: Batching,
    topics: [String; 2],
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("store", &self.store)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

impl Projector {
    pub fn new(
        kafka: &KafkaArgs,
        group: &str,
        store: RedisReadModel,
        batching: Batching,
    ) -> Result<Self> {
        let mut config = kafka.consumer_config();
        if let Some(instance) = &batching.instance_id {
            let _ = config.set("group.instance.id", instance);
        }
        let consumer: StreamConsumer<ResumeContext> = config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            .set(
                "session.timeout.ms",
                batching.session_timeout.as_millis().to_string(),
            )
            .create_with_context(ResumeContext {
                store: store.clone(),
            })?;
        let topics = kafka.topics();
        Ok(Self {
            consumer,
            store,
            dead_letters: DeadLetters::new(kafka)?,
            codec: Codec::new(),
            batching,
            topics: [topics.lifecycle, topics.answers],
        })
    }

    /// Runs until `shutdown` resolves; then finishes the batch in hand, commits and leaves the
    /// group.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let generation = self.store.adopt_active().await?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)?;
        tracing::info!(%generation, "projector running");
        tokio::pin!(shutdown);
        let mut idle = tokio::time::interval(self.batching.idle_check);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = idle.tick() => self.check_generation().await?,
                message = self.consumer.recv() => {
                    let batch = fill_batch(&self.consumer, message?.detach(), &self.batching).await;
                    let span = tracing::info_span!("batch", messages = batch.len());
                    self.process(&batch).instrument(span).await?;
                }
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is also a "failure"; positions keep us exact.
            tracing::debug!(error = %e, "final commit");
        }
        self.consumer.unsubscribe();
        tracing::info!("projector stopped");
        Ok(())
    }

    /// Decodes a batch; what cannot be decoded goes to the dead-letter topic first.
    async fn decode(&self, batch: &[OwnedMessage]) -> Vec<Sourced<podium_schemas::Event>> {
        let mut events = Vec::with_capacity(batch.len());
        for m in batch {
            match self.codec.decode(m.payload().unwrap_or_default()) {
                Ok(event) => events.push(Sourced {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    event,
                }),
                Err(e) => {
                    let reason = Reason::of(&e, event_type_header(m).as_deref());
                    self.dead_letters.send(m, reason, &e.to_string()).await;
                }
            }
        }
        events
    }

    async fn process(&self, batch: &[OwnedMessage]) -> Result<()> {
        let events = self.decode(batch).await;
        let next = next_offsets(batch);
        match self.apply_until_done(&events, &next).await {
            Outcome::Applied { .. } => store_offsets(&self.consumer, batch),
            Outcome::Moved { from, to } => self.moved(from, &to).await?,
        }
        Ok(())
    }

    /// The store must apply the batch before its offsets move: retry until it does.
    async fn apply_until_done(
        &self,
        events: &[Sourced<podium_schemas::Event>],
        next: &BTreeMap<String, i64>,
    ) -> Outcome {
        let mut backoff = Backoff::new();
        loop {
            let started = Instant::now();
            match self.store.apply(events, next).await {
                Ok(outcome) => {
                    let elapsed = started.elapsed();
                    metrics::histogram!("podium_projector_batch_apply_seconds")
                        .record(elapsed.as_secs_f64());
                    metrics::counter!("podium_projector_events_total")
                        .increment(u64::try_from(events.len()).unwrap_or(u64::MAX));
                    tracing::debug!(events = events.len(), ?outcome, ?elapsed, "batch applied");
                    return outcome;
                }
                Err(e) => backoff.wait("applying a batch", &e).await,
            }
        }
    }

    /// An idle projector notices a switch or a Redis that lost its data within `idle_check`.
    async fn check_generation(&self) -> Result<()> {
        let current = self.store.generation();
        match self.store.active().await {
            Ok(Some(active)) if active == current => Ok(()),
            Ok(_) => {
                let to = self.store.adopt_active().await?;
                self.moved(current, &to).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "checking the active read model failed");
                Ok(())
            }
        }
    }

    /// Follows the active generation to `to`. What this process wrote to `from` after it was
    /// retired (a batch in flight at a switch, or writes into a Redis that had just lost its
    /// data) is garbage: it is deleted once other projectors have had time to notice too.
    async fn moved(&self, from: String, to: &str) -> Result<()> {
        tracing::warn!(%from, %to, "the active read model moved; re-reading from its positions");
        metrics::counter!("podium_projector_generation_moves_total").increment(1);
        self.seek_to_resume(to).await?;
        let (store, grace) = (self.store.clone(), RETIRED_GRACE);
        drop(tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            match store.drop_generation(&from).await {
                Ok(keys) => tracing::info!(generation = %from, keys, "retired generation deleted"),
                Err(e) => {
                    tracing::warn!(generation = %from, error = %e, "deleting a retired generation failed")
                }
            }
        }));
        Ok(())
    }

    /// Moves every assigned partition to its resume position in `generation`.
    async fn seek_to_resume(&self, generation: &str) -> Result<()> {
        let resume = self.store.resume_positions(generation).await?;
        let mut positions = TopicPartitionList::new();
        for element in self.consumer.assignment()?.elements() {
            let offset = start_offset(&resume, element.topic(), element.partition());
            positions.add_partition_offset(element.topic(), element.partition(), offset)?;
        }
        if positions.count() > 0 {
            let _ = self
                .consumer
                .seek_partitions(positions, Duration::from_secs(10))?;
        }
        Ok(())
    }
}

/// Stores the batch's offsets for the next commit. A partition revoked mid-batch cannot store;
/// for the read models the resume positions in Redis still hold, and the durable store is
/// idempotent.
pub(crate) fn store_offsets<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    batch: &[OwnedMessage],
) {
    let mut offsets = TopicPartitionList::new();
    for m in batch {
        if let Err(e) =
            offsets.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))
        {
            tracing::debug!(error = %e, "offset not stored");
        }
    }
    if let Err(e) = consumer.store_offsets(&offsets) {
        tracing::debug!(error = %e, "offsets not stored");
    }
}
