//! The Redis read-model layout: the contract between the projectors that write it and the query
//! side that reads it. Every key of a quiz carries the quiz id as a hash tag (`{quiz_id}`), so
//! a quiz's keys share one slot and one atomic script can touch them all on Redis Cluster.

/// Elapsed-ms sums stay below this (100 questions × 120 s = 12,000,000 < 2^24).
const ELAPSED_RANGE: i64 = 1 << 24;

/// The root of a deployment's read models (a deployment, a test). Read models live in
/// generations under it: `<root>:active` names the one readers use, so a rebuild can fill a
/// fresh generation while the active one keeps serving, then switch with one `SET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    name: String,
}

impl Default for Root {
    fn default() -> Self {
        Self::new("podium")
    }
}

impl Root {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// String key naming the active generation. Its absence means Redis has no read model:
    /// a first start, or Redis lost its data.
    pub fn active(&self) -> String {
        format!("{}:active", self.name)
    }

    /// The keys of one generation.
    pub fn generation(&self, generation: &str) -> Keys {
        Keys::new(format!("{}:{generation}", self.name))
    }

    /// Pub/sub channel carrying a quiz's new version after each applied change. It belongs to
    /// the root, not a generation, so subscribers keep it across a rebuild.
    pub fn changes(&self, quiz_id: &str) -> String {
        format!("{}:changes:{{{quiz_id}}}", self.name)
    }

    /// Sorted set of the players with a live stream open, each scored by the time (ms) its
    /// presence expires unless a query API refreshes it. Not derived from the log, so it
    /// belongs to the root and outlives a rebuild.
    pub fn presence(&self, quiz_id: &str) -> String {
        format!("{}:presence:{{{quiz_id}}}", self.name)
    }

    /// Counter bumped whenever the quiz's presence changes, which the feeds read with the
    /// quiz so that they notice.
    pub fn presence_epoch(&self, quiz_id: &str) -> String {
        format!("{}:presence_epoch:{{{quiz_id}}}", self.name)
    }
}

/// Key names of one generation of read models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `MATCH` pattern of every key of this generation.
    pub fn pattern(&self) -> String {
        format!("{}:*", self.namespace)
    }

    fn of(&self, quiz_id: &str, what: &str) -> String {
        format!("{}{what}", self.quiz_prefix(quiz_id))
    }

    /// The prefix of every key of one quiz, for scripts that derive player and question keys
    /// (`<prefix>player:<id>`, `<prefix>question:<n>`) inside the quiz's hash slot.
    pub fn quiz_prefix(&self, quiz_id: &str) -> String {
        format!("{}:{{{quiz_id}}}:", self.namespace)
    }

    /// Sorted set of player ids scored by [`leaderboard_score`]: ascending score is
    /// leaderboard order, and Redis breaks score ties by member, i.e. by player id.
    pub fn leaderboard(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "leaderboard")
    }

    /// Hash of one player's card: `name`, `joined_at`, `points`, `elapsed_ms`, `answers`,
    /// `streak`, `last_q`, `q:<n>` (points awarded) per counted answer, and `kicked_at`.
    pub fn player(&self, quiz_id: &str, player_id: &str) -> String {
        self.of(quiz_id, &format!("player:{player_id}"))
    }

    /// Hash of the quiz state: `title`, `join_code`, `created_at`, `questions`, `players`,
    /// `current` and `deadline` while a question is active, `locked_at`, `finished_at`, and
    /// `flow` (flow events applied) with `finished_flow`, and `kick:<flow>` naming each
    /// kicked player. `players` counts joined players who were not kicked.
    pub fn state(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "state")
    }

    /// Hash of one question: `text`, `choices` (JSON array), `points`, `time_limit_ms`,
    /// `started_at`, `deadline`, `started_flow`; the reveal once closed (`closed_at`,
    /// `correct_choice`, `reason`, `closed_flow`); and its stats (`answers`, `correct`, `elapsed_sum`, `c:<choice>`).
    /// The answer key enters this hash only with the reveal.
    pub fn question(&self, quiz_id: &str, number: i32) -> String {
        self.of(quiz_id, &format!("question:{number}"))
    }

    /// Sorted set of the players who joined and were not kicked, scored by `joined_at`: the
    /// lobby, in order of arrival.
    pub fn lobby(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "lobby")
    }

    /// Hash of applied positions: `<topic>:<partition>` to the last applied offset.
    pub fn positions(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "positions")
    }

    /// Counter that increases with every applied change.
    pub fn version(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "version")
    }

    /// Hash of `<topic>:<partition>` to the next offset to read: where a projector that is
    /// assigned the partition resumes. A lower bound of what was applied, so resuming from it
    /// replays at most a batch, which the positions make harmless.
    pub fn resume(&self) -> String {
        format!("{}:resume", self.namespace)
    }
}

