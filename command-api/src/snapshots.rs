//! Snapshots of the command side's quizzes, so that a start reads the log's tail, not all of it,
//! and finished quizzes leave memory (ADR 0010).
//!
//! A snapshot is a fold of a prefix of the log, cut at exact positions. The [`Snapshotter`] is
//! told of every record this instance appended, with its position, and moves its positions over
//! each partition's contiguous prefix of them. A record it was not told of (an append reported
//! failed that reached the log anyway, or another writer) leaves a gap; a gap older than
//! `gap_wait` is filled by reading the log from the positions, as any consumer would. So the
//! saved records are exactly the log's up to the saved positions, and in the steady state the
//! snapshotter reads nothing from the broker.
//!
//! A quiz's record is its own records as the log holds them (Avro, so the schema rules of the
//! log apply to snapshots too), each tagged lifecycle or answer; a save appends only what is new.
//! A start loads the records of the quizzes in play and reads the log after the positions;
//! folding both gives what folding the whole log gives. A finished quiz leaves the set in play;
//! its record stays, and the command side reads it for the quiz's commands once the quiz has
//! left memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use podium_schemas::Codec;
use podium_schemas::domain::Quiz;
use podium_schemas::events::Event;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::event_log::{EventLog, LogRead, Position, Positions};

/// The records of one quiz: what its state is folded from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuizRecord {
    lifecycle: Vec<Vec<u8>>,
    answers: Vec<Vec<u8>>,
}

/// Each entry's tag: its topic, and the format (an unknown tag reads as no record).
const LIFECYCLE_TAG: u8 = b'L';
const ANSWER_TAG: u8 = b'A';

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

    /// Every entry as its tag, its length and its bytes: appending two encodings gives the
    /// encoding of both records.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in &self.lifecycle {
            encode_entry(&mut out, true, payload);
        }
        for payload in &self.answers {
            encode_entry(&mut out, false, payload);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let invalid =
            || Error::Snapshots("a quiz record is truncated or of an unknown format".into());
        let mut record = Self::default();
        let mut rest = bytes;
        while let Some((&tag, tail)) = rest.split_first() {
            let is_lifecycle = match tag {
                LIFECYCLE_TAG => true,
                ANSWER_TAG => false,
                _ => return Err(invalid()),
            };
            let (len, tail) = take_u32(tail).ok_or_else(invalid)?;
            if tail.len() < len {
                return Err(invalid());
            }
            let (payload, tail) = tail.split_at(len);
            record.push(is_lifecycle, payload.to_vec());
            rest = tail;
        }
        Ok(record)
    }

    /// The join code, from the quiz's creation.
    pub fn join_code(&self, codec: &Codec) -> Option<String> {
        match codec.decode(self.lifecycle.first()?).ok()? {
            Event::QuizCreated(created) => Some(created.join_code),
            _ => None,
        }
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

fn encode_entry(out: &mut Vec<u8>, is_lifecycle: bool, payload: &[u8]) {
    out.push(if is_lifecycle {
        LIFECYCLE_TAG
    } else {
        ANSWER_TAG
    });
    out.extend_from_slice(&u32_of(payload.len()).to_be_bytes());
    out.extend_from_slice(payload);
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
    /// New entries of each quiz, appended to its record.
    pub appended: Vec<(String, QuizRecord)>,
    /// Quizzes that came into play.
    pub started: Vec<String>,
    /// Quizzes that finished, with their join codes when known: they leave the set in play.
    pub finished: Vec<(String, Option<String>)>,
}

/// Where snapshots are kept. `load` and `save` are atomic.
#[async_trait]
pub trait SnapshotStore: Send + Sync + Debug + 'static {
    /// The last save's positions and the records of the quizzes in play; `None` before the
    /// first save.
    async fn load(&self) -> Result<Option<Checkpoint>>;
    async fn save(&self, save: &Save) -> Result<()>;
    /// The record of any quiz, in play or finished.
    async fn record(&self, quiz_id: &str) -> Result<Option<QuizRecord>>;
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
    in_play: HashSet<String>,
    records: HashMap<String, QuizRecord>,
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
                .in_play
                .iter()
                .map(|id| {
                    let record = inner.records.get(id).cloned().unwrap_or_default();
                    (id.clone(), record)
                })
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
        for (id, appended) in &save.appended {
            let record = inner.records.entry(id.clone()).or_default();
            record.lifecycle.extend(appended.lifecycle.iter().cloned());
            record.answers.extend(appended.answers.iter().cloned());
        }
        inner.in_play.extend(save.started.iter().cloned());
        for (id, code) in &save.finished {
            let _ = inner.in_play.remove(id);
            if let Some(code) = code {
                let _ = inner.codes.insert(code.clone(), id.clone());
            }
        }
        Ok(())
    }

    async fn record(&self, quiz_id: &str) -> Result<Option<QuizRecord>> {
        Ok(self.inner().records.get(quiz_id).cloned())
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
    load: redis::Script,
}

