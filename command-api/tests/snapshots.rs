//! Snapshots: a start restores the quizzes in play from the last snapshot and the log after it,
//! finished quizzes leave memory and are still answered from their saved record, and a missing
//! or stale snapshot falls back to the whole log. Each scenario is written once and run on the
//! in-memory parts and on a real broker with a real Redis; the state after every start is
//! compared with a pure fold of the whole log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use podium_command_api::Error;
use podium_command_api::clock::{Clock, ManualClock};
use podium_command_api::event_log::{
    AppendError, Entry, EventLog, KafkaEventLog, LogRead, MemoryEventLog, Position, Positions,
};
use podium_command_api::quizzes::Quizzes;
use podium_command_api::shard_snapshots::{Claimed, ShardSnapshotter};
use podium_command_api::snapshots::{
    Acked, Checkpoint, MemorySnapshotStore, QuizRecord, RedisSnapshotStore, Save, ShardSave,
    SnapshotStore, Snapshotter,
};
use podium_runtime::KafkaArgs;
use podium_schemas::domain::{AnswerCommand, Command, Quiz, QuizDraft, Rejection};

mod support;
use podium_schemas::events::{Event, QuizFinished};
use podium_schemas::fence::Stamp;
use podium_testkit::{Broker, Redis, unique};

const START: i64 = 1_700_000_000_000;

struct Parts {
    log: Arc<dyn EventLog>,
    store: Arc<dyn SnapshotStore>,
    clock: Arc<ManualClock>,
}

fn draft(title: &str) -> QuizDraft {
    support::two_questions(title)
}

fn answer(clock: &ManualClock, player: &str, question: i32, choice: i64) -> AnswerCommand {
    AnswerCommand {
        player_id: player.into(),
        question,
        choice,
        received_at: clock.now(),
        idempotency_key: Some(format!("{player}-{question}")),
    }
}

/// A start of the command side on these parts; a gap in the acknowledged appends is filled
/// from the log at once.
async fn start(
    log: &Arc<dyn EventLog>,
    store: &Arc<dyn SnapshotStore>,
    clock: &Arc<ManualClock>,
) -> Result<(Arc<Quizzes>, Snapshotter)> {
    Ok(Quizzes::restore_with(
        log.clone(),
        clock.clone(),
        Some(store.clone()),
        Duration::ZERO,
    )
    .await?)
}

/// Every quiz as a pure fold of the whole log.
async fn folded(log: &Arc<dyn EventLog>) -> Result<HashMap<String, Quiz>> {
    let mut quizzes: HashMap<String, Quiz> = HashMap::new();
    for event in log.history().await? {
        match &event {
            Event::QuizCreated(created) => {
                let _ = quizzes.insert(created.quiz_id.clone(), Quiz::created(created));
            }
            other => {
                if let Some(quiz) = quizzes.get_mut(other.quiz_id()) {
                    quiz.evolve(other);
                }
            }
        }
    }
    Ok(quizzes)
}

/// Plays `n` quizzes of two players through question 1; those with an even index finish.
async fn play(
    parts: &Parts,
    quizzes: &Arc<Quizzes>,
    n: usize,
) -> Result<Vec<(String, [String; 2])>> {
    let mut played = Vec::new();
    for i in 0..n {
        let created = quizzes.create(&draft(&format!("Quiz {i}"))).await?;
        let id = created.quiz_id;
        let ann = quizzes.join(&id, "Ann").await?.player_id;
        let bob = quizzes.join(&id, "Bob").await?.player_id;
        let at = parts.clock.now();
        let _ = quizzes
            .host(&id, Command::StartQuestion { question: 1, at })
            .await?;
        parts.clock.advance(1_000);
        let _ = quizzes
            .answer(&id, answer(&parts.clock, &ann, 1, 0))
            .await?;
        let _ = quizzes
            .answer(&id, answer(&parts.clock, &bob, 1, 1))
            .await?;
        if i % 2 == 0 {
            let at = parts.clock.now();
            let _ = quizzes.host(&id, Command::Finish { at }).await?;
        }
        played.push((id, [ann, bob]));
    }
    Ok(played)
}

