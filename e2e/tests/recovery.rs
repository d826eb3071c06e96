//! Survive and recover: every service runs as a real process on a real broker and a real
//! Redis, and each test breaks something mid-quiz (a broker kill -9, Redis restarts and
//! outages, a command API killed on a long log, topics recreated, every process stopped). No
//! test restarts a Podium service to help it: each must serve again by itself. Each ends by
//! comparing what players were told with the log (0 lost, 0 doubled) and the read models with
//! a pure fold of the log.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use podium_e2e::game::{
    Acks, answer_all, answered_to, create, host, nothing_lost_nothing_doubled, play_question,
};
use podium_e2e::processes::{Processes, Service};
use podium_testkit::{EventWriter, QuizLog, eventually, unique};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

/// The read models' active generation, as Redis holds it now.
async fn active_generation(stack: &Processes) -> Result<Option<String>> {
    let mut connection = stack.redis.connection().await?;
    let active: Option<String> = redis::cmd("GET")
        .arg(format!("{}:active", stack.namespace))
        .query_async(&mut connection)
        .await?;
    Ok(active)
}

/// The end of every test: 0 lost, 0 doubled, and the read models equal to the fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_killed_mid_burst_comes_back_and_the_stack_serves_on_by_itself() -> Result<()> {
    let mut stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, 300, 3).await?;
    play_question(&client, &game, 1, &acks).await?;

    host(&client, &game, "questions/2/start").await?;
    let burst = answer_all(&client, &game, 2, &acks);
    let crash = async {
        // Mid-burst: once the first answers of question 2 are acknowledged.
        eventually("the burst to begin", Duration::from_secs(60), || async {
            (answered_to(&acks, 2) >= 20).then_some(())
        })
        .await?;
        stack.broker.kill().await?;
        let (before, died) = (answered_to(&acks, 2), std::time::Instant::now());
        // Down long enough for librdkafka to report every broker down (the projector used to
        // exit on that, 8 to 14 s in) and for the projector to report not ready.
        eventually(
            "the projector to report not ready",
            Duration::from_secs(30),
            || async { (stack.projector_ready().await == Some(503)).then_some(()) },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(15).saturating_sub(died.elapsed())).await;
        stack.broker.restart().await?;
        anyhow::Ok((before, std::time::Instant::now()))
    };
    let (answered, crashed) = tokio::join!(burst, crash);
    let (before, restarted) = crashed?;
    answered?;
    // Recorded, not asserted: how long the burst took to complete once the broker was back.
    eprintln!(
        "recovery: every answer of the burst acknowledged {:?} after the broker restarted",
        restarted.elapsed()
    );
    ensure!(
        before < game.players.len(),
        "the burst was over ({before} answers) before the broker died"
    );
    eprintln!(
        "the broker died after {before} of {} answers to question 2",
        game.players.len()
    );
    host(&client, &game, "questions/2/close").await?;
    play_question(&client, &game, 3, &acks).await?;
    host(&client, &game, "finish").await?;

    for service in Service::ALL {
        ensure!(
            stack.running(service),
            "{service:?} exited when the broker died:\n{}",
            stack.logs()
        );
    }
    nothing_lost_nothing_doubled(&stack, &acks).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarts_with_and_without_its_data_and_an_outage_are_ridden_out() -> Result<()> {
    let mut stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, 100, 5).await?;
    play_question(&client, &game, 1, &acks).await?;
    stack.converges_to(&stack.fold_of_log().await?).await?;

    // Back from a snapshot older than what the projector applied, while the projector is
    // idle: it must notice and read question 2 again.
    stack.redis.save().await?;
    play_question(&client, &game, 2, &acks).await?;
    stack.converges_to(&stack.fold_of_log().await?).await?;
    stack.redis.stop().await?;
    stack.redis.start_again().await?;
    ensure!(
        active_generation(&stack).await?.is_some(),
        "Redis came back without its snapshot"
    );
    stack.converges_to(&stack.fold_of_log().await?).await?;

    // Back with all its data, its script cache empty.
    stack.redis.restart_with_data().await?;
    play_question(&client, &game, 3, &acks).await?;
    stack.converges_to(&stack.fold_of_log().await?).await?;

    // An outage: the projector reports not ready and waits; answers are still taken, since
    // the command side does not read Redis.
    stack.redis.stop().await?;
    eventually(
        "the projector to report not ready",
        Duration::from_secs(30),
        || async { (stack.projector_ready().await == Some(503)).then_some(()) },
    )
    .await?;
    play_question(&client, &game, 4, &acks).await?;
    stack.redis.start_again().await?;
    eventually(
        "the projector to report ready",
        Duration::from_secs(60),
        || async { (stack.projector_ready().await == Some(200)).then_some(()) },
    )
    .await
    .with_context(|| stack.logs())?;
    stack.converges_to(&stack.fold_of_log().await?).await?;

    // Empty: the read models are folded again from the beginning of the log.
    stack.redis.restart_empty().await?;
    play_question(&client, &game, 5, &acks).await?;
    host(&client, &game, "finish").await?;
    for service in Service::ALL {
        ensure!(
            stack.running(service),
            "{service:?} exited:\n{}",
            stack.logs()
        );
    }
    nothing_lost_nothing_doubled(&stack, &acks).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_api_killed_on_a_log_of_100_000_events_restarts_and_serves() -> Result<()> {
    let mut stack = Processes::start().await?;
    let client = stack.client();
    // 20 played quizzes of 500 players and 10 questions: 110,000 events, written as fast as
    // the broker takes them.
    let writer = EventWriter::new(stack.broker.bootstrap())?;
    let topics = stack.kafka.topics();
    let played: Vec<QuizLog> = (0..20)
        .map(|i| QuizLog::play(&unique("long"), 500, 10, 0.9, 100 + i))
        .collect::<Result<_>>()?;
    let events: Vec<&podium_schemas::Event> = played.iter().flat_map(QuizLog::events).collect();
    ensure!(events.len() >= 100_000, "only {} events", events.len());
    let mut appends = futures::stream::iter(&events)
        .map(|e| writer.append(topics.topic_of(e), e))
        .buffer_unordered(512);
    while let Some(appended) = appends.next().await {
        appended?;
    }

    stack.kill(Service::CommandApi).await?;
    stack.start_service(Service::CommandApi).await?;
    let acks = Acks::default();
    let game = create(&client, 20, 2).await?;
    host(&client, &game, "questions/1/start").await?;
    stack.kill(Service::CommandApi).await?;
    // Back in one step however long the log: it restores, re-arms the open question, serves.
    stack.start_service(Service::CommandApi).await?;
    answer_all(&client, &game, 1, &acks).await?;
    let log = stack.log_of(Service::CommandApi);
    ensure!(
        log.contains("quizzes restored from"),
        "no restore in the log:\n{log}"
    );
    // A quiz finished long ago in the log is known: joining it is refused as finished.
    let podium_schemas::Event::QuizCreated(created) = &played[0].opening[0] else {
        anyhow::bail!("a played quiz opens with its creation");
    };
    let finished = &created.join_code;
    let (status, reply) = client
        .post_until_final(
            "/v1/join",
            None,
            None,
            &serde_json::json!({"join_code": finished, "name": "late"}),
        )
        .await?;
    ensure!(
        status == 409 && reply["code"] == "quiz_finished",
        "join of a finished quiz: {status} {reply}"
    );
    play_question(&client, &game, 2, &acks).await?;
    host(&client, &game, "finish").await?;
    nothing_lost_nothing_doubled(&stack, &acks).await?;

    // Once a snapshot holds the finished quizzes they leave memory, and a start after a clean
    // stop reads none of the log: what it holds is all in the last snapshot.
    stack
        .command_api_holds_no_quiz(Duration::from_secs(60))
        .await?;
    stack.terminate(Service::CommandApi).await?;
    stack.start_service(Service::CommandApi).await?;
    let log = stack.log_of(Service::CommandApi);
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("quizzes restored from"))
        .context("no restore in the log")?;
    ensure!(
        last.contains("from the snapshot")
            && last.contains("quizzes=0 ")
            && last.contains("records_read=0 "),
        "a start after a clean stop: {last:?}"
    );
    // The finished quizzes are answered from their records.
    let (status, reply) = client
        .post_until_final(
            "/v1/join",
            None,
            None,
            &serde_json::json!({"join_code": finished, "name": "later"}),
        )
        .await?;
    ensure!(
        status == 409 && reply["code"] == "quiz_finished",
        "join of a finished quiz that left memory: {status} {reply}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_recreated_under_a_running_projector_are_noticed_and_folded_afresh() -> Result<()> {
    let stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let before = create(&client, 200, 2).await?;
    play_question(&client, &before, 1, &acks).await?;
    play_question(&client, &before, 2, &acks).await?;
    stack.converges_to(&stack.fold_of_log().await?).await?;

    // The broker loses the topics, and an operator creates them again, empty.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", stack.broker.bootstrap())
        .create()?;
    let topics = stack.kafka.topics();
    for result in admin
        .delete_topics(&[&topics.lifecycle, &topics.answers], &AdminOptions::new())
        .await?
    {
        let _ = result.map_err(|(topic, code)| anyhow::anyhow!("deleting {topic}: {code}"))?;
    }
    let recreate = topics.with_partitions();
    stack.broker.create_topics(&recreate[..2]).await?;

    // Quizzes played on the new log are read from it, not hidden behind the old positions.
    let after = create(&client, 20, 1).await?;
    let new_acks = Acks::default();
    play_question(&client, &after, 1, &new_acks).await?;
    host(&client, &after, "finish").await?;
    eventually(
        "the projector to notice the reset",
        Duration::from_secs(60),
        || async {
            (stack
                .projector_metric("podium_projector_log_resets_total")
                .await
                .ok()?
                >= 1.0)
                .then_some(())
        },
    )
    .await
    .with_context(|| stack.logs())?;
    let expected = stack.fold_of_log().await?;
    ensure!(expected.quizzes.contains_key(&after.quiz_id));
    ensure!(!expected.quizzes.contains_key(&before.quiz_id));
    stack.converges_to(&expected).await?;
    let (status, _) = read(&stack, &format!("/v1/quizzes/{}", before.quiz_id)).await?;
    ensure!(
        status == 404,
        "a quiz of the lost log still reads: {status}"
    );
    // The command side still holds the old quiz in memory (it restores from the log only at
    // start); the acknowledged answers of the new log are each there once.
    nothing_lost_nothing_doubled(&stack, &new_acks).await
}

