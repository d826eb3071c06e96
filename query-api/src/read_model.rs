//! Reads of the Redis read models written by the projectors. Each read first resolves the
//! active generation, then reads inside it only, so a rebuild's switch is never seen half-done.

use std::collections::{BTreeMap, HashMap};

use podium_schemas::domain::{PlayerCard, QuestionStats, QuestionView, QuizView, Reveal};
use podium_schemas::events::CloseReason;
use podium_schemas::read_model::{Keys, Root, unpack_score};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    pub rank: u64,
    pub player_id: String,
    pub points: i64,
    pub elapsed_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaderboard {
    pub quiz_id: String,
    /// The read model's version: it increases with every applied change.
    pub version: u64,
    pub entries: Vec<LeaderboardEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerStanding {
    pub quiz_id: String,
    pub player_id: String,
    pub version: u64,
    pub rank: u64,
    pub points: i64,
    pub elapsed_ms: i64,
    pub answers: u64,
}

#[derive(Clone)]
pub struct ReadModel {
    connection: ConnectionManager,
    root: Root,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ReadModel {
    pub async fn connect(url: &str, root: Root) -> Result<Self> {
        let connection = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(Self { connection, root })
    }

    /// The keys of the active generation; a Redis without one has no quiz.
    async fn keys(&self) -> Result<Keys> {
        let active: Option<String> = redis::cmd("GET")
            .arg(self.root.active())
            .query_async(&mut self.connection.clone())
            .await?;
        active
            .map(|generation| self.root.generation(&generation))
            .ok_or(Error::QuizNotFound)
    }

    /// The top `limit` players. Read in one MULTI, so the version matches the entries.
    pub async fn top(&self, quiz_id: &str, limit: usize) -> Result<Leaderboard> {
        let keys = self.keys().await?;
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let (version, rows): (Option<u64>, Vec<(String, f64)>) = redis::pipe()
            .atomic()
            .get(keys.version(quiz_id))
            .zrange_withscores(keys.leaderboard(quiz_id), 0, stop)
            .query_async(&mut self.connection.clone())
            .await?;
        let version = version.ok_or(Error::QuizNotFound)?;
        let entries = rows
            .into_iter()
            .zip(1u64..)
            .map(|((player_id, score), rank)| {
                let (points, elapsed_ms) = unpack_score(score);
                LeaderboardEntry {
                    rank,
                    player_id,
                    points,
                    elapsed_ms,
                }
            })
            .collect();
        Ok(Leaderboard {
            quiz_id: quiz_id.to_owned(),
            version,
            entries,
        })
    }

    pub async fn player(&self, quiz_id: &str, player_id: &str) -> Result<PlayerStanding> {
        let keys = self.keys().await?;
        let board = keys.leaderboard(quiz_id);
        let (version, rank, score, answers): (Option<u64>, Option<u64>, Option<f64>, Option<u64>) =
            redis::pipe()
                .atomic()
                .get(keys.version(quiz_id))
                .zrank(&board, player_id)
                .zscore(&board, player_id)
                .hget(keys.player(quiz_id, player_id), "answers")
                .query_async(&mut self.connection.clone())
                .await?;
        let version = version.ok_or(Error::QuizNotFound)?;
        let (Some(rank), Some(score)) = (rank, score) else {
            return Err(Error::PlayerNotFound);
        };
        let (points, elapsed_ms) = unpack_score(score);
        Ok(PlayerStanding {
            quiz_id: quiz_id.to_owned(),
            player_id: player_id.to_owned(),
            version,
            rank: rank + 1,
            points,
            elapsed_ms,
            answers: answers.unwrap_or(0),
        })
    }
}

type Fields = HashMap<String, String>;

fn field<T: std::str::FromStr>(fields: &Fields, name: &str) -> Option<T> {
    fields.get(name).and_then(|v| v.parse().ok())
}

fn close_reason(name: &str) -> Option<CloseReason> {
    match name {
        "DEADLINE" => Some(CloseReason::Deadline),
        "HOST" => Some(CloseReason::Host),
        "NEXT_QUESTION" => Some(CloseReason::NextQuestion),
        "QUIZ_FINISHED" => Some(CloseReason::QuizFinished),
        _ => None,
    }
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
    }
}

fn question_view(fields: &Fields) -> QuestionView {
    let reveal = match (
        field(fields, "closed_at"),
        field(fields, "correct_choice"),
        fields.get("reason").and_then(|r| close_reason(r)),
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
        view.title = state.get("title").cloned();
        view.created_at = field(&state, "created_at");
        view.question_count = field(&state, "questions").unwrap_or(0);
        view.current = field(&state, "current").zip(field(&state, "deadline"));
        view.locked_at = field(&state, "locked_at");
        view.finished_at = field(&state, "finished_at");
        view.flow = field(&state, "flow").unwrap_or(0);
        view.finished_flow = field(&state, "finished_flow");
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