/// Every quiz in memory equals the pure fold of the log.
async fn matches_the_fold(quizzes: &Quizzes, log: &Arc<dyn EventLog>) -> Result<usize> {
    let folded = folded(log).await?;
    let mut in_memory = 0;
    for (id, quiz) in &folded {
        if let Some(restored) = quizzes.quiz(id).await {
            ensure!(
                &restored == quiz,
                "quiz {id} differs from the fold of the log"
            );
            in_memory += 1;
        }
    }
    ensure!(
        in_memory == quizzes.in_memory(),
        "a quiz in memory is not in the log"
    );
    Ok(in_memory)
}

async fn scenario(parts: Parts) -> Result<()> {
    let Parts { log, store, clock } = &parts;

    // A first start: nothing saved yet, so the whole (empty) log is read.
    let (quizzes, mut snapshotter) = start(log, store, clock).await?;
    ensure!(!quizzes.restored().from_snapshot);
    ensure!(quizzes.restored().why_not.as_deref() == Some("no snapshot was saved yet"));

    let played = play(&parts, &quizzes, 6).await?;
    let saved = snapshotter
        .catch_up(log)
        .await?
        .expect("the play was saved");
    ensure!(
        saved.finished.len() == 3,
        "three quizzes finished: {saved:?}"
    );
    ensure!(saved.live == 3);
    quizzes.saved(&saved);
    ensure!(quizzes.in_memory() == 3, "finished quizzes leave memory");
    ensure!(matches_the_fold(&quizzes, log).await? == 3);

    // A finished quiz that left memory is still answered from its record.
    let (finished, [ann, bob]) = &played[0];
    let original = folded(log).await?[finished]
        .standings
        .player(ann)
        .map(|p| p.answers[&1].clone())
        .expect("Ann answered");
    let repeat = quizzes.answer(finished, answer(clock, ann, 1, 0)).await?;
    ensure!(
        repeat.repeated && repeat.answer == original,
        "the same request gets its original result"
    );
    let mut other_key = answer(clock, bob, 1, 0);
    other_key.idempotency_key = Some("another".into());
    ensure!(matches!(
        quizzes.answer(finished, other_key).await,
        Err(Error::Rejected(Rejection::AlreadyAnswered(_)))
    ));
    ensure!(matches!(
        quizzes.answer(finished, answer(clock, ann, 2, 0)).await,
        Err(Error::Rejected(Rejection::QuizFinished))
    ));
    ensure!(matches!(
        quizzes.join(finished, "Cid").await,
        Err(Error::Rejected(Rejection::QuizFinished))
    ));
    let at = clock.now();
    ensure!(matches!(
        quizzes
            .host(finished, Command::StartQuestion { question: 2, at })
            .await,
        Err(Error::Rejected(Rejection::QuizFinished))
    ));
    let status = quizzes.host(finished, Command::Finish { at }).await?;
    ensure!(
        status.finished && status.players == 2,
        "finishing again is in effect: {status:?}"
    );
    ensure!(
        quizzes.player_name(finished, bob).await? == "Bob",
        "a rejoin finds its player"
    );
    let code = folded(log).await?[finished].join_code.clone();
    ensure!(
        &quizzes.quiz_of_code(&code).await? == finished,
        "its code still finds it"
    );
    let records = log.history().await?.len();

    // Play on after the snapshot: the next start reads exactly these records of the log.
    let (live, [ann, _]) = &played[1];
    let at = clock.now();
    let _ = quizzes
        .host(live, Command::StartQuestion { question: 2, at })
        .await?;
    let _ = quizzes.answer(live, answer(clock, ann, 2, 0)).await?;
    let _ = quizzes.host(&played[3].0, Command::Finish { at }).await?;
    let after = log.history().await?.len() - records;
    ensure!(log.history().await?.len() == records + after);

    let (restarted, mut snapshotter) = start(log, store, clock).await?;
    let restored = restarted.restored().clone();
    ensure!(restored.from_snapshot, "{restored:?}");
    ensure!(restored.snapshot_quizzes == 3, "{restored:?}");
    ensure!(
        restored.records_read == after,
        "only the log after the snapshot is read: {restored:?}"
    );
    ensure!(matches_the_fold(&restarted, log).await? == 3);
    // The quiz finished after the snapshot leaves memory at the next save.
    let saved = snapshotter.catch_up(log).await?.expect("the tail is saved");
    restarted.saved(&saved);
    ensure!(restarted.in_memory() == 2);
    ensure!(matches!(
        restarted
            .answer(&played[3].0, answer(clock, ann, 2, 0))
            .await,
        Err(Error::Rejected(_))
    ));
    ensure!(restarted.quiz_of_code(&code).await? == *finished);
    Ok(())
}

