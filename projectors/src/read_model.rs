//! The hot read models in Redis: leaderboard, player cards, question stats, quiz state and
//! version, all written by one Lua script per quiz per batch.
//!
//! Exactly-once on an at-least-once log: the script checks and advances the applied position of
//! every (quiz, topic partition) in the same atomic step as the change, so a redelivered or
//! replayed event changes nothing, and a fact repeated under a new position (a copy of a retried
//! append) changes nothing either: the first answer per question counts, and each lifecycle
//! fact is applied once, as in the pure fold.
//!
//! Read models live in generations (see [`Root`]). The live projector writes the active one and
//! checks, in the same pipeline, that it is still active: when the pointer has moved (a rebuild
//! switched) or vanished (Redis lost its data) it changes generation and re-reads from that
//! generation's resume positions, or from the beginning of the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use podium_schemas::Event;
use podium_schemas::fence::Fence;
use podium_schemas::read_model::{FENCE_FIELD_PREFIX, Keys, POINTS_WEIGHT, Root, partition_field};
use redis::aio::ConnectionManager;

use crate::error::{Error, Result};

/// An event with the log position it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<E> {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: E,
}

/// Per quiz, the `traceparent` its change message carries.
pub type Traces = HashMap<String, String>;

/// Where each partition resumes: `(topic, partition)` to the next offset. A partition that is
/// missing starts from the beginning.
pub type ResumePositions = HashMap<(String, i32), i64>;

/// Where a generation's partitions resume, and the ownership epochs seen up to there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub positions: ResumePositions,
    pub fence: Fence,
}

/// What applying a batch to the active generation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The batch is applied; `changed` events changed a read model.
    Applied { changed: usize },
    /// The active generation is no longer the one written to: the batch counts for nothing and
    /// the projector must re-read from the new generation's resume positions.
    Moved { from: String, to: String },
}

/// Generation ids sort by creation time and never repeat: the whole UUIDv7, whose random bits
/// keep two ids of the same millisecond apart (its first 20 digits alone did not).
pub fn new_generation() -> String {
    format!("g{}", uuid::Uuid::now_v7().simple())
}

