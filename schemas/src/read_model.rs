//! The Redis read-model layout: the contract between the projectors that write it and the query
//! side that reads it. Every key of a quiz carries the quiz id as a hash tag (`{quiz_id}`), so
//! a quiz's keys share one slot and one atomic script can touch them all on Redis Cluster.

/// Elapsed-ms sums stay below this (100 questions × 120 s = 12,000,000 < 2^24).
const ELAPSED_RANGE: i64 = 1 << 24;

/// Key names under one namespace (a deployment, a test, or a rebuild in progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    namespace: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new("podium")
    }
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

    fn of(&self, quiz_id: &str, what: &str) -> String {
        format!("{}:{{{quiz_id}}}:{what}", self.namespace)
    }

    /// Sorted set of player ids scored by [`leaderboard_score`]: ascending score is
    /// leaderboard order, and Redis breaks score ties by member, i.e. by player id.
    pub fn leaderboard(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "leaderboard")
    }

    /// Hash of one player: `points`, `elapsed_ms`, `answers`, and `q:<n>` per answered question.
    pub fn player(&self, quiz_id: &str, player_id: &str) -> String {
        self.of(quiz_id, &format!("player:{player_id}"))
    }

    /// Hash of applied positions: `<topic>:<partition>` to the last applied offset.
    pub fn positions(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "positions")
    }

    /// Counter that increases with every applied change.
    pub fn version(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "version")
    }

    /// Pub/sub channel carrying the new version after each applied change.
    pub fn changes(&self, quiz_id: &str) -> String {
        self.of(quiz_id, "changes")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_share_the_quiz_hash_tag() {
        let keys = Keys::new("ns");
        assert_eq!(keys.leaderboard("q1"), "ns:{q1}:leaderboard");
        assert_eq!(keys.player("q1", "p1"), "ns:{q1}:player:p1");
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