async fn stale_snapshots_fall_back_to_the_log(parts: Parts) -> Result<()> {
    let Parts { log, store, clock } = &parts;
    let (quizzes, mut snapshotter) = start(log, store, clock).await?;
    let _ = play(&parts, &quizzes, 2).await?;
    let saved = snapshotter
        .catch_up(log)
        .await?
        .expect("the play was saved");

    // The snapshot says the log went further than it does: the topics were recreated.
    let mut beyond = saved.positions.clone();
    for offset in beyond.values_mut() {
        *offset += 1_000;
    }
    store
        .save(&Save {
            positions: beyond,
            ..Save::default()
        })
        .await?;
    let (quizzes, _) = start(log, store, clock).await?;
    let restored = quizzes.restored();
    ensure!(!restored.from_snapshot);
    ensure!(
        restored
            .why_not
            .as_deref()
            .is_some_and(|why| why.starts_with("the snapshot does not match the log")),
        "{restored:?}"
    );
    ensure!(
        store.load().await?.is_none(),
        "the stale snapshot is forgotten"
    );
    ensure!(
        matches_the_fold(&quizzes, log).await? == 2,
        "every quiz comes from the whole log"
    );
    Ok(())
}

/// A log that writes the next append and then reports it failed: an answer in doubt.
#[derive(Debug, Default)]
struct DoubtfulLog {
    log: MemoryEventLog,
    fail_next: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl EventLog for DoubtfulLog {
    async fn append(&self, entry: &Entry) -> Result<Position, AppendError> {
        let position = self.log.append(entry).await?;
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(AppendError::Failed(
                "the broker died before it answered".into(),
            ));
        }
        Ok(position)
    }

    async fn read_from(&self, from: &Positions) -> Result<LogRead, AppendError> {
        self.log.read_from(from).await
    }

    async fn flush(&self) {}
}

#[tokio::test]
async fn a_finished_quiz_with_an_answer_in_doubt_stays_until_the_answer_is_settled() -> Result<()> {
    let doubtful = Arc::new(DoubtfulLog::default());
    let log: Arc<dyn EventLog> = doubtful.clone();
    let store: Arc<dyn SnapshotStore> = Arc::new(MemorySnapshotStore::default());
    let clock = Arc::new(ManualClock::new(START));
    let (quizzes, mut snapshotter) = start(&log, &store, &clock).await?;
    let id = quizzes.create(&draft("In doubt")).await?.quiz_id;
    let ann = quizzes.join(&id, "Ann").await?.player_id;
    let bob = quizzes.join(&id, "Bob").await?.player_id;
    let at = clock.now();
    let _ = quizzes
        .host(&id, Command::StartQuestion { question: 1, at })
        .await?;
    clock.advance(1_000);
    let _ = quizzes.answer(&id, answer(&clock, &ann, 1, 0)).await?;
    doubtful
        .fail_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    ensure!(
        quizzes
            .answer(&id, answer(&clock, &bob, 1, 0))
            .await
            .is_err(),
        "Bob's answer is in the log, unacknowledged"
    );
    let at = clock.now();
    let _ = quizzes.host(&id, Command::Finish { at }).await?;

    // The save holds the finished quiz, but the quiz keeps Bob's answer in doubt.
    let saved = snapshotter.catch_up(&log).await?.expect("saved");
    ensure!(saved.finished == std::slice::from_ref(&id));
    quizzes.saved(&saved);
    ensure!(
        quizzes.in_memory() == 1,
        "an entry in doubt keeps the quiz in memory"
    );

    // Bob retries: his entry is appended again, unchanged, and he gets his original result.
    let retried = quizzes.answer(&id, answer(&clock, &bob, 1, 0)).await?;
    ensure!(retried.repeated);
    let saved = snapshotter
        .catch_up(&log)
        .await?
        .expect("the copy is saved");
    quizzes.saved(&saved);
    ensure!(quizzes.in_memory() == 0, "settled, the quiz leaves memory");

    // From its record, the same answer again; the record folds to the whole log's fold.
    let again = quizzes.answer(&id, answer(&clock, &bob, 1, 0)).await?;
    ensure!(again.repeated && again.answer == retried.answer && again.total == retried.total);
    let record = store.record(&id).await?.expect("the finished record");
    ensure!(record.fold(&podium_schemas::Codec::new()).as_ref() == folded(&log).await?.get(&id));
    Ok(())
}