/// `KEYS`: positions, state, leaderboard, version, lobby, then each event's own keys in order.
/// `ARGV`: channel ('' publishes nothing), points weight, what follows the version in the change
/// message (`' ' .. traceparent`, or ''), then per event: tag, position field,
/// offset, and the tag's fields (see `push_event`). The change message is
/// `podium_schemas::read_model::ChangeMessage`: it carries the cards of the players whose
/// answers counted or who were kicked, so readers can keep a copy of the board.
const APPLY: &str = r"
local positions, state, board, version, lobby = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local weight = tonumber(ARGV[2])
local a, k, changed = 4, 6, 0
local publish, touched, closed = ARGV[1] ~= '', {}, 0
while a <= #ARGV do
  local tag, field, offset = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local fresh = offset > tonumber(redis.call('HGET', positions, field) or '-1')
  if fresh then redis.call('HSET', positions, field, ARGV[a - 1]) end
  if tag == 'A' then
    local player, question = KEYS[k], KEYS[k + 1]
    k = k + 2
    if fresh and redis.call('HSETNX', player, 'q:' .. ARGV[a + 1], ARGV[a + 4]) == 1 then
      local points = redis.call('HINCRBY', player, 'points', ARGV[a + 4])
      local elapsed = redis.call('HINCRBY', player, 'elapsed_ms', ARGV[a + 5])
      redis.call('HINCRBY', player, 'answers', 1)
      if tonumber(ARGV[a + 1]) > tonumber(redis.call('HGET', player, 'last_q') or '0') then
        redis.call('HSET', player, 'last_q', ARGV[a + 1], 'streak', ARGV[a + 6])
      end
      -- A kicked player's answers still count in the question's statistics, not on the board.
      if redis.call('HEXISTS', player, 'kicked_at') == 0 then
        redis.call('ZADD', board, string.format('%d', elapsed - points * weight), ARGV[a])
      end
      redis.call('HINCRBY', question, 'answers', 1)
      redis.call('HINCRBY', question, 'correct', ARGV[a + 3])
      redis.call('HINCRBY', question, 'elapsed_sum', ARGV[a + 5])
      redis.call('HINCRBY', question, 'c:' .. ARGV[a + 2], 1)
      if publish then touched[ARGV[a]] = player end
      changed = changed + 1
    end
    a = a + 7
  elseif tag == 'C' then
    local n = tonumber(ARGV[a + 3])
    if fresh and redis.call('HEXISTS', state, 'title') == 0 then
      redis.call('HSET', state, 'title', ARGV[a], 'join_code', ARGV[a + 1], 'created_at', ARGV[a + 2], 'questions', n)
      for i = 0, n - 1 do
        local q = a + 4 + i * 4
        redis.call('HSET', KEYS[k + i], 'text', ARGV[q], 'choices', ARGV[q + 1], 'points', ARGV[q + 2], 'time_limit_ms', ARGV[q + 3])
      end
      changed = changed + 1
    end
    k = k + n
    a = a + 4 + n * 4
  elseif tag == 'J' then
    if fresh and redis.call('HSETNX', KEYS[k], 'name', ARGV[a + 1]) == 1 then
      redis.call('HINCRBY', state, 'players', 1)
      redis.call('HSET', KEYS[k], 'joined_at', ARGV[a + 2])
      redis.call('ZADD', lobby, ARGV[a + 2], ARGV[a])
      changed = changed + 1
    end
    k = k + 1
    a = a + 3
  elseif tag == 'K' then
    if fresh and redis.call('HSETNX', KEYS[k], 'kicked_at', ARGV[a + 1]) == 1 then
      local f = redis.call('HINCRBY', state, 'flow', 1)
      redis.call('HSET', state, 'kick:' .. f, ARGV[a])
      redis.call('HINCRBY', state, 'players', -1)
      redis.call('ZREM', board, ARGV[a])
      redis.call('ZREM', lobby, ARGV[a])
      if publish then touched[ARGV[a]] = KEYS[k] end
      changed = changed + 1
    end
    k = k + 1
    a = a + 2
  elseif tag == 'L' then
    if fresh and redis.call('HSETNX', state, 'locked_at', ARGV[a]) == 1 then
      changed = changed + 1
    end
    a = a + 1
  elseif tag == 'S' then
    if fresh and redis.call('HEXISTS', KEYS[k], 'started_at') == 0 then
      local f = redis.call('HINCRBY', state, 'flow', 1)
      redis.call('HSET', KEYS[k], 'started_at', ARGV[a + 1], 'deadline', ARGV[a + 2], 'started_flow', f)
      redis.call('HSET', state, 'current', ARGV[a], 'deadline', ARGV[a + 2])
      changed = changed + 1
    end
    k = k + 1
    a = a + 3
  elseif tag == 'X' then
    if fresh and redis.call('HEXISTS', KEYS[k], 'closed_at') == 0 then
      local f = redis.call('HINCRBY', state, 'flow', 1)
      redis.call('HSET', KEYS[k], 'closed_at', ARGV[a + 1], 'correct_choice', ARGV[a + 2], 'reason', ARGV[a + 3], 'closed_flow', f)
      if redis.call('HGET', state, 'current') == ARGV[a] then
        redis.call('HDEL', state, 'current', 'deadline')
      end
      closed = math.max(closed, tonumber(ARGV[a]))
      changed = changed + 1
    end
    k = k + 1
    a = a + 4
  elseif tag == 'F' then
    if fresh and redis.call('HEXISTS', state, 'finished_at') == 0 then
      local f = redis.call('HINCRBY', state, 'flow', 1)
      redis.call('HSET', state, 'finished_at', ARGV[a], 'finished_flow', f)
      redis.call('HDEL', state, 'current', 'deadline')
      changed = changed + 1
    end
    a = a + 1
  else
    return redis.error_reply('unknown event tag ' .. tag)
  end
end
if changed > 0 then
  local v = redis.call('INCRBY', version, changed)
  if publish then
    local rows = {}
    for id, key in pairs(touched) do
      local c = redis.call('HMGET', key, 'points', 'elapsed_ms', 'answers', 'last_q', 'streak', 'name', 'kicked_at')
      rows[#rows + 1] = {id, tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0,
        tonumber(c[4]) or 0, tonumber(c[5]) or 0, c[6], c[7] ~= false}
    end
    local players = ''
    if #rows > 0 then players = ' ' .. cjson.encode(rows) end
    redis.call('PUBLISH', ARGV[1], v .. ARGV[3] .. '\n' .. changed .. ' ' .. closed .. players)
  end
end
return changed
";

/// Sets `<root>:active` from `ARGV[1]` (or `''` for none) to `ARGV[2]`; returns 1 if it did.
const SWITCH: &str = r"
local active = redis.call('GET', KEYS[1]) or ''
if active ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

