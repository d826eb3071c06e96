//! What the durable read model holds, and the pure rules both adapters share.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use podium_schemas::domain::Standings;
use podium_schemas::events::{AnswerSubmitted, Event, Millis};

/// A command-side shard's claim marker (ADR 0011) and where it lies in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimMarker {
    pub offset: i64,
    pub shard: i32,
    pub epoch: u64,
}

/// Each shard's highest epoch among the markers of a partition before `offset`: the fence of a
/// reader that starts there, since every record of an epoch lies after that epoch's marker.
pub fn epochs_before(markers: &[ClaimMarker], offset: i64) -> BTreeMap<i32, u64> {
    let mut epochs = BTreeMap::new();
    for marker in markers.iter().filter(|m| m.offset < offset) {
        let epoch = epochs.entry(marker.shard).or_insert(0);
        *epoch = (*epoch).max(marker.epoch);
    }
    epochs
}

/// An event with its position in the Kafka log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: Event,
}

impl Sourced {
    /// The quiz whose durable facts the event changes; `None` for events the model ignores.
    pub(crate) fn fact_of_quiz(&self) -> Option<&str> {
        match &self.event {
            Event::QuizCreated(_)
            | Event::PlayerJoined(_)
            | Event::PlayerKicked(_)
            | Event::QuizFinished(_)
            | Event::AnswerSubmitted(_) => Some(self.event.quiz_id()),
            Event::JoiningLocked(_) | Event::QuestionStarted(_) | Event::QuestionClosed(_) => None,
        }
    }
}

/// A finished quiz's leaderboard, frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalResults {
    pub quiz_id: String,
    pub finished_at: Millis,
    /// Leaderboard order ([`podium_schemas::domain::leaderboard_order`]), ranks 1..=n.
    pub standings: Vec<FinalStanding>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStanding {
    pub rank: u32,
    pub player_id: String,
    /// Display name from `PlayerJoined`; empty until that event is recorded.
    pub name: String,
    pub points: i64,
    pub elapsed_ms: i64,
    /// Accepted answers.
    pub answers: u32,
}

/// One finished quiz in a player's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuizHistoryEntry {
    pub quiz_id: String,
    /// From `QuizCreated`; empty until that event is recorded.
    pub title: String,
    pub rank: u32,
    pub points: i64,
    pub finished_at: Millis,
}

impl FinalResults {
    /// The results as the reference fold computes them: every accepted answer through
    /// [`Standings`], players with at least one answer who were not kicked, in leaderboard
    /// order.
    pub fn fold<'a>(
        quiz_id: &str,
        finished_at: Millis,
        names: &HashMap<String, String>,
        kicked: &HashSet<String>,
        answers: impl IntoIterator<Item = &'a AnswerSubmitted>,
    ) -> Self {
        let mut standings = Standings::default();
        for answer in answers {
            let _ = standings.apply(answer);
        }
        let standings = standings
            .ranked()
            .into_iter()
            .filter(|row| !kicked.contains(&row.player_id))
            .enumerate()
            .map(|(index, row)| FinalStanding {
                rank: u32::try_from(index + 1).unwrap_or(u32::MAX),
                name: names.get(&row.player_id).cloned().unwrap_or_default(),
                answers: standings
                    .player(&row.player_id)
                    .map_or(0, |p| u32::try_from(p.answers.len()).unwrap_or(u32::MAX)),
                points: row.points,
                elapsed_ms: row.elapsed_ms,
                player_id: row.player_id,
            })
            .collect();
        Self {
            quiz_id: quiz_id.to_owned(),
            finished_at,
            standings,
        }
    }

    /// Each ranked player's history entry for this quiz.
    pub(crate) fn history<'a>(
        &'a self,
        title: &'a str,
    ) -> impl Iterator<Item = (&'a str, QuizHistoryEntry)> + 'a {
        self.standings.iter().map(move |s| {
            let entry = QuizHistoryEntry {
                quiz_id: self.quiz_id.clone(),
                title: title.to_owned(),
                rank: s.rank,
                points: s.points,
                finished_at: self.finished_at,
            };
            (s.player_id.as_str(), entry)
        })
    }
}

/// History order: most recently finished first, then quiz id.
pub(crate) fn history_order(a: &QuizHistoryEntry, b: &QuizHistoryEntry) -> Ordering {
    b.finished_at
        .cmp(&a.finished_at)
        .then_with(|| a.quiz_id.cmp(&b.quiz_id))
}