/// The store contract, written once and run against every adapter.
async fn store_contract(store: Arc<dyn SnapshotStore>) -> Result<()> {
    ensure!(
        store.load().await?.is_none(),
        "a new store holds no snapshot"
    );
    let record = |payloads: &[(bool, &[u8])]| {
        let mut record = QuizRecord::default();
        for (is_lifecycle, payload) in payloads {
            record.push(*is_lifecycle, payload.to_vec());
        }
        record
    };
    let positions = [
        (("lifecycle".to_owned(), 0), 4),
        (("answers".to_owned(), 2), 9),
    ]
    .into_iter()
    .collect();
    store
        .save(&Save {
            positions,
            appended: vec![
                (
                    "q1".into(),
                    record(&[(true, b"created"), (false, b"answer 1")]),
                ),
                ("q2".into(), record(&[(true, b"created 2")])),
            ],
            started: vec!["q1".into(), "q2".into()],
            finished: vec![],
            whole_records: false,
        })
        .await?;
    let Checkpoint {
        positions,
        mut live,
    } = store.load().await?.expect("saved");
    live.sort_by(|a, b| a.0.cmp(&b.0));
    ensure!(positions.len() == 2 && positions[&("answers".to_owned(), 2)] == 9);
    ensure!(
        live == [
            (
                "q1".into(),
                record(&[(true, b"created"), (false, b"answer 1")])
            ),
            ("q2".into(), record(&[(true, b"created 2")])),
        ]
    );

    // A save appends to the records, moves the positions it names, and finished quizzes leave
    // the set in play.
    let mut more = positions.clone();
    let _ = more.insert(("answers".to_owned(), 2), 12);
    store
        .save(&Save {
            positions: more,
            appended: vec![(
                "q1".into(),
                record(&[(true, b"finished"), (false, b"answer 2")]),
            )],
            started: vec![],
            finished: vec![("q1".into(), Some("ABC123".into())), ("q9".into(), None)],
            whole_records: false,
        })
        .await?;
    let checkpoint = store.load().await?.expect("saved");
    ensure!(checkpoint.positions[&("answers".to_owned(), 2)] == 12);
    ensure!(
        checkpoint.positions[&("lifecycle".to_owned(), 0)] == 4,
        "untouched positions stay"
    );
    ensure!(
        checkpoint.live.len() == 1,
        "a finished quiz leaves the set in play"
    );
    ensure!(
        store.record("q1").await?
            == Some(record(&[
                (true, b"created"),
                (true, b"finished"),
                (false, b"answer 1"),
                (false, b"answer 2"),
            ])),
        "lifecycle entries in order, then answers in order"
    );
    ensure!(store.record("q3").await?.is_none());
    ensure!(store.quiz_of_code("ABC123").await?.as_deref() == Some("q1"));

    // A whole record, read from the log's start, replaces the stored copy: appended, it would
    // repeat it.
    let whole = record(&[(true, b"created"), (false, b"answer 1")]);
    store
        .save(&Save {
            appended: vec![("q2".into(), whole.clone())],
            whole_records: true,
            ..Save::default()
        })
        .await?;
    ensure!(store.record("q2").await? == Some(whole.clone()));

    shard_contract(store.as_ref()).await?;
    store.clear().await?;
    ensure!(store.load().await?.is_none() && store.record("q1").await?.is_none());
    Ok(())
}

