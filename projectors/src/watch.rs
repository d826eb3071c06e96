//! What a projector learns about the log beside its own consumer: the partitions' watermarks
//! and its group's committed offsets. It asks through a client of its own, off the async
//! runtime, so a slow or absent broker never stalls the consumer or the shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use podium_runtime::KafkaArgs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};

/// `(topic, partition)`.
pub type PartitionId = (String, i32);

/// How long one question to the broker may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A partition the read model is ahead of: it resumes at `resume`, but the log ends at `high`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReset {
    pub topic: String,
    pub partition: i32,
    pub resume: i64,
    pub high: i64,
}

/// Questions about the log, asked in the name of one consumer group.
#[derive(Clone)]
pub struct LogWatch {
    client: Arc<BaseConsumer>,
    topics: Vec<String>,
}

impl std::fmt::Debug for LogWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWatch")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl LogWatch {
    /// The client never subscribes or commits: it only reads the group's committed offsets,
    /// so it takes no part in the group's assignment.
    pub fn new(kafka: &KafkaArgs, group: &str, topics: Vec<String>) -> Result<Self> {
        let client: BaseConsumer = kafka
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            client: Arc::new(client),
            topics,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&BaseConsumer, &[String]) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (client, topics) = (self.client.clone(), self.topics.clone());
        tokio::task::spawn_blocking(move || ask(&client, &topics))
            .await
            .map_err(|e| Error::Config(format!("a broker query panicked: {e}")))?
    }

    /// Low and high watermarks of `partitions`.
    pub async fn watermarks(
        &self,
        partitions: Vec<PartitionId>,
    ) -> Result<HashMap<PartitionId, (i64, i64)>> {
        self.blocking(move |client, _| {
            let mut marks = HashMap::new();
            for (topic, partition) in partitions {
                let range = client.fetch_watermarks(&topic, partition, ASK_TIMEOUT)?;
                let _ = marks.insert((topic, partition), range);
            }
            Ok(marks)
        })
        .await
    }

    /// Records the group has not committed past, over every partition of the watched topics,
    /// and the sum of its committed offsets (which moves whenever any member makes progress).
    pub async fn group_lag(&self) -> Result<(i64, i64)> {
        self.blocking(|client, topics| {
            let mut wanted = TopicPartitionList::new();
            let mut marks = HashMap::new();
            for topic in topics {
                let metadata = client.fetch_metadata(Some(topic), ASK_TIMEOUT)?;
                for t in metadata.topics() {
                    for p in t.partitions() {
                        let range = client.fetch_watermarks(topic, p.id(), ASK_TIMEOUT)?;
                        let _ = marks.insert((topic.clone(), p.id()), range);
                        let _ = wanted.add_partition(topic, p.id());
                    }
                }
            }
            let committed = client.committed_offsets(wanted, ASK_TIMEOUT)?;
            let (mut lag, mut sum) = (0, 0);
            for element in committed.elements() {
                let Some(&(low, high)) =
                    marks.get(&(element.topic().to_owned(), element.partition()))
                else {
                    continue;
                };
                let at = match element.offset() {
                    Offset::Offset(o) => o.clamp(low, high),
                    _ => low,
                };
                lag += high - at;
                sum += at;
            }
            Ok((lag, sum))
        })
        .await
    }
}

/// The partitions whose resume position lies beyond the end of the log: the log was recreated
/// or truncated under the read model, which was built from records no longer there.
pub fn resets(
    resume: &HashMap<PartitionId, i64>,
    marks: &HashMap<PartitionId, (i64, i64)>,
) -> Vec<LogReset> {
    let mut found: Vec<LogReset> = marks
        .iter()
        .filter_map(|((topic, partition), &(_, high))| {
            let resume = *resume.get(&(topic.clone(), *partition))?;
            (resume > high).then(|| LogReset {
                topic: topic.clone(),
                partition: *partition,
                resume,
                high,
            })
        })
        .collect();
    found.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_beyond_the_end_of_the_log_is_a_reset_and_one_at_the_end_is_not() {
        let p = |n: i32| ("answers".to_owned(), n);
        let resume = HashMap::from([(p(0), 120), (p(1), 40), (p(2), 7)]);
        let marks = HashMap::from([(p(0), (0, 35)), (p(1), (0, 40)), (p(3), (0, 9))]);
        assert_eq!(
            resets(&resume, &marks),
            vec![LogReset {
                topic: "answers".into(),
                partition: 0,
                resume: 120,
                high: 35
            }]
        );
    }
}