/// Facts are written `USING TIMESTAMP` this value, so that of two writes to one cell the one
/// from the lower offset wins: the first answer counts however often, or in whatever order,
/// the log is re-applied. The base is a fixed instant in the past (2^50 µs ≈ 2005-09) because
/// ScyllaDB rejects timestamps more than 3 days ahead of its clock by default
/// (`restrict_future_timestamp`), so `i64::MAX / 2 - offset` would fail. Offsets below 2^50
/// map to distinct positive timestamps; larger (unreachable) ones saturate to 1.
pub(crate) fn first_wins_timestamp(offset: i64) -> i64 {
    const BASE: i64 = 1 << 50;
    BASE - offset.clamp(0, BASE - 1)
}

/// Derived rows (results, history) are written `USING TIMESTAMP` this version. Every input only
/// grows (answers, names and the title are first-wins facts), so a recompute that saw more
/// facts has a higher version and wins over an older, concurrent one, whatever order their
/// writes land in. With QUORUM-class reads and writes, the last recompute sees every fact
/// written before it, so the highest version is the complete one. This relies on each
/// partition's records being recorded in offset order (as a Kafka consumer does): a fact replaced
/// by an earlier-offset one would change a snapshot without raising its version.
pub(crate) fn snapshot_version(answers: usize, names: usize, title_known: bool) -> i64 {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX / 4);
    1 + count(answers) + count(names) + i64::from(title_known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(player: &str, question: i32, points: i32, elapsed_ms: i32) -> AnswerSubmitted {
        AnswerSubmitted {
            quiz_id: "q".into(),
            player_id: player.into(),
            question,
            choice: 0,
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

    #[test]
    fn lower_offsets_get_higher_timestamps() {
        let offsets = [0, 1, 2, 1_000, 1 << 40, (1 << 50) - 1];
        for pair in offsets.windows(2) {
            assert!(first_wins_timestamp(pair[0]) > first_wins_timestamp(pair[1]));
        }
        assert_eq!(first_wins_timestamp(0), 1 << 50);
        assert_eq!(first_wins_timestamp((1 << 50) - 1), 1);
        assert_eq!(first_wins_timestamp(i64::MAX), 1);
        assert_eq!(first_wins_timestamp(-1), first_wins_timestamp(0));
    }

    #[test]
    fn first_wins_timestamps_are_not_in_the_future() {
        // 2020-01-01 in µs: any real ScyllaDB clock is later than this.
        assert!(first_wins_timestamp(0) < 1_577_836_800_000_000);
    }

    #[test]
    fn more_facts_give_a_higher_version() {
        assert!(snapshot_version(3, 2, true) > snapshot_version(2, 2, true));
        assert!(snapshot_version(2, 3, true) > snapshot_version(2, 2, true));
        assert!(snapshot_version(2, 2, true) > snapshot_version(2, 2, false));
        assert!(snapshot_version(0, 0, false) > 0);
    }

    #[test]
    fn fold_ranks_by_points_then_elapsed_then_player_id() {
        let names = HashMap::from([("b".to_owned(), "Bea".to_owned())]);
        let answers = [
            answer("c", 1, 10, 500),
            answer("b", 1, 10, 300),
            answer("a", 1, 10, 300),
            answer("d", 1, 20, 900),
            answer("a", 1, 0, 1), // a repeat: the first one counts
        ];
        let results = FinalResults::fold("q", 7, &names, &HashSet::new(), &answers);
        let order: Vec<(u32, &str, &str, i64, i64, u32)> = results
            .standings
            .iter()
            .map(|s| {
                let (id, name) = (s.player_id.as_str(), s.name.as_str());
                (s.rank, id, name, s.points, s.elapsed_ms, s.answers)
            })
            .collect();
        assert_eq!(
            order,
            [
                (1, "d", "", 20, 900, 1),
                (2, "a", "", 10, 300, 1),
                (3, "b", "Bea", 10, 300, 1),
                (4, "c", "", 10, 500, 1),
            ]
        );
        let history: Vec<_> = results.history("Quiz").collect();
        assert_eq!(history[1].0, "a");
        assert_eq!(history[1].1.rank, 2);
        assert_eq!(history[1].1.title, "Quiz");
    }
}
