//! The durable projector: a consumer group of its own that records the log into the durable
//! read model (ScyllaDB). Recording is idempotent, so Kafka's committed offsets are enough here:
//! a crash or rebalance redelivers at most what was not committed, and re-recording it changes
//! nothing.
//!
//! It applies the readers' fencing rule (ADR 0011). Its resume positions are Kafka's committed
//! offsets, which carry no epochs (nisshi drops a commit's metadata), so it records every claim
//! marker it reads in the durable store, before it stores the batch's offsets. Where it resumes
//! a partition, after a restart or a rebalance, each shard's highest epoch among the markers
//! before that offset is the fence: every record of an epoch lies after that epoch's marker. An
//! answer a deposed owner appended after a marker the committed offset has passed stays void.

use std::sync::Arc;

use podium_durable::{ClaimMarker, DurableStore, Sourced, epochs_before};
use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::OwnedMessage;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::projector::{Batching, ConsumerErrors, admitted, fill_batch, store_offsets};
use podium_schemas::fence::Fence;

pub struct DurableProjector {
    consumer: StreamConsumer<EpochContext>,
    store: Arc<dyn DurableStore>,
    codec: Codec,
    batching: Batching,
    fence: Mutex<Fence>,
    /// Partitions assigned since their last batch: their fence is resumed from the markers.
    fresh: Arc<Mutex<HashSet<(String, i32)>>>,
}

/// The claim markers of a batch, by partition.
fn claim_markers(batch: &[OwnedMessage]) -> BTreeMap<(String, i32), Vec<ClaimMarker>> {
    let mut markers: BTreeMap<(String, i32), Vec<ClaimMarker>> = BTreeMap::new();
    for m in batch {
        if let Some(stamp) = podium_runtime::fencing::claim_of(m) {
            markers
                .entry((m.topic().to_owned(), m.partition()))
                .or_default()
                .push(ClaimMarker {
                    offset: m.offset(),
                    shard: stamp.shard,
                    epoch: stamp.epoch,
                });
        }
    }
    markers
}

/// Notes each partition the group assigns: its fence is resumed before its first batch.
struct EpochContext {
    fresh: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl ClientContext for EpochContext {}

impl ConsumerContext for EpochContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            self.fresh
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(
                    assigned
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
        }
    }
}

impl std::fmt::Debug for DurableProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableProjector")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl DurableProjector {
    pub fn new(
        kafka: &KafkaArgs,
        group: &str,
        store: Arc<dyn DurableStore>,
        batching: Batching,
    ) -> Result<Self> {
        let fresh = Arc::new(Mutex::new(HashSet::new()));
        let consumer: StreamConsumer<EpochContext> = kafka
            .consumer_config()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(EpochContext {
                fresh: fresh.clone(),
            })?;
        let topics = kafka.topics();
        consumer.subscribe(&[topics.lifecycle.as_str(), topics.answers.as_str()])?;
        Ok(Self {
            consumer,
            store,
            codec: Codec::new(),
            batching,
            fence: Mutex::default(),
            fresh,
        })
    }

    /// Runs until `shutdown` resolves; then finishes the batch in hand, commits and leaves.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        tracing::info!("durable projector running");
        let mut errors = ConsumerErrors::new();
        // Not part of the hot projector's readiness: the durable model may lag without harm.
        let broker = podium_runtime::health::Health::new().check("durable broker", "");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        let batch = fill_batch(&self.consumer, message.detach(), &self.batching).await;
                        let span = tracing::info_span!("durable batch", messages = batch.len());
                        self.record_until_done(&batch).instrument(span).await;
                        store_offsets(&self.consumer, &batch);
                    }
                    Err(e) => errors.seen(&e, &broker).await,
                },
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        self.consumer.unsubscribe();
        tracing::info!("durable projector stopped");
        Ok(())
    }

    /// Undecodable records are skipped here: the read-model projector dead-letters them.
    fn decode(&self, batch: &[OwnedMessage]) -> Vec<Sourced> {
        let mut fence = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
        admitted(&mut fence, batch)
            .into_iter()
            .filter_map(|m| {
                let event = self.codec.decode(m.payload().unwrap_or_default()).ok()?;
                Some(Sourced {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    event,
                })
            })
            .collect()
    }

    /// Records the batch's claim markers, then its facts: both before its offsets are stored.
    async fn record_until_done(&self, batch: &[OwnedMessage]) {
        self.resume_fences(batch).await;
        for ((topic, partition), markers) in claim_markers(batch) {
            let mut backoff = Backoff::new();
            while let Err(e) = self.store.record_claims(&topic, partition, &markers).await {
                backoff.wait("recording claim markers", &e).await;
            }
        }
        let facts = self.decode(batch);
        let mut backoff = Backoff::new();
        while let Err(e) = self.store.record(&facts).await {
            backoff.wait("recording a batch", &e).await;
        }
    }

    /// For each partition assigned since its last batch: the fence where the batch starts, from
    /// the claim markers recorded before it.
    async fn resume_fences(&self, batch: &[OwnedMessage]) {
        let mut starts: BTreeMap<(String, i32), i64> = BTreeMap::new();
        {
            let mut fresh = self.fresh.lock().unwrap_or_else(PoisonError::into_inner);
            for m in batch {
                let at = (m.topic().to_owned(), m.partition());
                if fresh.remove(&at) {
                    let _ = starts.insert(at, m.offset());
                }
            }
        }
        for ((topic, partition), start) in starts {
            let mut backoff = Backoff::new();
            let markers = loop {
                match self.store.claims(&topic, partition).await {
                    Ok(markers) => break markers,
                    Err(e) => backoff.wait("reading claim markers", &e).await,
                }
            };
            let epochs = epochs_before(&markers, start);
            self.fence
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .restore(&topic, partition, &epochs);
        }
    }
}