/// Adds one event's keys and arguments to a script invocation, in the layout `APPLY` reads.
fn push_event(invocation: &mut redis::ScriptInvocation<'_>, keys: &Keys, e: &Sourced<Event>) {
    let quiz = e.event.quiz_id();
    let tag = match &e.event {
        Event::AnswerSubmitted(_) => "A",
        Event::QuizCreated(_) => "C",
        Event::PlayerJoined(_) => "J",
        Event::PlayerKicked(_) => "K",
        Event::JoiningLocked(_) => "L",
        Event::QuestionStarted(_) => "S",
        Event::QuestionClosed(_) => "X",
        Event::QuizFinished(_) => "F",
    };
    let _ = invocation
        .arg(tag)
        .arg(partition_field(&e.topic, e.partition))
        .arg(e.offset);
    let _ = match &e.event {
        Event::AnswerSubmitted(a) => invocation
            .key(keys.player(quiz, &a.player_id))
            .key(keys.question(quiz, a.question))
            .arg(&a.player_id)
            .arg(a.question)
            .arg(a.choice)
            .arg(u8::from(a.correct))
            .arg(a.awarded())
            .arg(a.elapsed_ms)
            .arg(a.streak),
        Event::QuizCreated(c) => {
            let _ = invocation
                .arg(&c.title)
                .arg(&c.join_code)
                .arg(c.created_at)
                .arg(c.questions.len());
            for (number, q) in (1..).zip(&c.questions) {
                let choices = serde_json::to_string(&q.choices).unwrap_or_default();
                let _ = invocation
                    .key(keys.question(quiz, number))
                    .arg(&q.text)
                    .arg(choices)
                    .arg(q.points)
                    .arg(q.time_limit_ms);
            }
            invocation
        }
        Event::PlayerJoined(j) => invocation
            .key(keys.player(quiz, &j.player_id))
            .arg(&j.player_id)
            .arg(&j.name)
            .arg(j.joined_at),
        Event::PlayerKicked(k) => invocation
            .key(keys.player(quiz, &k.player_id))
            .arg(&k.player_id)
            .arg(k.kicked_at),
        Event::JoiningLocked(l) => invocation.arg(l.locked_at),
        Event::QuestionStarted(s) => invocation
            .key(keys.question(quiz, s.question))
            .arg(s.question)
            .arg(s.started_at)
            .arg(s.deadline),
        Event::QuestionClosed(x) => invocation
            .key(keys.question(quiz, x.question))
            .arg(x.question)
            .arg(x.closed_at)
            .arg(x.correct_choice)
            .arg(x.reason.name()),
        Event::QuizFinished(f) => invocation.arg(f.finished_at),
    };
}

/// The Redis read models of one [`Root`].
#[derive(Clone)]
pub struct RedisReadModel {
    client: redis::Client,
    connection: ConnectionManager,
    root: Root,
    /// The generation this process writes; changed only by [`RedisReadModel::adopt_active`].
    generation: Arc<Mutex<String>>,
    apply: redis::Script,
    switch: redis::Script,
}

