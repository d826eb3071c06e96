//! The leaderboard projector: a consumer-group member that folds answers into the store.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after the store applied the batch,
//! so a crash redelivers, and the store's positions make the redelivery change nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use podium_runtime::KafkaArgs;
use podium_schemas::{Codec, Event};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::Instrument;

use crate::error::Result;
use crate::leaderboard::{LeaderboardStore, Sourced};

/// How a projector reads.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Most messages folded in one atomic step.
    pub max_messages: usize,
    /// How long to wait for more messages once a batch has begun.
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            linger: Duration::from_millis(5),
        }
    }
}

pub struct LeaderboardProjector {
    consumer: StreamConsumer,
    store: Arc<dyn LeaderboardStore>,
    codec: Codec,
    batching: Batching,
}

impl std::fmt::Debug for LeaderboardProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderboardProjector")
            .field("store", &self.store)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

impl LeaderboardProjector {
    pub fn new(
        kafka: &KafkaArgs,
        group: &str,
        store: Arc<dyn LeaderboardStore>,
        batching: Batching,
    ) -> Result<Self> {
        let consumer: StreamConsumer = kafka
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[kafka.topics().answers.as_str()])?;
        Ok(Self {
            consumer,
            store,
            codec: Codec::new(),
            batching,
        })
    }

    /// Runs until `shutdown` resolves; then finishes the batch in hand, commits and leaves the
    /// group.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        tracing::info!("leaderboard projector running");
        loop {
            let first = tokio::select! {
                () = &mut shutdown => break,
                message = self.consumer.recv() => message?.detach(),
            };
            let batch = self.fill_batch(first).await;
            let span = tracing::info_span!("batch", messages = batch.len());
            self.apply_until_done(&batch).instrument(span).await;
            self.store_offsets(&batch)?;
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is also a "failure"; positions keep us exact.
            tracing::debug!(error = %e, "final commit");
        }
        self.consumer.unsubscribe();
        tracing::info!("leaderboard projector stopped");
        Ok(())
    }

    async fn fill_batch(&self, first: OwnedMessage) -> Vec<OwnedMessage> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.batching.linger;
        while batch.len() < self.batching.max_messages {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
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

    fn decode(
        &self,
        batch: &[OwnedMessage],
    ) -> Vec<Sourced<podium_schemas::events::AnswerSubmitted>> {
        batch
            .iter()
            .filter_map(|m| {
                match self.codec.decode(m.payload().unwrap_or_default()) {
                    Ok(Event::AnswerSubmitted(answer)) => Some(Sourced {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        event: answer,
                    }),
                    Ok(other) => {
                        tracing::warn!(event_type = other.event_type(), topic = m.topic(), "unexpected event on the answers topic");
                        None
                    }
                    Err(e) => {
                        tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "undecodable record skipped");
                        None
                    }
                }
            })
            .collect()
    }

    /// The store must apply the batch before its offsets move: retry until it does.
    async fn apply_until_done(&self, batch: &[OwnedMessage]) {
        let answers = self.decode(batch);
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.store.apply(&answers).await {
                Ok(applied) => {
                    tracing::debug!(messages = batch.len(), applied, elapsed = ?started.elapsed(), "batch applied");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "applying a batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn store_offsets(&self, batch: &[OwnedMessage]) -> Result<()> {
        let mut offsets = TopicPartitionList::new();
        for m in batch {
            offsets.add_partition_offset(
                m.topic(),
                m.partition(),
                Offset::Offset(m.offset() + 1),
            )?;
        }
        self.consumer.store_offsets(&offsets)?;
        Ok(())
    }
}
