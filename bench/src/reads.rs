//! Reads on a huge quiz, and the rebuild. A quiz of a million players cannot go through the
//! local broker in a benchmark's minutes (tansu takes about 2,500 records a second), so its
//! events (what the command side would append, from the testkit's `QuizLog`) are folded into
//! the active read model through the projector's own write path, `RedisReadModel::apply`, in
//! batches as the projector applies them. The rebuild then replays everything in the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use podium_projectors::read_model::{Outcome, Sourced};
use podium_projectors::rebuild::{RebuildOptions, rebuild};
use podium_runtime::{KafkaArgs, RedisArgs};
use podium_testkit::QuizLog;
use rand::Rng;
use serde::Serialize;

use crate::baseline::get_loop;
use crate::measure::{Recorded, Recorder, rate};
use crate::podium::Api;

/// Events per apply: the projector's default `PODIUM_BATCH_MAX`.
const BATCH: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Seeded {
    pub quiz_id: String,
    pub players: usize,
    pub events: u64,
    /// Seconds the projector's write path took to fold every event.
    pub fold_seconds: f64,
    /// Events per second through `RedisReadModel::apply`, batches of 1000.
    pub fold_events_per_second: f64,
}

/// Folds a quiz of `players` players who each answered one question into the active read
/// model, and checks that the query API ranks all of them.
pub async fn seed(redis: &RedisArgs, api: &Api, players: usize) -> Result<Seeded> {
    let quiz_id = format!("huge-{}", rand::rng().random::<u32>());
    eprintln!("  seeding        {players} players into quiz {quiz_id}");
    let log = QuizLog::play(&quiz_id, players, 1, 1.0, 7)?;
    let store = podium_projectors::connect(redis).await?;
    let _ = store.adopt_active().await?;
    let events: Vec<_> = log.events().cloned().collect();
    let total = events.len() as u64;
    let started = Instant::now();
    let mut last = Instant::now();
    let mut offset = 0i64;
    for chunk in events.chunks(BATCH) {
        let batch: Vec<Sourced<_>> = chunk
            .iter()
            .map(|event| {
                offset += 1;
                Sourced {
                    topic: "bench-seed".into(),
                    partition: 0,
                    offset: offset - 1,
                    event: event.clone(),
                }
            })
            .collect();
        let next: BTreeMap<String, i64> = [("bench-seed:0".to_owned(), offset)].into();
        if let Outcome::Moved { .. } = store.apply(&batch, &next).await? {
            bail!("the read model moved to a new generation while seeding");
        }
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            eprintln!("  seeding        {offset}/{total} events folded");
        }
    }
    let fold_seconds = started.elapsed().as_secs_f64();
    let (status, board) = api
        .get(&format!("/v1/quizzes/{quiz_id}/leaderboard?limit=1"))
        .await?;
    let ranked = board["ranked_players"].as_u64().unwrap_or(0);
    if status != 200 || ranked != players as u64 {
        bail!("the query API ranks {ranked} of {players} seeded players ({status})");
    }
    Ok(Seeded {
        quiz_id,
        players,
        events: total,
        fold_seconds,
        fold_events_per_second: rate(total, fold_seconds),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Reads {
    pub players: usize,
    pub top10: Recorded,
    pub rank: Recorded,
    /// The same lookups straight from the query API's read model, without HTTP: what Redis
    /// and the script give, the part a rank lookup cannot be faster than.
    pub rank_read_model: Option<Recorded>,
    /// Seconds from the quiz's first rank read until the query API held a whole copy of its
    /// board (ADR 0013); the rank lookups are measured after it. `None`: no copy was loaded
    /// in the time allowed, and the lookups read Redis.
    pub board_copy_seconds: Option<f64>,
}

/// Top-10 reads, then rank lookups of random players, `in_flight` at a time, each for
/// `duration`. `query_metrics` is the query API's admin listener.
pub async fn reads(
    api: &Api,
    redis: &RedisArgs,
    seeded: &Seeded,
    query_metrics: &str,
    in_flight: usize,
    duration: Duration,
) -> Reads {
    let top = format!(
        "{}/v1/quizzes/{}/leaderboard?limit=10",
        api.query_url, seeded.quiz_id
    );
    eprintln!("  reads          top 10 of {} players", seeded.players);
    let top10 = get_loop(
        &api.http,
        in_flight,
        duration,
        Arc::new(move || top.clone()),
    )
    .await;
    eprintln!(
        "  reads          {:.0} top-10 reads/s; now rank lookups",
        top10.per_second
    );
    let base = format!("{}/v1/quizzes/{}/players/", api.query_url, seeded.quiz_id);
    // The first rank read starts loading the copy; until it is whole, ranks come from Redis.
    // The load is reported on its own, and the loop measures what follows it.
    let board_copy_seconds = match load_board_copy(api, &base, query_metrics).await {
        Ok(seconds) => {
            eprintln!(
                "  reads          the copy of the board loaded in {seconds:.1} s; rank lookups"
            );
            Some(seconds)
        }
        Err(e) => {
            eprintln!("  reads          no copy of the board ({e:#}); rank lookups read Redis");
            None
        }
    };
    let players = seeded.players;
    let rank = get_loop(
        &api.http,
        in_flight,
        duration,
        Arc::new(move || {
            let p = rand::rng().random_range(0..players);
            format!("{base}p{p:06}")
        }),
    )
    .await;
    eprintln!("  reads          {:.0} rank lookups/s", rank.per_second);
    let rank_read_model = match read_model_lookups(redis, seeded, in_flight, duration).await {
        Ok(recorded) => {
            eprintln!(
                "  reads          {:.0} lookups/s from the read model alone",
                recorded.per_second
            );
            Some(recorded)
        }
        Err(e) => {
            eprintln!("  reads          the read model alone not measured: {e:#}");
            None
        }
    };
    Reads {
        players: seeded.players,
        top10,
        rank,
        rank_read_model,
        board_copy_seconds,
    }
}

/// Asks for a player's rank every 100 ms until the query API's counter of loaded copies of a
/// board grows; how long that took.
async fn load_board_copy(api: &Api, players_url: &str, query_metrics: &str) -> Result<f64> {
    const NAME: &str = "podium_query_board_copies_loaded_total";
    let metrics = format!("http://{query_metrics}/metrics");
    let loaded = || async {
        let text = api.http.get(&metrics).send().await?.text().await?;
        anyhow::Ok(crate::measure::metric_sum(&text, NAME).unwrap_or(0.0))
    };
    let before = loaded().await?;
    let started = Instant::now();
    loop {
        let status = api
            .http
            .get(format!("{players_url}p000000"))
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("a rank read answered {status}");
        }
        if loaded().await? > before {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("not loaded after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rank lookups of random players through the query API's own `ReadModel`, in this process:
/// the Redis script and its round trip, without HTTP.
async fn read_model_lookups(
    redis: &RedisArgs,
    seeded: &Seeded,
    in_flight: usize,
    duration: Duration,
) -> Result<Recorded> {
    let model =
        podium_query_api::read_model::ReadModel::connect_client(redis.client()?, redis.root())
            .await?;
    let recorder = Arc::new(Recorder::new());
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (model, recorder) = (model.clone(), recorder.clone());
            let (quiz_id, players) = (seeded.quiz_id.clone(), seeded.players);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let player = format!("p{:06}", rand::rng().random_range(0..players));
                    let sent = Instant::now();
                    let outcome = model.player(&quiz_id, &player).await;
                    let now = Instant::now();
                    match outcome {
                        Ok(_) => recorder.ok(now - sent, now),
                        Err(e) => recorder.error(&e.to_string(), now),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    Ok(recorder.finish())
}

#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    pub events: u64,
    /// Until the new generation was active: what `events_per_second` is over.
    pub seconds: f64,
    pub events_per_second: f64,
    /// Until the rebuild returned: the grace period readers get before the old generation
    /// goes, and its removal, included.
    pub total_seconds: f64,
    /// Why the rebuild failed, if it did; the run's other figures still stand.
    pub error: Option<String>,
}

/// A full rebuild of the read models from the log, as `podium-ops rebuild` runs it (the same
/// library call), with the projector still running beside it.
pub async fn full_rebuild(kafka: &KafkaArgs, redis: &RedisArgs) -> Result<Rebuild> {
    let store = podium_projectors::connect(redis).await?;
    let started = Instant::now();
    let outcome = rebuild(
        kafka,
        &store,
        &RebuildOptions {
            batch_max: 1000,
            grace: Duration::from_secs(1),
            progress: false,
        },
    )
    .await;
    Ok(match outcome {
        Ok(report) => {
            let seconds = report.switched_after.as_secs_f64();
            Rebuild {
                events: report.events,
                seconds,
                events_per_second: rate(report.events, seconds),
                total_seconds: report.elapsed.as_secs_f64(),
                error: None,
            }
        }
        Err(e) => Rebuild {
            events: 0,
            seconds: started.elapsed().as_secs_f64(),
            total_seconds: started.elapsed().as_secs_f64(),
            events_per_second: 0.0,
            error: Some(format!("{e:#}")),
        },
    })
}