impl std::fmt::Debug for RedisReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReadModel")
            .field("root", &self.root)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl RedisReadModel {
    /// Connects; the generation is unknown until [`RedisReadModel::adopt_active`].
    pub async fn connect(url: &str, root: Root) -> Result<Self> {
        Self::connect_client(redis::Client::open(url)?, root).await
    }

    /// Connects through `client` (a TLS one, for `rediss://`).
    pub async fn connect_client(client: redis::Client, root: Root) -> Result<Self> {
        let connection = ConnectionManager::new(client.clone()).await?;
        Ok(Self {
            client,
            connection,
            root,
            generation: Arc::default(),
            apply: redis::Script::new(APPLY),
            switch: redis::Script::new(SWITCH),
        })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The generation this process writes to.
    pub fn generation(&self) -> String {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes the active generation this process's own, first creating one if Redis has none
    /// (a first start, or Redis lost its data). Returns it.
    pub async fn adopt_active(&self) -> Result<String> {
        let mut connection = self.connection.clone();
        // Loaded now, so a NOSCRIPT later means Redis restarted (see `run`).
        let _: String = self
            .apply
            .prepare_invoke()
            .load_async(&mut connection)
            .await?;
        let active_key = self.root.active();
        let _: bool = redis::cmd("SET")
            .arg(&active_key)
            .arg(new_generation())
            .arg("NX")
            .query_async(&mut connection)
            .await?;
        let active: String = redis::cmd("GET")
            .arg(&active_key)
            .query_async(&mut connection)
            .await?;
        active.clone_into(
            &mut self
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        Ok(active)
    }

    /// The active generation, if Redis has one.
    pub async fn active(&self) -> Result<Option<String>> {
        let active: Option<String> = redis::cmd("GET")
            .arg(self.root.active())
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(active)
    }

    /// Applies a batch to this process's generation and checks, in the same pipeline, that it
    /// is still the active one.
    /// `next` is the next offset to read per partition field once the batch is done: the
    /// generation's resume positions.
    pub async fn apply(
        &self,
        batch: &[Sourced<Event>],
        next: &BTreeMap<String, i64>,
    ) -> Result<Outcome> {
        self.apply_traced(batch, next, &Traces::new()).await
    }

    /// [`RedisReadModel::apply`], with each quiz's change message carrying the trace context of
    /// the fold that made the change, so the query API's delivery continues that trace.
    pub async fn apply_traced(
        &self,
        batch: &[Sourced<Event>],
        next: &BTreeMap<String, i64>,
        traces: &Traces,
    ) -> Result<Outcome> {
        let generation = self.generation();
        let keys = self.root.generation(&generation);
        let mut pipe = redis::pipe();
        let _ = pipe.get(self.root.active());
        let quizzes = self.queue_batch(&mut pipe, &keys, batch, Some(traces));
        let (active, changed): (Option<String>, Vec<usize>) = self.run(pipe, quizzes).await?;
        match active {
            Some(active) if active == generation => {
                self.advance_resume(&keys, next).await?;
                Ok(Outcome::Applied {
                    changed: changed.iter().sum(),
                })
            }
            _ => {
                let to = self.adopt_active().await?;
                Ok(Outcome::Moved {
                    from: generation,
                    to,
                })
            }
        }
    }

    /// Applies a batch to `generation`, active or not, publishing nothing: the rebuild's path.
    pub async fn apply_to(
        &self,
        generation: &str,
        batch: &[Sourced<Event>],
        next: &BTreeMap<String, i64>,
    ) -> Result<usize> {
        let keys = self.root.generation(generation);
        let mut pipe = redis::pipe();
        let _ = pipe.cmd("PING");
        let quizzes = self.queue_batch(&mut pipe, &keys, batch, None);
        let ((), changed): ((), Vec<usize>) = self.run(pipe, quizzes).await?;
        self.advance_resume(&keys, next).await?;
        Ok(changed.iter().sum())
    }

    /// Moves the resume positions past a batch. Called only once every script of the batch
    /// succeeded: a pipeline runs on after a failed command, so positions queued behind the
    /// scripts would move past records a failed script never applied, and a crash before the
    /// retry would skip them. Positions are a lower bound; the scripts' own per-quiz positions
    /// make re-applying what lies below them harmless.
    async fn advance_resume(&self, keys: &Keys, next: &BTreeMap<String, i64>) -> Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        let fields: Vec<(&String, &i64)> = next.iter().collect();
        let () = redis::cmd("HSET")
            .arg(keys.resume())
            .arg(&fields)
            .exec_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    /// Starts an empty generation in place of `from`, if `from` is still the active one, and
    /// makes the active generation this process's own. The projector calls it when the log no
    /// longer holds what the read models were built from: they are folded again from the
    /// beginning. Returns the generation now active.
    pub async fn start_afresh(&self, from: &str) -> Result<String> {
        match self.switch(Some(from), &new_generation()).await {
            Ok(()) | Err(Error::GenerationMoved { .. }) => self.adopt_active().await,
            Err(e) => Err(e),
        }
    }

    /// Queues one script call per quiz; returns the number of scripts.
    fn queue_batch(
        &self,
        pipe: &mut redis::Pipeline,
        keys: &Keys,
        batch: &[Sourced<Event>],
        publish: Option<&Traces>,
    ) -> usize {
        let mut by_quiz: BTreeMap<&str, Vec<&Sourced<Event>>> = BTreeMap::new();
        for e in batch {
            by_quiz.entry(e.event.quiz_id()).or_default().push(e);
        }
        for (quiz_id, events) in &by_quiz {
            let mut invocation = self.apply.prepare_invoke();
            let channel = if publish.is_some() {
                self.root.changes(quiz_id)
            } else {
                String::new()
            };
            let trace = publish
                .and_then(|traces| traces.get(*quiz_id))
                .map_or_else(String::new, |t| format!(" {t}"));
            let _ = invocation
                .key(keys.positions(quiz_id))
                .key(keys.state(quiz_id))
                .key(keys.leaderboard(quiz_id))
                .key(keys.version(quiz_id))
                .key(keys.lobby(quiz_id))
                .arg(channel)
                .arg(POINTS_WEIGHT)
                .arg(trace);
            for e in events {
                push_event(&mut invocation, keys, e);
            }
            let _ = pipe.invoke_script(&invocation);
        }
        by_quiz.len()
    }

    /// Runs a pipeline of one leading command and `scripts` script calls.
    async fn run<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
        scripts: usize,
    ) -> Result<(T, Vec<usize>)> {
        let mut connection = self.connection.clone();
        let values: Vec<redis::Value> = match pipe.query_async(&mut connection).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted and forgot the script. It may also have come back with older
                // data (a snapshot): the caller must re-read from the resume positions, not
                // retry this batch on top of a gap.
                let _: String = self
                    .apply
                    .prepare_invoke()
                    .load_async(&mut connection)
                    .await?;
                return Err(Error::ScriptsLost);
            }
            other => other?,
        };
        let mut values = values.into_iter();
        let first = values.next().unwrap_or(redis::Value::Nil);
        let lead = redis::from_redis_value(first)?;
        let changed = values
            .take(scripts)
            .map(redis::from_redis_value)
            .collect::<Result<Vec<usize>, _>>()?;
        Ok((lead, changed))
    }

    /// Where each partition resumes in this process's generation. Blocking, with a short
    /// timeout: it runs inside the consumer's rebalance callback. On error the caller starts
    /// from the beginning, which is always safe.
    pub fn resume_blocking(&self) -> Result<Resume> {
        self.resume_of_blocking(&self.generation())
    }

    fn resume_of_blocking(&self, generation: &str) -> Result<Resume> {
        let timeout = Duration::from_secs(2);
        let mut connection = self.client.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(self.root.generation(generation).resume())
            .query(&mut connection)?;
        Ok(parse_resume(fields))
    }

    /// Where each partition resumes in `generation`.
    pub async fn resume_positions(&self, generation: &str) -> Result<ResumePositions> {
        Ok(self.resume(generation).await?.positions)
    }

    /// Where each partition resumes in `generation`, with the epochs seen up to there.
    pub async fn resume(&self, generation: &str) -> Result<Resume> {
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(self.root.generation(generation).resume())
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(parse_resume(fields))
    }

    /// Makes `to` the active generation if `from` still is (`None`: if there is none).
    pub async fn switch(&self, from: Option<&str>, to: &str) -> Result<()> {
        let switched: i32 = self
            .switch
            .key(self.root.active())
            .arg(from.unwrap_or(""))
            .arg(to)
            .invoke_async(&mut self.connection.clone())
            .await?;
        if switched == 1 {
            Ok(())
        } else {
            Err(Error::GenerationMoved {
                expected: from.unwrap_or("none").to_owned(),
            })
        }
    }

    /// Deletes every key of `generation`; returns how many there were.
    pub async fn drop_generation(&self, generation: &str) -> Result<usize> {
        let pattern = self.root.generation(generation).pattern();
        let mut connection = self.connection.clone();
        let mut cursor = 0u64;
        let mut dropped = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                dropped += keys.len();
                let _: usize = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await?;
            }
            if next == 0 {
                return Ok(dropped);
            }
            cursor = next;
        }
    }
}

fn parse_resume(fields: HashMap<String, i64>) -> Resume {
    let mut resume = Resume::default();
    let mut epochs: BTreeMap<(String, i32), BTreeMap<i32, u64>> = BTreeMap::new();
    for (field, value) in fields {
        if let Some(fenced) = field.strip_prefix(FENCE_FIELD_PREFIX) {
            let parsed = fenced.rsplit_once('|').and_then(|(at, shard)| {
                let (topic, partition) = at.rsplit_once(':')?;
                Some((topic, partition.parse().ok()?, shard.parse().ok()?))
            });
            if let (Some((topic, partition, shard)), Ok(epoch)) = (parsed, u64::try_from(value)) {
                let _ = epochs
                    .entry((topic.to_owned(), partition))
                    .or_default()
                    .insert(shard, epoch);
            }
            continue;
        }
        if let Some((topic, partition)) = field.rsplit_once(':')
            && let Ok(partition) = partition.parse()
        {
            let _ = resume
                .positions
                .insert((topic.to_owned(), partition), value);
        }
    }
    for ((topic, partition), epochs) in &epochs {
        resume.fence.restore(topic, *partition, epochs);
    }
    resume
}
