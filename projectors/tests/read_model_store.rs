//! The Redis read models against a real Redis: exactly once per log position, the same result
//! as the pure fold, whatever is redelivered.

use std::collections::BTreeMap;

use anyhow::Result;
use podium_projectors::read_model::{Outcome, RedisReadModel, Sourced};
use podium_query_api::read_model::ReadModel;
use podium_schemas::Event;
use podium_schemas::domain::{ReadModels, Standings};
use podium_schemas::events::AnswerSubmitted;
use podium_schemas::read_model::{Keys, Root, partition_field, unpack_score};
use podium_testkit::{QuizLog, Redis, unique};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;

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
        choice: 1,
        received_at: 0,
        elapsed_ms,
        correct: points > 0,
        points,
        streak: 0,
        streak_bonus: 0,
        rule_version: 1,
        idempotency_key: None,
    }
}

fn at(partition: i32, offset: i64, event: AnswerSubmitted) -> Sourced<Event> {
    Sourced {
        topic: "answers".into(),
        partition,
        offset,
        event: Event::AnswerSubmitted(event),
    }
}

/// A store writing a fresh root's active generation, and that generation's keys.
async fn store(redis: &Redis) -> Result<(RedisReadModel, Keys)> {
    let root = Root::new(unique("ns"));
    let store = RedisReadModel::connect(&redis.url(), root.clone()).await?;
    let generation = store.adopt_active().await?;
    Ok((store, root.generation(&generation)))
}

/// Next offsets after a batch, as the projector passes them.
fn next(batch: &[Sourced<Event>]) -> BTreeMap<String, i64> {
    let mut next = BTreeMap::new();
    for e in batch {
        let entry = next
            .entry(partition_field(&e.topic, e.partition))
            .or_insert(0);
        *entry = (*entry).max(e.offset + 1);
    }
    next
}

async fn apply(store: &RedisReadModel, batch: &[Sourced<Event>]) -> Result<usize> {
    match store.apply(batch, &next(batch)).await? {
        Outcome::Applied { changed } => Ok(changed),
        moved @ Outcome::Moved { .. } => anyhow::bail!("unexpected {moved:?}"),
    }
}

/// The leaderboard as stored: (player, points, elapsed) in order.
async fn stored(redis: &Redis, keys: &Keys, quiz: &str) -> Result<Vec<(String, i64, i64)>> {
    let mut connection = redis.connection().await?;
    let rows: Vec<(String, f64)> = connection
        .zrange_withscores(keys.leaderboard(quiz), 0, -1)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(player, score)| {
            let (points, elapsed) = unpack_score(score);
            (player, points, elapsed)
        })
        .collect())
}

fn folded(batch: &[Sourced<Event>]) -> Vec<(String, i64, i64)> {
    let mut standings = Standings::default();
    for a in batch {
        if let Event::AnswerSubmitted(answer) = &a.event {
            let _ = standings.apply(answer);
        }
    }
    standings
        .ranked()
        .into_iter()
        .map(|s| (s.player_id, s.points, s.elapsed_ms))
        .collect()
}

#[tokio::test]
async fn a_redelivered_batch_changes_nothing() -> Result<()> {
    let redis = Redis::start().await?;
    let (store, keys) = store(&redis).await?;
    let batch = vec![
        at(0, 0, answer("q", "ann", 1, 900, 2_000)),
        at(1, 0, answer("q", "bob", 1, 900, 1_000)),
        at(0, 1, answer("q", "ann", 2, 800, 4_000)),
        at(2, 7, answer("q", "cid", 1, 0, 500)),
    ];
    assert_eq!(apply(&store, &batch).await?, 4);
    let once = stored(&redis, &keys, "q").await?;
    assert_eq!(once, folded(&batch));

    // The whole batch again, and an overlapping tail: redeliveries after a crash.
    assert_eq!(apply(&store, &batch).await?, 0);
    assert_eq!(apply(&store, &batch[2..]).await?, 0);
    assert_eq!(stored(&redis, &keys, "q").await?, once);
    let mut connection = redis.connection().await?;
    let version: u64 = connection.get(keys.version("q")).await?;
    assert_eq!(
        version, 4,
        "each change moved the version once; the redeliveries did not"
    );
    Ok(())
}

#[tokio::test]
async fn an_answer_repeated_at_a_new_offset_counts_once() -> Result<()> {
    let redis = Redis::start().await?;
    let (store, keys) = store(&redis).await?;
    // A retried append can put the same answer in the log twice: the first one counts.
    let first = at(0, 0, answer("q", "ann", 1, 900, 2_000));
    let retried = at(0, 1, answer("q", "ann", 1, 500, 9_000));
    let batch = vec![first, retried];
    assert_eq!(apply(&store, &batch).await?, 1);
    assert_eq!(
        stored(&redis, &keys, "q").await?,
        vec![("ann".to_owned(), 900, 2_000)]
    );
    assert_eq!(stored(&redis, &keys, "q").await?, folded(&batch));
    Ok(())
}

