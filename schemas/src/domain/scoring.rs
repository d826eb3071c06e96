//! The scoring rule. Its version travels in every `AnswerSubmitted`, so re-scoring is a replay.

/// Version of the rule implemented here.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #[test]
        fn speed_points_stay_between_half_and_full(p in 0u32..=10_000, t in 0u32..=200_000, limit in 5_000u32..=120_000) {
            let got = speed_points(p, t, limit);
            prop_assert!(got <= p);
            prop_assert!(2 * got + 1 >= p, "{got} is below half of {p}");
        }

        #[test]
        fn speed_points_match_the_real_valued_formula(p in 0u32..=10_000, t in 0u32..=120_000, limit in 5_000u32..=120_000) {
            let t = t.min(limit);
            let exact = f64::from(p) * (1.0 - f64::from(t) / (2.0 * f64::from(limit)));
            let got = f64::from(speed_points(p, t, limit));
            // f64::round rounds half away from zero; allow for its representation error at .5.
            prop_assert!((got - exact.round()).abs() < 1.0 && (got - exact).abs() <= 0.5 + 1e-9);
        }
    }
}
