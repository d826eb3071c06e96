//! Reads of the Redis read models written by the projectors. Each read first resolves the
//! active generation, then reads inside it only, so a rebuild's switch is never seen half-done.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use podium_schemas::domain::{PlayerCard, QuestionStats, QuestionView, QuizView, Reveal};
use podium_schemas::events::CloseReason;
use podium_schemas::read_model::{Keys, Root, leaderboard_score, unpack_score};
use redis::aio::ConnectionManager;

use crate::board_copy::Card;
use crate::error::{Error, Result};
use crate::lookups::{BatchRead, Coalescer};
use crate::reads::now_millis;
use crate::views::{LeaderboardEntry, Lobby, LobbyPlayer, PlayerStanding, Source};

/// The quiz state, its questions and the top of its leaderboard, read atomically, with who is
/// connected. `KEYS`: version, state, leaderboard, presence, presence epoch. `ARGV`: the quiz's
/// key prefix, how many leaders, now (ms).
/// Player and question keys are derived from the prefix; they share the quiz's hash slot.
const SNAPSHOT: &str = r"
local version = redis.call('GET', KEYS[1])
if not version then return false end
local state = redis.call('HGETALL', KEYS[2])
local n = tonumber(redis.call('HGET', KEYS[2], 'questions') or '0')
local questions = {}
for q = 1, n do questions[q] = redis.call('HGETALL', ARGV[1] .. 'question:' .. q) end
local rows, names = {}, {}
local top = tonumber(ARGV[2])
if top > 0 then
  rows = redis.call('ZRANGE', KEYS[3], 0, top - 1, 'WITHSCORES')
  for i = 1, #rows, 2 do
    names[#names + 1] = redis.call('HGET', ARGV[1] .. 'player:' .. rows[i], 'name') or ''
  end
end
local connected = redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[3], '+inf')
local epoch = tonumber(redis.call('GET', KEYS[5]) or '0')
return {version, state, questions, rows, names, redis.call('ZCARD', KEYS[3]), connected, epoch}
";

/// The lobby: the first players to join who were not kicked, with their names and whether
/// each has a live stream. `KEYS`: version, lobby, presence. `ARGV`: the quiz's key prefix,
/// how many players, now (ms).
const LOBBY: &str = r"
local version = redis.call('GET', KEYS[1])
if not version then return false end
local rows = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local names, connected = {}, {}
for i = 1, #rows, 2 do
  names[#names + 1] = redis.call('HGET', ARGV[1] .. 'player:' .. rows[i], 'name') or ''
  local expires = redis.call('ZSCORE', KEYS[3], rows[i])
  connected[#connected + 1] = (expires and tonumber(expires) > tonumber(ARGV[3])) and 1 or 0
end
local online = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[3], '+inf')
return {version, redis.call('ZCARD', KEYS[2]), rows, names, connected, online}
";

/// One page of the leaderboard. `KEYS`: version, leaderboard. `ARGV`: the quiz's key prefix,
/// mode, count, then for `after` the cursor's score and player, for `around` the player.
/// Byte-wise comparison, as the sorted set orders equal scores; Lua's `<` follows the locale.
const PAGE: &str = r"
local version = redis.call('GET', KEYS[1])
if not version then return false end
local board, prefix, mode, n = KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3])
local function at_or_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end
local start = 0
if mode == 'after' then
  local score, player = ARGV[4], ARGV[5]
  start = redis.call('ZCOUNT', board, '-inf', '(' .. score)
  local offset = 0
  while true do
    local tied = redis.call('ZRANGE', board, score, score, 'BYSCORE', 'LIMIT', offset, 100)
    local passed = 0
    for _, member in ipairs(tied) do
      if not at_or_before(member, player) then break end
      passed = passed + 1
    end
    start = start + passed
    if passed < 100 then break end
    offset = offset + 100
  end
elseif mode == 'around' then
  local rank = redis.call('ZRANK', board, ARGV[4])
  if not rank then return {version, -1, {}, {}, redis.call('ZCARD', board)} end
  start = math.max(0, rank - n)
  n = rank - start + n + 1
