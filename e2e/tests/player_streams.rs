//! Player streams at scale: a stadium's phones each hold a stream, and a question's close gives
//! every one of them a result. The query API reads the standings of all the players it streams
//! to in one step per quiz, not one read per phone (issue 15, point 6).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use podium_e2e::game::{Acks, create, play_question};
use podium_e2e::processes::{Processes, Service};
use podium_e2e::sse::Sse;
use podium_testkit::eventually;

const PLAYERS: usize = 40;
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_close_gives_every_phone_its_result_from_one_read_per_quiz() -> Result<()> {
    let stack = Processes::start().await?;
    let client = stack.client();
    let game = create(&client, PLAYERS, 2).await?;
    let quiz_url = format!("{}/v1/quizzes/{}", stack.query_url(), game.quiz_id);
    eventually("every join in the read model", WAIT, || async {
        let state: serde_json::Value = stack
            .http
            .get(&quiz_url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (state["player_count"].as_u64() == Some(PLAYERS as u64)).then_some(())
    })
    .await?;
    let mut phones = Vec::with_capacity(PLAYERS);
    for (player, token) in &game.players {
        let url = format!("{quiz_url}/players/{player}/events?access_token={token}");
        let mut phone = Sse::connect(&url, None).await?;
        let hello = phone.next(WAIT).await?;
        ensure!(hello.event == "snapshot", "{hello:?}");
        phones.push(phone);
    }
    let reads_alone = || {
        stack.metric(
            Service::QueryApi,
            "podium_query_stream_player_reads_total",
            "",
        )
    };
    let reads_together =
        || stack.metric(Service::QueryApi, "podium_query_standings_reads_total", "");
    let (alone_before, together_before) = (reads_alone().await?, reads_together().await?);

    let acks = Acks::default();
    play_question(&client, &game, 1, &acks).await?;
    let acks = acks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for ((player, _), phone) in game.players.iter().zip(&mut phones) {
        let events = phone.until("question_result", WAIT).await?;
        let result: serde_json::Value =
            serde_json::from_str(&events.last().context("a result")?.data)?;
        let ack = acks
            .get(&(game.quiz_id.clone(), player.clone(), 1))
            .context("every player's answer was acknowledged")?;
        ensure!(
            result["answered"] == true
                && result["awarded"].as_i64() == Some(ack.points)
                && result["you"]["player_id"] == player.as_str(),
            "{player}: {result} against {ack:?}"
        );
    }

    let alone = reads_alone().await? - alone_before;
    let together = reads_together().await? - together_before;
    ensure!(
        alone == 0.0,
        "{alone} player reads of single streams, where the feed reads them all"
    );
    ensure!(
        (1.0..PLAYERS as f64).contains(&together),
        "{together} standings reads for {PLAYERS} phones"
    );
    eprintln!("{PLAYERS} phones got their results from {together} standings reads");
    Ok(())
}
