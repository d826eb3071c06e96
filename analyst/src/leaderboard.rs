//! Leaderboards recomputed from the log: as they stood at a moment, and what-if under another
//! scoring rule version. Both fold events with the projectors' own [`QuizView`]; re-scoring
//! rewrites each answer's points, streak and bonus with [`Rules`] first. Nothing here writes
//! anywhere but its output.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use podium_schemas::Event;
use podium_schemas::domain::QuizView;
use podium_schemas::domain::scoring::Rules;
use podium_schemas::events::{AnswerSubmitted, QuestionSpec};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::history::{Moment, QuizHistory, fold};

/// One row, as the query API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub rank: u64,
    pub player_id: String,
    pub name: Option<String>,
    pub points: i64,
    pub elapsed_ms: i64,
}

/// A leaderboard as it stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    pub quiz_id: String,
    pub title: Option<String>,
    /// The read model's version at that moment: how many events had changed it.
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_question: Option<i32>,
    pub ranked_players: u64,
    pub entries: Vec<Entry>,
}

fn entries(view: &QuizView, top: Option<usize>) -> Vec<Entry> {
    view.ranked()
        .into_iter()
        .zip(1..)
        .take(top.unwrap_or(usize::MAX))
        .map(|(row, rank)| Entry {
            rank,
            name: view
                .players
                .get(&row.player_id)
                .and_then(|p| p.name.clone()),
            player_id: row.player_id,
            points: row.points,
            elapsed_ms: row.elapsed_ms,
        })
        .collect()
}

fn moment_fields(moment: Moment) -> (Option<String>, Option<i32>) {
    match moment {
        Moment::Latest => (None, None),
        Moment::AsOf(t) => (Some(t.to_string()), None),
        Moment::AfterQuestion(n) => (None, Some(n)),
    }
}

/// The leaderboard at `moment`, its first `top` rows (all by default).
pub fn board(history: &QuizHistory, moment: Moment, top: Option<usize>) -> Result<Board> {
    let view = history.view(moment)?;
    let (as_of, after_question) = moment_fields(moment);
    Ok(Board {
        quiz_id: history.quiz_id.clone(),
        title: view.title.clone(),
        version: view.version,
        as_of,
        after_question,
        ranked_players: view.ranked().len() as u64,
        entries: entries(&view, top),
    })
}

/// The answers re-scored under `rules`, from their raw facts: whether each was correct, its
/// elapsed ms, and the points and time limit of its question in `QuizCreated`. The first answer
/// per (player, question) counts, as in the fold; the streak is carried from the player's
/// re-scored answer to the question before.
pub fn rescore_answers(
    history: &QuizHistory,
    events: &[&Event],
    rules: Rules,
) -> Result<Vec<Event>> {
    let questions: &[QuestionSpec] = history
        .lifecycle
        .iter()
        .find_map(|e| match e {
            Event::QuizCreated(c) => Some(c.questions.as_slice()),
            _ => None,
        })
        .ok_or_else(|| Error::Quiz {
            quiz_id: history.quiz_id.clone(),
            reason: "its QuizCreated is not in the log, so its questions' points are unknown"
                .into(),
        })?;
    // Each player's first answer per question, by question.
    let mut by_player: BTreeMap<&str, BTreeMap<i32, &AnswerSubmitted>> = BTreeMap::new();
    for event in events {
        if let Event::AnswerSubmitted(a) = event {
            let _ = by_player
                .entry(a.player_id.as_str())
                .or_default()
                .entry(a.question)
                .or_insert(a);
        }
    }
    let mut rescored = Vec::new();
    for answers in by_player.values() {
        let mut streaks: HashMap<i32, i32> = HashMap::new();
        for (&question, answer) in answers {
            let spec = usize::try_from(question - 1)
                .ok()
                .and_then(|i| questions.get(i))
                .ok_or_else(|| Error::Quiz {
                    quiz_id: history.quiz_id.clone(),
                    reason: format!(
                        "an answer to question {question}, which QuizCreated does not have"
                    ),
                })?;
            let previous = streaks.get(&(question - 1)).copied().unwrap_or(0);
            let score = rules.score(spec, answer.correct, answer.elapsed_ms, previous);
            let _ = streaks.insert(question, score.streak);
            rescored.push(Event::AnswerSubmitted(AnswerSubmitted {
                points: score.points,
                streak: score.streak,
                streak_bonus: score.streak_bonus,
                rule_version: rules.version(),
                ..(*answer).clone()
            }));
        }
    }
    Ok(rescored)
}