/// The field naming a partition in the positions and resume hashes.
pub fn partition_field(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

/// The field of the resume hash holding the highest epoch of `shard` seen in a partition
/// (ADR 0011): stored with the partition's resume position, in the same `HSET`.
pub fn fence_field(topic: &str, partition: i32, shard: i32) -> String {
    format!("{FENCE_FIELD_PREFIX}{topic}:{partition}|{shard}")
}

/// What starts every [`fence_field`].
pub const FENCE_FIELD_PREFIX: &str = "fence|";

/// The multiplier that packs points above the elapsed-ms sum in one score.
pub const POINTS_WEIGHT: i64 = ELAPSED_RANGE;

/// One sorted-set score that orders by points descending, then elapsed ascending:
/// `elapsed − points × 2^24`. Exact in an f64 for every reachable value (|score| < 2^45).
pub fn leaderboard_score(points: i64, elapsed_ms: i64) -> i64 {
    elapsed_ms - points * POINTS_WEIGHT
}

/// Unpacks a score into `(points, elapsed_ms)`.
pub fn unpack_score(score: f64) -> (i64, i64) {
    // Scores are integers well inside f64's exact range; the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let score = score as i64;
    let points = -score.div_euclid(POINTS_WEIGHT);
    (points, score + points * POINTS_WEIGHT)
}

/// A player's card as a change left it, carried in the [`ChangeMessage`] so that a reader
/// keeping a copy of the board can follow it without reading Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "ChangedPlayerRow")]
pub struct ChangedPlayer {
    pub player_id: String,
    pub points: i64,
    pub elapsed_ms: i64,
    pub answers: u64,
    /// The last question the player answered, which their streak runs to.
    pub last_question: i32,
    pub streak: i32,
    pub name: Option<String>,
    /// A kicked player is off the board.
    pub kicked: bool,
}

/// The JSON the projector's script writes:
/// `[player_id, points, elapsed_ms, answers, last_question, streak, name or false, kicked]`
/// (Lua's `cjson` writes a missing name as `false`).
#[derive(serde::Deserialize)]
struct ChangedPlayerRow(String, i64, i64, u64, i32, i32, serde_json::Value, bool);

impl From<ChangedPlayerRow> for ChangedPlayer {
    fn from(row: ChangedPlayerRow) -> Self {
        Self {
            player_id: row.0,
            points: row.1,
            elapsed_ms: row.2,
            answers: row.3,
            last_question: row.4,
            streak: row.5,
            name: match row.6 {
                serde_json::Value::String(name) => Some(name),
                _ => None,
            },
            kicked: row.7,
        }
    }
}

/// What the projector publishes on [`Root::changes`] after a fold that changed a quiz:
///
/// ```text
/// <version>[ <traceparent>]
/// <changed> <closed>[ <JSON array of ChangedPlayer>]
/// ```
///
/// `version − changed` is the version the fold started from, so a reader sees whether it
/// missed a message; `closed` is the highest question the fold closed (0: none). The players
/// are those whose card or place on the board the fold changed: a reader that holds the board
/// at `version − changed` holds it at `version` once it has applied them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMessage {
    pub version: u64,
    pub traceparent: Option<String>,
    pub changed: u64,
    pub closed: i32,
    /// `None` when the players' JSON does not read: the message cannot be followed.
    pub players: Option<Vec<ChangedPlayer>>,
}

impl ChangeMessage {
    /// `None` for a payload that is not a change message (the query API's `presence`).
    pub fn parse(payload: &str) -> Option<Self> {
        let (head, body) = payload.split_once('\n').unwrap_or((payload, ""));
        let mut words = head.splitn(2, ' ');
        let version = words.next()?.parse().ok()?;
        let traceparent = words.next().map(str::to_owned);
        let mut fields = body.splitn(3, ' ');
        let changed = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let closed = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let players = match fields.next() {
            Some(json) => serde_json::from_str(json).ok(),
            None => Some(Vec::new()),
        };
        Some(Self {
            version,
            traceparent,
            changed,
            closed,
            players,
        })
    }

    /// What a copy of the board needs to follow the message: `changed` and the players, if
    /// the message carries them whole.
    pub fn changed_players(&self) -> Option<&[ChangedPlayer]> {
        self.players.as_deref().filter(|_| self.changed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_share_the_quiz_hash_tag() {
        let keys = Root::new("ns").generation("g1");
        assert_eq!(keys.leaderboard("q1"), "ns:g1:{q1}:leaderboard");
        assert_eq!(keys.player("q1", "p1"), "ns:g1:{q1}:player:p1");
        assert_eq!(keys.question("q1", 2), "ns:g1:{q1}:question:2");
    }

    #[test]
    fn change_messages_parse_with_and_without_players() {
        let m = ChangeMessage::parse("12 00-abc-01\n3 2 [[\"p1\",10,250,2,2,1,\"Ann\",false],[\"p2\",0,900,1,1,0,false,true]]")
            .expect("a change message");
        assert_eq!((m.version, m.changed, m.closed), (12, 3, 2));
        assert_eq!(m.traceparent.as_deref(), Some("00-abc-01"));
        let players = m.changed_players().expect("the players");
        assert_eq!(players.len(), 2);
        assert_eq!(players[0].name.as_deref(), Some("Ann"));
        assert_eq!((players[0].points, players[0].streak), (10, 1));
        assert_eq!(players[1].name, None);
        assert!(players[1].kicked);
        let closing = ChangeMessage::parse("8\n1 3").expect("a fold that moved no player");
        assert_eq!(closing.changed_players(), Some(&[][..]));
        let bare = ChangeMessage::parse("7").expect("a version alone");
        assert_eq!((bare.version, bare.changed), (7, 0));
        assert_eq!(bare.changed_players(), None);
        let unreadable = ChangeMessage::parse("9\n2 0 [[\"p1\",1.5e+15]]").expect("a message");
        assert_eq!(
            unreadable.changed_players(),
            None,
            "players that do not read"
        );
        assert_eq!(ChangeMessage::parse("presence"), None);
    }

    proptest! {
        #[test]
        fn scores_unpack_and_order_like_the_leaderboard(
            a in (0i64..=1_050_000, 0i64..12_000_000),
            b in (0i64..=1_050_000, 0i64..12_000_000),
        ) {
            let (sa, sb) = (leaderboard_score(a.0, a.1), leaderboard_score(b.0, b.1));
            #[allow(clippy::cast_precision_loss)]
            let unpacked = unpack_score(sa as f64);
            prop_assert_eq!(unpacked, a);
            let expected = b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            prop_assert_eq!(sa.cmp(&sb), expected);
        }
    }
}
