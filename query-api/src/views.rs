//! The bodies the query API answers with, over HTTP and in the live streams. They are built
//! from the pure [`QuizView`], so Redis and the reference fold render the same way.

use podium_schemas::domain::{QuestionView, QuizView};
use podium_schemas::events::Millis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a read came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The hot Redis read model: live, with a version.
    Live,
    /// The durable results of a finished quiz (ScyllaDB), read when Redis has none. Their
    /// version is 0.
    Durable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuizStatus {
    /// No question has started yet.
    Lobby,
    QuestionOpen,
    BetweenQuestions,
    Finished,
}

/// The quiz as players and dashboards see it. The open question never carries its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuizState {
    pub quiz_id: String,
    /// The read model's version: it increases with every applied change.
    pub version: u64,
    pub source: Source,
    pub status: QuizStatus,
    pub title: Option<String>,
    pub created_at: Option<Millis>,
    pub question_count: i32,
    /// Players who joined and were not kicked.
    pub player_count: u64,
    /// Players with a live player stream open, on any query API instance.
    pub connected_count: u64,
    pub joining_locked_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The open question, without its answer.
    pub current: Option<OpenQuestion>,
    /// Closed questions with their reveal and statistics, in order.
    pub closed: Vec<ClosedQuestion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpenQuestion {
    pub number: i32,
    pub text: String,
    pub choices: Vec<String>,
    pub points: i32,
    pub time_limit_ms: i32,
    pub started_at: Millis,
    pub deadline: Millis,
    /// Milliseconds left at the time of the read, by the server's clock; 0 once past.
    pub remaining_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClosedQuestion {
    pub number: i32,
    pub text: String,
    pub choices: Vec<String>,
    pub correct_choice: i32,
    /// DEADLINE, HOST, NEXT_QUESTION or QUIZ_FINISHED.
    pub reason: String,
    pub closed_at: Millis,
    pub stats: QuestionStats,
}

/// Counted answers of one closed question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuestionStats {
    pub answers: u64,
    pub correct: u64,
    pub mean_elapsed_ms: i64,
    /// Answers per choice, by 0-based choice index.
    pub per_choice: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuestionResults {
    pub quiz_id: String,
    pub version: u64,
    #[serde(flatten)]
    pub question: ClosedQuestion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaderboardEntry {
    pub rank: u64,
    pub player_id: String,
    /// The name the player joined with; absent if the join is not applied yet.
    pub name: Option<String>,
    pub points: i64,
    pub elapsed_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Leaderboard {
    pub quiz_id: String,
    pub version: u64,
    pub source: Source,
    /// Players with at least one counted answer.
    pub ranked_players: u64,
    pub entries: Vec<LeaderboardEntry>,
    /// Pass as `cursor` for the page after this one; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlayerStanding {
    pub quiz_id: String,
    pub player_id: String,
    pub version: u64,
    pub source: Source,
    pub name: Option<String>,
    /// 1-based; absent until the player has a counted answer.
    pub rank: Option<u64>,
    pub ranked_players: u64,
    /// The share of ranked players behind this one, in percent.
    pub percentile: Option<f64>,
    pub points: i64,
    pub elapsed_ms: i64,
    /// Answers counted.
    pub answers: u64,
    /// Correct answers in a row, up to the latest closed question; 0 after a skipped one.
    pub streak: i32,
    /// When the host removed the player; a kicked player has no rank.
    pub kicked_at: Option<Millis>,
}

/// Who is in the quiz: the players who joined and were not kicked, in order of arrival, and
/// who of them has a live stream open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lobby {
    pub quiz_id: String,
    pub version: u64,
    pub player_count: u64,
    pub connected_count: u64,
    /// The first players to join, at most 500.
    pub players: Vec<LobbyPlayer>,
    /// Whether more players joined than `players` lists.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LobbyPlayer {
    pub player_id: String,
    pub name: String,
    pub joined_at: Millis,
    /// Whether the player has a live stream open now.
    pub connected: bool,
}

/// A question's answer counts while it is open, for its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LiveCounts {
    pub quiz_id: String,
    pub version: u64,
    pub question: i32,
    pub answers: u64,
    /// Answers per choice, by 0-based choice index.
    pub per_choice: Vec<u64>,
}

impl PlayerStanding {
    pub fn percentile(rank: u64, ranked: u64) -> Option<f64> {
        // Counts stay far below 2^52, where u64 → f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        (rank >= 1 && ranked >= rank).then(|| (ranked - rank) as f64 * 100.0 / ranked as f64)
    }

    /// The streak a player's last answer carried, as it stands now: it breaks at the first
    /// closed question the player skipped.
    pub fn streak_now(streak: i32, last_question: i32, latest_closed: i32) -> i32 {
        if last_question >= latest_closed {
            streak
        } else {
            0
        }
    }
}

/// The question flow a quiz has reached, in the order it happened. Numbered by the quiz's
/// flow counter, which is the same on every instance and after every replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    QuestionStarted(OpenQuestion),
    QuestionClosed(ClosedQuestion),
    PlayerKicked {
        player_id: String,
        kicked_at: Millis,
    },
    QuizFinished {
        finished_at: Millis,
    },
}

fn remaining(deadline: Millis, now: Millis) -> i64 {
    (deadline - now).max(0)
}

