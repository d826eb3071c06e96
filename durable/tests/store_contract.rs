//! The `DurableStore` contract, written once and run against every adapter: always against
//! `MemoryDurableStore`, and against ScyllaDB when `SCYLLA_NODES` points at a node (each test in
//! a keyspace of its own, created by the migrations and dropped afterwards).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use podium_durable::{
    ClaimMarker, DurableStore, FinalResults, MemoryDurableStore, QuizHistoryEntry, ScyllaConfig,
    ScyllaDurableStore, Sourced, epochs_before,
};
use podium_schemas::domain::Standings;
use podium_schemas::events::{
    AnswerSubmitted, Event, PlayerJoined, QuestionStarted, QuizCreated, QuizFinished,
};

const LIFECYCLE: &str = "test.quiz-lifecycle.v1";
const ANSWERS: &str = "test.answers.v1";
const ANSWER_PARTITIONS: i32 = 3;

/// Ids no other test, or earlier run against the same database, uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// A log under construction: lifecycle events on one partition, answers spread over several,
/// each partition with its own offsets, as Kafka assigns them.
#[derive(Debug, Default)]
struct Log {
    records: Vec<Sourced>,
    next_offset: BTreeMap<(&'static str, i32), i64>,
}

impl Log {
    fn append(&mut self, topic: &'static str, partition: i32, event: Event) -> Sourced {
        let offset = self.next_offset.entry((topic, partition)).or_insert(0);
        let sourced = Sourced {
            topic: topic.to_owned(),
            partition,
            offset: *offset,
            event,
        };
        *offset += 1;
        self.records.push(sourced.clone());
        sourced
    }

    fn created(&mut self, quiz: &str, title: &str) -> Sourced {
        let event = Event::QuizCreated(QuizCreated {
            quiz_id: quiz.into(),
            title: title.into(),
            join_code: "ABCDEF".into(),
            questions: Vec::new(),
            created_at: 1_000,
        });
        self.append(LIFECYCLE, 0, event)
    }

    fn joined(&mut self, quiz: &str, player: &str, name: &str) -> Sourced {
        let event = Event::PlayerJoined(PlayerJoined {
            quiz_id: quiz.into(),
            player_id: player.into(),
            name: name.into(),
            joined_at: 2_000,
        });
        self.append(LIFECYCLE, 0, event)
    }

    fn question_started(&mut self, quiz: &str, question: i32) -> Sourced {
        let event = Event::QuestionStarted(QuestionStarted {
            quiz_id: quiz.into(),
            question,
            started_at: 3_000,
            deadline: 13_000,
        });
        self.append(LIFECYCLE, 0, event)
    }

    fn finished(&mut self, quiz: &str, at: i64) -> Sourced {
        let event = Event::QuizFinished(QuizFinished {
            quiz_id: quiz.into(),
            finished_at: at,
        });
        self.append(LIFECYCLE, 0, event)
    }

    fn answer(&mut self, answer: AnswerSubmitted) -> Sourced {
        // Keyed by quiz_id/player_id: one player's answers stay on one partition.
        let key = format!("{}/{}", answer.quiz_id, answer.player_id);
        let partition = key.bytes().map(i32::from).sum::<i32>() % ANSWER_PARTITIONS;
        self.append(ANSWERS, partition, Event::AnswerSubmitted(answer))
    }

