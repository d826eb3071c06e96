//! The read-model projector: a consumer-group member that folds the lifecycle and answers
//! topics into the Redis read models.
//!
//! Where a partition resumes is kept in Redis next to the read model it describes (the
//! generation's resume positions), not only in Kafka's committed offsets: when Redis loses its
//! data, the positions go with it and the projector starts the partition from the beginning; when
//! a rebuild switches generations, the projector continues from where the rebuild got to.
//! Kafka offsets are still committed, for lag tooling.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::OptionFuture;
use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use podium_schemas::fence::{Fence, Verdict};
use podium_schemas::read_model::{fence_field, partition_field};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::dead_letters::{DeadLetters, Reason, event_type_header, header};
use crate::error::Result;
use crate::read_model::{Outcome, RedisReadModel, Resume, ResumePositions, Sourced, Traces};
use crate::watch::{LogWatch, PartitionId, resets};
use podium_runtime::health::{Check, Health};
use tokio_util::task::TaskTracker;

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
    /// How often the projector compares its positions with the log (a log recreated under it)
    /// and, holding no partition, its group's lag (a member left out of the assignment).
    pub watch_interval: Duration,
}

/// What the projector does when the log ends before its read model's positions: the topics were
/// recreated or truncated, and the read model describes records that are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnLogReset {
    /// Fold the log again from its beginning into a fresh generation, and switch readers to it.
    #[default]
    Rebuild,
    /// Stop applying, report not ready, and wait for an operator (`podium-ops rebuild`).
    Halt,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            linger: Duration::from_millis(5),
            idle_check: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            instance_id: None,
            watch_interval: Duration::from_secs(2),
        }
    }
}

/// Sets each newly assigned partition's start to its resume position in the active generation,
/// and turns librdkafka's statistics into lag gauges.
struct ResumeContext {
    store: RedisReadModel,
    /// The epochs seen in the assigned partitions, shared with the projector.
    fence: Arc<Mutex<Fence>>,
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
        let resume = self.store.resume_blocking().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "resume positions unreadable; starting assigned partitions from the beginning");
            Resume::default()
        });
        let mut fence = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
        for mut element in assigned.elements() {
            restore_fence(&mut fence, &resume, element.topic(), element.partition());
            let offset = start_offset(&resume.positions, element.topic(), element.partition());
            if let Err(e) = element.set_offset(offset) {
                tracing::error!(error = %e, "setting a start offset failed");
            }
        }
        tracing::info!(partitions = assigned.count(), generation = %self.store.generation(), "partitions assigned");
    }
}

/// A partition's epochs as they were at its resume position.
fn restore_fence(fence: &mut Fence, resume: &Resume, topic: &str, partition: i32) {
    fence.restore(
        topic,
        partition,
        &resume.fence.of_partition(topic, partition),
    );
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

/// Next offset to read per partition after a batch, with the epochs `fence` saw in each
/// partition up to there (ADR 0011): one `HSET` stores both, so a reader that resumes judges
/// the records after its position as one that read from the start.
pub(crate) fn next_offsets(batch: &[OwnedMessage], fence: &Fence) -> BTreeMap<String, i64> {
    let mut next = BTreeMap::new();
    let mut partitions = BTreeSet::new();
    for m in batch {
        let entry = next
            .entry(partition_field(m.topic(), m.partition()))
            .or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
        let _ = partitions.insert((m.topic(), m.partition()));
    }
    for (topic, partition) in partitions {
        for (shard, epoch) in fence.of_partition(topic, partition) {
            let _ = next.insert(
                fence_field(topic, partition, shard),
                i64::try_from(epoch).unwrap_or(i64::MAX),
            );
        }
    }
    next
}

/// Sorts a batch by the fencing rule: the records to decode, in order. Void records (appended
/// by an owner that had lost its shard) and claim markers are counted and left out.
pub(crate) fn admitted<'a>(fence: &mut Fence, batch: &'a [OwnedMessage]) -> Vec<&'a OwnedMessage> {
    batch
        .iter()
        .filter(|m| match podium_runtime::fencing::judge(fence, *m) {
            Verdict::Count => true,
            Verdict::Void => {
                metrics::counter!("podium_projector_void_records_total").increment(1);
                tracing::info!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    "record of a deposed owner left out"
                );
                false
            }
            Verdict::Claim => false,
        })
        .collect()
}