fn open_question(number: i32, question: &QuestionView, now: Millis) -> Option<OpenQuestion> {
    let (started_at, deadline) = (question.started_at?, question.deadline?);
    Some(OpenQuestion {
        number,
        text: question.text.clone(),
        choices: question.choices.clone(),
        points: question.points,
        time_limit_ms: question.time_limit_ms,
        started_at,
        deadline,
        remaining_ms: remaining(deadline, now),
    })
}

/// A question with its reveal; `None` while it is open, so the answer cannot leak.
pub fn closed_question(number: i32, question: &QuestionView) -> Option<ClosedQuestion> {
    let reveal = question.reveal?;
    let stats = &question.stats;
    let per_choice = question.answers_per_choice();
    Some(ClosedQuestion {
        number,
        text: question.text.clone(),
        choices: question.choices.clone(),
        correct_choice: reveal.correct_choice,
        reason: reveal.reason.name().to_owned(),
        closed_at: reveal.closed_at,
        stats: QuestionStats {
            answers: stats.answers,
            correct: stats.correct,
            mean_elapsed_ms: stats.mean_elapsed_ms(),
            per_choice,
        },
    })
}

impl QuizState {
    /// The state of `view` at `now`. `player_count` comes from the read model, which counts
    /// joins without holding every card.
    pub fn of(view: &QuizView, player_count: u64, connected_count: u64, now: Millis) -> Self {
        let current = view
            .current
            .and_then(|(number, _)| open_question(number, view.questions.get(&number)?, now));
        let status = if view.finished_at.is_some() {
            QuizStatus::Finished
        } else if current.is_some() {
            QuizStatus::QuestionOpen
        } else if view.questions.values().any(|q| q.started_at.is_some()) {
            QuizStatus::BetweenQuestions
        } else {
            QuizStatus::Lobby
        };
        Self {
            quiz_id: view.quiz_id.clone(),
            version: view.version,
            source: Source::Live,
            status,
            title: view.title.clone(),
            created_at: view.created_at,
            question_count: view.question_count,
            player_count,
            connected_count,
            joining_locked_at: view.locked_at,
            finished_at: view.finished_at,
            current,
            closed: view
                .questions
                .iter()
                .filter_map(|(&n, q)| closed_question(n, q))
                .collect(),
        }
    }
}

/// The flow events of `view` numbered above `after`, in flow order, each with its number.
pub fn flow_since(view: &QuizView, after: u64, now: Millis) -> Vec<(u64, FlowEvent)> {
    let mut events = Vec::new();
    for (&number, question) in &view.questions {
        if let Some(flow) = question.started_flow.filter(|&f| f > after)
            && let Some(open) = open_question(number, question, now)
        {
            events.push((flow, FlowEvent::QuestionStarted(open)));
        }
        if let Some(flow) = question.closed_flow.filter(|&f| f > after)
            && let Some(closed) = closed_question(number, question)
        {
            events.push((flow, FlowEvent::QuestionClosed(closed)));
        }
    }
    for (&flow, player_id) in view.kicks.range(after + 1..) {
        let kicked_at = view
            .players
            .get(player_id)
            .and_then(|p| p.kicked_at)
            .unwrap_or_default();
        events.push((
            flow,
            FlowEvent::PlayerKicked {
                player_id: player_id.clone(),
                kicked_at,
            },
        ));
    }
    if let (Some(flow), Some(finished_at)) = (view.finished_flow, view.finished_at)
        && flow > after
    {
        events.push((flow, FlowEvent::QuizFinished { finished_at }));
    }
    events.sort_by_key(|(flow, _)| *flow);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use podium_schemas::domain::ReadModels;
    use podium_testkit::QuizLog;

    #[test]
    fn the_open_question_never_shows_its_answer_and_the_flow_is_in_order() -> anyhow::Result<()> {
        let log = QuizLog::play("q1", 5, 3, 1.0, 7)?;
        let events: Vec<_> = log.events().collect();
        // Stop right after the second question started: the first is closed, the second open.
        let cut = events
            .iter()
            .position(|e| {
                matches!(e, podium_schemas::events::Event::QuestionStarted(s) if s.question == 2)
            })
            .unwrap_or(0);
        let models = ReadModels::fold(events[..=cut].iter().copied());
        let view = &models.quizzes["q1"];
        let state = QuizState::of(view, 5, 0, 0);
        assert_eq!(state.status, QuizStatus::QuestionOpen);
        let open = serde_json::to_value(&state.current).unwrap_or_default();
        assert_eq!(open["number"], 2);
        assert!(open.get("correct_choice").is_none());
        assert_eq!(state.closed.len(), 1);

        let flow = flow_since(view, 0, 0);
        let kinds: Vec<_> = flow
            .iter()
            .map(|(n, e)| match e {
                FlowEvent::QuestionStarted(q) => format!("{n}:start {}", q.number),
                FlowEvent::QuestionClosed(q) => format!("{n}:close {}", q.number),
                FlowEvent::QuizFinished { .. } => format!("{n}:finish"),
                FlowEvent::PlayerKicked { player_id, .. } => format!("{n}:kick {player_id}"),
            })
            .collect();
        assert_eq!(kinds, ["1:start 1", "2:close 1", "3:start 2"]);
        assert!(flow_since(view, 3, 0).is_empty());
        Ok(())
    }
}
