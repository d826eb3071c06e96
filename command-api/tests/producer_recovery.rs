//! The Kafka event log replaces a producer that librdkafka declared fatal, so the command API
//! recovers without a restart of its own.
//!
//! This test runs on librdkafka's built-in mock cluster, not on the real broker: what makes an
//! idempotent producer fatal is a broker answering a produce with a sequence error for the
//! head of its queue, and no real broker here does that on demand. The broker-restart fault
//! test (e2e `recovery`) covers the real broker.

use std::time::Duration;

use anyhow::Result;
use podium_command_api::event_log::{Entry, EventLog, KafkaEventLog};
use podium_runtime::KafkaArgs;
use podium_schemas::events::{Event, PlayerJoined};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn joined(player: &str) -> Event {
    Event::PlayerJoined(PlayerJoined {
        quiz_id: "q1".into(),
        player_id: player.into(),
        name: player.into(),
        joined_at: 1,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_gone_fatal_is_replaced_and_appends_succeed_again() -> Result<()> {
    let cluster = MockCluster::new(1)?;
    let kafka = KafkaArgs::new(cluster.bootstrap_servers(), "");
    for (topic, partitions) in kafka.topics().with_partitions() {
        cluster.create_topic(topic, partitions, 1)?;
    }
    let log = KafkaEventLog::new(&kafka, Duration::from_secs(5), 1000)?;
    let _ = log.append(&Entry::new(joined("before"))).await?;

    // The broker answers the next produce with a sequence error for the head of the queue:
    // librdkafka can no longer tell what was written, and its producer turns fatal.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    assert!(
        log.append(&Entry::new(joined("during"))).await.is_err(),
        "an append the producer could not vouch for must not be acknowledged"
    );

    // Without a new producer every later append would fail as well.
    let mut appended = None;
    for _ in 0..50 {
        if let Ok(position) = log.append(&Entry::new(joined("after"))).await {
            appended = Some(position);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(appended.is_some(), "appends never succeeded again");
    let players: Vec<String> = log
        .history()
        .await?
        .into_iter()
        .filter_map(|e| match e {
            Event::PlayerJoined(j) => Some(j.player_id),
            _ => None,
        })
        .collect();
    assert!(players.contains(&"before".to_owned()) && players.contains(&"after".to_owned()));
    Ok(())
}
