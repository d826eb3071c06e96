//! The ScyllaDB adapter.
//!
//! Facts (answers, names, title, finish time) are upserts written `USING TIMESTAMP`
//! [`first_wins_timestamp`]`(offset)`: re-applying a batch, or the whole log, rewrites identical
//! cells, and a repeat from a higher offset loses to the first. Their order inside a batch does
//! not matter, so they run concurrently. No LWT: a timestamp gives first-wins without Paxos.
//!
//! Results and history are derived: after the facts of a batch are written, every finished quiz
//! the batch touched is read back, folded with the reference [`Standings`] and written
//! `USING TIMESTAMP` [`snapshot_version`], so an older concurrent recompute cannot win.
//!
//! [`Standings`]: podium_schemas::domain::Standings

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use podium_schemas::events::{AnswerSubmitted, Event};
use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::Consistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::model::{first_wins_timestamp, history_order, snapshot_version};
use crate::{
    ClaimMarker, DurableStore, Error, FinalResults, FinalStanding, Keyspace, QuizHistoryEntry,
    Result, Sourced,
};

/// Concurrent requests per batch: enough to hide round trips, few enough not to flood a shard.
const CONCURRENCY: usize = 32;
/// Result rows per batch; all in one partition, so the batch is applied atomically, and small
/// enough to stay under ScyllaDB's batch size warning.
const RESULT_ROWS_PER_BATCH: usize = 100;

#[derive(Debug, Clone)]
pub struct ScyllaDurableStore {
    session: Arc<Session>,
    keyspace: Keyspace,
    statements: Arc<Statements>,
}

#[derive(Debug)]
struct Statements {
    insert_answer: PreparedStatement,
    set_title: PreparedStatement,
    set_finished: PreparedStatement,
    insert_player: PreparedStatement,
    set_kicked: PreparedStatement,
    insert_standing: PreparedStatement,
    insert_results_header: PreparedStatement,
    insert_history: PreparedStatement,
    select_player_answers: PreparedStatement,
    select_quiz: PreparedStatement,
    select_quiz_players: PreparedStatement,
    select_quiz_answers: PreparedStatement,
    select_results: PreparedStatement,
    select_history: PreparedStatement,
    insert_claim: PreparedStatement,
    select_claims: PreparedStatement,
}

const ANSWER_COLUMNS: &str = "player_id, question, choice, received_at, elapsed_ms, correct, points, \
                              streak, streak_bonus, rule_version, idempotency_key";

impl Statements {
    async fn prepare(session: &Session, ks: &Keyspace, consistency: Consistency) -> Result<Self> {
        let prepare = |cql: String| async move {
            let mut statement = session.prepare(cql).await?;
            statement.set_consistency(consistency);
            // Every write is an upsert with a fixed timestamp, so retrying one is harmless; this
            // lets the driver retry and speculatively execute them.
            statement.set_is_idempotent(true);
            Ok::<_, Error>(statement)
        };
        Ok(Self {
            insert_answer: prepare(format!(
                "INSERT INTO {ks}.answers (quiz_id, {ANSWER_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            set_title: prepare(format!(
                "UPDATE {ks}.quizzes USING TIMESTAMP ? SET title = ? WHERE quiz_id = ?"
            ))
            .await?,
            set_finished: prepare(format!(
                "UPDATE {ks}.quizzes USING TIMESTAMP ? SET finished_at = ? WHERE quiz_id = ?"
            ))
            .await?,
            insert_player: prepare(format!(
                "INSERT INTO {ks}.players (quiz_id, player_id, name) VALUES (?, ?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            set_kicked: prepare(format!(
                "UPDATE {ks}.players USING TIMESTAMP ? SET kicked_at = ? \
                 WHERE quiz_id = ? AND player_id = ?"
            ))
            .await?,
            insert_standing: prepare(format!(
                "INSERT INTO {ks}.final_results \
                 (quiz_id, rank, player_id, name, points, elapsed_ms, answers) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            insert_results_header: prepare(format!(
                "INSERT INTO {ks}.final_results (quiz_id, finished_at) VALUES (?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            insert_history: prepare(format!(
                "INSERT INTO {ks}.player_history \
                 (player_id, quiz_id, title, rank, points, finished_at) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            select_player_answers: prepare(format!(
                "SELECT {ANSWER_COLUMNS} FROM {ks}.answers WHERE quiz_id = ? AND player_id = ?"
            ))
            .await?,
            select_quiz: prepare(format!(
                "SELECT title, finished_at FROM {ks}.quizzes WHERE quiz_id = ?"
            ))
            .await?,
            select_quiz_players: prepare(format!(
                "SELECT player_id, name, kicked_at FROM {ks}.players WHERE quiz_id = ?"
            ))
            .await?,
            select_quiz_answers: prepare(format!(
                "SELECT {ANSWER_COLUMNS} FROM {ks}.answers WHERE quiz_id = ?"
            ))
            .await?,
            select_results: prepare(format!(
                "SELECT finished_at, rank, player_id, name, points, elapsed_ms, answers \
                 FROM {ks}.final_results WHERE quiz_id = ?"
            ))
            .await?,
            select_history: prepare(format!(
                "SELECT quiz_id, title, rank, points, finished_at \
                 FROM {ks}.player_history WHERE player_id = ?"
            ))
            .await?,
            insert_claim: prepare(format!(
                "INSERT INTO {ks}.claim_markers (topic, log_partition, log_offset, shard, epoch) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            select_claims: prepare(format!(
                "SELECT log_offset, shard, epoch FROM {ks}.claim_markers \
                 WHERE topic = ? AND log_partition = ?"
            ))
            .await?,
        })
    }
}

