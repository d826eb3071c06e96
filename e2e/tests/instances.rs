//! Several instances of the parts that scale out, behind one gateway: two projectors in one
//! consumer group, which share the partitions, and two query APIs, which share nothing, with
//! the one command API that owns every quiz (ADR 0001). A projector is killed mid-burst: the
//! other takes its partitions over, every acknowledged answer is in the log once, the read
//! models equal a pure fold of the log, and both query APIs answer alike.

use std::time::Duration;

use anyhow::{Result, ensure};
use podium_e2e::game::{
    Acks, Game, answer_all, create, host, nothing_lost_nothing_doubled, play_question,
};
use podium_e2e::processes::{Processes, Service};
use podium_testkit::{Gateway, eventually};

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// The leaderboard's ranked players and entries, as one query API serves them.
async fn leaderboard(stack: &Processes, query: &str, game: &Game) -> Option<serde_json::Value> {
    let url = format!("{query}/v1/quizzes/{}/leaderboard?limit=100", game.quiz_id);
    let board: serde_json::Value = stack.http.get(url).send().await.ok()?.json().await.ok()?;
    Some(serde_json::json!([
        board["ranked_players"],
        board["entries"]
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projectors_and_two_query_apis_behind_the_gateway_share_the_work() -> Result<()> {
    let mut stack = Processes::start().await?;
    let _ = stack
        .start_instance(Service::Projector, "projector-1")
        .await?;
    let second_query = stack
        .start_instance(Service::QueryApi, "query-api-1")
        .await?;
    let first_query = stack.query_url();
    let gateway = Gateway::start(
        host_port(&stack.command_url()),
        &[host_port(&first_query), host_port(&second_query)],
    )
    .await?;
    let client = stack.client_at(&gateway.url());

    // The group splits the partitions between the two projectors.
    eventually(
        "both projectors hold partitions",
        Duration::from_secs(60),
        || async {
            let first = stack
                .projector_metric("podium_projector_assigned_partitions")
                .await
                .ok()?;
            let second = stack
                .instance_metric("projector-1", "podium_projector_assigned_partitions")
                .await
                .ok()?;
            (first > 0.0 && second > 0.0).then_some(())
        },
    )
    .await?;

    let acks = Acks::default();
    let mut games = Vec::new();
    for _ in 0..4 {
        games.push(create(&client, 40, 3).await?);
    }
    for game in &games {
        play_question(&client, game, 1, &acks).await?;
    }

    // Question 2: the projector that started first dies while the answers come in.
    for game in &games {
        host(&client, game, "questions/2/start").await?;
    }
    let burst = async {
        for game in &games {
            answer_all(&client, game, 2, &acks).await?;
        }
        anyhow::Ok(())
    };
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack.kill(Service::Projector).await
    };
    let (burst, killed) = tokio::join!(burst, kill);
    burst?;
    killed?;
    for game in &games {
        host(&client, game, "questions/2/close").await?;
        play_question(&client, game, 3, &acks).await?;
        host(&client, game, "finish").await?;
    }
    // The survivor holds every partition once the group has noticed.
    eventually(
        "the surviving projector holds every partition",
        Duration::from_secs(60),
        || async {
            let held = stack
                .instance_metric("projector-1", "podium_projector_assigned_partitions")
                .await
                .ok()?;
            let all = f64::from(
                podium_schemas::topics::LIFECYCLE_PARTITIONS
                    + podium_schemas::topics::ANSWERS_PARTITIONS,
            );
            (held == all).then_some(())
        },
    )
    .await?;
    nothing_lost_nothing_doubled(&stack, &acks).await?;

    // Both query APIs, and the gateway in front of them, serve the read models alike.
    for game in &games {
        let gateway_url = gateway.url();
        let expected = leaderboard(&stack, &first_query, game).await;
        ensure!(
            expected.is_some(),
            "the first query API serves the leaderboard"
        );
        eventually(
            "both query APIs answer alike",
            Duration::from_secs(30),
            || async {
                let first = leaderboard(&stack, &first_query, game).await?;
                let second = leaderboard(&stack, &second_query, game).await?;
                let through = leaderboard(&stack, &gateway_url, game).await?;
                (first == second && second == through && first[0] == game.players.len())
                    .then_some(())
            },
        )
        .await?;
    }
    Ok(())
}
