//! The durable projector resumes from Kafka's committed offsets, which carry no epochs, so it
//! records the claim markers it reads (ADR 0011): a record a deposed owner appended after a
//! marker stays void when the marker lies before the committed offset. A real broker; the
//! durable store is the in-memory adapter, since ScyllaDB cannot run here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use podium_durable::{DurableStore, MemoryDurableStore};
use podium_projectors::durable::DurableProjector;
use podium_projectors::projector::Batching;
use podium_runtime::KafkaArgs;
use podium_schemas::events::{AnswerSubmitted, Event};
use podium_schemas::fence::Stamp;
use podium_testkit::{Broker, EventWriter, eventually, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

fn answer(player: &str) -> Event {
    Event::AnswerSubmitted(AnswerSubmitted {
        quiz_id: "quiz-1".into(),
        player_id: player.into(),
        question: 1,
        choice: 0,
        received_at: 1_700_000_000_000,
        elapsed_ms: 500,
        correct: true,
        points: 900,
        streak: 1,
        streak_bonus: 0,
        rule_version: 1,
        idempotency_key: None,
    })
}

/// Runs a durable projector until the returned sender fires.
fn run(
    kafka: &KafkaArgs,
    group: &str,
    store: &Arc<MemoryDurableStore>,
) -> Result<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)> {
    let projector = DurableProjector::new(kafka, group, store.clone(), Batching::default())?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = projector
            .run_until(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((stop, task))
}

/// The group's committed offset of `topic`/0.
fn committed(kafka: &KafkaArgs, group: &str, topic: &str) -> Result<i64> {
    let consumer: BaseConsumer = kafka.consumer_config().set("group.id", group).create()?;
    let mut wanted = TopicPartitionList::new();
    let _ = wanted.add_partition(topic, 0);
    let found = consumer.committed_offsets(wanted, Duration::from_secs(10))?;
    let element = found.find_partition(topic, 0).context("partition 0")?;
    Ok(match element.offset() {
        Offset::Offset(offset) => offset,
        _ => -1,
    })
}

async fn recorded(store: &MemoryDurableStore, player: &str) -> bool {
    store
        .answers("quiz-1", player)
        .await
        .is_ok_and(|answers| !answers.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_durable_projector_resumes_its_fence_from_the_markers_it_recorded() -> Result<()>
{
    let broker = Broker::start().await?;
    let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("durable")));
    let topics = kafka.topics();
    broker.create_topics(&topics.with_partitions()).await?;
    let writer = EventWriter::new(broker.bootstrap())?;
    let answers = topics.answers.as_str();
    let (old, new) = (Stamp { shard: 0, epoch: 1 }, Stamp { shard: 0, epoch: 2 });

    // The new owner's marker, then one of its answers: both before the committed offset.
    writer.append_stamped(answers, 0, None, new).await?;
    writer
        .append_stamped(answers, 0, Some(&answer("ann")), new)
        .await?;
    let store = Arc::new(MemoryDurableStore::new());
    let group = unique("durable-group");
    let (stop, task) = run(&kafka, &group, &store)?;
    eventually("ann's answer recorded", Duration::from_secs(60), || async {
        recorded(&store, "ann").await.then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    eprintln!(
        "DBG after autocommit: {:?}",
        committed(&kafka, &group, answers)
    );
    let _ = stop.send(());
    task.await?;
    // The restart resumes past the marker, so its fence must come from the recorded markers.
    let offset = committed(&kafka, &group, answers)?;
    anyhow::ensure!(offset == 2, "the stop committed offset {offset}, not 2");

    // The deposed owner's answer lands after the marker, while no projector runs; then one of
    // the new owner's, which shows the restarted projector has read past it.
    writer
        .append_stamped(answers, 0, Some(&answer("bob")), old)
        .await?;
    writer
        .append_stamped(answers, 0, Some(&answer("cat")), new)
        .await?;
    let (stop, task) = run(&kafka, &group, &store)?;
    eventually("cat's answer recorded", Duration::from_secs(60), || async {
        recorded(&store, "cat").await.then_some(())
    })
    .await?;
    let _ = stop.send(());
    task.await?;
    anyhow::ensure!(
        !recorded(&store, "bob").await,
        "the deposed owner's answer was recorded after the restart"
    );
    Ok(())
}