/// The projector's readiness checks, each set where the projector learns about it.
#[derive(Debug, Clone)]
pub struct ProjectorHealth {
    /// The broker answers: a record arrived, or a question about the log was answered.
    pub broker: Check,
    /// Redis answers: a batch was applied or the active generation was read.
    pub redis: Check,
    /// The member holds partitions, or its group has nothing left to read.
    pub assignment: Check,
    /// The log still holds what the read model was built from.
    pub log: Check,
}

impl ProjectorHealth {
    pub fn new(health: &Health) -> Self {
        Self {
            broker: health.check("broker", "no record or answer from the broker yet"),
            redis: health.check("redis", "no batch applied yet"),
            assignment: health.check("assignment", "not yet assigned partitions"),
            log: health.check("log", "positions not yet compared with the log"),
        }
    }
}

/// Logs consumer errors at most once per interval, so a broker outage is a line every few
/// seconds rather than a flood, and paces the retries.
#[derive(Debug)]
pub(crate) struct ConsumerErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ConsumerErrors {
    pub(crate) fn new() -> Self {
        Self {
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Records an error from the consumer and waits a little before the next read: librdkafka
    /// reconnects by itself, the projector only has to stay alive.
    pub(crate) async fn seen(&mut self, error: &rdkafka::error::KafkaError, broker: &Check) {
        metrics::counter!("podium_projector_consumer_errors_total").increment(1);
        broker.fail(error.to_string());
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(5));
        if due {
            tracing::warn!(%error, suppressed = self.suppressed, "consumer error; retrying");
            self.last_logged = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one round of the watch read about the log, beside the batches.
enum Observed {
    /// The assignment could not be read.
    Nothing,
    /// No partition held: the group's lag and the sum of its committed offsets.
    Unassigned(Result<(i64, i64)>),
    /// The generation's positions could not be read.
    RedisFailed(crate::Error),
    /// The positions in `generation` of the partitions held, and their ends in the log.
    Assigned {
        generation: String,
        resume: ResumePositions,
        marks: Result<HashMap<PartitionId, (i64, i64)>>,
    },
}

/// A member that holds no partition while its group has records to read and none of the
/// other members moves them on is left out of the assignment: seen once against a broker
/// whose group had formed with the live member alone, it stayed so for good.
#[derive(Debug, Default)]
struct Starvation {
    /// When the member was first seen idle beside a lagging group, and the group's committed
    /// offsets then.
    since: Option<(Instant, i64)>,
}

impl Starvation {
    /// True once the member has starved for `patience` without the group moving.
    fn starving(&mut self, lag: i64, committed: i64, patience: Duration) -> bool {
        if lag == 0 {
            self.since = None;
            return false;
        }
        match self.since {
            Some((since, seen)) if seen == committed => since.elapsed() >= patience,
            _ => {
                self.since = Some((Instant::now(), committed));
                false
            }
        }
    }
}

pub struct Projector {
    consumer: StreamConsumer<ResumeContext>,
    store: RedisReadModel,
    dead_letters: DeadLetters,
    codec: Codec,
    batching: Batching,
    topics: [String; 2],
    log: LogWatch,
    health: ProjectorHealth,
    on_log_reset: OnLogReset,
    /// Spawned work (deleting retired generations) that shutdown waits for.
    tasks: TaskTracker,
    /// A Redis call failed since the projector last read from its resume positions.
    redis_lost: AtomicBool,
    /// The epochs seen in the assigned partitions up to where they were read (ADR 0011).
    fence: Arc<Mutex<Fence>>,
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
        health: ProjectorHealth,
        on_log_reset: OnLogReset,
    ) -> Result<Self> {
        let fence = Arc::new(Mutex::new(Fence::default()));
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
            // Topics recreated under the projector are seen within seconds, not librdkafka's
            // default five minutes.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set(
                "session.timeout.ms",
                batching.session_timeout.as_millis().to_string(),
            )
            .create_with_context(ResumeContext {
                store: store.clone(),
                fence: fence.clone(),
            })?;
        let topics = kafka.topics();
        let topics = [topics.lifecycle, topics.answers];
        Ok(Self {
            consumer,
            store,
            dead_letters: DeadLetters::new(kafka)?,
            codec: Codec::new(),
            log: LogWatch::new(kafka, group, topics.to_vec())?,
            batching,
            topics,
            health,
            on_log_reset,
            tasks: TaskTracker::new(),
            redis_lost: AtomicBool::new(false),
            fence,
        })
    }

    /// Runs until `shutdown` resolves; then finishes the batch in hand, commits and leaves the
    /// group. A broker or Redis that goes away is waited for, never a reason to stop.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let generation = tokio::select! {
            () = &mut shutdown => return Ok(()),
            generation = self.adopt_until_done() => generation,
        };
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)?;
        tracing::info!(%generation, "projector running");
        let mut idle = tokio::time::interval(self.batching.idle_check);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = tokio::time::interval(self.batching.watch_interval);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut starvation = Starvation::default();
        let mut errors = ConsumerErrors::new();
        let mut halted = false;
        // A round of the watch in progress: it reads while batches are folded, and is judged
        // between them.
        let mut observing: Option<futures::future::BoxFuture<'_, Observed>> = None;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = idle.tick() => self.check_generation().await,
                _ = watch.tick(), if observing.is_none() => {
                    observing = Some(Box::pin(self.observe()));
                }
                Some(observed) = OptionFuture::from(observing.as_mut()), if observing.is_some() => {
                    observing = None;
                    halted = self.judge(observed, &mut starvation, halted).await;
                }
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        self.health.broker.pass();
                        let batch = fill_batch(&self.consumer, message.detach(), &self.batching).await;
                        let span = tracing::info_span!("batch", messages = batch.len());
                        self.process(&batch).instrument(span).await;
                    }
                    Err(e) => errors.seen(&e, &self.health.broker).await,
                },
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is also a "failure"; positions keep us exact.
            tracing::debug!(error = %e, "final commit");
        }
        self.consumer.unsubscribe();
        let _ = self.tasks.close();
        self.tasks.wait().await;
        tracing::info!("projector stopped");
        Ok(())
    }

    /// The active generation, made this process's own; waits for Redis as long as it takes.
    async fn adopt_until_done(&self) -> String {
        let mut backoff = Backoff::new();
        loop {
            match self.store.adopt_active().await {
                Ok(generation) => {
                    self.health.redis.pass();
                    return generation;
                }
                Err(e) => {
                    self.health.redis.fail(e.to_string());
                    backoff.wait("reading the active read model", &e).await;
                }
            }
        }
    }

    /// Decodes the batch's admitted records; what cannot be decoded goes to the dead-letter
    /// topic first.
    async fn decode(&self, batch: &[&OwnedMessage]) -> Vec<Sourced<podium_schemas::Event>> {
        let mut events = Vec::with_capacity(batch.len());
        for &m in batch {
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

    async fn process(&self, batch: &[OwnedMessage]) {
        let (admitted, next) = {
            let mut fence = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
            let admitted = admitted(&mut fence, batch);
            (admitted, next_offsets(batch, &fence))
        };
        let events = self.decode(&admitted).await;
        // Each record's trace goes on through its fold, and each quiz's change message carries
        // the trace of its last fold; the spans end with the batch.
        let folds = fold_spans(batch);
        let traces = change_traces(&events, &folds);
        let _batch = batch_span(batch, events.len());
        let started = Instant::now();
        match self.store.apply_traced(&events, &next, &traces).await {
            Ok(Outcome::Applied { changed }) => {
                self.health.redis.pass();
                let elapsed = started.elapsed();
                metrics::histogram!("podium_projector_batch_apply_seconds")
                    .record(elapsed.as_secs_f64());
                metrics::counter!("podium_projector_events_total")
                    .increment(u64::try_from(events.len()).unwrap_or(u64::MAX));
                tracing::debug!(events = events.len(), changed, ?elapsed, "batch applied");
                store_offsets(&self.consumer, batch);
            }
            Ok(Outcome::Moved { from, to }) => {
                self.health.redis.pass();
                self.moved(from, &to).await;
            }
            Err(e) => {
                // Not retried on top of what Redis holds now: Redis may have come back from a
                // snapshot older than this batch, and applying it would leave a gap. The batch
                // is read again from the resume positions once Redis answers.
                self.redis_failed(&e);
                self.resync().await;
            }
        }
    }

    fn redis_failed(&self, error: &crate::Error) {
        tracing::warn!(%error, "redis failed; the projector re-reads from its resume positions once Redis answers");
        self.health.redis.fail(error.to_string());
        self.redis_lost.store(true, Ordering::Relaxed);
    }

    /// After Redis failed: waits until it answers, then re-reads every assigned partition
    /// from the resume positions Redis holds now (or follows a new active generation). The
    /// positions are a lower bound of what Redis holds, so nothing is skipped, and the scripts'
    /// own positions make what is read twice count once.
    async fn resync(&self) {
        let mut backoff = Backoff::new();
        loop {
            backoff.pause().await;
            let current = self.store.generation();
            let result = match self.store.active().await {
                Ok(Some(active)) if active == current => self.seek_to_resume(&current).await,
                Ok(_) => {
                    let to = self.adopt_until_done().await;
                    self.moved(current, &to).await;
                    Ok(())
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    self.redis_lost.store(false, Ordering::Relaxed);
                    self.health.redis.pass();
                    return;
                }
                Err(e) => {
                    self.health.redis.fail(e.to_string());
                    backoff.note("waiting for Redis", &e);
                }
            }
        }
    }

    /// An idle projector notices a switch or a Redis that lost its data within `idle_check`.
    async fn check_generation(&self) {
        let current = self.store.generation();
        let active = match self.store.active().await {
            Ok(active) => active,
            Err(e) => {
                self.redis_failed(&e);
                return;
            }
        };
        if self.redis_lost.load(Ordering::Relaxed) {
            self.resync().await;
            return;
        }
        self.health.redis.pass();
        if active.as_deref() == Some(current.as_str()) {
            return;
        }
        let to = self.adopt_until_done().await;
        self.moved(current, &to).await;
    }

    /// Reads what the watch compares, while the batches go on: the broker's answers take
    /// round trips that, awaited between batches, held every answer behind them (every 2 s,
    /// one watermark query per partition, tens of ms under load).
    async fn observe(&self) -> Observed {
        let assigned: Vec<(String, i32)> = match self.consumer.assignment() {
            Ok(list) => list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "reading the assignment failed");
                return Observed::Nothing;
            }
        };
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("podium_projector_assigned_partitions").set(assigned.len() as f64);
        if assigned.is_empty() {
            return Observed::Unassigned(self.log.group_lag().await);
        }
        let generation = self.store.generation();
        // The positions first, then the log's ends: positions only grow from records the log
        // already held, so read in this order they never pass an end without a reset.
        let resume = match self.store.resume_positions(&generation).await {
            Ok(resume) => resume,
            Err(e) => return Observed::RedisFailed(e),
        };
        Observed::Assigned {
            generation,
            resume,
            marks: self.log.watermarks(assigned).await,
        }
    }

    /// Acts on what [`Self::observe`] read, between batches: a member starved of partitions
    /// rejoins; positions beyond the end of the log start a fresh generation (or halt).
    /// Returns whether the projector is halted.
    async fn judge(&self, observed: Observed, starvation: &mut Starvation, halted: bool) -> bool {
        match observed {
            Observed::Nothing => halted,
            Observed::Unassigned(lag) => {
                self.watch_starvation(lag, starvation);
                halted
            }
            Observed::RedisFailed(e) => {
                self.redis_failed(&e);
                halted
            }
            Observed::Assigned {
                generation,
                resume,
                marks,
            } => {
                *starvation = Starvation::default();
                self.health.assignment.pass();
                // The generation moved while the watch read: its positions say nothing now.
                if generation != self.store.generation() {
                    return halted;
                }
                match marks {
                    Ok(marks) => self.watch_log(generation, &resume, &marks, halted).await,
                    Err(e) => {
                        // Topics being recreated answer "unknown partition" for a while.
                        tracing::debug!(error = %e, "reading the watermarks failed");
                        halted
                    }
                }
            }
        }
    }

    fn watch_starvation(&self, lag: Result<(i64, i64)>, starvation: &mut Starvation) {
        let (lag, committed) = match lag {
            Ok(lag) => lag,
            Err(e) => {
                self.health.broker.fail(e.to_string());
                return;
            }
        };
        self.health.broker.pass();
        if lag == 0 {
            // Nothing to read: holding nothing is fine (more members than partitions).
            self.health.assignment.pass();
        }
        if starvation.starving(lag, committed, self.batching.session_timeout) {
            tracing::error!(
                lag,
                "this member holds no partition while its group lags and no member moves it on; rejoining the group"
            );
            metrics::counter!("podium_projector_rejoins_total").increment(1);
            self.health.assignment.fail(format!(
                "no partitions while the group lags by {lag} records"
            ));
            *starvation = Starvation::default();
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            self.consumer.unsubscribe();
            if let Err(e) = self.consumer.subscribe(&topics) {
                tracing::error!(error = %e, "subscribing again failed");
            }
        }
    }

    async fn watch_log(
        &self,
        generation: String,
        resume: &ResumePositions,
        marks: &HashMap<PartitionId, (i64, i64)>,
        halted: bool,
    ) -> bool {
        self.health.broker.pass();
        let found = resets(resume, marks);
        let Some(first) = found.first() else {
            if halted {
                tracing::info!("the read model's positions fit the log again; resuming");
                self.pause(false);
            }
            self.health.log.pass();
            return false;
        };
        metrics::counter!("podium_projector_log_resets_total").increment(1);
        let detail = format!(
            "{}:{} ends at {} but the read model resumes at {} ({} partitions so)",
            first.topic,
            first.partition,
            first.high,
            first.resume,
            found.len()
        );
        match self.on_log_reset {
            OnLogReset::Rebuild => {
                tracing::error!(%detail, %generation, "the log is behind the read model: its topics were recreated or truncated; folding it again from the beginning into a fresh generation");
                match self.store.start_afresh(&generation).await {
                    Ok(to) => {
                        self.moved(generation, &to).await;
                        self.health.log.pass();
                    }
                    Err(e) => self.redis_failed(&e),
                }
                false
            }
            OnLogReset::Halt => {
                tracing::error!(%detail, "the log is behind the read model: its topics were recreated or truncated; halted (PODIUM_PROJECTOR_ON_LOG_RESET=halt) until an operator runs podium-ops rebuild");
                self.health.log.fail(detail);
                self.pause(true);
                true
            }
        }
    }

    /// Pauses (or resumes) every assigned partition. A paused consumer is still polled, so
    /// it stays in its group.
    fn pause(&self, pause: bool) {
        let result = self.consumer.assignment().and_then(|assigned| {
            if pause {
                self.consumer.pause(&assigned)
            } else {
                self.consumer.resume(&assigned)
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, pause, "pausing or resuming the partitions failed");
        }
    }

    /// Follows the active generation to `to`. What this process wrote to `from` after it was
    /// retired (a batch in flight at a switch, or writes into a Redis that had just lost its
    /// data) is garbage: it is deleted once other projectors have had time to notice too.
    async fn moved(&self, from: String, to: &str) {
        tracing::warn!(%from, %to, "the active read model moved; re-reading from its positions");
        metrics::counter!("podium_projector_generation_moves_total").increment(1);
        // Reading on from the old positions would skip records in the new generation.
        let mut backoff = Backoff::new();
        while let Err(e) = self.seek_to_resume(to).await {
            backoff
                .wait("moving to the new generation's positions", &e)
                .await;
        }
        let (store, grace) = (self.store.clone(), RETIRED_GRACE);
        drop(self.tasks.spawn(async move {
            tokio::time::sleep(grace).await;
            match store.drop_generation(&from).await {
                Ok(keys) => tracing::info!(generation = %from, keys, "retired generation deleted"),
                Err(e) => {
                    tracing::warn!(generation = %from, error = %e, "deleting a retired generation failed")
                }
            }
        }));
    }

    /// Moves every assigned partition to its resume position in `generation`.
    async fn seek_to_resume(&self, generation: &str) -> Result<()> {
        let resume = self.store.resume(generation).await?;
        let mut positions = TopicPartitionList::new();
        {
            let mut fence = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
            for element in self.consumer.assignment()?.elements() {
                restore_fence(&mut fence, &resume, element.topic(), element.partition());
                let offset = start_offset(&resume.positions, element.topic(), element.partition());
                positions.add_partition_offset(element.topic(), element.partition(), offset)?;
            }
        }
        if positions.count() > 0 {
            let _ = self
                .consumer
                .seek_partitions(positions, Duration::from_secs(10))?;
        }
        Ok(())
    }
}