#[tokio::test]
async fn quizzes_are_kept_apart_and_ties_go_to_the_lower_player_id() -> Result<()> {
    let redis = Redis::start().await?;
    let (store, keys) = store(&redis).await?;
    let batch = vec![
        at(0, 0, answer("q1", "zed", 1, 500, 100)),
        at(1, 0, answer("q1", "amy", 1, 500, 100)),
        at(0, 1, answer("q2", "zed", 1, 700, 100)),
    ];
    assert_eq!(apply(&store, &batch).await?, 3);
    let q1 = stored(&redis, &keys, "q1").await?;
    assert_eq!(
        q1,
        vec![("amy".to_owned(), 500, 100), ("zed".to_owned(), 500, 100)]
    );
    assert_eq!(
        stored(&redis, &keys, "q2").await?,
        vec![("zed".to_owned(), 700, 100)]
    );
    Ok(())
}

/// A whole played quiz, cut into random batches, each applied once and some applied again, in a
/// random interleaving of partitions, its log holding copies of retried appends: every read
/// model equals the fold of the log, and the copies change nothing.
#[tokio::test]
async fn a_played_quiz_redelivered_in_random_batches_equals_the_fold() -> Result<()> {
    let redis = Redis::start().await?;
    let root = Root::new(unique("ns"));
    let store = RedisReadModel::connect(&redis.url(), root.clone()).await?;
    let _ = store.adopt_active().await?;
    let quiz = QuizLog::play("quiz-1", 40, 5, 0.8, 3)?;

    // The log: lifecycle on partition 0 in order, answers over 3 partitions by player.
    let mut partitions: BTreeMap<(&str, i32), Vec<Event>> = BTreeMap::new();
    let mut lifecycle = quiz.opening.clone();
    for round in &quiz.rounds {
        lifecycle.push(round.start.clone());
        for answer in &round.answers {
            let Event::AnswerSubmitted(a) = answer else {
                continue;
            };
            let p = i32::from(a.player_id.as_bytes().last().copied().unwrap_or(0) % 3);
            partitions
                .entry(("answers", p))
                .or_default()
                .push(answer.clone());
        }
        lifecycle.push(round.close.clone());
    }
    lifecycle.push(quiz.finish.clone());
    let _ = partitions.insert(("lifecycle", 0), lifecycle);
    let without_copies = ReadModels::fold(partitions.values().flatten());
    // A retried append puts a second copy of its entry in the log, right after the first in
    // its partition's order (the command side appends nothing that depends on it in between).
    // Every lifecycle fact is copied, and some answers.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for ((topic, _), events) in &mut partitions {
        *events = std::mem::take(events)
            .into_iter()
            .flat_map(|e| {
                let copied = *topic == "lifecycle" || rng.random_bool(0.3);
                let copies = if copied { 2 } else { 1 };
                std::iter::repeat_n(e, copies)
            })
            .collect();
    }
    let mut log: Vec<Vec<Sourced<Event>>> = partitions
        .into_iter()
        .map(|((topic, partition), events)| {
            (0..)
                .zip(events)
                .map(|(offset, event)| Sourced {
                    topic: topic.into(),
                    partition,
                    offset,
                    event,
                })
                .collect()
        })
        .collect();
    let expected = ReadModels::fold(log.iter().flatten().map(|s| &s.event));
    assert_eq!(
        expected, without_copies,
        "copies of retried appends change the fold"
    );

    // Consume: pick a random partition, take a random batch from its cursor, sometimes rewind.
    let mut cursors = vec![0usize; log.len()];
    while cursors.iter().zip(&log).any(|(c, p)| *c < p.len()) {
        let mut open: Vec<usize> = (0..log.len())
            .filter(|i| cursors[*i] < log[*i].len())
            .collect();
        open.shuffle(&mut rng);
        let mut batch = Vec::new();
        for &i in open.iter().take(2) {
            let take = rng.random_range(1..=50).min(log[i].len() - cursors[i]);
            batch.extend_from_slice(&log[i][cursors[i]..cursors[i] + take]);
            cursors[i] += take;
            if rng.random_bool(0.2) {
                cursors[i] -= rng.random_range(0..=take); // a redelivery after a crash
            }
        }
        let _ = apply(&store, &batch).await?;
    }
    log.clear();

    let reader = ReadModel::connect(&redis.url(), root).await?;
    let (view, board) = reader.quiz_view("quiz-1").await?;
    let want = &expected.quizzes["quiz-1"];
    assert_eq!(&view, want);
    let ranked: Vec<(String, i64, i64)> = want
        .ranked()
        .into_iter()
        .map(|s| (s.player_id, s.points, s.elapsed_ms))
        .collect();
    assert_eq!(board, ranked);
    Ok(())
}