/// Each shard's snapshot is claimed under an epoch, and a save under an older one is refused.
async fn shard_contract(store: &dyn SnapshotStore) -> Result<()> {
    let record = |payloads: &[(bool, &[u8])]| {
        let mut record = QuizRecord::default();
        for (is_lifecycle, payload) in payloads {
            record.push(*is_lifecycle, payload.to_vec());
        }
        record
    };
    ensure!(
        store.claim_shard(3, 1).await?.is_none(),
        "a shard has no snapshot before its first save"
    );
    let positions: Positions = [
        (("answers".to_owned(), 0), 5),
        (("lifecycle".to_owned(), 3), 2),
    ]
    .into_iter()
    .collect();
    let part = |epoch, save| ShardSave {
        shard: 3,
        epoch,
        save,
    };
    let first = Save {
        positions: positions.clone(),
        appended: vec![("q7".into(), record(&[(true, b"created 7")]))],
        started: vec!["q7".into()],
        ..Save::default()
    };
    ensure!(store.save_shards(&[part(1, first)]).await? == [3]);
    let found = store.claim_shard(3, 2).await?.expect("saved");
    ensure!(found.epoch == 1, "the epoch of the owner that saved it");
    ensure!(found.checkpoint.positions == positions);
    ensure!(found.checkpoint.live == [("q7".into(), record(&[(true, b"created 7")]))]);

    // The deposed owner's save is refused whole; the new owner's goes in.
    let late = Save {
        appended: vec![("q7".into(), record(&[(true, b"late")]))],
        ..Save::default()
    };
    ensure!(store.save_shards(&[part(1, late)]).await?.is_empty());
    ensure!(store.record("q7").await? == Some(record(&[(true, b"created 7")])));
    ensure!(
        store.claim_shard(3, 1).await.is_err(),
        "a claim older than the last is refused"
    );
    let finish = Save {
        appended: vec![("q7".into(), record(&[(true, b"finished 7")]))],
        finished: vec![("q7".into(), Some("XYZ789".into()))],
        ..Save::default()
    };
    ensure!(store.save_shards(&[part(2, finish)]).await? == [3]);
    let found = store.claim_shard(3, 2).await?.expect("saved");
    ensure!(found.epoch == 2 && found.checkpoint.live.is_empty());
    ensure!(store.quiz_of_code("XYZ789").await?.as_deref() == Some("q7"));
    ensure!(
        store.record("q7").await? == Some(record(&[(true, b"created 7"), (true, b"finished 7")]))
    );
    ensure!(
        store.load().await?.is_none(),
        "one instance's snapshot is forgotten once a group claims a shard"
    );
    store.forget_shards().await?;
    ensure!(
        store.claim_shard(3, 3).await?.is_none(),
        "a group's snapshots are forgotten when one instance starts"
    );
    ensure!(store.record("q7").await?.is_some(), "records stay");
    Ok(())
}

fn memory_parts() -> Parts {
    Parts {
        log: Arc::new(MemoryEventLog::default()),
        store: Arc::new(MemorySnapshotStore::default()),
        clock: Arc::new(ManualClock::new(START)),
    }
}

#[tokio::test]
async fn memory_parts_restore_from_snapshots() -> Result<()> {
    scenario(memory_parts()).await
}

#[tokio::test]
async fn memory_parts_fall_back_to_the_log() -> Result<()> {
    stale_snapshots_fall_back_to_the_log(memory_parts()).await
}

#[tokio::test]
async fn memory_store_meets_the_contract() -> Result<()> {
    store_contract(Arc::new(MemorySnapshotStore::default())).await
}

async fn kafka_log(broker: &Broker) -> Result<Arc<dyn EventLog>> {
    let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("snapshots")));
    broker
        .create_topics(&kafka.topics().with_partitions())
        .await?;
    Ok(Arc::new(KafkaEventLog::new(
        &kafka,
        Duration::from_secs(10),
        1000,
    )?))
}

