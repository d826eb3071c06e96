//! Snapshots of the command side's quizzes, so that a start reads the log's tail, not all of it,
//! and finished quizzes leave memory (ADR 0010).
//!
//! A snapshot is a fold of a prefix of the log, cut at exact positions: the [`Snapshotter`] reads
//! the log like any consumer, groups each quiz's records, and saves them with the positions it
//! read to, in one atomic write. A start loads the quizzes in play and reads the log from those
//! positions on; folding the saved records and then the tail gives what folding the whole log
//! gives, by construction. A quiz's record is its own records as the log holds them (Avro, so
//! the schema rules of the log apply to snapshots too), lifecycle first, then answers, the order
//! of a whole-log replay.
//!
//! A finished quiz's record moves from the live set to a record of its own, which the command
//! side reads to answer commands for the quiz once it has left memory.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use podium_schemas::Codec;
use podium_schemas::domain::Quiz;
use podium_schemas::events::Event;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::error::{Error, Result};
use crate::event_log::{EventLog, LogRead, Positions};

/// The records of one quiz: what its state is folded from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuizRecord {
    lifecycle: Vec<Vec<u8>>,
    answers: Vec<Vec<u8>>,
}

/// Marks the encoding: a format this build does not know is read as no snapshot.
const FORMAT: &[u8; 4] = b"PQR1";

impl QuizRecord {
    pub fn push(&mut self, is_lifecycle: bool, payload: Vec<u8>) {
        if is_lifecycle {
            self.lifecycle.push(payload);
        } else {
            self.answers.push(payload);
        }
    }

    pub fn len(&self) -> usize {
        self.lifecycle.len() + self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `PQR1`, the number of lifecycle records, then every record as a length and its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .lifecycle
            .iter()
            .chain(&self.answers)
            .map(Vec::len)
            .sum();
        let mut out = Vec::with_capacity(8 + size + 4 * self.len());
        out.extend_from_slice(FORMAT);
        out.extend_from_slice(&u32_of(self.lifecycle.len()).to_be_bytes());
        for payload in self.lifecycle.iter().chain(&self.answers) {
            out.extend_from_slice(&u32_of(payload.len()).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let invalid =
            || Error::Snapshots("a quiz record is truncated or not in format PQR1".into());
        let rest = bytes.strip_prefix(FORMAT).ok_or_else(invalid)?;
        let (lifecycle, mut rest) = take_u32(rest).ok_or_else(invalid)?;
        let mut record = Self::default();
        let mut index = 0;
        while !rest.is_empty() {
            let (len, tail) = take_u32(rest).ok_or_else(invalid)?;
            if tail.len() < len {
                return Err(invalid());
            }
            let (payload, tail) = tail.split_at(len);
            record.push(index < lifecycle, payload.to_vec());
            index += 1;
            rest = tail;
        }
        Ok(record)
    }

    /// The quiz these records fold to; `None` without its creation.
    pub fn fold(&self, codec: &Codec) -> Option<Quiz> {
        let mut quiz: Option<Quiz> = None;
        for payload in self.lifecycle.iter().chain(&self.answers) {
            let Ok(event) = codec.decode(payload) else {
                continue;
            };
            match (&mut quiz, &event) {
                (None, Event::QuizCreated(created)) => quiz = Some(Quiz::created(created)),
                (Some(quiz), event) => quiz.evolve(event),
                (None, _) => {}
            }
        }
        quiz
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn take_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (head, tail) = bytes.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_be_bytes(*head)).ok()?, tail))
}

/// What a start restores from: where the snapshot's log prefix ends, and the records of the
/// quizzes that were in play.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub positions: Positions,
    pub live: Vec<(String, QuizRecord)>,
}

/// One atomic save.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Save {
    pub positions: Positions,
    /// Records of quizzes in play that changed.
    pub live: Vec<(String, QuizRecord)>,
    /// Records of finished quizzes, with their join codes: they leave the live set.
    pub finished: Vec<(String, QuizRecord, String)>,
}

/// Where snapshots are kept. Every method is one round trip; `save` is atomic.
#[async_trait]
pub trait SnapshotStore: Send + Sync + Debug + 'static {
    /// The last save's positions and live records; `None` before the first.
    async fn load(&self) -> Result<Option<Checkpoint>>;
    async fn save(&self, save: &Save) -> Result<()>;
    /// The record of a finished quiz.
    async fn finished(&self, quiz_id: &str) -> Result<Option<QuizRecord>>;
    /// The finished quiz that had this join code last.
    async fn quiz_of_code(&self, code: &str) -> Result<Option<String>>;
    /// Forgets every snapshot: they no longer match the log.
    async fn clear(&self) -> Result<()>;
}

/// Snapshots in process memory, for tests of the layers above.
#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    positions: Option<Positions>,
    live: HashMap<String, QuizRecord>,
    finished: HashMap<String, QuizRecord>,
    codes: HashMap<String, String>,
}