    fn answers(&self) -> Vec<AnswerSubmitted> {
        self.records
            .iter()
            .filter_map(|s| match &s.event {
                Event::AnswerSubmitted(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }
}

fn answer(
    quiz: &str,
    player: &str,
    question: i32,
    points: i32,
    elapsed_ms: i32,
) -> AnswerSubmitted {
    AnswerSubmitted {
        quiz_id: quiz.into(),
        player_id: player.into(),
        question,
        choice: if points > 0 { 1 } else { 2 },
        received_at: 5_000 + i64::from(question),
        elapsed_ms,
        correct: points > 0,
        points,
        streak: i32::from(points > 0),
        streak_bonus: if points > 0 { 5 } else { 0 },
        rule_version: 1,
        idempotency_key: (question == 1).then(|| format!("key-{player}")),
    }
}

/// Everything the store says about some quizzes and players: two stores, or one store at two
/// moments, agree when their observations are equal.
#[derive(Debug, PartialEq, Eq)]
struct Observation {
    answers: BTreeMap<(String, String), Vec<AnswerSubmitted>>,
    results: BTreeMap<String, Option<FinalResults>>,
    history: BTreeMap<String, Vec<QuizHistoryEntry>>,
}

async fn observe(
    store: &dyn DurableStore,
    quizzes: &[&str],
    players: &[&str],
) -> anyhow::Result<Observation> {
    let mut observation = Observation {
        answers: BTreeMap::new(),
        results: BTreeMap::new(),
        history: BTreeMap::new(),
    };
    for quiz in quizzes {
        for player in players {
            let answers = store.answers(quiz, player).await?;
            let _ = observation
                .answers
                .insert((quiz.to_string(), player.to_string()), answers);
        }
        let _ = observation
            .results
            .insert(quiz.to_string(), store.results(quiz).await?);
    }
    for player in players {
        let _ = observation
            .history
            .insert(player.to_string(), store.history(player).await?);
    }
    Ok(observation)
}

/// The reference: `(player_id, points, elapsed_ms)` in leaderboard order, folding the answers
/// in log order.
fn reference_order(answers: &[AnswerSubmitted]) -> Vec<(String, i64, i64)> {
    let mut standings = Standings::default();
    for answer in answers {
        let _ = standings.apply(answer);
    }
    standings
        .ranked()
        .into_iter()
        .map(|s| (s.player_id, s.points, s.elapsed_ms))
        .collect()
}

fn results_order(results: &FinalResults) -> Vec<(String, i64, i64)> {
    results
        .standings
        .iter()
        .map(|s| (s.player_id.clone(), s.points, s.elapsed_ms))
        .collect()
}

/// A finished quiz with ties on points and on elapsed time.
struct Quiz {
    log: Log,
    quiz: String,
    players: [String; 4],
}

impl Quiz {
    fn new() -> Self {
        let quiz = unique("quiz");
        let players = ["dana", "ada", "cy", "bo"].map(unique);
        let mut log = Log::default();
        let _ = log.created(&quiz, "Capitals");
        for (player, name) in players.iter().zip(["Dana", "Ada", "Cy", "Bo"]) {
            let _ = log.joined(&quiz, player, name);
        }
        let _ = log.question_started(&quiz, 1);
        let [dana, ada, cy, bo] = &players;
        // ada and cy tie on points and elapsed (player id decides); bo ties on points, slower.
        for (player, question, points, elapsed) in [
            (dana, 1, 100, 900),
            (ada, 1, 50, 400),
            (cy, 1, 50, 400),
            (bo, 1, 50, 700),
            (dana, 2, 0, 1_000),
            (ada, 2, 0, 100),
            (cy, 2, 0, 100),
            (bo, 2, 0, 100),
        ] {
            let _ = log.answer(answer(&quiz, player, question, points, elapsed));
        }
        let _ = log.finished(&quiz, 90_000);
        Self { log, quiz, players }
    }

    fn players(&self) -> Vec<&str> {
        self.players.iter().map(String::as_str).collect()
    }
}

async fn a_batch_applied_twice_equals_once(store: &dyn DurableStore) -> anyhow::Result<()> {
    let quiz = Quiz::new();
    store.record(&quiz.log.records).await?;
    let once = observe(store, &[&quiz.quiz], &quiz.players()).await?;
    store.record(&quiz.log.records).await?;
    let twice = observe(store, &[&quiz.quiz], &quiz.players()).await?;
    assert_eq!(once, twice);
    let results = once.results[&quiz.quiz].as_ref().context("results")?;
    assert_eq!(results_order(results), reference_order(&quiz.log.answers()));
    Ok(())
}

async fn a_replayed_log_equals_once(store: &dyn DurableStore) -> anyhow::Result<()> {
    let quiz = Quiz::new();
    for batch in quiz.log.records.chunks(3) {
        store.record(batch).await?;
    }
    let once = observe(store, &[&quiz.quiz], &quiz.players()).await?;
    // A rebalance replays part of the log, then a rebuild all of it, in other batch sizes.
    store.record(&quiz.log.records[4..9]).await?;
    for batch in quiz.log.records.chunks(5) {
        store.record(batch).await?;
    }
    store.record(&quiz.log.records).await?;
    let replayed = observe(store, &[&quiz.quiz], &quiz.players()).await?;
    assert_eq!(once, replayed);

    // Another store fed the same log in one batch agrees too.
    let reference = MemoryDurableStore::new();
    reference.record(&quiz.log.records).await?;
    let expected = observe(&reference, &[&quiz.quiz], &quiz.players()).await?;
    assert_eq!(once, expected);
    Ok(())
}

async fn a_repeated_answer_does_not_replace_the_first(
    store: &dyn DurableStore,
) -> anyhow::Result<()> {
    let quiz = unique("quiz");
    let player = unique("player");
    let mut log = Log::default();
    let first_q3 = log.answer(answer(&quiz, &player, 3, 0, 300));
    let first_q1 = log.answer(answer(&quiz, &player, 1, 10, 100));
    let mut retried = answer(&quiz, &player, 1, 99, 1);
    retried.idempotency_key = None;
    let retry_q1 = log.answer(retried);
    let first_q2 = log.answer(answer(&quiz, &player, 2, 20, 200));
    let retry_q2 = log.answer(answer(&quiz, &player, 2, 0, 2));
    ensure!(retry_q1.offset > first_q1.offset && retry_q2.offset > first_q2.offset);

    // The retry of q2 is recorded before the first q2 (as after a replay from an earlier
    // offset): the lowest offset still wins.
    store
        .record(&[first_q3.clone(), first_q1.clone(), retry_q1])
        .await?;
    store.record(&[retry_q2]).await?;
    store.record(std::slice::from_ref(&first_q2)).await?;

    let expected: Vec<AnswerSubmitted> = [first_q1, first_q2, first_q3]
        .into_iter()
        .filter_map(|s| match s.event {
            Event::AnswerSubmitted(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(store.answers(&quiz, &player).await?, expected);
    assert_eq!(store.answers(&quiz, &unique("nobody")).await?, []);
    Ok(())
}

async fn results_appear_only_after_quiz_finished(store: &dyn DurableStore) -> anyhow::Result<()> {
    let quiz = Quiz::new();
    let (before, finish) = quiz.log.records.split_at(quiz.log.records.len() - 1);
    store.record(before).await?;
    assert_eq!(store.results(&quiz.quiz).await?, None);
    assert_eq!(store.history(&quiz.players[0]).await?, []);

    store.record(finish).await?;
    let results = store.results(&quiz.quiz).await?.context("results")?;
    assert_eq!(results.quiz_id, quiz.quiz);
    assert_eq!(results.finished_at, 90_000);
    assert_eq!(
        results_order(&results),
        reference_order(&quiz.log.answers())
    );
    let ranks: Vec<u32> = results.standings.iter().map(|s| s.rank).collect();
    assert_eq!(ranks, [1, 2, 3, 4]);
    let [dana, ada, cy, bo] = &quiz.players;
    let named: Vec<(&str, &str, i64, i64, u32)> = results
        .standings
        .iter()
        .map(|s| {
            let (id, name) = (s.player_id.as_str(), s.name.as_str());
            (id, name, s.points, s.elapsed_ms, s.answers)
        })
        .collect();
    // points include the streak bonus; a tie on points and elapsed falls to the player id.
    let (first_tied, second_tied) = if ada < cy {
        ((ada.as_str(), "Ada"), (cy.as_str(), "Cy"))
    } else {
        ((cy.as_str(), "Cy"), (ada.as_str(), "Ada"))
    };
    assert_eq!(
        named,
        [
            (dana.as_str(), "Dana", 105, 1_900, 2),
            (first_tied.0, first_tied.1, 55, 500, 2),
            (second_tied.0, second_tied.1, 55, 500, 2),
            (bo.as_str(), "Bo", 55, 800, 2),
        ]
    );
    Ok(())
}

async fn answers_recorded_after_quiz_finished_end_up_in_results(
    store: &dyn DurableStore,
) -> anyhow::Result<()> {
    let quiz = Quiz::new();
    let (lifecycle, answers): (Vec<Sourced>, Vec<Sourced>) = quiz
        .log
        .records
        .iter()
        .cloned()
        .partition(|s| s.topic == LIFECYCLE);
    store.record(&lifecycle).await?;
    let early = store.results(&quiz.quiz).await?.context("results")?;
    assert_eq!(early.standings, []);

    let (some, rest) = answers.split_at(3);
    store.record(some).await?;
    let partial = store.results(&quiz.quiz).await?.context("results")?;
    assert_eq!(
        results_order(&partial),
        reference_order(&quiz.log.answers()[..3])
    );

    store.record(rest).await?;
    let results = store.results(&quiz.quiz).await?.context("results")?;
    assert_eq!(
        results_order(&results),
        reference_order(&quiz.log.answers())
    );
    assert_eq!(results.standings.len(), 4);
    assert_eq!(store.history(&quiz.players[3]).await?.len(), 1);
    Ok(())
}

async fn history_lists_each_finished_quiz_with_rank_and_points(
    store: &dyn DurableStore,
) -> anyhow::Result<()> {
    let (first, second, open) = (unique("quiz"), unique("quiz"), unique("quiz"));
    let (ann, ben, lurker) = (unique("ann"), unique("ben"), unique("lurker"));
    let mut log = Log::default();
    for (quiz, title) in [(&first, "First"), (&second, "Second"), (&open, "Open")] {
        let _ = log.created(quiz, title);
        let _ = log.joined(quiz, &ann, "Ann");
    }
    let _ = log.joined(&first, &ben, "Ben");
    let _ = log.joined(&first, &lurker, "Lurker");
    let _ = log.answer(answer(&first, &ann, 1, 10, 500));
    let _ = log.answer(answer(&first, &ben, 1, 30, 500));
    let _ = log.answer(answer(&second, &ann, 1, 40, 700));
    let _ = log.answer(answer(&open, &ann, 1, 40, 700));
    let _ = log.finished(&first, 10_000);
    let _ = log.finished(&second, 20_000);
    store.record(&log.records).await?;

    let entry = |quiz: &str, title: &str, rank, points, finished_at| QuizHistoryEntry {
        quiz_id: quiz.to_owned(),
        title: title.to_owned(),
        rank,
        points,
        finished_at,
    };
    assert_eq!(
        store.history(&ann).await?,
        [
            entry(&second, "Second", 1, 45, 20_000),
            entry(&first, "First", 2, 15, 10_000),
        ]
    );
    assert_eq!(
        store.history(&ben).await?,
        [entry(&first, "First", 1, 35, 10_000)]
    );
    // Joined but never answered: not ranked, so no history, as in the reference fold.
    assert_eq!(store.history(&lurker).await?, []);
    assert_eq!(store.results(&open).await?, None);
    Ok(())
}

/// A ScyllaDB store in a fresh keyspace, or `None` (with a line saying so) without a node.
/// Claim markers are kept per log partition, idempotently, and give the fence at any offset.
async fn claim_markers_give_the_fence_where_a_partition_resumes(
    store: &dyn DurableStore,
) -> anyhow::Result<()> {
    let marker = |offset, shard, epoch| ClaimMarker {
        offset,
        shard,
        epoch,
    };
    let markers = [marker(3, 0, 1), marker(9, 1, 4), marker(20, 0, 2)];
    store.record_claims("answers", 0, &markers).await?;
    store.record_claims("answers", 0, &markers[1..]).await?;
    store
        .record_claims("answers", 1, &[marker(5, 0, 7)])
        .await?;
    let claims = store.claims("answers", 0).await?;
    anyhow::ensure!(
        claims == markers,
        "recorded twice, kept once, in offset order: {claims:?}"
    );
    anyhow::ensure!(store.claims("lifecycle", 0).await?.is_empty());
    let at = |offset| {
        epochs_before(&claims, offset)
            .into_iter()
            .collect::<Vec<_>>()
    };
    anyhow::ensure!(at(3).is_empty(), "a marker counts only before the offset");
    anyhow::ensure!(at(10) == [(0, 1), (1, 4)]);
    anyhow::ensure!(at(21) == [(0, 2), (1, 4)]);
    Ok(())
}

async fn scylla_store() -> anyhow::Result<Option<ScyllaDurableStore>> {
    let nodes: Vec<String> = std::env::var("SCYLLA_NODES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        println!("skipped: SCYLLA_NODES is not set, so the ScyllaDB contract cannot run here");
        return Ok(None);
    }
    let config = ScyllaConfig {
        nodes: Some(nodes),
        keyspace: unique("podium_test").parse()?,
        consistency: podium_durable::parse_consistency("LOCAL_QUORUM")?,
        replication: 1,
    };
    let store = podium_durable::connect(&config)
        .await?
        .context("a configured store")?;
    Ok(Some(store))
}

async fn drop_keyspace(store: &ScyllaDurableStore) -> anyhow::Result<()> {
    let drop = format!("DROP KEYSPACE IF EXISTS {}", store.keyspace());
    let _ = store.session().query_unpaged(drop, ()).await?;
    Ok(())
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() -> anyhow::Result<()> {
                    super::$case(&podium_durable::MemoryDurableStore::new()).await
                }
            )*
        }

        mod scylla {
            $(
                #[tokio::test]
                async fn $case() -> anyhow::Result<()> {
                    let Some(store) = super::scylla_store().await? else {
                        return Ok(());
                    };
                    let outcome = super::$case(&store).await;
                    super::drop_keyspace(&store).await?;
                    outcome
                }
            )*
        }
    };
}

contract!(
    a_batch_applied_twice_equals_once,
    a_replayed_log_equals_once,
    a_repeated_answer_does_not_replace_the_first,
    results_appear_only_after_quiz_finished,
    answers_recorded_after_quiz_finished_end_up_in_results,
    history_lists_each_finished_quiz_with_rank_and_points,
    claim_markers_give_the_fence_where_a_partition_resumes,
);
