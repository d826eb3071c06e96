//! The reads behind the HTTP routes: the live Redis read model first, and for a finished quiz
//! Redis no longer holds (evicted, lost, or never rebuilt), the durable results.

use std::sync::Arc;

use podium_durable::{DurableStore, FinalResults, FinalStanding};
use podium_schemas::events::Millis;
use podium_schemas::read_model::leaderboard_score;

use crate::error::{Error, Result};
use crate::read_model::{Cursor, Page, PageOf, ReadModel};
use crate::views::{
    Leaderboard, LeaderboardEntry, LiveCounts, Lobby, PlayerStanding, QuestionResults, QuizState,
    QuizStatus, Source, closed_question,
};

#[derive(Debug, Clone)]
pub struct Reads {
    pub live: ReadModel,
    pub durable: Option<Arc<dyn DurableStore>>,
}

/// The most players a lobby read lists.
pub const MAX_LOBBY: usize = 500;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn durable_entry(standing: &FinalStanding) -> LeaderboardEntry {
    LeaderboardEntry {
        rank: u64::from(standing.rank),
        player_id: standing.player_id.clone(),
        name: (!standing.name.is_empty()).then(|| standing.name.clone()),
        points: standing.points,
        elapsed_ms: standing.elapsed_ms,
    }
}

