//! Reads of the Redis read model written by the projectors.

use podium_schemas::read_model::{Keys, unpack_score};
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
    keys: Keys,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl ReadModel {
    pub async fn connect(url: &str, keys: Keys) -> Result<Self> {
        let connection = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(Self { connection, keys })
    }

    /// The top `limit` players. Read in one MULTI, so the version matches the entries.
    pub async fn top(&self, quiz_id: &str, limit: usize) -> Result<Leaderboard> {
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let (version, rows): (Option<u64>, Vec<(String, f64)>) = redis::pipe()
            .atomic()
            .get(self.keys.version(quiz_id))
            .zrange_withscores(self.keys.leaderboard(quiz_id), 0, stop)
            .query_async(&mut self.connection.clone())
            .await?;
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
            version: version.unwrap_or(0),
            entries,
        })
    }

    pub async fn player(&self, quiz_id: &str, player_id: &str) -> Result<PlayerStanding> {
        let board = self.keys.leaderboard(quiz_id);
        let (version, rank, score, answers): (Option<u64>, Option<u64>, Option<f64>, Option<u64>) =
            redis::pipe()
                .atomic()
                .get(self.keys.version(quiz_id))
                .zrank(&board, player_id)
                .zscore(&board, player_id)
                .hget(self.keys.player(quiz_id, player_id), "answers")
                .query_async(&mut self.connection.clone())
                .await?;
        let (Some(rank), Some(score)) = (rank, score) else {
            return Err(Error::PlayerNotFound);
        };
        let (points, elapsed_ms) = unpack_score(score);
        Ok(PlayerStanding {
            quiz_id: quiz_id.to_owned(),
            player_id: player_id.to_owned(),
            version: version.unwrap_or(0),
            rank: rank + 1,
            points,
            elapsed_ms,
            answers: answers.unwrap_or(0),
        })
    }
}
