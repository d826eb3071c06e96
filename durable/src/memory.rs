//! The in-memory adapter: the reference the ScyllaDB adapter is tested against, and the store
//! tests use when they need no database.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use podium_schemas::events::{AnswerSubmitted, Event, Millis};

use crate::model::history_order;
use crate::{ClaimMarker, DurableStore, FinalResults, QuizHistoryEntry, Result, Sourced};

#[derive(Debug, Default)]
pub struct MemoryDurableStore {
    quizzes: Mutex<HashMap<String, QuizFacts>>,
    claims: Mutex<HashMap<(String, i32), BTreeSet<ClaimMarker>>>,
}

/// What the log said about one quiz: each fact keeps the value from its lowest offset, as the
/// ScyllaDB adapter's write timestamps do.
#[derive(Debug, Default)]
struct QuizFacts {
    title: Option<Positioned<String>>,
    finished_at: Option<Positioned<Millis>>,
    names: BTreeMap<String, Positioned<String>>,
    kicked: BTreeSet<String>,
    answers: BTreeMap<(String, i32), Positioned<AnswerSubmitted>>,
}

#[derive(Debug)]
struct Positioned<T> {
    offset: i64,
    value: T,
}

fn keep_first<T>(slot: &mut Option<Positioned<T>>, offset: i64, value: T) {
    if slot.as_ref().is_none_or(|held| offset < held.offset) {
        *slot = Some(Positioned { offset, value });
    }
}

fn keep_first_in<K: Ord, T>(map: &mut BTreeMap<K, Positioned<T>>, key: K, offset: i64, value: T) {
    match map.entry(key) {
        Entry::Vacant(slot) => {
            let _ = slot.insert(Positioned { offset, value });
        }
        Entry::Occupied(mut slot) => {
            if offset < slot.get().offset {
                let _ = slot.insert(Positioned { offset, value });
            }
        }
    }
}

impl QuizFacts {
    fn record(&mut self, offset: i64, event: &Event) {
        match event {
            Event::QuizCreated(e) => keep_first(&mut self.title, offset, e.title.clone()),
            Event::QuizFinished(e) => keep_first(&mut self.finished_at, offset, e.finished_at),
            Event::PlayerJoined(e) => {
                let key = e.player_id.clone();
                keep_first_in(&mut self.names, key, offset, e.name.clone());
            }
            Event::PlayerKicked(e) => {
                let _ = self.kicked.insert(e.player_id.clone());
            }
            Event::AnswerSubmitted(e) => {
                let key = (e.player_id.clone(), e.question);
                keep_first_in(&mut self.answers, key, offset, e.clone());
            }
            Event::JoiningLocked(_) | Event::QuestionStarted(_) | Event::QuestionClosed(_) => {}
        }
    }

    fn results(&self, quiz_id: &str) -> Option<FinalResults> {
        let finished_at = self.finished_at.as_ref()?.value;
        let names: HashMap<String, String> = self
            .names
            .iter()
            .map(|(id, name)| (id.clone(), name.value.clone()))
            .collect();
        let kicked: HashSet<String> = self.kicked.iter().cloned().collect();
        let answers = self.answers.values().map(|a| &a.value);
        Some(FinalResults::fold(
            quiz_id,
            finished_at,
            &names,
            &kicked,
            answers,
        ))
    }
}

impl MemoryDurableStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn quizzes(&self) -> std::sync::MutexGuard<'_, HashMap<String, QuizFacts>> {
        // The map is consistent after every statement, so a panic elsewhere leaves it usable.
        self.quizzes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl DurableStore for MemoryDurableStore {
    async fn record(&self, batch: &[Sourced]) -> Result<()> {
        let mut quizzes = self.quizzes();
        for sourced in batch {
            if let Some(quiz_id) = sourced.fact_of_quiz() {
                quizzes
                    .entry(quiz_id.to_owned())
                    .or_default()
                    .record(sourced.offset, &sourced.event);
            }
        }
        Ok(())
    }

    async fn answers(&self, quiz_id: &str, player_id: &str) -> Result<Vec<AnswerSubmitted>> {
        let quizzes = self.quizzes();
        let Some(quiz) = quizzes.get(quiz_id) else {
            return Ok(Vec::new());
        };
        let from = (player_id.to_owned(), i32::MIN);
        let to = (player_id.to_owned(), i32::MAX);
        Ok(quiz
            .answers
            .range(from..=to)
            .map(|(_, a)| a.value.clone())
            .collect())
    }

    async fn results(&self, quiz_id: &str) -> Result<Option<FinalResults>> {
        Ok(self.quizzes().get(quiz_id).and_then(|q| q.results(quiz_id)))
    }

    async fn history(&self, player_id: &str) -> Result<Vec<QuizHistoryEntry>> {
        let quizzes = self.quizzes();
        let mut entries: Vec<QuizHistoryEntry> = quizzes
            .iter()
            .filter_map(|(quiz_id, quiz)| {
                let results = quiz.results(quiz_id)?;
                let title = quiz.title.as_ref().map_or("", |t| t.value.as_str());
                results
                    .history(title)
                    .find(|(player, _)| *player == player_id)
                    .map(|(_, entry)| entry)
            })
            .collect();
        entries.sort_by(history_order);
        Ok(entries)
    }

    async fn record_claims(
        &self,
        topic: &str,
        partition: i32,
        markers: &[ClaimMarker],
    ) -> Result<()> {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((topic.to_owned(), partition))
            .or_default()
            .extend(markers.iter().copied());
        Ok(())
    }

    async fn claims(&self, topic: &str, partition: i32) -> Result<Vec<ClaimMarker>> {
        Ok(self
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .map(|markers| markers.iter().copied().collect())
            .unwrap_or_default())
    }
}