end
local rows = redis.call('ZRANGE', board, start, start + n - 1, 'WITHSCORES')
local names = {}
for i = 1, #rows, 2 do
  names[#names + 1] = redis.call('HGET', prefix .. 'player:' .. rows[i], 'name') or ''
end
return {version, start, rows, names, redis.call('ZCARD', board)}
";

/// Lua that sets `closed` to the quiz's latest closed question, which breaks the streaks of
/// the players who skipped it. `KEYS[3]` is the state, `ARGV[1]` the quiz's key prefix.
macro_rules! latest_closed_lua {
    () => {
        r"
local n = tonumber(redis.call('HGET', KEYS[3], 'questions') or '0')
local closed = 0
for q = n, 1, -1 do
  if redis.call('HEXISTS', ARGV[1] .. 'question:' .. q, 'closed_at') == 1 then
    closed = q
    break
  end
end
"
    };
}

/// Players' cards and ranks in one step: one player's for a read, or every player a feed
/// streams to. `KEYS`: version, leaderboard, state. `ARGV[1]` is the quiz's key prefix, the
/// rest player ids; per player, its rank (-1: not ranked) and its card. Also finds the latest
/// closed question, for the streaks.
const STANDINGS: &str = concat!(
    r"
local version = redis.call('GET', KEYS[1])
if not version then return false end
",
    latest_closed_lua!(),
    r"
local players = {}
for i = 2, #ARGV do
  players[#players + 1] = redis.call('ZRANK', KEYS[2], ARGV[i]) or -1
  players[#players + 1] = redis.call('HGETALL', ARGV[1] .. 'player:' .. ARGV[i])
end
return {version, redis.call('ZCARD', KEYS[2]), closed, players}
"
);

/// One chunk of a quiz's board for a copy of it (`board_copy.rs`). `KEYS`: version,
/// leaderboard, state; `ARGV`: the quiz's key prefix, the lowest score (`-inf`, or `(` and
/// the last chunk's last score), and how many players. A chunk ends where the score changes,
/// so the next starts after a score, ties read whole, and a player whose place no change
/// moved is read in some chunk however the others move. Returns the version, the latest
/// closed question, the rows (player, score) and each player's card.
const BOARD_CHUNK: &str = concat!(
    r"
local version = redis.call('GET', KEYS[1])
if not version then return false end
",
    latest_closed_lua!(),
    r"
local board = KEYS[2]
local rows = redis.call('ZRANGE', board, ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]), 'WITHSCORES')
if #rows > 0 then
  local last = rows[#rows]
  while #rows > 0 and rows[#rows] == last do
    rows[#rows] = nil
    rows[#rows] = nil
  end
  for _, v in ipairs(redis.call('ZRANGE', board, last, last, 'BYSCORE', 'WITHSCORES')) do
    rows[#rows + 1] = v
  end
end
local cards = {}
for i = 1, #rows, 2 do
  cards[#cards + 1] = redis.call('HMGET', ARGV[1] .. 'player:' .. rows[i], 'points', 'elapsed_ms', 'answers', 'last_q', 'streak', 'name')
end
return {version, closed, rows, cards}
"
);

/// One chunk of a quiz's board, as [`BOARD_CHUNK`] read it.
#[derive(Debug, Clone)]
pub struct BoardChunk {
    pub version: u64,
    pub latest_closed: i32,
    pub cards: Vec<(String, Card)>,
    /// Where the next chunk starts; `None` after the last.
    pub next: Option<String>,
}

/// Single players' lookups of one quiz out at once; more wait and go together in the next.
const LOOKUP_READERS: usize = 4;

/// Players per [`STANDINGS`] call: Redis runs one script at a time, so a long one would hold
/// up every other client. The calls of one read go out together on the multiplexed connection.
const STANDINGS_CHUNK: usize = 256;

/// A player's standing and the points each of their counted answers earned, by question.
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    pub standing: PlayerStanding,
    pub awarded: BTreeMap<i32, i64>,
}

/// Which part of the leaderboard to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOf {
    /// The first `limit` players.
    Top { limit: usize },
    /// `limit` players after the cursor's position (keyset paging).
    After { cursor: Cursor, limit: usize },
    /// The player and `radius` players on each side.
    Around { player_id: String, radius: usize },
}

/// A position in the leaderboard: the score and player id of the last entry seen. Pages that
/// start after it neither repeat nor skip players while scores move elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub score: i64,
    pub player_id: String,
}

impl Cursor {
    pub fn of(entry: &LeaderboardEntry) -> Self {
        Self {
            score: leaderboard_score(entry.points, entry.elapsed_ms),
            player_id: entry.player_id.clone(),
        }
    }

    /// Opaque to clients: URL-safe base64 of `<score>:<player>`.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.score, self.player_id))
    }

    pub fn decode(raw: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (score, player_id) = text.split_once(':')?;
        let score = score.parse().ok()?;
        (!player_id.is_empty()).then(|| Self {
            score,
            player_id: player_id.to_owned(),
        })
    }
}

/// One page of a leaderboard as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub version: u64,
    pub entries: Vec<LeaderboardEntry>,
    pub ranked_players: u64,
    /// `false` for `Around` a player who has no counted answer.
    pub found: bool,
}

/// What the live streams and the quiz read need: the quiz as the pure view (without player
/// cards), its player count, and the top of the leaderboard.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub view: QuizView,
    pub player_count: u64,
    pub top: Vec<LeaderboardEntry>,
    pub ranked_players: u64,
    /// Players with a live stream open.
    pub connected: u64,
    /// Bumped by every change of presence.
    pub presence_epoch: u64,
    /// The JSON of the leaderboard's default first page, written by the first read that
    /// serves it from this snapshot: every dashboard of the quiz asks for the same bytes.
    pub first_page: std::sync::OnceLock<Option<axum::body::Bytes>>,
}