/// One span per record that carries a trace context, a child of the span that appended it, when
/// spans are exported; none otherwise.
fn fold_spans(batch: &[OwnedMessage]) -> HashMap<(String, i32, i64), tracing::Span> {
    if !podium_runtime::telemetry::exporting() {
        return HashMap::new();
    }
    batch
        .iter()
        .filter_map(|m| {
            let parent = header(m, podium_runtime::telemetry::TRACEPARENT)?;
            let event_type = event_type_header(m).unwrap_or_default();
            let span = tracing::info_span!(
                "fold",
                otel.name = %format!("fold {event_type}"),
                otel.kind = "consumer",
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            podium_runtime::telemetry::continue_trace(&span, &parent);
            podium_runtime::telemetry::record_ids(&span);
            Some(((m.topic().to_owned(), m.partition(), m.offset()), span))
        })
        .collect()
}

/// The batch's span, linked to every record's trace, when spans are exported.
fn batch_span(batch: &[OwnedMessage], events: usize) -> Option<tracing::Span> {
    if !podium_runtime::telemetry::exporting() {
        return None;
    }
    let span = tracing::info_span!("apply batch", records = batch.len(), events);
    for m in batch {
        if let Some(parent) = header(m, podium_runtime::telemetry::TRACEPARENT) {
            podium_runtime::telemetry::link_trace(&span, &parent);
        }
    }
    Some(span)
}

/// Per quiz, the trace context of the fold of its last event in the batch.
fn change_traces(
    events: &[Sourced<podium_schemas::Event>],
    folds: &HashMap<(String, i32, i64), tracing::Span>,
) -> Traces {
    let mut traces = Traces::new();
    for e in events {
        let fold = folds.get(&(e.topic.clone(), e.partition, e.offset));
        if let Some(traceparent) = fold.and_then(podium_runtime::telemetry::traceparent_of) {
            let _ = traces.insert(e.event.quiz_id().to_owned(), traceparent);
        }
    }
    traces
}

/// Stores the batch's offsets for the next commit. A partition revoked mid-batch cannot store;
/// for the read models the resume positions in Redis still hold, and the durable store is
/// idempotent.
pub(crate) fn store_offsets<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    batch: &[OwnedMessage],
) {
    if let Err(e) = consumer.store_offsets(&batch_offsets(batch)) {
        tracing::debug!(error = %e, "offsets not stored");
    }
}