#[derive(Debug, DeserializeRow)]
struct AnswerRow {
    player_id: String,
    question: i32,
    choice: i32,
    received_at: i64,
    elapsed_ms: i32,
    correct: bool,
    points: i32,
    streak: i32,
    streak_bonus: i32,
    rule_version: i32,
    idempotency_key: Option<String>,
}

impl AnswerRow {
    fn into_answer(self, quiz_id: &str) -> AnswerSubmitted {
        AnswerSubmitted {
            quiz_id: quiz_id.to_owned(),
            player_id: self.player_id,
            question: self.question,
            choice: self.choice,
            received_at: self.received_at,
            elapsed_ms: self.elapsed_ms,
            correct: self.correct,
            points: self.points,
            streak: self.streak,
            streak_bonus: self.streak_bonus,
            rule_version: self.rule_version,
            idempotency_key: self.idempotency_key,
        }
    }
}

#[derive(Debug, DeserializeRow)]
struct ResultRow {
    finished_at: Option<i64>,
    // Null in the row that only carries the static header of a quiz nobody scored in.
    rank: Option<i32>,
    player_id: Option<String>,
    name: Option<String>,
    points: Option<i64>,
    elapsed_ms: Option<i64>,
    answers: Option<i32>,
}

#[derive(Debug, DeserializeRow)]
struct ClaimRow {
    log_offset: i64,
    shard: i32,
    epoch: i64,
}

#[derive(Debug, DeserializeRow)]
struct HistoryRow {
    quiz_id: String,
    title: Option<String>,
    rank: i32,
    points: i64,
    finished_at: i64,
}

fn to_cql_int(value: u32, what: &str) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::Corrupt(format!("{what} {value} exceeds a CQL int")))
}

fn from_cql_int(value: i32, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Corrupt(format!("negative {what} {value}")))
}