async fn read(stack: &Processes, path: &str) -> Result<(u16, serde_json::Value)> {
    let response = stack
        .http
        .get(format!("{}{path}", stack.query_url()))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_process_stopped_with_sigterm_and_started_again_serves_on() -> Result<()> {
    let mut stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, 100, 3).await?;
    play_question(&client, &game, 1, &acks).await?;
    host(&client, &game, "questions/2/start").await?;

    for service in [Service::QueryApi, Service::CommandApi, Service::Projector] {
        stack.terminate(service).await?;
    }
    stack.broker.terminate().await?;
    stack.redis.terminate().await?;

    stack.redis.start_again().await?;
    stack.broker.restart().await?;
    for service in Service::ALL {
        stack.start_service(service).await?;
    }
    answer_all(&client, &game, 2, &acks).await?;
    host(&client, &game, "questions/2/close").await?;
    play_question(&client, &game, 3, &acks).await?;
    host(&client, &game, "finish").await?;
    let (status, board) =
        read(&stack, &format!("/v1/quizzes/{}/leaderboard", game.quiz_id)).await?;
    ensure!(
        status == 200,
        "leaderboard after the restart: {status} {board}"
    );
    nothing_lost_nothing_doubled(&stack, &acks).await
}

/// Every player's standing as the query API answers it now, against the leaderboard's order.
async fn standings_match_the_board(
    stack: &Processes,
    game: &podium_e2e::game::Game,
) -> Result<bool> {
    let http = reqwest::Client::new();
    let quiz = format!("{}/v1/quizzes/{}", stack.query_url(), game.quiz_id);
    let board: serde_json::Value = http
        .get(format!("{quiz}/leaderboard?limit=100"))
        .send()
        .await?
        .json()
        .await?;
    let entries = board["entries"].as_array().cloned().unwrap_or_default();
    for entry in &entries {
        let id = entry["player_id"].as_str().unwrap_or_default();
        let standing: serde_json::Value = http
            .get(format!("{quiz}/players/{id}"))
            .send()
            .await?
            .json()
            .await?;
        if standing["rank"] != entry["rank"]
            || standing["points"] != entry["points"]
            || standing["ranked_players"] != board["ranked_players"]
        {
            return Ok(false);
        }
    }
    Ok(!entries.is_empty())
}

