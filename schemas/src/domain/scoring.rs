//! The scoring rule. Its version travels in every `AnswerSubmitted`, so re-scoring is a replay.
//!
//! [`Rules`] names every version that exists, so the analyst tools can recompute a quiz under any
//! of them from the raw facts (correctness, elapsed ms, the question's points and time limit).
//! The command side scores with [`RULE_VERSION`]. See `docs/adr/0005-analyst-replays.md`.

use crate::events::QuestionSpec;

/// Version of the rule the command side scores with today.
pub const RULE_VERSION: i32 = 1;

/// Streak bonus never exceeds this.
pub const STREAK_BONUS_CAP: u32 = 500;

/// Points for a correct answer received `elapsed_ms` after the question started:
/// `round(P × (1 − t / (2T)))`, rounding half away from zero. `t` is clamped to `0..=T`.
pub fn speed_points(points: u32, elapsed_ms: u32, time_limit_ms: u32) -> u32 {
    if time_limit_ms == 0 {
        return points;
    }
    let t = u64::from(elapsed_ms.min(time_limit_ms));
    let two_t = 2 * u64::from(time_limit_ms);
    // P × (2T − t) / 2T in integers; all terms are non-negative, so adding half the
    // denominator before dividing rounds half away from zero.
    let numerator = u64::from(points) * (two_t - t);
    let rounded = (2 * numerator + two_t) / (2 * two_t);
    u32::try_from(rounded).unwrap_or(u32::MAX)
}

/// Bonus for the `n`-th consecutive correctly answered question: `min(100 × (n − 1), 500)`.
pub fn streak_bonus(n: u32) -> u32 {
    n.saturating_sub(1)
        .saturating_mul(100)
        .min(STREAK_BONUS_CAP)
}

/// A version of the scoring rule. Correctness and the streak never depend on the version; the
/// points for a correct answer and the streak bonus may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rules {
    /// Version 1, the live rule: speed points `round(P × (1 − t/2T))` ([`speed_points`]) and the
    /// streak bonus `min(100 × (n − 1), 500)` ([`streak_bonus`]).
    SpeedAndStreak,
    /// Version 2, a what-if: every correct answer earns the question's full points `P`, however
    /// fast it came; the streak bonus is version 1's. Speed still breaks ties, through the sum of
    /// elapsed ms.
    FlatAndStreak,
}

/// What one answer earns under a rule version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    pub points: i32,
    /// Consecutive correctly answered questions ending with this one; 0 when wrong.
    pub streak: i32,
    pub streak_bonus: i32,
}

impl Rules {
    /// The rule the command side scores with: the one named by [`RULE_VERSION`].
    pub const CURRENT: Self = Self::SpeedAndStreak;

    /// Every version, oldest first.
    pub const ALL: [Self; 2] = [Self::SpeedAndStreak, Self::FlatAndStreak];

