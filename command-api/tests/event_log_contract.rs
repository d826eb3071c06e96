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