impl Snapshot {
    /// What a change of the lobby changes: a join, a kick, a connection or a departure.
    pub fn lobby_stamp(&self) -> (u64, u64, u64) {
        (self.player_count, self.connected, self.presence_epoch)
    }
}

/// How long the active generation's name is used without asking Redis again. A rebuild keeps
/// the old generation for its grace period after the switch (`podium-ops rebuild` takes at
/// least a second), so a read through a name this fresh never finds it half deleted; and
/// every read saves the round trip that asked for it.
const ACTIVE_FRESH: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ReadModel {
    connection: ConnectionManager,
    /// The active generation's name and when Redis said so.
    active: Arc<Mutex<Option<(String, Instant)>>>,
    /// Both behind an `Arc`: every batch of lookups clones the read model into its task.
    client: Arc<redis::Client>,
    root: Arc<Root>,
    snapshot: Arc<redis::Script>,
    page: Arc<redis::Script>,
    standings: Arc<redis::Script>,
    board_chunk: Arc<redis::Script>,
    lobby: Arc<redis::Script>,
    /// Single players' lookups, batched per quiz.
    lookups: Arc<Coalescer<Followed>>,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

type SnapshotReply = (
    u64,
    Fields,
    Vec<Fields>,
    Vec<String>,
    Vec<String>,
    u64,
    u64,
    u64,
);

/// Version, players, rows (id, joined at), names, connected flags, connected players.
type LobbyReply = (u64, u64, Vec<String>, Vec<String>, Vec<u8>, u64);

/// Version, start position (-1: the player is not ranked), rows, names, ranked players.
type PageReply = (u64, i64, Vec<String>, Vec<String>, u64);

impl ReadModel {
    /// One round trip to Redis, for the readiness probe.
    pub async fn ping(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    pub async fn connect(url: &str, root: Root) -> Result<Self> {
        Self::connect_client(redis::Client::open(url)?, root).await
    }

    /// Connects through `client` (a TLS one, for `rediss://`).
    pub async fn connect_client(client: redis::Client, root: Root) -> Result<Self> {
        let connection = ConnectionManager::new(client.clone()).await?;
        Ok(Self {
            connection,
            active: Arc::default(),
            client: Arc::new(client),
            root: Arc::new(root),
            snapshot: Arc::new(redis::Script::new(SNAPSHOT)),
            page: Arc::new(redis::Script::new(PAGE)),
            standings: Arc::new(redis::Script::new(STANDINGS)),
            board_chunk: Arc::new(redis::Script::new(BOARD_CHUNK)),
            lobby: Arc::new(redis::Script::new(LOBBY)),
            lookups: Arc::new(Coalescer::new(LOOKUP_READERS)),
        })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// A client for the connections that cannot be shared, such as pub/sub.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The keys of the active generation; a Redis without one has no quiz. The name is asked
    /// of Redis at most every [`ACTIVE_FRESH`].
    async fn keys(&self) -> Result<Keys> {
        let known = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(_, at)| at.elapsed() < ACTIVE_FRESH)
            .map(|(generation, _)| self.root.generation(generation));
        if let Some(keys) = known {
            return Ok(keys);
        }
        let active: Option<String> = redis::cmd("GET")
            .arg(self.root.active())
            .query_async(&mut self.connection.clone())
            .await?;
        let generation = active.ok_or(Error::QuizNotFound)?;
        let keys = self.root.generation(&generation);
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((generation, Instant::now()));
        Ok(keys)
    }

    /// The quiz, its questions and its `top` leaders, in one atomic read.
    pub async fn snapshot(&self, quiz_id: &str, top: usize) -> Result<Snapshot> {
        let keys = self.keys().await?;
        let reply: Option<SnapshotReply> = self
            .snapshot
            .key(keys.version(quiz_id))
            .key(keys.state(quiz_id))
            .key(keys.leaderboard(quiz_id))
            .key(self.root.presence(quiz_id))
            .key(self.root.presence_epoch(quiz_id))
            .arg(keys.quiz_prefix(quiz_id))
            .arg(top)
            .arg(now_millis())
            .invoke_async(&mut self.connection.clone())
            .await?;
        let (version, state, questions, rows, names, ranked_players, connected, presence_epoch) =
            reply.ok_or(Error::QuizNotFound)?;
        let mut view = QuizView::new(quiz_id);
        view.version = version;
        let player_count = state_into(&mut view, &state);
        view.questions = (1..)
            .zip(&questions)
            .map(|(n, fields)| (n, question_view(fields)))
            .collect();
        Ok(Snapshot {
            view,
            player_count,
            top: entries(0, &rows, names),
            ranked_players,
            connected,
            presence_epoch,
            first_page: std::sync::OnceLock::new(),
        })
    }

    /// The lobby: the first `limit` players to join who were not kicked, and who is connected.
    pub async fn lobby(&self, quiz_id: &str, limit: usize) -> Result<Lobby> {
        let keys = self.keys().await?;
        let reply: Option<LobbyReply> = self
            .lobby
            .key(keys.version(quiz_id))
            .key(keys.lobby(quiz_id))
            .key(self.root.presence(quiz_id))
            .arg(keys.quiz_prefix(quiz_id))
            .arg(limit)
            .arg(now_millis())
            .invoke_async(&mut self.connection.clone())
            .await?;
        let (version, player_count, rows, names, connected, connected_count) =
            reply.ok_or(Error::QuizNotFound)?;
        let players: Vec<LobbyPlayer> = rows
            .chunks_exact(2)
            .zip(names)
            .zip(connected)
            .map(|((row, name), connected)| LobbyPlayer {
                player_id: row[0].clone(),
                name,
                joined_at: row[1].parse().unwrap_or(0),
                connected: connected == 1,
            })
            .collect();
        Ok(Lobby {
            quiz_id: quiz_id.to_owned(),
            version,
            player_count,
            connected_count,
            truncated: u64::try_from(players.len()).unwrap_or(u64::MAX) < player_count,
            players,
        })
    }

    /// Marks players as connected until `expires` (ms), one pipeline for all of them.
    pub async fn mark_present(&self, present: &[(String, String)], expires: i64) -> Result<()> {
        let mut pipe = redis::pipe();
        for (quiz_id, player_id) in present {
            let key = self.root.presence(quiz_id);
            let _ = pipe
                .zadd(&key, player_id, expires)
                .ignore()
                .pexpire_at(&key, expires)
                .ignore();
        }
        let () = pipe.query_async(&mut self.connection.clone()).await?;
        Ok(())
    }

    /// Marks a player as gone.
    pub async fn mark_absent(&self, quiz_id: &str, player_id: &str) -> Result<()> {
        let () = redis::cmd("ZREM")
            .arg(self.root.presence(quiz_id))
            .arg(player_id)
            .query_async::<i64>(&mut self.connection.clone())
            .await
            .map(drop)?;
        Ok(())
    }

    /// Tells every instance's feed of the quiz that its presence changed.
    pub async fn presence_changed(&self, quiz_id: &str) -> Result<()> {
        let () = redis::pipe()
            .incr(self.root.presence_epoch(quiz_id), 1)
            .ignore()
            .expire(self.root.presence_epoch(quiz_id), 86_400)
            .ignore()
            .publish(self.root.changes(quiz_id), "presence")
            .ignore()
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    pub async fn page(&self, quiz_id: &str, of: &PageOf) -> Result<Page> {
        let keys = self.keys().await?;
        let mut invocation = self.page.prepare_invoke();
        let _ = invocation
            .key(keys.version(quiz_id))
            .key(keys.leaderboard(quiz_id))
            .arg(keys.quiz_prefix(quiz_id));
        let _ = match of {
            PageOf::Top { limit } => invocation.arg("top").arg(limit),
            PageOf::After { cursor, limit } => invocation
                .arg("after")
                .arg(limit)
                .arg(cursor.score)
                .arg(&cursor.player_id),
            PageOf::Around { player_id, radius } => {
                invocation.arg("around").arg(radius).arg(player_id)
            }
        };
        let reply: Option<PageReply> = invocation
            .invoke_async(&mut self.connection.clone())
            .await?;
        let (version, start, rows, names, ranked_players) = reply.ok_or(Error::QuizNotFound)?;
        let found = start >= 0;
        Ok(Page {
            version,
            entries: entries(u64::try_from(start).unwrap_or(0), &rows, names),
            ranked_players,
            found,
        })
    }

    /// A player's standing; `PlayerNotFound` if the player neither joined nor answered.
    /// Lookups of one quiz that arrive while its last one is out are read together.
    pub async fn player(&self, quiz_id: &str, player_id: &str) -> Result<PlayerStanding> {
        self.lookups
            .lookup(self, quiz_id, player_id)
            .await?
            .map(|followed| followed.standing)
            .ok_or(Error::PlayerNotFound)
    }

    /// The standings of `player_ids` in one quiz, read together; players that neither joined
    /// nor answered are left out.
    pub async fn standings(
        &self,
        quiz_id: &str,
        player_ids: &[String],
    ) -> Result<HashMap<String, Followed>> {
        let keys = self.keys().await?;
        let prefix = keys.quiz_prefix(quiz_id);
        type Reply = Option<(u64, u64, i32, Vec<(i64, Fields)>)>;
        let calls = player_ids.chunks(STANDINGS_CHUNK).map(|chunk| {
            let mut invocation = self.standings.prepare_invoke();
            let _ = invocation
                .key(keys.version(quiz_id))
                .key(keys.leaderboard(quiz_id))
                .key(keys.state(quiz_id))
                .arg(&prefix)
                .arg(chunk);
            let mut connection = self.connection.clone();
            async move {
                let reply: Reply = invocation.invoke_async(&mut connection).await?;
                Ok::<_, Error>((chunk, reply))
            }
        });
        let mut standings = HashMap::with_capacity(player_ids.len());
        for (chunk, reply) in futures::future::try_join_all(calls).await? {
            let (version, ranked_players, latest_closed, players) =
                reply.ok_or(Error::QuizNotFound)?;
            let at = Standing {
                version,
                ranked_players,
                latest_closed,
            };
            for (player_id, (rank, fields)) in chunk.iter().zip(players) {
                if let Some(followed) = at.of(quiz_id, player_id, rank, &fields) {
                    let _ = standings.insert(player_id.clone(), followed);
                }
            }
        }
        Ok(standings)
    }

    /// One question as stored, with the version, or `None` if the quiz has no such question.
    pub async fn question(
        &self,
        quiz_id: &str,
        number: i32,
    ) -> Result<(u64, Option<QuestionView>)> {
        let keys = self.keys().await?;
        let (version, count, fields): (Option<u64>, Option<i32>, Fields) = redis::pipe()
            .atomic()
            .get(keys.version(quiz_id))
            .hget(keys.state(quiz_id), "questions")
            .hgetall(keys.question(quiz_id, number))
            .query_async(&mut self.connection.clone())
            .await?;
        let version = version.ok_or(Error::QuizNotFound)?;
        let exists = (1..=count.unwrap_or(0)).contains(&number);
        Ok((version, exists.then(|| question_view(&fields))))
    }
}

impl ReadModel {
    /// The active generation's keys' namespace: a copy of a board read from one generation
    /// is dropped when a rebuild switches to another.
    pub async fn generation(&self) -> Result<String> {
        Ok(self.keys().await?.namespace().to_owned())
    }

    /// Up to about `count` players of the quiz's board after `after` (see [`BOARD_CHUNK`]),
    /// with their cards, and the generation they were read from.
    pub async fn board_chunk(
        &self,
        quiz_id: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<(String, BoardChunk)> {
        let keys = self.keys().await?;
        type Reply = Option<(u64, i32, Vec<String>, Vec<Vec<Option<String>>>)>;
        let reply: Reply = self
            .board_chunk
            .key(keys.version(quiz_id))
            .key(keys.leaderboard(quiz_id))
            .key(keys.state(quiz_id))
            .arg(keys.quiz_prefix(quiz_id))
            .arg(after.map_or_else(|| "-inf".to_owned(), |score| format!("({score}")))
            .arg(count)
            .invoke_async(&mut self.connection.clone())
            .await?;
        let (version, latest_closed, rows, cards) = reply.ok_or(Error::QuizNotFound)?;
        let next = rows.chunks_exact(2).last().map(|row| row[1].clone());
        let cards = rows
            .chunks_exact(2)
            .zip(cards)
            .map(|(row, fields)| {
                let card = Card {
                    points: nth(&fields, 0).unwrap_or(0),
                    elapsed_ms: nth(&fields, 1).unwrap_or(0),
                    answers: nth(&fields, 2).unwrap_or(0),
                    last_question: nth(&fields, 3).unwrap_or(0),
                    streak: nth(&fields, 4).unwrap_or(0),
                    name: fields.get(5).cloned().flatten(),
                };
                (row[0].clone(), card)
            })
            .collect();
        Ok((
            keys.namespace().to_owned(),
            BoardChunk {
                version,
                latest_closed,
                cards,
                next,
            },
        ))
    }
}

type Fields = HashMap<String, String>;

/// What a player's standing is read against: the quiz's version, its ranked players and its
/// latest closed question.
struct Standing {
    version: u64,
    ranked_players: u64,
    latest_closed: i32,
}

impl Standing {
    /// A player's standing from their rank (0-based, -1: not ranked) and card; `None` for a
    /// player with no card (never joined nor answered).
    fn of(&self, quiz_id: &str, player_id: &str, rank: i64, fields: &Fields) -> Option<Followed> {
        if fields.is_empty() {
            return None;
        }
        let card = player_card(fields);
        let rank = u64::try_from(rank).ok().map(|r| r + 1);
        let ranked_players = self.ranked_players;
        Some(Followed {
            standing: PlayerStanding {
                quiz_id: quiz_id.to_owned(),
                player_id: player_id.to_owned(),
                version: self.version,
                source: Source::Live,
                name: card.name.clone(),
                rank,
                ranked_players,
                percentile: rank.and_then(|r| PlayerStanding::percentile(r, ranked_players)),
                kicked_at: card.kicked_at,
                points: card.points,
                elapsed_ms: card.elapsed_ms,
                answers: card.answers,
                streak: PlayerStanding::streak_now(
                    card.streak,
                    card.last_question,
                    self.latest_closed,
                ),
            },
            awarded: card.awarded,
        })
    }
}

fn field<T: std::str::FromStr>(fields: &Fields, name: &str) -> Option<T> {
    fields.get(name).and_then(|v| v.parse().ok())
}

/// [`field`] for the fields an `HMGET` read, by position.
fn nth<T: std::str::FromStr>(fields: &[Option<String>], at: usize) -> Option<T> {
    fields.get(at)?.as_deref()?.parse().ok()
}

fn entries(start: u64, rows: &[String], names: Vec<String>) -> Vec<LeaderboardEntry> {
    rows.chunks_exact(2)
        .zip(names)
        .zip(start + 1..)
        .map(|((row, name), rank)| {
            let (points, elapsed_ms) = unpack_score(row[1].parse().unwrap_or(0.0));
            LeaderboardEntry {
                rank,
                player_id: row[0].clone(),
                name: (!name.is_empty()).then_some(name),
                points,
                elapsed_ms,
            }
        })
        .collect()
}

fn state_into(view: &mut QuizView, state: &Fields) -> u64 {
    view.title = state.get("title").cloned();
    view.created_at = field(state, "created_at");
    view.question_count = field(state, "questions").unwrap_or(0);
    view.current = field(state, "current").zip(field(state, "deadline"));
    view.locked_at = field(state, "locked_at");
    view.finished_at = field(state, "finished_at");
    view.flow = field(state, "flow").unwrap_or(0);
    view.finished_flow = field(state, "finished_flow");
    view.kicks = state
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("kick:")?.parse().ok()?, v.clone())))
        .collect();
    field(state, "players").unwrap_or(0)
}

fn player_card(fields: &Fields) -> PlayerCard {
    PlayerCard {
        name: fields.get("name").cloned(),
        points: field(fields, "points").unwrap_or(0),
        elapsed_ms: field(fields, "elapsed_ms").unwrap_or(0),
        answers: field(fields, "answers").unwrap_or(0),
        streak: field(fields, "streak").unwrap_or(0),
        last_question: field(fields, "last_q").unwrap_or(0),
        awarded: fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("q:")?.parse().ok()?, v.parse().ok()?)))
            .collect(),
        kicked_at: field(fields, "kicked_at"),
    }
}