    /// The rule with this version number, if it exists.
    pub fn for_version(version: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.version() == version)
    }

    /// The number written into `AnswerSubmitted.rule_version`.
    pub fn version(self) -> i32 {
        match self {
            Self::SpeedAndStreak => 1,
            Self::FlatAndStreak => 2,
        }
    }

    /// Points for a correct answer received `elapsed_ms` into a question worth `points` with
    /// limit `time_limit_ms`, before the streak bonus.
    pub fn points(self, points: u32, elapsed_ms: u32, time_limit_ms: u32) -> u32 {
        match self {
            Self::SpeedAndStreak => speed_points(points, elapsed_ms, time_limit_ms),
            Self::FlatAndStreak => points,
        }
    }

    /// Bonus for the `n`-th consecutive correctly answered question.
    pub fn streak_bonus(self, n: u32) -> u32 {
        match self {
            Self::SpeedAndStreak | Self::FlatAndStreak => streak_bonus(n),
        }
    }

    /// Scores one answer to `question` from its raw facts. `previous_streak` is the streak of the
    /// player's answer to the question before (0 when it was wrong or not answered), as the
    /// command side computes it.
    pub fn score(
        self,
        question: &QuestionSpec,
        correct: bool,
        elapsed_ms: i32,
        previous_streak: i32,
    ) -> Score {
        if !correct {
            return Score {
                points: 0,
                streak: 0,
                streak_bonus: 0,
            };
        }
        let streak = previous_streak.max(0).saturating_add(1);
        let points = self.points(
            u32::try_from(question.points).unwrap_or(0),
            u32::try_from(elapsed_ms).unwrap_or(0),
            u32::try_from(question.time_limit_ms).unwrap_or(0),
        );
        let bonus = self.streak_bonus(u32::try_from(streak).unwrap_or(0));
        Score {
            points: i32::try_from(points).unwrap_or(i32::MAX),
            streak,
            streak_bonus: i32::try_from(bonus).unwrap_or(i32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn question(points: i32, time_limit_ms: i32) -> QuestionSpec {
        QuestionSpec {
            text: "?".into(),
            choices: vec!["a".into(), "b".into()],
            correct_choice: 0,
            points,
            time_limit_ms,
        }
    }

    #[test]
    fn versions_are_numbered_from_one_and_the_current_one_is_rule_version() {
        assert_eq!(Rules::CURRENT.version(), RULE_VERSION);
        assert_eq!(Rules::for_version(1), Some(Rules::SpeedAndStreak));
        assert_eq!(Rules::for_version(2), Some(Rules::FlatAndStreak));
        assert_eq!(Rules::for_version(0), None);
        assert_eq!(Rules::for_version(3), None);
        for rules in Rules::ALL {
            assert_eq!(Rules::for_version(rules.version()), Some(rules));
        }
    }

    #[test]
    fn version_1_is_speed_points_and_the_streak_bonus() {
        let q = question(1000, 20_000);
        assert_eq!(
            Rules::SpeedAndStreak.score(&q, true, 10_000, 2),
            Score {
                points: 750,
                streak: 3,
                streak_bonus: 200
            }
        );
    }

    #[test]
    fn version_2_pays_full_points_however_slow_with_the_same_bonus() {
        let q = question(1000, 20_000);
        for elapsed in [0, 10_000, 20_000] {
            assert_eq!(
                Rules::FlatAndStreak.score(&q, true, elapsed, 2),
                Score {
                    points: 1000,
                    streak: 3,
                    streak_bonus: 200
                }
            );
        }
    }

    #[test]
    fn a_wrong_answer_earns_nothing_and_ends_the_streak_in_every_version() {
        for rules in Rules::ALL {
            assert_eq!(
                rules.score(&question(1000, 20_000), false, 100, 4),
                Score {
                    points: 0,
                    streak: 0,
                    streak_bonus: 0
                }
            );
        }
    }

    #[test]
    fn an_instant_answer_earns_full_points() {
        assert_eq!(speed_points(1000, 0, 20_000), 1000);
    }

    #[test]
    fn an_answer_at_the_deadline_earns_half() {
        assert_eq!(speed_points(1000, 20_000, 20_000), 500);
    }

    #[test]
    fn halves_round_away_from_zero() {
        // 1 × (1 − 10/20) = 0.5 → 1; 3 × (1 − 5/10) = 1.5 → 2.
        assert_eq!(speed_points(1, 5_000, 5_000), 1);
        assert_eq!(speed_points(3, 5_000, 5_000), 2);
        // 1000 × (1 − 1/40000) = 999.975 → 1000
        assert_eq!(speed_points(1000, 1, 20_000), 1000);
        // 1000 × (1 − 30/40000) = 999.25 → 999
        assert_eq!(speed_points(1000, 30, 20_000), 999);
    }

    #[test]
    fn streak_bonus_grows_by_100_and_caps_at_500() {
        let bonuses: Vec<u32> = (0..=8).map(streak_bonus).collect();
        assert_eq!(bonuses, vec![0, 0, 100, 200, 300, 400, 500, 500, 500]);
    }

    #[test]
    fn a_tie_rounds_up() {
        // 2440 × (1 − 32123 / 88816) is exactly 1557.5.
        assert_eq!(speed_points(2440, 32_123, 44_408), 1558);
    }

    proptest! {
        #[test]
        fn version_1_scores_as_the_command_side_does(p in 0i32..=10_000, t in 0i32..=130_000, limit in 5_000i32..=120_000, previous in 0i32..10) {
            let score = Rules::SpeedAndStreak.score(&question(p, limit), true, t, previous);
            let expected_points = speed_points(p.unsigned_abs(), t.unsigned_abs(), limit.unsigned_abs());
            prop_assert_eq!(i64::from(score.points), i64::from(expected_points));
            prop_assert_eq!(score.streak, previous + 1);
            prop_assert_eq!(i64::from(score.streak_bonus), i64::from(streak_bonus((previous + 1).unsigned_abs())));
        }

        #[test]
        fn version_2_never_pays_less_than_version_1(p in 0i32..=10_000, t in 0i32..=130_000, limit in 5_000i32..=120_000) {
            let q = question(p, limit);
            prop_assert!(Rules::FlatAndStreak.score(&q, true, t, 0).points >= Rules::SpeedAndStreak.score(&q, true, t, 0).points);
        }

        #[test]
        fn speed_points_stay_between_half_and_full(p in 0u32..=10_000, t in 0u32..=200_000, limit in 5_000u32..=120_000) {
            let got = speed_points(p, t, limit);
            prop_assert!(got <= p);
            prop_assert!(2 * got + 1 >= p, "{got} is below half of {p}");
        }

        #[test]
        fn speed_points_match_the_real_valued_formula(p in 0u32..=10_000, t in 0u32..=120_000, limit in 5_000u32..=120_000) {
            let t = t.min(limit);
            let got = speed_points(p, t, limit);
            // Exactly, in integers: P × (2T − t) / 2T is `num / den`; `got` is the nearest
            // whole number, a tie rounded up. (f64 misjudged ties such as 1557.5 as below.)
            let num = i128::from(p) * (2 * i128::from(limit) - i128::from(t));
            let den = 2 * i128::from(limit);
            let diff = i128::from(got) * den - num;
            prop_assert!(2 * diff.abs() <= den, "{got} is not the nearest to {num}/{den}");
            prop_assert!(2 * diff.abs() < den || diff > 0, "a tie rounds up");
            let real = f64::from(p) * (1.0 - f64::from(t) / (2.0 * f64::from(limit)));
            prop_assert!((f64::from(got) - real).abs() <= 0.5 + 1e-6);
        }
    }
}