#[tokio::test]
async fn a_store_whose_generation_was_retired_applies_nothing_there_and_follows() -> Result<()> {
    let redis = Redis::start().await?;
    let root = Root::new(unique("ns"));
    let store = RedisReadModel::connect(&redis.url(), root.clone()).await?;
    let old = store.adopt_active().await?;
    let batch = vec![at(0, 0, answer("q", "ann", 1, 900, 2_000))];
    assert_eq!(apply(&store, &batch).await?, 1);

    // A rebuild switches to a new generation.
    let new = podium_projectors::read_model::new_generation();
    store.switch(Some(&old), &new).await?;
    let later = vec![at(0, 1, answer("q", "bob", 1, 800, 2_000))];
    let outcome = store.apply(&later, &next(&later)).await?;
    assert_eq!(
        outcome,
        Outcome::Moved {
            from: old.clone(),
            to: new.clone()
        }
    );
    assert_eq!(store.generation(), new);
    // A switch from a generation that is no longer active is refused.
    assert!(store.switch(Some(&old), "g-other").await.is_err());
    // Redis lost everything: the next apply notices and a new generation is made.
    let mut connection = redis.connection().await?;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await?;
    let outcome = store.apply(&later, &next(&later)).await?;
    assert!(matches!(outcome, Outcome::Moved { ref from, .. } if *from == new));
    assert_ne!(store.generation(), new);
    Ok(())
}

#[tokio::test]
async fn resume_positions_move_only_once_every_script_of_the_batch_succeeded() -> Result<()> {
    let redis = Redis::start().await?;
    let (store, keys) = store(&redis).await?;
    let batch = vec![
        at(0, 0, answer("a", "ann", 1, 900, 2_000)),
        at(0, 1, answer("b", "bob", 1, 800, 2_000)),
        at(0, 2, answer("a", "cat", 1, 700, 2_000)),
    ];
    // Quiz b's script fails before it writes: its positions key holds a string, so its first
    // read is refused.
    let mut connection = redis.connection().await?;
    let () = connection.set(keys.positions("b"), "in the way").await?;
    assert!(store.apply(&batch, &next(&batch)).await.is_err());
    let generation = store.generation();
    assert!(
        store.resume_positions(&generation).await?.is_empty(),
        "a failed script must leave the resume positions where they were"
    );

    // The script cache is flushed too, as by a Redis restart that kept its data.
    let () = connection.del(keys.positions("b")).await?;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await?;
    // A store that finds its scripts gone refuses the batch (Redis restarted, perhaps from an
    // older snapshot: the projector re-reads from the resume positions) and loads them again.
    assert!(matches!(
        store.apply(&batch, &next(&batch)).await,
        Err(podium_projectors::Error::ScriptsLost)
    ));
    assert!(store.resume_positions(&generation).await?.is_empty());
    // Quiz a's script ran the first time: only b's answer changes something now.
    assert_eq!(apply(&store, &batch).await?, 1);
    let resume = store.resume_positions(&generation).await?;
    assert_eq!(resume.get(&("answers".to_owned(), 0)), Some(&3));
    assert_eq!(stored(&redis, &keys, "a").await?.len(), 2);
    assert_eq!(stored(&redis, &keys, "b").await?.len(), 1);
    Ok(())
}

#[test]
fn generation_ids_never_repeat_and_sort_by_creation() {
    let ids: Vec<String> = (0..10_000)
        .map(|_| podium_projectors::read_model::new_generation())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "a generation id repeated");
    assert_eq!(sorted, ids, "generation ids must sort by creation");
}