async fn redis_store(redis: &Redis) -> Result<Arc<dyn SnapshotStore>> {
    let client = redis::Client::open(redis.url())?;
    Ok(Arc::new(
        RedisSnapshotStore::connect(client, &unique("podium")).await?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_redis_restore_from_snapshots_and_fall_back_to_the_log() -> Result<()> {
    let broker = Broker::start().await?;
    let redis = Redis::start().await?;
    store_contract(redis_store(&redis).await?).await?;
    scenario(Parts {
        log: kafka_log(&broker).await?,
        store: redis_store(&redis).await?,
        clock: Arc::new(ManualClock::new(START)),
    })
    .await?;
    stale_snapshots_fall_back_to_the_log(Parts {
        log: kafka_log(&broker).await?,
        store: redis_store(&redis).await?,
        clock: Arc::new(ManualClock::new(START)),
    })
    .await
}

#[tokio::test]
async fn a_gap_is_timed_from_when_it_reaches_the_head_of_its_partition() -> Result<()> {
    let log: Arc<dyn EventLog> = Arc::new(MemoryEventLog::default());
    let store: Arc<dyn SnapshotStore> = Arc::new(MemorySnapshotStore::default());
    let (mut snapshotter, acks) = Snapshotter::new(Some(store), None, Duration::from_millis(50));
    let mut appended = Vec::new();
    for n in 0..4 {
        let event = Event::PlayerJoined(podium_schemas::events::PlayerJoined {
            quiz_id: "q".into(),
            player_id: format!("p{n}"),
            name: format!("P{n}"),
            joined_at: START,
        });
        let position = log.append(&Entry::new(event.clone())).await?;
        appended.push(Acked { position, event });
    }
    let tell = |n: usize| {
        acks.send(appended[n].clone())
            .map_err(|_| anyhow::anyhow!("closed"))
    };
    let lifecycle = (appended[0].position.topic.clone(), 0);

    // Offset 1 is told first: 0 is a gap, too young to read the log for.
    tell(1)?;
    ensure!(snapshotter.catch_up(&log).await?.is_none());
    tokio::time::sleep(Duration::from_millis(60)).await;

    // 0 arrives and 3 with it: the head moves to 2, and the gap now at the head is new.
    tell(0)?;
    tell(3)?;
    let saved = snapshotter.catch_up(&log).await?.expect("0 and 1 saved");
    ensure!(
        !saved.read_the_log,
        "a gap that just reached the head is not old"
    );
    ensure!(saved.positions[&lifecycle] == 2);

    // Left standing, it is filled from the log.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let saved = snapshotter.catch_up(&log).await?.expect("2 and 3 saved");
    ensure!(saved.read_the_log && saved.positions[&lifecycle] == 4);
    Ok(())
}

/// How many records of each quiz a whole read of the log holds.
async fn records_per_quiz(log: &Arc<dyn EventLog>) -> Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for event in log.history().await? {
        *counts.entry(event.quiz_id().to_owned()).or_default() += 1;
    }
    Ok(counts)
}

/// A group member's snapshots (ADR 0012): the first claim reads the whole log and its first
/// save replaces the records a single instance left; a later owner reads only the log after
/// the snapshot, judged from the saved epoch, and restores what the whole log folds to; the
/// deposed owner's save is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_claimed_after_its_snapshot_reads_only_the_log_after_it() -> Result<()> {
    let broker = Broker::start().await?;
    let redis = Redis::start().await?;
    let parts = Parts {
        log: kafka_log(&broker).await?,
        store: redis_store(&redis).await?,
        clock: Arc::new(ManualClock::new(START)),
    };
    let Parts { log, store, .. } = &parts;
    // A single instance plays first and saves: its records are in the store.
    let (single, mut snapshotter) = start(log, store, &parts.clock).await?;
    let _ = play(&parts, &single, 4).await?;
    ensure!(snapshotter.catch_up(log).await?.is_some());
    let count = log.shard_count().await?;
    let stamps = |epoch| {
        (0..count)
            .map(|shard| Stamp { shard, epoch })
            .collect::<Vec<_>>()
    };
    let restored = |claimed: &Claimed| {
        claimed
            .taken
            .iter()
            .flat_map(|t| t.quizzes.clone())
            .collect::<HashMap<_, _>>()
    };

    // Owner A claims every shard with no snapshot of them: it reads the whole log.
    for stamp in stamps(1) {
        log.claim(stamp).await?;
    }
    let mut a = ShardSnapshotter::new(Some(store.clone()), count);
    let claimed = a.claim(log, &stamps(1)).await?;
    ensure!(claimed.taken.iter().all(|t| t.why_not.is_some()));
    ensure!(restored(&claimed) == folded(log).await?);
    let saved = a.catch_up(log).await?.context("the first save")?;
    ensure!(saved.finished.len() == 2, "quizzes 0 and 2 finished");
    let counts = records_per_quiz(log).await?;
    for (id, n) in &counts {
        let record = store.record(id).await?.context("a record")?;
        ensure!(
            record.len() == *n,
            "quiz {id}: {} entries saved for {n} in the log",
            record.len()
        );
    }

    // More play after A's snapshot; then B claims every shard, and A, deposed, appends a
    // finish under its old epoch after B's markers.
    let later = play(&parts, &single, 2).await?;
    for stamp in stamps(2) {
        log.claim(stamp).await?;
    }
    let (unfinished, _) = &later[1];
    let stale = Entry::new(Event::QuizFinished(QuizFinished {
        quiz_id: unfinished.clone(),
        finished_at: parts.clock.now(),
    }))
    .stamped(Some(Stamp {
        shard: podium_schemas::fence::shard_of(unfinished, count),
        epoch: 1,
    }));
    let _ = log.append(&stale).await?;
    let mut b = ShardSnapshotter::new(Some(store.clone()), count);
    let claimed = b.claim(log, &stamps(2)).await?;
    ensure!(
        claimed.taken.iter().all(|t| t.why_not.is_none()),
        "every shard was saved: {:?}",
        claimed.taken.iter().map(|t| &t.why_not).collect::<Vec<_>>()
    );
    let whole = folded(log).await?;
    ensure!(
        claimed.records_read < log.history().await?.len(),
        "the claim read only the log after the snapshots"
    );
    ensure!(claimed.void == 1, "the deposed owner's finish is void");
    // Quizzes finished before the snapshot stay out; one that finished after it is held until
    // a save holds its finish.
    let expected: HashMap<_, _> = whole
        .into_iter()
        .filter(|(id, quiz)| !quiz.finished || later.iter().any(|(l, _)| l == id))
        .collect();
    let got = restored(&claimed);
    ensure!(
        got == expected,
        "the claim restores what the whole log folds to, quizzes finished before left out: {:?} for {:?}",
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    ensure!(!expected[unfinished].finished);

    // A's next save is refused, and A lets its shards go; B's goes in.
    let before = store.record(unfinished).await?;
    let _ = a.catch_up(log).await?;
    ensure!(a.owned().is_empty(), "the deposed owner forgets its shards");
    ensure!(store.record(unfinished).await? == before);
    let saved = b.catch_up(log).await?.context("B's first save")?;
    ensure!(saved.finished == [later[0].0.clone()]);
    Ok(())
}

/// A quiet shard is saved once after its claim, so its next owner starts from a snapshot.
#[tokio::test]
async fn a_quiet_shard_is_saved_once_after_its_claim() -> Result<()> {
    let log: Arc<dyn EventLog> = Arc::new(MemoryEventLog::default());
    let store: Arc<dyn SnapshotStore> = Arc::new(MemorySnapshotStore::default());
    let mut a = ShardSnapshotter::new(Some(store.clone()), 1);
    let claimed = a.claim(&log, &[Stamp { shard: 0, epoch: 1 }]).await?;
    ensure!(claimed.taken[0].why_not.is_some(), "nothing saved yet");
    ensure!(a.catch_up(&log).await?.is_some(), "the first round saves");
    ensure!(
        a.catch_up(&log).await?.is_none(),
        "a quiet shard saved once"
    );
    let mut b = ShardSnapshotter::new(Some(store), 1);
    let claimed = b.claim(&log, &[Stamp { shard: 0, epoch: 2 }]).await?;
    ensure!(
        claimed.taken[0].why_not.is_none(),
        "the next owner starts from the snapshot: {:?}",
        claimed.taken[0].why_not
    );
    Ok(())
}
