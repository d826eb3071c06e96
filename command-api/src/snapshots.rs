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
    /// Whether `appended` holds each quiz's whole record (the first save after a read of the
    /// log from its start), written in place of what the store held: appended to an older
    /// copy, the records would repeat, and a fold of a repeated prefix is wrong.
    pub whole_records: bool,
}

/// A shard's snapshot as the instance that claims the shard finds it (ADR 0012).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardCheckpoint {
    /// The epoch of the owner that saved it. Its positions lie past that owner's claim markers,
    /// so a reader of the log after them starts with this epoch for the shard.
    pub epoch: u64,
    pub checkpoint: Checkpoint,
}

/// One shard's part of a save, by the owner that claimed the shard under `epoch`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardSave {
    pub shard: i32,
    pub epoch: u64,
    pub save: Save,
}

/// Where snapshots are kept. `load`, `save`, `claim_shard` and each shard's part of
/// `save_shards` are atomic.
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
    /// Claims a shard's snapshot for the owner under `epoch`: from now on a save under an
    /// earlier epoch is refused, so a deposed owner cannot write over what the new one read.
    /// `None` before the shard's first save; an error if a later epoch claimed it already.
    async fn claim_shard(&self, shard: i32, epoch: u64) -> Result<Option<ShardCheckpoint>>;
    /// Saves the part of each shard whose claim is still the part's epoch, and returns the
    /// shards saved; the others moved to another owner.
    async fn save_shards(&self, saves: &[ShardSave]) -> Result<Vec<i32>>;
    /// Forgets every shard's snapshot, when one instance starts to own every quiz: what a group
    /// saved no longer follows the log that instance appends to.
    async fn forget_shards(&self) -> Result<()>;
}

/// A claim under an epoch older than the shard's last: the shard moved on.
fn claimed_later(shard: i32, epoch: u64, claimed: u64) -> Error {
    tracing::info!(
        shard,
        epoch,
        claimed,
        "the shard's snapshot was claimed under a later epoch"
    );
    Error::QuizMoved
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
    shards: HashMap<i32, MemoryShard>,
}

/// A shard's snapshot: the positions and quizzes in play of its own, the records shared.
#[derive(Debug, Default)]
struct MemoryShard {
    claimed: u64,
    saved: u64,
    positions: Option<Positions>,
    in_play: HashSet<String>,
}

impl MemoryInner {
    /// A save's records and codes, and its quizzes in and out of `in_play`.
    fn apply(
        records: &mut HashMap<String, QuizRecord>,
        codes: &mut HashMap<String, String>,
        in_play: &mut HashSet<String>,
        save: &Save,
    ) {
        for (id, appended) in &save.appended {
            let record = records.entry(id.clone()).or_default();
            if save.whole_records {
                *record = QuizRecord::default();
            }
            record.lifecycle.extend(appended.lifecycle.iter().cloned());
            record.answers.extend(appended.answers.iter().cloned());
        }
        in_play.extend(save.started.iter().cloned());
        for (id, code) in &save.finished {
            let _ = in_play.remove(id);
            if let Some(code) = code {
                let _ = codes.insert(code.clone(), id.clone());
            }
        }
    }

