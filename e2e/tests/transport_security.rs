//! Transport security: the projector and the query API on a Redis that speaks only TLS (Debian's
//! redis-server with a certificate the test makes), Kafka clients that can speak TLS, and
//! secrets that never print.

use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Parser;
use podium_e2e::{Stack, TOKEN_SECRET};
use podium_runtime::transport::KafkaProtocol;
use podium_runtime::{KafkaArgs, RedisArgs};
use podium_testkit::eventually;
use rdkafka::producer::BaseProducer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiz_is_scored_and_read_over_redis_tls() -> Result<()> {
    let stack = Stack::start_with_redis_tls().await?;
    ensure!(stack.redis_url().starts_with("rediss://"));

    // The server refuses a client that does not speak TLS.
    let plain = stack.redis_url().replace("rediss://", "redis://");
    let refused = async {
        let client = redis::Client::open(plain.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    let refused = tokio::time::timeout(Duration::from_secs(5), refused).await;
    ensure!(
        !matches!(refused, Ok(Ok(_))),
        "a plain connection was served"
    );

    let quiz = json!({
        "title": "Over TLS",
        "questions": [{"text": "Encrypted?", "choices": ["yes", "no"], "correct_choice": 0}]
    });
    let game = stack.create_and_join(&quiz, 2).await?;
    let start = format!("/v1/quizzes/{}/questions/1/start", game.quiz_id);
    let (status, body) = stack.post(&start, Some(&game.host), &json!({})).await?;
    ensure!(status == 200, "start: {status} {body}");
    let answers = format!("/v1/quizzes/{}/answers", game.quiz_id);
    let (status, body) = stack
        .post(
            &answers,
            Some(&game.players[0].1),
            &json!({"question": 1, "choice": 0}),
        )
        .await?;
    ensure!(status == 201, "answer: {status} {body}");

    // The projector wrote it over TLS; the query API reads it over TLS.
    let leaderboard = format!("/v1/quizzes/{}/leaderboard", game.quiz_id);
    eventually(
        "the answer on the leaderboard",
        Duration::from_secs(30),
        || async {
            let (status, board) = stack.get(&leaderboard).await.ok()?;
            let first = board["entries"].get(0)?;
            (status == 200 && first["player_id"] == json!(game.players[0].0)).then_some(())
        },
    )
    .await?;
    stack.stop().await;
    Ok(())
}

#[test]
fn kafka_clients_are_built_with_tls_support() -> Result<()> {
    // librdkafka built without TLS refuses `security.protocol=ssl` when the client is created.
    let mut kafka = KafkaArgs::new("127.0.0.1:9", "t.");
    kafka.security.protocol = KafkaProtocol::SaslSsl;
    kafka.security.sasl_mechanism = Some("SCRAM-SHA-512".into());
    kafka.security.sasl_username = Some("podium".into());
    kafka.security.sasl_password = Some("hunter2-but-longer".to_owned().into());
    let _producer: BaseProducer = kafka.client_config().create()?;
    ensure!(
        !format!("{kafka:?}").contains("hunter2"),
        "the SASL password printed"
    );
    Ok(())
}

#[test]
fn secrets_never_print() {
    let redis = RedisArgs::new("rediss://:s3cret-password@redis.internal:6380/", "podium");
    assert!(!format!("{redis:?}").contains("s3cret-password"));
    let config = podium_command_api::Config::try_parse_from([
        "podium-command-api",
        "--token-secret",
        TOKEN_SECRET,
    ]);
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{config:?}").contains(TOKEN_SECRET));
}
