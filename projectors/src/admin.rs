//! Operator actions on the log itself.

use podium_runtime::KafkaArgs;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};

/// Creates Podium's topics with their explicit partition counts, the answers topic with
/// `answers_partitions`. Topics that already exist are left as they are, so running it twice
/// is safe.
pub async fn create_topics(
    kafka: &KafkaArgs,
    replication: i32,
    answers_partitions: i32,
) -> Result<Vec<(String, i32)>> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let topics = kafka.topics();
    let mut wanted = topics.with_partitions();
    for (name, partitions) in &mut wanted {
        if *name == topics.answers {
            *partitions = answers_partitions;
        }
    }
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(replication))
        })
        .collect();
    let mut created = Vec::new();
    for (result, (name, partitions)) in admin
        .create_topics(&new, &AdminOptions::new())
        .await?
        .into_iter()
        .zip(wanted)
    {
        match result {
            Ok(_) => created.push((name.to_owned(), partitions)),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::TopicCreation {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(created)
}