    fn checkpoint(&self, positions: &Positions, in_play: &HashSet<String>) -> Checkpoint {
        Checkpoint {
            positions: positions.clone(),
            live: in_play
                .iter()
                .map(|id| {
                    let record = self.records.get(id).cloned().unwrap_or_default();
                    (id.clone(), record)
                })
                .collect(),
        }
    }
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
        Ok(inner
            .positions
            .as_ref()
            .map(|positions| inner.checkpoint(positions, &inner.in_play)))
    }

    async fn save(&self, save: &Save) -> Result<()> {
        let mut inner = self.inner();
        let MemoryInner {
            positions,
            in_play,
            records,
            codes,
            ..
        } = &mut *inner;
        // Merged, as Redis merges the fields of its hash.
        positions
            .get_or_insert_default()
            .extend(save.positions.clone());
        MemoryInner::apply(records, codes, in_play, save);
        Ok(())
    }

    async fn claim_shard(&self, shard: i32, epoch: u64) -> Result<Option<ShardCheckpoint>> {
        let mut inner = self.inner();
        let part = inner.shards.entry(shard).or_default();
        if part.claimed > epoch {
            return Err(claimed_later(shard, epoch, part.claimed));
        }
        part.claimed = epoch;
        // One instance's snapshot no longer follows the log once a group appends to it.
        inner.positions = None;
        inner.in_play.clear();
        let part = &inner.shards[&shard];
        Ok(part.positions.as_ref().map(|positions| ShardCheckpoint {
            epoch: part.saved,
            checkpoint: inner.checkpoint(positions, &part.in_play),
        }))
    }

    async fn save_shards(&self, saves: &[ShardSave]) -> Result<Vec<i32>> {
        let mut inner = self.inner();
        let MemoryInner {
            records,
            codes,
            shards,
            ..
        } = &mut *inner;
        let mut saved = Vec::new();
        for ShardSave { shard, epoch, save } in saves {
            let part = shards.entry(*shard).or_default();
            if part.claimed != *epoch {
                continue;
            }
            part.saved = *epoch;
            part.positions
                .get_or_insert_default()
                .extend(save.positions.clone());
            MemoryInner::apply(records, codes, &mut part.in_play, save);
            saved.push(*shard);
        }
        Ok(saved)
    }

    async fn forget_shards(&self) -> Result<()> {
        self.inner().shards.clear();
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
    claim_shard: redis::Script,
    save_shard: redis::Script,
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

/// A shard's claim: refused below the epoch that claimed it last; else the claim is raised and
/// the shard's snapshot read, all at once. KEYS: the shard's hash (`claimed`, `saved`), its
/// positions, its quizzes in play, then one instance's positions and quizzes in play, which no
/// longer follow the log once a group appends to it.
const CLAIM_SHARD: &str = r"
local claimed = tonumber(redis.call('HGET', KEYS[1], 'claimed') or '0')
if claimed > tonumber(ARGV[1]) then
  return {'refused', tostring(claimed)}
end
redis.call('HSET', KEYS[1], 'claimed', ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
local saved = redis.call('HGET', KEYS[1], 'saved') or '0'
local positions = redis.call('HGETALL', KEYS[2])
local in_play = redis.call('SMEMBERS', KEYS[3])
local records = {}
for i, id in ipairs(in_play) do
  records[i] = redis.call('GET', ARGV[2] .. id) or ''
end
return {saved, positions, in_play, records}
";

/// One shard's part of a save, applied only while its claim is still the saver's epoch. KEYS
/// as for the claim, then the codes of finished quizzes. ARGV: the epoch, the records' key
/// prefix, then counted lists: positions (field, offset), quizzes started, quizzes finished
/// (id, code or ''), and records appended (id, bytes) with how: `APPEND`, or `SET` for whole
/// records.
const SAVE_SHARD: &str = r"
if tonumber(redis.call('HGET', KEYS[1], 'claimed') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'saved', ARGV[1])
local i = 3
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('SADD', KEYS[3], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('SREM', KEYS[3], ARGV[i])
  if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[4], ARGV[i + 1], ARGV[i]) end
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
local write = ARGV[i]; i = i + 1
for _ = 1, n do redis.call(write, ARGV[2] .. ARGV[i], ARGV[i + 1]); i = i + 2 end
return 1
";

impl RedisSnapshotStore {
    pub async fn connect(client: redis::Client, root: &str) -> Result<Self> {
        Ok(Self {
            connection: ConnectionManager::new(client).await?,
            prefix: format!("{{{root}:command}}"),
            load: redis::Script::new(LOAD),
            claim_shard: redis::Script::new(CLAIM_SHARD),
            save_shard: redis::Script::new(SAVE_SHARD),
        })
    }

    /// Deletes the keys that match `pattern`.
    async fn delete_matching(&self, pattern: &str) -> Result<()> {
        let mut redis = self.connection.clone();
        let keys: Vec<String> = {
            let mut iter = redis.scan_match::<_, String>(pattern).await?;
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

    /// A shard's hash, its positions and its quizzes in play.
    fn shard_keys(&self, shard: i32) -> [String; 3] {
        let key = self.key(&format!("snapshot:{shard}"));
        [
            key.clone(),
            format!("{key}:positions"),
            format!("{key}:live"),
        ]
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

/// Positions as Redis returns their hash.
fn positions_of(fields: &HashMap<String, i64>) -> Result<Positions> {
    fields
        .iter()
        .map(|(field, &offset)| {
            position_of(field)
                .map(|at| (at, offset))
                .ok_or_else(|| Error::Snapshots(format!("a position names {field:?}")))
        })
        .collect()
}

/// Quizzes in play and their records, as a load reads them.
fn live_of(in_play: Vec<String>, records: Vec<Vec<u8>>) -> Result<Vec<(String, QuizRecord)>> {
    in_play
        .into_iter()
        .zip(records)
        .map(|(id, bytes)| Ok((id, QuizRecord::decode(&bytes)?)))
        .collect()
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
        Ok(Some(Checkpoint {
            positions: positions_of(&positions)?,
            live: live_of(in_play, records)?,
        }))
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
            if save.whole_records {
                let _ = pipe.set(self.record_key(id), appended.encode()).ignore();
            } else {
                let _ = pipe.append(self.record_key(id), appended.encode()).ignore();
            }
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
        // The snapshots only: a group's shard epochs and join codes stay, since a reader's fence
        // must never see an epoch fall.
        for name in ["positions", "live", "codes", "record:*", "snapshot:*"] {
            self.delete_matching(&self.key(name)).await?;
        }
        Ok(())
    }

    async fn claim_shard(&self, shard: i32, epoch: u64) -> Result<Option<ShardCheckpoint>> {
        let mut redis = self.connection.clone();
        let [hash, positions, live] = self.shard_keys(shard);
        let reply: redis::Value = self
            .claim_shard
            .key(hash)
            .key(positions)
            .key(live)
            .key(self.key("positions"))
            .key(self.key("live"))
            .arg(epoch)
            .arg(self.record_key(""))
            .invoke_async(&mut redis)
            .await?;
        if let Ok((refused, claimed)) = redis::from_redis_value::<(String, u64)>(reply.clone())
            && refused == "refused"
        {
            return Err(claimed_later(shard, epoch, claimed));
        }
        let (saved, positions, in_play, records): (
            u64,
            HashMap<String, i64>,
            Vec<String>,
            Vec<Vec<u8>>,
        ) = redis::from_redis_value(reply)
            .map_err(|e| Error::Snapshots(format!("a shard's snapshot reads as {e}")))?;
        if positions.is_empty() {
            return Ok(None);
        }
        Ok(Some(ShardCheckpoint {
            epoch: saved,
            checkpoint: Checkpoint {
                positions: positions_of(&positions)?,
                live: live_of(in_play, records)?,
            },
        }))
    }

    async fn forget_shards(&self) -> Result<()> {
        self.delete_matching(&self.key("snapshot:*")).await
    }

    async fn save_shards(&self, saves: &[ShardSave]) -> Result<Vec<i32>> {
        let mut redis = self.connection.clone();
        let mut saved = Vec::new();
        for ShardSave { shard, epoch, save } in saves {
            let [hash, positions, live] = self.shard_keys(*shard);
            let mut invocation = self.save_shard.key(hash);
            let _ = invocation
                .key(positions)
                .key(live)
                .key(self.key("codes"))
                .arg(*epoch)
                .arg(self.record_key(""))
                .arg(save.positions.len());
            for (at, offset) in &save.positions {
                let _ = invocation.arg(field_of(at)).arg(*offset);
            }
            let _ = invocation.arg(save.started.len()).arg(&save.started);
            let _ = invocation.arg(save.finished.len());
            for (id, code) in &save.finished {
                let _ = invocation.arg(id).arg(code.as_deref().unwrap_or(""));
            }
            let write = if save.whole_records { "SET" } else { "APPEND" };
            let _ = invocation.arg(save.appended.len()).arg(write);
            for (id, appended) in &save.appended {
                let _ = invocation.arg(id).arg(appended.encode());
            }
            let applied: i64 = invocation.invoke_async(&mut redis).await?;
            if applied == 1 {
                saved.push(*shard);
            }
        }
        Ok(saved)
    }
}

/// A quiz the snapshotter follows.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// Entries not saved yet.
    pub(crate) unsaved: QuizRecord,
    pub(crate) join_code: Option<String>,
    /// In the set in play in the store.
    pub(crate) in_play: bool,
    pub(crate) finished: bool,
}

impl Followed {
    /// A quiz in play whose record a snapshot holds.
    pub(crate) fn saved(record: &QuizRecord, codec: &Codec) -> Self {
        Self {
            in_play: true,
            join_code: record.join_code(codec),
            ..Self::default()
        }
    }

    /// Adds a record of the quiz, read or acknowledged.
    pub(crate) fn add(&mut self, event: &Event, payload: Vec<u8>) {
        match event {
            Event::QuizCreated(created) => self.join_code = Some(created.join_code.clone()),
            Event::QuizFinished(_) => self.finished = true,
            _ => {}
        }
        // The topic follows from the event: answers on theirs, the rest on the lifecycle.
        let is_lifecycle = !matches!(event, Event::AnswerSubmitted(_));
        self.unsaved.push(is_lifecycle, payload);
    }

    /// Before a save: a quiz neither in play nor created since finished before (this is an
    /// answer appended after its finish). Its entries go to its record, nothing else.
    pub(crate) fn settle(&mut self) {
        if !self.in_play && self.join_code.is_none() {
            self.finished = true;
        }
    }

    /// After a save that held it.
    pub(crate) fn saved_now(&mut self) {
        self.unsaved = QuizRecord::default();
        self.in_play = true;
    }
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
    /// Until the first save after a start without a snapshot: the records followed are whole,
    /// and replace any older copy in the store (one a group left, say).
    whole: bool,
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
                    .map(|(id, record)| (id.clone(), Followed::saved(record, &codec)))
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
            whole: checkpoint.is_none(),
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
        self.quizzes
            .entry(quiz_id.to_owned())
            .or_default()
            .add(event, payload);
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
            whole_records: self.whole,
            ..Save::default()
        };
        for followed in self.quizzes.values_mut() {
            followed.settle();
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
        self.whole = false;
        self.quizzes.retain(|_, followed| !followed.finished);
        for followed in self.quizzes.values_mut() {
            followed.saved_now();
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