fn position_after(standings: &[FinalStanding], cursor: &Cursor) -> usize {
    standings.partition_point(|s| {
        (
            leaderboard_score(s.points, s.elapsed_ms),
            s.player_id.as_str(),
        ) <= (cursor.score, cursor.player_id.as_str())
    })
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Reads {
    /// The durable results standing in for a quiz Redis does not know; `missing` otherwise.
    async fn durable_results(&self, quiz_id: &str, missing: Error) -> Result<FinalResults> {
        let (Error::QuizNotFound, Some(durable)) = (&missing, &self.durable) else {
            return Err(missing);
        };
        durable
            .results(quiz_id)
            .await
            .map_err(|e| Error::Durable(e.to_string()))?
            .ok_or(missing)
    }

    pub(crate) fn leaderboard_of(quiz_id: &str, page: Page, limit: Option<usize>) -> Leaderboard {
        let next_cursor = match (limit, page.entries.last()) {
            (Some(limit), Some(last))
                if page.entries.len() == limit && last.rank < page.ranked_players =>
            {
                Some(Cursor::of(last).encode())
            }
            _ => None,
        };
        Leaderboard {
            quiz_id: quiz_id.to_owned(),
            version: page.version,
            source: Source::Live,
            ranked_players: page.ranked_players,
            entries: page.entries,
            next_cursor,
        }
    }

    /// `limit` players from the top, or after `cursor`.
    pub async fn leaderboard(
        &self,
        quiz_id: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Leaderboard> {
        let of = match &cursor {
            None => PageOf::Top { limit },
            Some(cursor) => PageOf::After {
                cursor: cursor.clone(),
                limit,
            },
        };
        match self.live.page(quiz_id, &of).await {
            Ok(page) => Ok(Self::leaderboard_of(quiz_id, page, Some(limit))),
            Err(missing) => {
                let results = self.durable_results(quiz_id, missing).await?;
                let start = cursor.map_or(0, |c| position_after(&results.standings, &c));
                let entries: Vec<_> = results
                    .standings
                    .iter()
                    .skip(start)
                    .take(limit)
                    .map(durable_entry)
                    .collect();
                let page = Page {
                    version: 0,
                    entries,
                    ranked_players: count(results.standings.len()),
                    found: true,
                };
                Ok(Leaderboard {
                    source: Source::Durable,
                    ..Self::leaderboard_of(quiz_id, page, Some(limit))
                })
            }
        }
    }

    /// The player and `radius` players on each side.
    pub async fn around(
        &self,
        quiz_id: &str,
        player_id: &str,
        radius: usize,
    ) -> Result<Leaderboard> {
        let of = PageOf::Around {
            player_id: player_id.to_owned(),
            radius,
        };
        let page = match self.live.page(quiz_id, &of).await {
            Ok(page) => page,
            Err(missing) => {
                let results = self.durable_results(quiz_id, missing).await?;
                let standings = &results.standings;
                let Some(at) = standings.iter().position(|s| s.player_id == player_id) else {
                    return Err(Error::PlayerNotFound);
                };
                let start = at.saturating_sub(radius);
                let entries = standings[start..standings.len().min(at + radius + 1)]
                    .iter()
                    .map(durable_entry)
                    .collect();
                let page = Page {
                    version: 0,
                    entries,
                    ranked_players: count(standings.len()),
                    found: true,
                };
                return Ok(Leaderboard {
                    source: Source::Durable,
                    ..Self::leaderboard_of(quiz_id, page, None)
                });
            }
        };
        if !page.found {
            return Err(Error::PlayerNotFound);
        }
        Ok(Self::leaderboard_of(quiz_id, page, None))
    }

    pub async fn player(&self, quiz_id: &str, player_id: &str) -> Result<PlayerStanding> {
        match self.live.player(quiz_id, player_id).await {
            Err(missing @ Error::QuizNotFound) => {
                let results = self.durable_results(quiz_id, missing).await?;
                let ranked = count(results.standings.len());
                let standing = results
                    .standings
                    .iter()
                    .find(|s| s.player_id == player_id)
                    .ok_or(Error::PlayerNotFound)?;
                let rank = u64::from(standing.rank);
                Ok(PlayerStanding {
                    quiz_id: quiz_id.to_owned(),
                    player_id: player_id.to_owned(),
                    version: 0,
                    source: Source::Durable,
                    name: (!standing.name.is_empty()).then(|| standing.name.clone()),
                    rank: Some(rank),
                    ranked_players: ranked,
                    percentile: PlayerStanding::percentile(rank, ranked),
                    points: standing.points,
                    elapsed_ms: standing.elapsed_ms,
                    answers: u64::from(standing.answers),
                    // The durable results keep totals, not the order of answers.
                    streak: 0,
                    // Kicked players are not in the durable results.
                    kicked_at: None,
                })
            }
            other => other,
        }
    }

    pub async fn quiz(&self, quiz_id: &str) -> Result<QuizState> {
        match self.live.snapshot(quiz_id, 0).await {
            Ok(snapshot) => Ok(QuizState::of(
                &snapshot.view,
                snapshot.player_count,
                snapshot.connected,
                now_millis(),
            )),
            Err(missing) => {
                let results = self.durable_results(quiz_id, missing).await?;
                Ok(QuizState {
                    quiz_id: quiz_id.to_owned(),
                    version: 0,
                    source: Source::Durable,
                    status: QuizStatus::Finished,
                    title: None,
                    created_at: None,
                    question_count: 0,
                    player_count: count(results.standings.len()),
                    connected_count: 0,
                    joining_locked_at: None,
                    finished_at: Some(results.finished_at),
                    current: None,
                    closed: Vec::new(),
                })
            }
        }
    }

    /// Who is in the quiz, and who of them is connected.
    pub async fn lobby(&self, quiz_id: &str) -> Result<Lobby> {
        self.live.lobby(quiz_id, MAX_LOBBY).await
    }

    /// The answer counts of a question, open or closed: for its host only.
    pub async fn live_counts(&self, quiz_id: &str, number: i32) -> Result<LiveCounts> {
        let (version, question) = self.live.question(quiz_id, number).await?;
        let question = question.ok_or(Error::QuestionNotFound(number))?;
        Ok(LiveCounts {
            quiz_id: quiz_id.to_owned(),
            version,
            question: number,
            answers: question.stats.answers,
            per_choice: question.answers_per_choice(),
        })
    }

    /// A closed question's reveal and statistics; `QuestionNotClosed` before.
    pub async fn question(&self, quiz_id: &str, number: i32) -> Result<QuestionResults> {
        let (version, question) = self.live.question(quiz_id, number).await?;
        let question = question.ok_or(Error::QuestionNotFound(number))?;
        let closed = closed_question(number, &question).ok_or(Error::QuestionNotClosed(number))?;
        Ok(QuestionResults {
            quiz_id: quiz_id.to_owned(),
            version,
            question: closed,
        })
    }
}