impl ScyllaDurableStore {
    /// Prepares every statement against tables in `keyspace`, which must be migrated already
    /// ([`crate::migrate`]). Every statement runs at `consistency`.
    pub async fn new(
        session: Arc<Session>,
        keyspace: Keyspace,
        consistency: Consistency,
    ) -> Result<Self> {
        let statements = Statements::prepare(&session, &keyspace, consistency).await?;
        Ok(Self {
            session,
            keyspace,
            statements: Arc::new(statements),
        })
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    async fn write_fact(&self, sourced: &Sourced) -> Result<()> {
        let s = &self.statements;
        let ts = first_wins_timestamp(sourced.offset);
        let _ = match &sourced.event {
            Event::AnswerSubmitted(a) => {
                let values = (
                    &a.quiz_id,
                    &a.player_id,
                    a.question,
                    a.choice,
                    a.received_at,
                    a.elapsed_ms,
                    a.correct,
                    a.points,
                    a.streak,
                    a.streak_bonus,
                    a.rule_version,
                    &a.idempotency_key,
                    ts,
                );
                self.session
                    .execute_unpaged(&s.insert_answer, values)
                    .await?
            }
            Event::QuizCreated(e) => {
                let values = (ts, &e.title, &e.quiz_id);
                self.session.execute_unpaged(&s.set_title, values).await?
            }
            Event::QuizFinished(e) => {
                let values = (ts, e.finished_at, &e.quiz_id);
                self.session
                    .execute_unpaged(&s.set_finished, values)
                    .await?
            }
            Event::PlayerJoined(e) => {
                let values = (&e.quiz_id, &e.player_id, &e.name, ts);
                self.session
                    .execute_unpaged(&s.insert_player, values)
                    .await?
            }
            Event::PlayerKicked(e) => {
                let values = (ts, e.kicked_at, &e.quiz_id, &e.player_id);
                self.session.execute_unpaged(&s.set_kicked, values).await?
            }
            Event::JoiningLocked(_) | Event::QuestionStarted(_) | Event::QuestionClosed(_) => {
                return Ok(());
            }
        };
        Ok(())
    }

    /// Rewrites the results and history of `quiz_id` from its facts, if it has finished.
    async fn recompute(&self, quiz_id: &str) -> Result<()> {
        let s = &self.statements;
        let quiz = self
            .session
            .execute_unpaged(&s.select_quiz, (quiz_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<String>, Option<i64>)>()?;
        let Some((title, Some(finished_at))) = quiz else {
            return Ok(());
        };
        let players: Vec<(String, Option<String>, Option<i64>)> = self
            .session
            .execute_iter(s.select_quiz_players.clone(), (quiz_id,))
            .await?
            .rows_stream::<(String, Option<String>, Option<i64>)>()?
            .try_collect()
            .await?;
        let kicked: HashSet<String> = players
            .iter()
            .filter(|(_, _, kicked_at)| kicked_at.is_some())
            .map(|(player_id, _, _)| player_id.clone())
            .collect();
        let names: HashMap<String, String> = players
            .into_iter()
            .map(|(player_id, name, _)| (player_id, name.unwrap_or_default()))
            .collect();
        let answers: Vec<AnswerSubmitted> = self
            .session
            .execute_iter(s.select_quiz_answers.clone(), (quiz_id,))
            .await?
            .rows_stream::<AnswerRow>()?
            .map_ok(|row| row.into_answer(quiz_id))
            .try_collect()
            .await?;

        let version = snapshot_version(answers.len(), names.len(), title.is_some());
        let results = FinalResults::fold(quiz_id, finished_at, &names, &kicked, &answers);
        tracing::debug!(
            quiz_id,
            version,
            players = results.standings.len(),
            "recomputing final results"
        );

        for chunk in results.standings.chunks(RESULT_ROWS_PER_BATCH) {
            let mut batch = Batch::new(BatchType::Unlogged);
            batch.set_is_idempotent(true);
            if let Some(consistency) = s.insert_standing.get_consistency() {
                batch.set_consistency(consistency);
            }
            let mut values = Vec::with_capacity(chunk.len());
            for row in chunk {
                batch.append_statement(s.insert_standing.clone());
                values.push((
                    quiz_id,
                    to_cql_int(row.rank, "rank")?,
                    row.player_id.as_str(),
                    row.name.as_str(),
                    row.points,
                    row.elapsed_ms,
                    to_cql_int(row.answers, "answer count")?,
                    version,
                ));
            }
            let _ = self.session.batch(&batch, values).await?;
        }
        // The header goes last: `results` reports nothing until it is there.
        let _ = self
            .session
            .execute_unpaged(&s.insert_results_header, (quiz_id, finished_at, version))
            .await?;

        let title = title.unwrap_or_default();
        stream::iter(results.history(&title).map(Ok))
            .try_for_each_concurrent(CONCURRENCY, |(player_id, entry)| async move {
                let values = (
                    player_id,
                    &entry.quiz_id,
                    &entry.title,
                    to_cql_int(entry.rank, "rank")?,
                    entry.points,
                    entry.finished_at,
                    version,
                );
                let _ = self
                    .session
                    .execute_unpaged(&s.insert_history, values)
                    .await?;
                Ok::<_, Error>(())
            })
            .await
    }
}

#[async_trait]
impl DurableStore for ScyllaDurableStore {
    #[tracing::instrument(skip_all, fields(events = batch.len()))]
    async fn record(&self, batch: &[Sourced]) -> Result<()> {
        stream::iter(batch.iter().map(Ok))
            .try_for_each_concurrent(CONCURRENCY, |sourced| self.write_fact(sourced))
            .await?;
        // Only after every fact is durable: a recompute must see them all.
        let touched: BTreeSet<&str> = batch.iter().filter_map(Sourced::fact_of_quiz).collect();
        let recomputes: Vec<_> = touched.into_iter().map(|q| self.recompute(q)).collect();
        stream::iter(recomputes)
            .buffer_unordered(4)
            .try_collect::<()>()
            .await
    }

    async fn answers(&self, quiz_id: &str, player_id: &str) -> Result<Vec<AnswerSubmitted>> {
        self.session
            .execute_iter(
                self.statements.select_player_answers.clone(),
                (quiz_id, player_id),
            )
            .await?
            .rows_stream::<AnswerRow>()?
            .map_ok(|row| row.into_answer(quiz_id))
            .try_collect()
            .await
            .map_err(Error::from)
    }

    async fn results(&self, quiz_id: &str) -> Result<Option<FinalResults>> {
        let rows: Vec<ResultRow> = self
            .session
            .execute_iter(self.statements.select_results.clone(), (quiz_id,))
            .await?
            .rows_stream::<ResultRow>()?
            .try_collect()
            .await?;
        let Some(finished_at) = rows.first().and_then(|r| r.finished_at) else {
            return Ok(None);
        };
        let mut standings = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(rank) = row.rank else { continue };
            standings.push(FinalStanding {
                rank: from_cql_int(rank, "rank")?,
                player_id: row.player_id.unwrap_or_default(),
                name: row.name.unwrap_or_default(),
                points: row.points.unwrap_or_default(),
                elapsed_ms: row.elapsed_ms.unwrap_or_default(),
                answers: from_cql_int(row.answers.unwrap_or_default(), "answer count")?,
            });
        }
        Ok(Some(FinalResults {
            quiz_id: quiz_id.to_owned(),
            finished_at,
            standings,
        }))
    }

    async fn history(&self, player_id: &str) -> Result<Vec<QuizHistoryEntry>> {
        let rows: Vec<HistoryRow> = self
            .session
            .execute_iter(self.statements.select_history.clone(), (player_id,))
            .await?
            .rows_stream::<HistoryRow>()?
            .try_collect()
            .await?;
        let mut entries = rows
            .into_iter()
            .map(|row| {
                Ok(QuizHistoryEntry {
                    quiz_id: row.quiz_id,
                    title: row.title.unwrap_or_default(),
                    rank: from_cql_int(row.rank, "rank")?,
                    points: row.points,
                    finished_at: row.finished_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        entries.sort_by(history_order);
        Ok(entries)
    }

    async fn record_claims(
        &self,
        topic: &str,
        partition: i32,
        markers: &[ClaimMarker],
    ) -> Result<()> {
        for marker in markers {
            let epoch = i64::try_from(marker.epoch)
                .map_err(|_| Error::Corrupt(format!("epoch {} out of range", marker.epoch)))?;
            let _ = self
                .session
                .execute_unpaged(
                    &self.statements.insert_claim,
                    (topic, partition, marker.offset, marker.shard, epoch),
                )
                .await?;
        }
        Ok(())
    }

    async fn claims(&self, topic: &str, partition: i32) -> Result<Vec<ClaimMarker>> {
        let rows: Vec<ClaimRow> = self
            .session
            .execute_iter(self.statements.select_claims.clone(), (topic, partition))
            .await?
            .rows_stream::<ClaimRow>()?
            .try_collect()
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ClaimMarker {
                    offset: row.log_offset,
                    shard: row.shard,
                    epoch: u64::try_from(row.epoch)
                        .map_err(|_| Error::Corrupt(format!("negative epoch {}", row.epoch)))?,
                })
            })
            .collect()
    }
}