/// Rank reads come from the query API's copy of the board once one was asked (ADR 0013), and
/// the copy follows the answers: after each question every player's rank matches the board.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rank_reads_come_from_a_copy_of_the_board_that_follows_the_answers() -> Result<()> {
    let stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, 30, 3).await?;
    play_question(&client, &game, 1, &acks).await?;
    let from_copy = || async {
        stack
            .metric(
                Service::QueryApi,
                "podium_query_rank_reads_total",
                "from=\"copy\"",
            )
            .await
            .unwrap_or(0.0)
    };
    eventually(
        "ranks from the copy after question 1",
        Duration::from_secs(30),
        || async {
            (standings_match_the_board(&stack, &game)
                .await
                .unwrap_or(false)
                && from_copy().await > 0.0)
                .then_some(())
        },
    )
    .await
    .with_context(|| stack.logs())?;
    let served = from_copy().await;
    for n in 2..=3 {
        play_question(&client, &game, n, &acks).await?;
        eventually(
            "ranks to follow the answers",
            Duration::from_secs(30),
            || async {
                standings_match_the_board(&stack, &game)
                    .await
                    .unwrap_or(false)
                    .then_some(())
            },
        )
        .await
        .with_context(|| stack.logs())?;
    }
    ensure!(
        from_copy().await > served,
        "no rank read after question 1 came from the copy"
    );
    nothing_lost_nothing_doubled(&stack, &acks).await
}