impl Debug for RedisSnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSnapshotStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The positions, the quizzes in play and their records, read at once.
const LOAD: &str = r"
local positions = redis.call('HGETALL', KEYS[1])
local in_play = redis.call('SMEMBERS', KEYS[2])
local records = {}
for i, id in ipairs(in_play) do
  records[i] = redis.call('GET', ARGV[1] .. id) or ''
end
return {positions, in_play, records}
";

impl RedisSnapshotStore {
    pub async fn connect(client: redis::Client, root: &str) -> Result<Self> {
        Ok(Self {
            connection: ConnectionManager::new(client).await?,
            prefix: format!("{{{root}:command}}"),
            load: redis::Script::new(LOAD),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn record_key(&self, quiz_id: &str) -> String {
        self.key(&format!("record:{quiz_id}"))
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
        let (positions, in_play, records): (HashMap<String, i64>, Vec<String>, Vec<Vec<u8>>) = self
            .load
            .key(self.key("positions"))
            .key(self.key("live"))
            .arg(self.record_key(""))
            .invoke_async(&mut redis)
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
        let live = in_play
            .into_iter()
            .zip(records)
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
        for (id, appended) in &save.appended {
            let _ = pipe.append(self.record_key(id), appended.encode()).ignore();
        }
        if !save.started.is_empty() {
            let _ = pipe.sadd(self.key("live"), &save.started).ignore();
        }
        for (id, code) in &save.finished {
            let _ = pipe.srem(self.key("live"), id).ignore();
            if let Some(code) = code {
                let _ = pipe.hset(self.key("codes"), code, id).ignore();
            }
        }
        let mut redis = self.connection.clone();
        pipe.query_async::<()>(&mut redis).await?;
        Ok(())
    }

    async fn record(&self, quiz_id: &str) -> Result<Option<QuizRecord>> {
        let mut redis = self.connection.clone();
        let bytes: Option<Vec<u8>> = redis.get(self.record_key(quiz_id)).await?;
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
    /// Entries not saved yet.
    unsaved: QuizRecord,
    join_code: Option<String>,
    /// In the set in play in the store.
    in_play: bool,
    finished: bool,
}

/// An append the log acknowledged, as the command side tells the snapshotter of it.
#[derive(Debug, Clone)]
pub struct Acked {
    pub position: Position,
    pub event: Event,
}

/// Where the command side tells the snapshotter of its acknowledged appends.
pub type AckSender = mpsc::UnboundedSender<Acked>;

/// Acknowledged records past a gap in one partition, and since when the gap blocks them.
#[derive(Debug)]
struct Blocked {
    records: BTreeMap<i64, Event>,
    since: Instant,
}

/// Keeps the quizzes' records and saves them with the positions they cover.
#[derive(Debug)]
pub struct Snapshotter {
    store: Option<Arc<dyn SnapshotStore>>,
    codec: Codec,
    positions: Positions,
    quizzes: HashMap<String, Followed>,
    acks: mpsc::UnboundedReceiver<Acked>,
    blocked: HashMap<(String, i32), Blocked>,
    /// How long a gap may block a partition before the log is read to fill it: longer than an
    /// append can take to be reported.
    gap_wait: Duration,
    unsaved: usize,
}

/// What one save did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    /// The log prefix every saved record covers.
    pub positions: Positions,
    /// Quizzes whose finish was saved: they may leave the command side's memory.
    pub finished: Vec<String>,
    /// Quizzes in play after the save.
    pub live: usize,
    /// Whether the log had to be read to fill a gap.
    pub read_the_log: bool,
}

impl Snapshotter {
    /// Starts from `checkpoint`, or from the log's start without one; returns where the command
    /// side sends its acknowledged appends.
    pub fn new(
        store: Option<Arc<dyn SnapshotStore>>,
        checkpoint: Option<&Checkpoint>,
        gap_wait: Duration,
    ) -> (Self, AckSender) {
        let (sender, acks) = mpsc::unbounded_channel();
        let codec = Codec::new();
        let (positions, quizzes) = match checkpoint {
            None => (Positions::new(), HashMap::new()),
            Some(checkpoint) => (
                checkpoint.positions.clone(),
                checkpoint
                    .live
                    .iter()
                    .map(|(id, record)| {
                        let followed = Followed {
                            in_play: true,
                            join_code: record.join_code(&codec),
                            ..Followed::default()
                        };
                        (id.clone(), followed)
                    })
                    .collect(),
            ),
        };
        let snapshotter = Self {
            store,
            codec,
            positions,
            quizzes,
            acks,
            blocked: HashMap::new(),
            gap_wait,
            unsaved: 0,
        };
        (snapshotter, sender)
    }

    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// Adds what a read of the log after the current positions returned.
    pub fn absorb(&mut self, read: LogRead) {
        for recorded in read.records {
            if let Some(event) = recorded.event {
                self.add(&event, recorded.payload);
            }
        }
        self.positions.extend(read.end);
        // Acknowledged records the read covered are in already; those past its end wait on a
        // gap that starts now.
        let positions = &self.positions;
        self.blocked.retain(|at, blocked| {
            let next = positions.get(at).copied().unwrap_or(0);
            blocked.records.retain(|&offset, _| offset >= next);
            blocked.since = Instant::now();
            !blocked.records.is_empty()
        });
    }

    fn add(&mut self, event: &Event, payload: Vec<u8>) {
        let quiz_id = event.quiz_id();
        let followed = self.quizzes.entry(quiz_id.to_owned()).or_default();
        match event {
            Event::QuizCreated(created) => followed.join_code = Some(created.join_code.clone()),
            Event::QuizFinished(_) => followed.finished = true,
            _ => {}
        }
        // The topic follows from the event: answers on theirs, the rest on the lifecycle.
        let is_lifecycle = !matches!(event, Event::AnswerSubmitted(_));
        followed.unsaved.push(is_lifecycle, payload);
        self.unsaved += 1;
    }

    /// Takes the acknowledged appends told so far: each partition moves over its contiguous
    /// prefix; what lies past a gap waits.
    fn take_acks(&mut self) {
        let mut touched = HashSet::new();
        while let Ok(acked) = self.acks.try_recv() {
            let at = (acked.position.topic.clone(), acked.position.partition);
            let next = self.positions.get(&at).copied().unwrap_or(0);
            if acked.position.offset < next {
                continue;
            }
            let blocked = self.blocked.entry(at.clone()).or_insert_with(|| Blocked {
                records: BTreeMap::new(),
                since: Instant::now(),
            });
            let _ = blocked.records.insert(acked.position.offset, acked.event);
            let _ = touched.insert(at);
        }
        for at in touched {
            let Some(mut blocked) = self.blocked.remove(&at) else {
                continue;
            };
            let start = self.positions.get(&at).copied().unwrap_or(0);
            let mut next = start;
            while let Some(event) = blocked.records.remove(&next) {
                match self.codec.encode(&event) {
                    Ok(payload) => self.add(&event, payload),
                    Err(e) => tracing::error!(error = %e, "a recorded event does not encode"),
                }
                next += 1;
            }
            let _ = self.positions.insert(at.clone(), next);
            if !blocked.records.is_empty() {
                // Under steady load a partition is rarely without an append in flight: what
                // counts is how long the gap now at its head has stood, not the first one.
                if next > start {
                    blocked.since = Instant::now();
                }
                let _ = self.blocked.insert(at, blocked);
            }
        }
    }

    /// Whether a gap has blocked a partition for longer than `gap_wait`.
    fn gap_too_old(&self) -> bool {
        self.blocked
            .values()
            .any(|blocked| blocked.since.elapsed() >= self.gap_wait)
    }

    /// Takes the acknowledged appends, reads the log if a gap is too old, and saves what
    /// changed: `None` when nothing did.
    pub async fn catch_up(&mut self, log: &Arc<dyn EventLog>) -> Result<Option<Saved>> {
        self.take_acks();
        let read_the_log = self.gap_too_old();
        if read_the_log {
            let read = log.read_from(&self.positions).await?;
            if !read.out_of_range.is_empty() {
                return Err(Error::Snapshots(format!(
                    "the log no longer continues the snapshot ({}); restart the command API to restore from the whole log",
                    read.out_of_range.join(", ")
                )));
            }
            self.absorb(read);
            // Acknowledgements that came during the read, now contiguous or covered.
            self.take_acks();
        }
        if self.unsaved == 0 {
            return Ok(None);
        }
        let mut saved = self.save().await?;
        saved.read_the_log = read_the_log;
        Ok(Some(saved))
    }

    /// Saves the new entries and the positions, then forgets the finished quizzes.
    pub async fn save(&mut self) -> Result<Saved> {
        let Some(store) = self.store.clone() else {
            return Err(Error::Snapshots("snapshots are off".into()));
        };
        let mut save = Save {
            positions: self.positions.clone(),
            ..Save::default()
        };
        for followed in self.quizzes.values_mut() {
            // Neither in play nor created since: a quiz that finished before (this is an
            // answer appended after its finish). Its entries go to its record, nothing else.
            if !followed.in_play && followed.join_code.is_none() {
                followed.finished = true;
            }
        }
        for (id, followed) in &self.quizzes {
            if !followed.unsaved.is_empty() {
                save.appended.push((id.clone(), followed.unsaved.clone()));
            }
            if followed.finished {
                save.finished.push((id.clone(), followed.join_code.clone()));
            } else if !followed.in_play {
                save.started.push(id.clone());
            }
        }
        store.save(&save).await?;
        self.quizzes.retain(|_, followed| !followed.finished);
        for followed in self.quizzes.values_mut() {
            followed.unsaved = QuizRecord::default();
            followed.in_play = true;
        }
        self.unsaved = 0;
        Ok(Saved {
            positions: save.positions,
            finished: save.finished.into_iter().map(|(id, _)| id).collect(),
            live: self.quizzes.len(),
            read_the_log: false,
        })
    }
}