/// One row of a what-if leaderboard, beside what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RescoredEntry {
    pub rank: u64,
    pub player_id: String,
    pub name: Option<String>,
    pub points: i64,
    pub elapsed_ms: i64,
    pub recorded_rank: Option<u64>,
    pub recorded_points: i64,
}

/// A what-if leaderboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rescored {
    pub quiz_id: String,
    pub title: Option<String>,
    pub rules: i32,
    /// The rule versions the recorded answers were scored with.
    pub recorded_rules: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_question: Option<i32>,
    pub ranked_players: u64,
    pub entries: Vec<RescoredEntry>,
}

/// The leaderboard at `moment` had every answer been scored under rule version `version`.
pub fn rescore(
    history: &QuizHistory,
    moment: Moment,
    version: i32,
    top: Option<usize>,
) -> Result<Rescored> {
    let rules = Rules::for_version(version).ok_or_else(|| {
        Error::UnknownRules(
            version,
            Rules::ALL
                .iter()
                .map(|r| r.version().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let events = history.until(moment)?;
    let recorded = fold(&history.quiz_id, events.iter().copied());
    let answers = rescore_answers(history, &events, rules)?;
    let what_if = fold(
        &history.quiz_id,
        events
            .iter()
            .copied()
            .filter(|e| !matches!(e, Event::AnswerSubmitted(_)))
            .chain(&answers),
    );
    let recorded_ranks: HashMap<String, u64> = recorded
        .ranked()
        .into_iter()
        .zip(1..)
        .map(|(row, rank)| (row.player_id, rank))
        .collect();
    let recorded_rules: BTreeSet<i32> = events
        .iter()
        .filter_map(|e| match e {
            Event::AnswerSubmitted(a) => Some(a.rule_version),
            _ => None,
        })
        .collect();
    let (as_of, after_question) = moment_fields(moment);
    Ok(Rescored {
        quiz_id: history.quiz_id.clone(),
        title: what_if.title.clone(),
        rules: version,
        recorded_rules: recorded_rules.into_iter().collect(),
        as_of,
        after_question,
        ranked_players: what_if.ranked().len() as u64,
        entries: entries(&what_if, top)
            .into_iter()
            .map(|e| RescoredEntry {
                recorded_rank: recorded_ranks.get(&e.player_id).copied(),
                recorded_points: recorded.players.get(&e.player_id).map_or(0, |p| p.points),
                rank: e.rank,
                player_id: e.player_id,
                name: e.name,
                points: e.points,
                elapsed_ms: e.elapsed_ms,
            })
            .collect(),
    })
}

/// Lays out rows under a header, each column as wide as its widest cell; numbers right-aligned.
fn table(header: &[&str], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            if i > 0 {
                text.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                let _ = write!(text, "{cell:>width$}");
            } else {
                let _ = write!(text, "{cell:<width$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        &header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for row in rows {
        line(&mut out, row);
    }
    out
}

fn title_line(quiz_id: &str, title: Option<&str>) -> String {
    match title {
        Some(title) => format!("{title:?} ({quiz_id})"),
        None => quiz_id.to_owned(),
    }
}

fn when(as_of: Option<&str>, after_question: Option<i32>) -> String {
    match (as_of, after_question) {
        (Some(t), _) => format!("as of {t}"),
        (_, Some(n)) => format!("after question {n}"),
        _ => "now".to_owned(),
    }
}

impl Board {
    /// The leaderboard as a text table.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.rank.to_string(),
                    e.player_id.clone(),
                    e.name.clone().unwrap_or_default(),
                    e.points.to_string(),
                    e.elapsed_ms.to_string(),
                ]
            })
            .collect();
        format!(
            "{}, {}: {} ranked players, version {}\n\n{}",
            title_line(&self.quiz_id, self.title.as_deref()),
            when(self.as_of.as_deref(), self.after_question),
            self.ranked_players,
            self.version,
            table(
                &["rank", "player", "name", "points", "elapsed ms"],
                &rows,
                &[true, false, false, true, true],
            )
        )
    }
}

impl Rescored {
    /// The what-if leaderboard as a text table, beside the recorded ranks and points.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.rank.to_string(),
                    e.recorded_rank.map(|r| r.to_string()).unwrap_or_default(),
                    e.player_id.clone(),
                    e.name.clone().unwrap_or_default(),
                    e.points.to_string(),
                    e.recorded_points.to_string(),
                    e.elapsed_ms.to_string(),
                ]
            })
            .collect();
        let recorded = self
            .recorded_rules
            .iter()
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{}, {}: rescored under rules v{} (recorded under {}): {} ranked players\n\n{}",
            title_line(&self.quiz_id, self.title.as_deref()),
            when(self.as_of.as_deref(), self.after_question),
            self.rules,
            if recorded.is_empty() {
                "none".into()
            } else {
                recorded
            },
            self.ranked_players,
            table(
                &[
                    "rank",
                    "was",
                    "player",
                    "name",
                    "points",
                    "was points",
                    "elapsed ms"
                ],
                &rows,
                &[true, true, false, false, true, true, true],
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use podium_testkit::QuizLog;

    fn played(seed: u64) -> (QuizLog, QuizHistory) {
        let log = QuizLog::play("quiz", 40, 6, 0.8, seed).expect("a played quiz");
        let history = QuizHistory::from_events("quiz", log.events());
        (log, history)
    }

    #[test]
    fn version_1_reproduces_every_recorded_answer_and_the_leaderboard() {
        for seed in 0..5 {
            let (log, history) = played(seed);
            let events = history.until(Moment::Latest).expect("events");
            let mut recorded: Vec<Event> = log
                .events()
                .filter(|e| matches!(e, Event::AnswerSubmitted(_)))
                .cloned()
                .collect();
            let mut again =
                rescore_answers(&history, &events, Rules::SpeedAndStreak).expect("rescored");
            let key = |e: &Event| match e {
                Event::AnswerSubmitted(a) => (a.player_id.clone(), a.question),
                _ => (String::new(), 0),
            };
            recorded.sort_by_key(key);
            again.sort_by_key(key);
            assert_eq!(again, recorded, "seed {seed}");

            let what_if = rescore(&history, Moment::Latest, 1, None).expect("rescore");
            let recorded = board(&history, Moment::Latest, None).expect("board");
            assert_eq!(what_if.ranked_players, recorded.ranked_players);
            for (w, r) in what_if.entries.iter().zip(&recorded.entries) {
                assert_eq!(
                    (&w.player_id, w.points, w.elapsed_ms, w.rank),
                    (&r.player_id, r.points, r.elapsed_ms, r.rank)
                );
                assert_eq!(
                    (w.recorded_rank, w.recorded_points),
                    (Some(r.rank), r.points)
                );
            }
        }
    }

    #[test]
    fn version_2_pays_every_correct_answer_its_full_points() {
        let (_, history) = played(7);
        let events = history.until(Moment::Latest).expect("events");
        let answers = rescore_answers(&history, &events, Rules::FlatAndStreak).expect("rescored");
        assert!(!answers.is_empty());
        for event in &answers {
            let Event::AnswerSubmitted(a) = event else {
                panic!("an answer")
            };
            assert_eq!(a.points, if a.correct { 1000 } else { 0 });
            assert_eq!(a.rule_version, 2);
        }
        let what_if = rescore(&history, Moment::Latest, 2, Some(5)).expect("rescore");
        assert_eq!(what_if.entries.len(), 5);
        assert!(
            what_if
                .to_table()
                .contains("rescored under rules v2 (recorded under v1)")
        );
        assert!(matches!(
            rescore(&history, Moment::Latest, 3, None),
            Err(Error::UnknownRules(3, _))
        ));
    }

    #[test]
    fn after_question_n_is_the_fold_up_to_its_close() {
        let (log, history) = played(3);
        for n in 1..=6usize {
            let mut events: Vec<&Event> = log.opening.iter().collect();
            for round in &log.rounds[..n] {
                events.push(&round.start);
                events.extend(&round.answers);
                events.push(&round.close);
            }
            let expected = fold("quiz", events);
            let n = i32::try_from(n).expect("small");
            assert_eq!(
                history.view(Moment::AfterQuestion(n)).expect("view"),
                expected
            );
        }
        assert!(history.view(Moment::AfterQuestion(7)).is_err());
    }

    #[test]
    fn as_of_counts_events_by_their_own_time() {
        let (log, history) = played(5);
        let Event::QuestionClosed(close) = &log.rounds[1].close else {
            panic!("a close")
        };
        // Just before question 2 closed, every answer to it is in and nothing of question 3.
        let just_before = Timestamp(close.closed_at - 1);
        let as_of = board(&history, Moment::AsOf(just_before), None).expect("board");
        let after = board(&history, Moment::AfterQuestion(2), None).expect("board");
        assert_eq!(as_of.entries, after.entries);
        assert_eq!(as_of.version + 1, after.version, "all but the close itself");
        let before_anything = board(&history, Moment::AsOf(Timestamp(0)), None).expect("board");
        assert_eq!(
            (before_anything.version, before_anything.entries.len()),
            (0, 0)
        );
        assert!(as_of.to_table().contains("as of"));
    }
}
