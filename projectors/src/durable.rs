//! The durable projector: a consumer group of its own that records the log into the durable
//! read model (ScyllaDB). Recording is idempotent, so Kafka's committed offsets are enough here:
//! a crash or rebalance redelivers at most what was not committed, and re-recording it changes
//! nothing.
//!
//! It applies the readers' fencing rule (ADR 0011) from where this process started reading.
//! Its resume positions are Kafka's, which carry no epochs: after a restart, an answer a
//! deposed owner appended after a claim marker that lies before the committed offset would be
//! recorded. Groups of command-side instances are therefore not yet run with the durable
//! projector (docs/operations.md).

use std::sync::Arc;

use podium_durable::{DurableStore, Sourced};
use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::OwnedMessage;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::projector::{Batching, ConsumerErrors, admitted, fill_batch, store_offsets};
use podium_schemas::fence::Fence;

pub struct DurableProjector {
    consumer: StreamConsumer<DefaultConsumerContext>,
    store: Arc<dyn DurableStore>,
    codec: Codec,
    batching: Batching,
    fence: std::sync::Mutex<Fence>,
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
        let consumer: StreamConsumer = kafka
            .consumer_config()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let topics = kafka.topics();
        consumer.subscribe(&[topics.lifecycle.as_str(), topics.answers.as_str()])?;
        Ok(Self {
            consumer,
            store,
            codec: Codec::new(),
            batching,
            fence: std::sync::Mutex::default(),
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
        let mut fence = self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    async fn record_until_done(&self, batch: &[OwnedMessage]) {
        let facts = self.decode(batch);
        let mut backoff = Backoff::new();
        while let Err(e) = self.store.record(&facts).await {
            backoff.wait("recording a batch", &e).await;
        }
    }
}