fn question_view(fields: &Fields) -> QuestionView {
    let reveal = match (
        field(fields, "closed_at"),
        field(fields, "correct_choice"),
        fields.get("reason").and_then(|r| CloseReason::from_name(r)),
    ) {
        (Some(closed_at), Some(correct_choice), Some(reason)) => Some(Reveal {
            closed_at,
            correct_choice,
            reason,
        }),
        _ => None,
    };
    QuestionView {
        text: fields.get("text").cloned().unwrap_or_default(),
        choices: fields
            .get("choices")
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default(),
        points: field(fields, "points").unwrap_or(0),
        time_limit_ms: field(fields, "time_limit_ms").unwrap_or(0),
        started_at: field(fields, "started_at"),
        deadline: field(fields, "deadline"),
        started_flow: field(fields, "started_flow"),
        closed_flow: field(fields, "closed_flow"),
        reveal,
        stats: QuestionStats {
            answers: field(fields, "answers").unwrap_or(0),
            correct: field(fields, "correct").unwrap_or(0),
            elapsed_ms_sum: field(fields, "elapsed_sum").unwrap_or(0),
            per_choice: fields
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("c:")?.parse().ok()?, v.parse().ok()?)))
                .collect(),
        },
    }
}

impl ReadModel {
    /// Everything stored for one quiz, as the pure fold's [`QuizView`], and its leaderboard as
    /// stored (player, points, elapsed ms) in order. Scans the quiz's keys: for operators and
    /// the fault proofs, not for the hot path.
    pub async fn quiz_view(&self, quiz_id: &str) -> Result<(QuizView, Vec<(String, i64, i64)>)> {
        let keys = self.keys().await?;
        let mut connection = self.connection.clone();
        let prefix = keys.state(quiz_id).trim_end_matches("state").to_owned();
        let mut names: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", prefix.replace('[', "\\[")))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            names.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut view = QuizView::new(quiz_id);
        view.version = redis::cmd("GET")
            .arg(keys.version(quiz_id))
            .query_async::<Option<u64>>(&mut connection)
            .await?
            .ok_or(Error::QuizNotFound)?;
        let state: Fields = redis::cmd("HGETALL")
            .arg(keys.state(quiz_id))
            .query_async(&mut connection)
            .await?;
        let _ = state_into(&mut view, &state);
        let mut players = BTreeMap::new();
        for name in &names {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(player_id) = rest.strip_prefix("player:") {
                let fields: Fields = redis::cmd("HGETALL")
                    .arg(name)
                    .query_async(&mut connection)
                    .await?;
                let _ = players.insert(player_id.to_owned(), player_card(&fields));
            } else if let Some(number) = rest.strip_prefix("question:") {
                let fields: Fields = redis::cmd("HGETALL")
                    .arg(name)
                    .query_async(&mut connection)
                    .await?;
                if let Ok(number) = number.parse() {
                    let _ = view.questions.insert(number, question_view(&fields));
                }
            }
        }
        view.players = players;
        let rows: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys.leaderboard(quiz_id))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await?;
        let board = rows
            .into_iter()
            .map(|(player, score)| {
                let (points, elapsed) = unpack_score(score);
                (player, points, elapsed)
            })
            .collect();
        Ok((view, board))
    }
}

impl BatchRead<Followed> for ReadModel {
    async fn read(
        &self,
        quiz_id: String,
        player_ids: Vec<String>,
    ) -> Result<HashMap<String, Followed>> {
        metrics::counter!("podium_query_standings_lookup_reads_total").increment(1);
        self.standings(&quiz_id, &player_ids).await
    }
}