/// Each partition's next offset after a batch, once per partition. A partition listed twice
/// leaves every entry after the first without an offset, and librdkafka stores the last: the
/// offsets of a batch with two records of one partition were never committed.
fn batch_offsets(batch: &[OwnedMessage]) -> TopicPartitionList {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let offset = next.entry((m.topic(), m.partition())).or_default();
        *offset = (*offset).max(m.offset() + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if let Err(e) = offsets
            .add_partition(topic, partition)
            .set_offset(Offset::Offset(offset))
        {
            tracing::debug!(error = %e, "offset not stored");
        }
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_stores_each_partition_once_at_its_next_offset() {
        let message = |partition, offset| {
            OwnedMessage::new(
                None,
                None,
                "answers".into(),
                rdkafka::Timestamp::NotAvailable,
                partition,
                offset,
                None,
            )
        };
        let batch = [message(0, 4), message(1, 7), message(0, 5), message(0, 6)];
        let stored: Vec<(i32, Offset)> = batch_offsets(&batch)
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        assert_eq!(stored, [(0, Offset::Offset(7)), (1, Offset::Offset(8))]);
    }

    #[test]
    fn a_member_starves_only_when_the_group_lags_and_stands_still_for_the_whole_patience() {
        let patience = Duration::from_millis(50);
        let mut starvation = Starvation::default();
        // Nothing to read: holding nothing is fine.
        assert!(!starvation.starving(0, 100, patience));
        // Lag, first seen: not yet.
        assert!(!starvation.starving(40, 100, patience));
        std::thread::sleep(patience);
        // Another member moved the group on: it is working, this one is merely spare.
        assert!(!starvation.starving(30, 110, patience));
        assert!(!starvation.starving(30, 110, patience));
        std::thread::sleep(patience);
        // The same lag and offsets for the whole patience: nobody reads.
        assert!(starvation.starving(30, 110, patience));
        // Caught up meanwhile: starts over.
        assert!(!starvation.starving(0, 140, patience));
        assert!(!starvation.starving(5, 140, patience));
    }
}