/// What a query API's copy of the board (ADR 0013) is built from: chunks of the board read
/// while the quiz is folded, and the change messages. Played with redeliveries and a kick,
/// each chunk read before or after the message of the fold just done, the copy ranks every
/// player as Redis does.
#[tokio::test]
async fn a_board_copy_kept_by_the_change_messages_ranks_as_redis_does() -> Result<()> {
    use futures::StreamExt;
    use podium_query_api::board_copy::BoardCopy;
    use podium_schemas::events::PlayerKicked;
    use podium_schemas::read_model::ChangeMessage;

    let redis = Redis::start().await?;
    let root = Root::new(unique("ns"));
    let store = RedisReadModel::connect(&redis.url(), root.clone()).await?;
    let _ = store.adopt_active().await?;
    let reader = ReadModel::connect(&redis.url(), root.clone()).await?;
    let mut pubsub = redis::Client::open(redis.url())?.get_async_pubsub().await?;
    pubsub.subscribe(root.changes("quiz-1")).await?;
    let mut messages = pubsub.into_on_message();

    let quiz = QuizLog::play("quiz-1", 60, 4, 0.8, 11)?;
    let mut events = quiz.opening.clone();
    for (n, round) in quiz.rounds.iter().enumerate() {
        events.push(round.start.clone());
        events.extend(round.answers.iter().cloned());
        if n == 1 {
            events.push(Event::PlayerKicked(PlayerKicked {
                quiz_id: "quiz-1".into(),
                player_id: "p000003".into(),
                kicked_at: 1,
            }));
        }
        events.push(round.close.clone());
    }
    events.push(quiz.finish.clone());
    let log: Vec<Sourced<Event>> = (0..)
        .zip(events)
        .map(|(offset, event)| Sourced {
            topic: "quiz".into(),
            partition: 0,
            offset,
            event,
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut copy: Option<BoardCopy> = None;
    let mut pending = Vec::new();
    let mut after: Option<String> = None;
    let mut loaded = false;
    let mut cursor = 0;
    let mut folds = 0;
    while cursor < log.len() || !loaded {
        let mut message_due = false;
        if cursor < log.len() {
            let take = rng.random_range(1..=25).min(log.len() - cursor);
            let batch = &log[cursor..cursor + take];
            cursor += take;
            if rng.random_bool(0.2) {
                cursor -= rng.random_range(0..=take); // a redelivery after a crash
            }
            message_due = apply(&store, batch).await? > 0;
            folds += 1;
        }
        let chunk_first = rng.random_bool(0.5);
        let mut step = 0;
        while step < 2 {
            let chunk_now = (step == 0) == chunk_first;
            step += 1;
            if chunk_now {
                if loaded || folds < 4 || !rng.random_bool(0.6) && cursor < log.len() {
                    continue;
                }
                let (_, chunk) = reader.board_chunk("quiz-1", after.as_deref(), 7).await?;
                let copy =
                    copy.get_or_insert_with(|| BoardCopy::new(chunk.version, chunk.latest_closed));
                for message in pending.drain(..) {
                    copy.apply(&message)
                        .map_err(|_| anyhow::anyhow!("missed before {}", message.version))?;
                }
                copy.fill(chunk.version, chunk.cards);
                match chunk.next {
                    Some(next) => after = Some(next),
                    None => {
                        copy.finish_loading();
                        loaded = true;
                    }
                }
            } else if message_due {
                let message =
                    tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("the change subscription ended"))?;
                let payload: String = message.get_payload()?;
                let message = ChangeMessage::parse(&payload)
                    .ok_or_else(|| anyhow::anyhow!("not a change message: {payload}"))?;
                match &mut copy {
                    Some(copy) => copy
                        .apply(&message)
                        .map_err(|_| anyhow::anyhow!("missed before {}", message.version))?,
                    None => pending.push(message),
                }
            }
        }
    }
    let copy = copy.ok_or_else(|| anyhow::anyhow!("no chunk was read"))?;
    ranks_as_redis_does(&reader, &copy).await?;

    // A copy of the finished quiz, from chunks alone.
    let (mut after, mut copy) = (None, None);
    loop {
        let (_, chunk) = reader.board_chunk("quiz-1", after.as_deref(), 7).await?;
        let copy = copy.get_or_insert_with(|| BoardCopy::new(chunk.version, chunk.latest_closed));
        copy.fill(chunk.version, chunk.cards);
        after = chunk.next;
        if after.is_none() {
            copy.finish_loading();
            break;
        }
    }
    ranks_as_redis_does(&reader, &copy.ok_or_else(|| anyhow::anyhow!("no chunk"))?).await
}

async fn ranks_as_redis_does(
    reader: &ReadModel,
    copy: &podium_query_api::board_copy::BoardCopy,
) -> Result<()> {
    let mut ranked = 0;
    for i in 0..60 {
        let player_id = format!("p{i:06}");
        let from_redis = reader.player("quiz-1", &player_id).await?;
        let from_copy = copy.standing("quiz-1", &player_id);
        if from_redis.rank.is_some() {
            ranked += 1;
            assert_eq!(from_copy.as_ref(), Some(&from_redis), "{player_id}");
        } else {
            assert_eq!(from_copy, None, "{player_id} is not ranked: {from_redis:?}");
        }
    }
    assert_eq!(copy.len(), ranked);
    assert!(ranked > 40, "only {ranked} ranked players");
    Ok(())
}
