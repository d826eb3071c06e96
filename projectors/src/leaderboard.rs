//! The leaderboard read model: the store port and its Redis adapter.
//!
//! Exactly-once on an at-least-once log: each quiz's batch is applied by one Lua script that
//! checks and advances the applied position of every (quiz, topic partition) in the same atomic
//! step as the change. A redelivered or replayed event is at or below its position and changes
//! nothing; an answer repeated under a new position (a retried append) is caught by the
//! first-answer-counts rule, as in the pure fold.

use std::collections::BTreeMap;

use async_trait::async_trait;
use podium_schemas::events::AnswerSubmitted;
use podium_schemas::read_model::{Keys, POINTS_WEIGHT};
use redis::aio::ConnectionManager;

use crate::error::Result;

/// An event with the log position it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<E> {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: E,
}

/// Folds answers into leaderboards, exactly once per log position.
#[async_trait]
pub trait LeaderboardStore: Send + Sync + std::fmt::Debug {
    /// Applies a batch atomically per quiz and returns how many answers changed a leaderboard.
    /// Applying the same batch again changes nothing.
    async fn apply(&self, batch: &[Sourced<AnswerSubmitted>]) -> Result<usize>;
}

/// KEYS: positions, leaderboard, version, then one player hash per answer.
/// ARGV: channel, then per answer: position field, offset, player id, question, awarded, elapsed.
const APPLY_ANSWERS: &str = r"
local weight = tonumber(ARGV[2])
local applied = 0
local n = (#ARGV - 2) / 6
for i = 0, n - 1 do
  local a = 3 + i * 6
  local offset = tonumber(ARGV[a + 1])
  local last = tonumber(redis.call('HGET', KEYS[1], ARGV[a]) or '-1')
  if offset > last then
    redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 1])
    local player = KEYS[3 + i + 1]
    if redis.call('HSETNX', player, 'q:' .. ARGV[a + 3], ARGV[a + 4]) == 1 then
      local points = redis.call('HINCRBY', player, 'points', ARGV[a + 4])
      local elapsed = redis.call('HINCRBY', player, 'elapsed_ms', ARGV[a + 5])
      redis.call('HINCRBY', player, 'answers', 1)
      redis.call('ZADD', KEYS[2], string.format('%d', elapsed - points * weight), ARGV[a + 2])
      applied = applied + 1
    end
  end
end
if applied > 0 then
  redis.call('PUBLISH', ARGV[1], redis.call('INCR', KEYS[3]))
end
return applied
";

/// The leaderboard in Redis.
#[derive(Clone)]
pub struct RedisLeaderboard {
    connection: ConnectionManager,
    keys: Keys,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLeaderboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaderboard")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisLeaderboard {
    pub async fn connect(url: &str, keys: Keys) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self {
            connection,
            keys,
            script: redis::Script::new(APPLY_ANSWERS),
        })
    }
}

#[async_trait]
impl LeaderboardStore for RedisLeaderboard {
    async fn apply(&self, batch: &[Sourced<AnswerSubmitted>]) -> Result<usize> {
        let mut by_quiz: BTreeMap<&str, Vec<&Sourced<AnswerSubmitted>>> = BTreeMap::new();
        for answer in batch {
            by_quiz
                .entry(&answer.event.quiz_id)
                .or_default()
                .push(answer);
        }
        // One script call per quiz, all in one pipeline: one round trip per batch.
        let mut pipe = redis::pipe();
        for (quiz_id, answers) in &by_quiz {
            let mut invocation = self.script.prepare_invoke();
            let _ = invocation
                .key(self.keys.positions(quiz_id))
                .key(self.keys.leaderboard(quiz_id))
                .key(self.keys.version(quiz_id))
                .arg(self.keys.changes(quiz_id))
                .arg(POINTS_WEIGHT);
            for a in answers {
                let _ = invocation
                    .key(self.keys.player(quiz_id, &a.event.player_id))
                    .arg(format!("{}:{}", a.topic, a.partition))
                    .arg(a.offset)
                    .arg(&a.event.player_id)
                    .arg(a.event.question)
                    .arg(a.event.awarded())
                    .arg(a.event.elapsed_ms);
            }
            let _ = pipe.invoke_script(&invocation);
        }
        let mut connection = self.connection.clone();
        let applied: Vec<usize> = match pipe.query_async(&mut connection).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted and forgot the script: load it and try once more.
                let _: String = self
                    .script
                    .prepare_invoke()
                    .load_async(&mut connection)
                    .await?;
                pipe.query_async(&mut connection).await?
            }
            other => other?,
        };
        Ok(applied.iter().sum())
    }
}