impl MemorySnapshotStore {
    fn inner(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn load(&self) -> Result<Option<Checkpoint>> {
        let inner = self.inner();
        Ok(inner.positions.clone().map(|positions| Checkpoint {
            positions,
            live: inner
                .live
                .iter()
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect(),
        }))
    }

    async fn save(&self, save: &Save) -> Result<()> {
        let mut inner = self.inner();
        // Merged, as Redis merges the fields of its hash.
        inner
            .positions
            .get_or_insert_default()
            .extend(save.positions.clone());
        for (id, record) in &save.live {
            let _ = inner.live.insert(id.clone(), record.clone());
        }
        for (id, record, code) in &save.finished {
            let _ = inner.live.remove(id);
            let _ = inner.finished.insert(id.clone(), record.clone());
            let _ = inner.codes.insert(code.clone(), id.clone());
        }
        Ok(())
    }

    async fn finished(&self, quiz_id: &str) -> Result<Option<QuizRecord>> {
        Ok(self.inner().finished.get(quiz_id).cloned())
    }

    async fn quiz_of_code(&self, code: &str) -> Result<Option<String>> {
        Ok(self.inner().codes.get(code).cloned())
    }

    async fn clear(&self) -> Result<()> {
        *self.inner() = MemoryInner::default();
        Ok(())
    }
}

/// Snapshots in Redis, under `{<root>:command}:`: one hash slot, so a save is one `MULTI` on
/// Redis Cluster too. Losing them costs a start that reads the whole log, nothing more.
pub struct RedisSnapshotStore {
    connection: ConnectionManager,
    prefix: String,
}

impl Debug for RedisSnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSnapshotStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSnapshotStore {
    pub async fn connect(client: redis::Client, root: &str) -> Result<Self> {
        Ok(Self {
            connection: ConnectionManager::new(client).await?,
            prefix: format!("{{{root}:command}}"),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

fn field_of((topic, partition): &(String, i32)) -> String {
    format!("{topic}:{partition}")
}

fn position_of(field: &str) -> Option<(String, i32)> {
    let (topic, partition) = field.rsplit_once(':')?;
    Some((topic.to_owned(), partition.parse().ok()?))
}

#[async_trait]
impl SnapshotStore for RedisSnapshotStore {
    async fn load(&self) -> Result<Option<Checkpoint>> {
        let mut redis = self.connection.clone();
        let (positions, live): (HashMap<String, i64>, HashMap<String, Vec<u8>>) = redis::pipe()
            .hgetall(self.key("positions"))
            .hgetall(self.key("live"))
            .query_async(&mut redis)
            .await?;
        if positions.is_empty() {
            return Ok(None);
        }
        let positions = positions
            .iter()
            .map(|(field, &offset)| {
                position_of(field)
                    .map(|at| (at, offset))
                    .ok_or_else(|| Error::Snapshots(format!("a position names {field:?}")))
            })
            .collect::<Result<_>>()?;
        let live = live
            .into_iter()
            .map(|(id, bytes)| Ok((id, QuizRecord::decode(&bytes)?)))
            .collect::<Result<_>>()?;
        Ok(Some(Checkpoint { positions, live }))
    }

    async fn save(&self, save: &Save) -> Result<()> {
        let mut pipe = redis::pipe();
        let _ = pipe.atomic();
        let positions: Vec<(String, i64)> = save
            .positions
            .iter()
            .map(|(at, &offset)| (field_of(at), offset))
            .collect();
        if !positions.is_empty() {
            let _ = pipe
                .hset_multiple(self.key("positions"), &positions)
                .ignore();
        }
        for (id, record) in &save.live {
            let _ = pipe.hset(self.key("live"), id, record.encode()).ignore();
        }
        for (id, record, code) in &save.finished {
            let _ = pipe
                .hdel(self.key("live"), id)
                .ignore()
                .set(self.key(&format!("finished:{id}")), record.encode())
                .ignore()
                .hset(self.key("codes"), code, id)
                .ignore();
        }
        let mut redis = self.connection.clone();
        pipe.query_async::<()>(&mut redis).await?;
        Ok(())
    }

    async fn finished(&self, quiz_id: &str) -> Result<Option<QuizRecord>> {
        let mut redis = self.connection.clone();
        let bytes: Option<Vec<u8>> = redis.get(self.key(&format!("finished:{quiz_id}"))).await?;
        bytes.map(|b| QuizRecord::decode(&b)).transpose()
    }

    async fn quiz_of_code(&self, code: &str) -> Result<Option<String>> {
        let mut redis = self.connection.clone();
        Ok(redis.hget(self.key("codes"), code).await?)
    }

    async fn clear(&self) -> Result<()> {
        let mut redis = self.connection.clone();
        let pattern = self.key("*");
        let keys: Vec<String> = {
            let mut iter = redis.scan_match::<_, String>(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
            keys
        };
        for chunk in keys.chunks(500) {
            let _: () = redis.del(chunk).await?;
        }
        Ok(())
    }
}

/// A quiz the snapshotter follows.
#[derive(Debug, Default)]
struct Followed {
    record: QuizRecord,
    join_code: Option<String>,
    finished: bool,
    /// Changed since the last save.
    changed: bool,
}

/// Folds the log into quiz records and saves them with the positions they cover.
#[derive(Debug)]
pub struct Snapshotter {
    store: Option<Arc<dyn SnapshotStore>>,
    positions: Positions,
    quizzes: HashMap<String, Followed>,
    /// Records read since the last save.
    unsaved: usize,
}

/// What one save did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    /// The log prefix every saved record covers.
    pub positions: Positions,
    /// Quizzes whose finished record was saved: they may leave the command side's memory.
    pub finished: Vec<String>,
    pub live: usize,
}

impl Snapshotter {
    /// Starts from `checkpoint`, or from the log's start without one.
    pub fn new(store: Option<Arc<dyn SnapshotStore>>, checkpoint: Option<Checkpoint>) -> Self {
        let Checkpoint { positions, live } = checkpoint.unwrap_or_default();
        Self {
            store,
            positions,
            quizzes: live
                .into_iter()
                .map(|(id, record)| {
                    let followed = Followed {
                        record,
                        ..Followed::default()
                    };
                    (id, followed)
                })
                .collect(),
            unsaved: 0,
        }
    }

    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// Adds what was read after the current positions. A record for a quiz already saved as
    /// finished (an answer that reached the log after the finish) reopens its record. Nothing
    /// changes unless it all succeeds.
    pub async fn absorb(&mut self, read: LogRead) -> Result<()> {
        let mut reopened = HashMap::new();
        if let Some(store) = &self.store {
            // Each quiz not followed yet is looked up once, unless this read creates it.
            let mut known: HashSet<&str> = HashSet::new();
            for event in read.records.iter().filter_map(|r| r.event.as_ref()) {
                let quiz_id = event.quiz_id();
                if self.quizzes.contains_key(quiz_id) || !known.insert(quiz_id) {
                    continue;
                }
                if matches!(event, Event::QuizCreated(_)) {
                    continue;
                }
                if let Some(record) = store.finished(quiz_id).await? {
                    let _ = reopened.insert(quiz_id.to_owned(), record);
                }
            }
        }
        let codec = Codec::new();
        for (quiz_id, record) in reopened {
            let followed = Followed {
                join_code: record.fold(&codec).map(|q| q.join_code),
                finished: true,
                record,
                changed: false,
            };
            let _ = self.quizzes.insert(quiz_id, followed);
        }
        for recorded in read.records {
            let Some(event) = &recorded.event else {
                continue;
            };
            let followed = self.quizzes.entry(event.quiz_id().to_owned()).or_default();
            match event {
                Event::QuizCreated(created) => followed.join_code = Some(created.join_code.clone()),
                Event::QuizFinished(_) => followed.finished = true,
                _ => {}
            }
            followed.changed = true;
            // The topic follows from the event: answers on theirs, the rest on the lifecycle.
            let is_lifecycle = !matches!(event, Event::AnswerSubmitted(_));
            followed.record.push(is_lifecycle, recorded.payload);
            self.unsaved += 1;
        }
        self.positions.extend(read.end);
        Ok(())
    }

    /// The quizzes followed now, folded: at a start, the command side's state.
    pub fn fold_all(&self) -> Vec<Quiz> {
        let codec = Codec::new();
        self.quizzes
            .values()
            .filter_map(|f| f.record.fold(&codec))
            .collect()
    }

    /// How many quizzes are followed, how many records they hold.
    pub fn size(&self) -> (usize, usize) {
        (
            self.quizzes.len(),
            self.quizzes.values().map(|f| f.record.len()).sum(),
        )
    }

    /// Saves the changed records and the positions, then forgets the finished quizzes.
    pub async fn save(&mut self) -> Result<Saved> {
        let Some(store) = self.store.clone() else {
            return Err(Error::Snapshots("snapshots are off".into()));
        };
        let mut save = Save {
            positions: self.positions.clone(),
            ..Save::default()
        };
        for (id, followed) in self.quizzes.iter().filter(|(_, f)| f.changed) {
            if followed.finished {
                let code = followed.join_code.clone().unwrap_or_default();
                save.finished
                    .push((id.clone(), followed.record.clone(), code));
            } else {
                save.live.push((id.clone(), followed.record.clone()));
            }
        }
        store.save(&save).await?;
        let finished: HashSet<&String> = save.finished.iter().map(|(id, _, _)| id).collect();
        self.quizzes.retain(|id, _| !finished.contains(id));
        for followed in self.quizzes.values_mut() {
            followed.changed = false;
        }
        self.unsaved = 0;
        Ok(Saved {
            positions: save.positions,
            finished: save.finished.into_iter().map(|(id, _, _)| id).collect(),
            live: self.quizzes.len(),
        })
    }

    /// Reads the log on from the positions and saves what changed: `None` when nothing did.
    pub async fn catch_up(&mut self, log: &Arc<dyn EventLog>) -> Result<Option<Saved>> {
        let read = log.read_from(&self.positions).await?;
        if !read.out_of_range.is_empty() {
            return Err(Error::Snapshots(format!(
                "the log no longer continues the snapshot ({}); restart the command API to restore from the whole log",
                read.out_of_range.join(", ")
            )));
        }
        self.absorb(read).await?;
        if self.unsaved == 0 {
            return Ok(None);
        }
        self.save().await.map(Some)
    }
}
