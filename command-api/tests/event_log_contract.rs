//! The event log contract, written once and run against every adapter: the in-memory log and
//! Kafka on a real tansu broker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use podium_command_api::event_log::{Entry, EventLog, KafkaEventLog, MemoryEventLog, Positions};
use podium_runtime::KafkaArgs;
use podium_schemas::events::*;
use podium_testkit::{Broker, unique};

fn joined(quiz: &str, player: &str) -> Event {
    Event::PlayerJoined(PlayerJoined {
        quiz_id: quiz.into(),
        player_id: player.into(),
        name: player.into(),
        joined_at: 1,
    })
}

fn answered(quiz: &str, player: &str, question: i32) -> Event {
    Event::AnswerSubmitted(AnswerSubmitted {
        quiz_id: quiz.into(),
        player_id: player.into(),
        question,
        choice: 0,
        received_at: 2,
        elapsed_ms: 10,
        correct: true,
        points: 990,
        streak: question,
        streak_bonus: 0,
        rule_version: 1,
        idempotency_key: None,
    })
}

async fn contract(log: Arc<dyn EventLog>) -> Result<()> {
    assert!(log.history().await?.is_empty(), "a new log is empty");

    // Interleave lifecycle events and answers of two quizzes.
    let appended = vec![
        joined("q1", "a"),
        answered("q1", "a", 1),
        joined("q2", "b"),
        answered("q1", "a", 2),
        answered("q2", "b", 1),
        answered("q1", "a", 3),
    ];
    for event in &appended {
        let position = log.append(&Entry::new(event.clone())).await?;
        assert!(position.offset >= 0);
    }
    log.flush().await;

    let history = log.history().await?;
    assert_eq!(
        history.len(),
        appended.len(),
        "nothing lost, nothing doubled"
    );
    // Lifecycle events come first, so answers are folded into quizzes that exist.
    let first_answer = history
        .iter()
        .position(|e| matches!(e, Event::AnswerSubmitted(_)))
        .unwrap_or(history.len());
    assert!(
        history[..first_answer]
            .iter()
            .all(|e| !matches!(e, Event::AnswerSubmitted(_)))
    );
    assert!(
        history[first_answer..]
            .iter()
            .all(|e| matches!(e, Event::AnswerSubmitted(_)))
    );
    // Within a record key, the order of appends holds.
    let questions_of_a: Vec<i32> = history
        .iter()
        .filter_map(|e| match e {
            Event::AnswerSubmitted(a) if a.player_id == "a" => Some(a.question),
            _ => None,
        })
        .collect();
    assert_eq!(questions_of_a, [1, 2, 3]);
    for event in &appended {
        assert!(history.contains(event), "{event:?} is in the history");
    }

    // A read from where the last one ended gets what came after, nothing before.
    let all = log.read_from(&Positions::new()).await?;
    assert_eq!(all.records.len(), appended.len());
    assert!(all.out_of_range.is_empty());
    assert!(
        log.read_from(&all.end).await?.records.is_empty(),
        "nothing new yet"
    );
    let later = answered("q2", "b", 2);
    let position = log.append(&Entry::new(later.clone())).await?;
    let tail = log.read_from(&all.end).await?;
    assert_eq!(tail.records.len(), 1, "only the record after the positions");
    let record = &tail.records[0];
    assert_eq!(record.event.as_ref(), Some(&later));
    assert_eq!(
        (record.partition, record.offset),
        (position.partition, position.offset)
    );
    assert_eq!(
        tail.end[&(position.topic.clone(), position.partition)],
        position.offset + 1
    );
    // A position beyond the log's end reads nothing and says where.
    let mut beyond = tail.end.clone();
    let _ = beyond.insert(
        (position.topic.clone(), position.partition),
        position.offset + 100,
    );
    let stale = log.read_from(&beyond).await?;
    assert!(stale.records.is_empty());
    assert_eq!(stale.out_of_range.len(), 1, "{:?}", stale.out_of_range);

    // Entries of one key appended together: each acknowledged, in order in the log.
    let together: Vec<Entry> = (1..=3)
        .map(|n| {
            Entry::new(Event::QuestionStarted(QuestionStarted {
                quiz_id: "q3".into(),
                question: n,
                started_at: 10 + i64::from(n),
                deadline: 100,
            }))
        })
        .collect();
    let outcomes = log.append_all(&together).await;
    assert_eq!(outcomes.len(), together.len());
    let offsets: Vec<i64> = outcomes
        .into_iter()
        .map(|o| o.map(|p| p.offset))
        .collect::<Result<_, _>>()?;
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "in the order given: {offsets:?}"
    );
    let started: Vec<i32> = log
        .history()
        .await?
        .iter()
        .filter_map(|e| match e {
            Event::QuestionStarted(s) if s.quiz_id == "q3" => Some(s.question),
            _ => None,
        })
        .collect();
    assert_eq!(started, [1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn memory_event_log_meets_the_contract() -> Result<()> {
    contract(Arc::new(MemoryEventLog::default())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_event_log_meets_the_contract() -> Result<()> {
    let broker = Broker::start().await?;
    let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("contract")));
    broker
        .create_topics(&kafka.topics().with_partitions())
        .await?;
    let log = KafkaEventLog::new(&kafka, Duration::from_secs(10), 1000)?;
    contract(Arc::new(log)).await
}

/// The fencing of ADR 0011 on a real broker: a stamped lifecycle record lands in its shard's
/// partition, which is the partition librdkafka's default partitioner gives its key; a claim
/// puts markers in the shard's lifecycle partition and in every answers partition; and a read
/// of the log leaves out what the earlier owner appends after the claim, and keeps what it
/// appended before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_event_log_fences_a_deposed_owner() -> Result<()> {
    use podium_schemas::fence::{Stamp, shard_of};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = Broker::start().await?;
    let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("fence")));
    broker
        .create_topics(&kafka.topics().with_partitions())
        .await?;
    let log = KafkaEventLog::new(&kafka, Duration::from_secs(10), 1000)?;
    let shards = log.shard_count().await?;
    assert_eq!(shards, podium_schemas::topics::LIFECYCLE_PARTITIONS);

    // Single instances put lifecycle records where the default partitioner does: the shard.
    let plain: FutureProducer = kafka.client_config().create()?;
    for _ in 0..30 {
        let quiz = uuid::Uuid::now_v7().to_string();
        let delivered = plain
            .send(
                FutureRecord::to(&kafka.topics().lifecycle)
                    .key(&quiz)
                    .payload("x"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        assert_eq!(delivered.partition, shard_of(&quiz, shards), "quiz {quiz}");
    }

    let quiz = uuid::Uuid::now_v7().to_string();
    let shard = shard_of(&quiz, shards);
    let old = Some(Stamp { shard, epoch: 1 });
    let joined_at = log
        .append(&Entry::new(joined(&quiz, "a")).stamped(old))
        .await?;
    assert_eq!(
        joined_at.partition, shard,
        "a stamped lifecycle record goes to its shard"
    );
    let _ = log
        .append(&Entry::new(answered(&quiz, "a", 1)).stamped(old))
        .await?;
    log.claim(Stamp { shard, epoch: 2 }).await?;
    // The deposed owner goes on after the claim: none of it counts.
    let _ = log
        .append(&Entry::new(answered(&quiz, "a", 2)).stamped(old))
        .await?;
    let _ = log
        .append(&Entry::new(joined(&quiz, "b")).stamped(old))
        .await?;
    // The new owner's records count.
    let new = Some(Stamp { shard, epoch: 2 });
    let _ = log
        .append(&Entry::new(answered(&quiz, "a", 3)).stamped(new))
        .await?;

    let read = log.read_from(&Positions::new()).await?;
    let events: Vec<Event> = read.records.into_iter().filter_map(|r| r.event).collect();
    assert_eq!(
        events,
        vec![
            joined(&quiz, "a"),
            answered(&quiz, "a", 1),
            answered(&quiz, "a", 3)
        ]
    );
    assert_eq!(read.void, 2, "the deposed owner's two records are void");
    // One marker in the lifecycle partition, one in each answers partition.
    let markers = podium_testkit::read_log(
        broker.bootstrap(),
        &[&kafka.topics().lifecycle, &kafka.topics().answers],
    )
    .await?
    .into_iter()
    .filter(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "event_type" && v == podium_schemas::fence::SHARD_CLAIMED)
    })
    .map(|r| (r.topic, r.partition))
    .collect::<Vec<_>>();
    let mut expected = vec![(kafka.topics().lifecycle.clone(), shard)];
    expected.extend(
        (0..podium_schemas::topics::ANSWERS_PARTITIONS)
            .map(|p| (kafka.topics().answers.clone(), p)),
    );
    expected.sort();
    assert_eq!(markers, expected);
    Ok(())
}
