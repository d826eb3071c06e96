//! Live quizzes: the command side's state, rebuilt from the event log at start-up and advanced
//! only by events the log has acknowledged (decide → append → evolve).
//!
//! Locking keeps decisions sound without serialising a whole quiz behind one broker round trip:
//! - a player's answers are decided one at a time (a per-player turn), which is all the
//!   one-answer rule and the streak need;
//! - host commands take the quiz's host turn for their append, so lifecycle events are decided
//!   in order; while they append, an answer the pending events cannot change (another player's
//!   kick, a lock of joining) is decided at once, and one they can (its question's close or
//!   start, the finish, its player's kick) waits for the outcome;
//! - joins reserve their name, so two joins cannot both take it while appends are in flight.
//!
//! Finished quizzes leave memory once a snapshot holds them; their commands are then decided
//! against the saved record, which can only refuse or repeat (a finished quiz decides nothing
//! new).
//!
//! An append that fails may still have reached the log. Its entry is kept *in doubt* and
//! appended again, unchanged, before anything that depends on it is decided: the player's next
//! answer, the next join with that name, the quiz's next host command. So a retried request gets
//! the original result, and the log holds copies of one entry, never two different decisions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use podium_schemas::Codec;
use podium_schemas::domain::{
    AnswerCommand, Command, Decision, JOIN_CODE_ALPHABET, JOIN_CODE_LEN, Quiz, QuizDraft,
    Rejection, create_quiz, decide, normalize_name,
};
use podium_schemas::events::{AnswerSubmitted, Event, Millis, PlayerJoined, QuizCreated};
use rand::Rng;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event_log::{AppendError, Entry, EventLog, Position, Positions};
use crate::shards::Shards;
use crate::snapshots::{AckSender, Acked, Saved, SnapshotStore, Snapshotter};
use podium_schemas::fence::Stamp;

/// A quiz in memory.
#[derive(Debug)]
struct LiveQuiz {
    state: Mutex<Live>,
    /// Host commands are decided and appended one at a time, holding this; joins wait for it
    /// so that no join is decided against a state a pending host command is changing.
    host_turn: Mutex<()>,
    /// One turn per player: their answers are decided and appended one at a time. The turn
    /// holds the player's answer in doubt, if any.
    turns: SyncMutex<HashMap<String, Arc<Mutex<Option<Entry>>>>>,
    /// The last offset acknowledged per partition: a snapshot covering them holds every event
    /// this instance recorded for the quiz.
    acked: SyncMutex<HashMap<(String, i32), i64>>,
    /// In a group, the epoch of the claim this state was restored under (0 for one instance).
    /// Its records are stamped with it, and refused once the shard's epoch here differs: a
    /// request decided against a state of an earlier claim never counts under a later one.
    epoch: u64,
}

#[derive(Debug)]
struct Live {
    quiz: Quiz,
    /// Lower-cased names of joins whose events are being appended or are in doubt.
    pending_names: HashSet<String>,
    /// Joins in doubt, by lower-cased name.
    joins_in_doubt: HashMap<String, Entry>,
    /// The lifecycle entries in doubt, in order, and the command that decided them: host
    /// commands append them again before deciding.
    lifecycle_in_doubt: Option<(Command, Vec<Entry>)>,
    /// The events a host command is appending now, not yet in `quiz`.
    pending: Vec<Event>,
}

/// Whether a pending lifecycle event can change the decision on `answer`: its question's start
/// or close, its player's kick, the finish. Any other leaves it as the recorded state decides.
fn changes_answer(event: &Event, question: i32, player_id: &str) -> bool {
    match event {
        Event::QuestionStarted(e) => e.question == question,
        Event::QuestionClosed(e) => e.question == question,
        Event::PlayerKicked(e) => e.player_id == player_id,
        Event::QuizFinished(_) => true,
        Event::QuizCreated(_)
        | Event::PlayerJoined(_)
        | Event::JoiningLocked(_)
        | Event::AnswerSubmitted(_) => false,
    }
}

impl LiveQuiz {
    fn new(quiz: Quiz) -> Arc<Self> {
        Self::claimed(quiz, 0)
    }

    fn claimed(quiz: Quiz, epoch: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Live {
                quiz,
                pending_names: HashSet::new(),
                joins_in_doubt: HashMap::new(),
                lifecycle_in_doubt: None,
                pending: Vec::new(),
            }),
            host_turn: Mutex::new(()),
            turns: SyncMutex::new(HashMap::new()),
            acked: SyncMutex::default(),
            epoch,
        })
    }

    fn acknowledged(&self, position: &Position) {
        let mut acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        let last = acked
            .entry((position.topic.clone(), position.partition))
            .or_insert(position.offset);
        *last = (*last).max(position.offset);
    }

    /// The quiz's join code if it may leave memory: it is finished, nothing of it is in flight
    /// or in doubt, and `covered` holds every event this instance recorded for it, so the saved
    /// record is all of it.
    fn may_leave(&self, covered: &Positions) -> Option<String> {
        let _host = self.host_turn.try_lock().ok()?;
        let state = self.state.try_lock().ok()?;
        if !state.quiz.finished
            || state.lifecycle_in_doubt.is_some()
            || !state.pending.is_empty()
            || !state.joins_in_doubt.is_empty()
            || !state.pending_names.is_empty()
        {
            return None;
        }
        let turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if !turns
            .values()
            .all(|turn| turn.try_lock().is_ok_and(|in_doubt| in_doubt.is_none()))
        {
            return None;
        }
        let acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        acked
            .iter()
            .all(|(at, &offset)| covered.get(at).is_some_and(|&end| end > offset))
            .then(|| state.quiz.join_code.clone())
    }

    fn turn_of(&self, player_id: &str) -> Result<Arc<Mutex<Option<Entry>>>> {
        let mut turns = self.turns.lock().map_err(poisoned)?;
        Ok(turns.entry(player_id.to_owned()).or_default().clone())
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("a lock was poisoned by an earlier panic".into())
}

/// The state of a quiz as its host sees it after a command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct QuizStatus {
    pub quiz_id: String,
    pub questions: usize,
    pub players: usize,
    pub joining_locked: bool,
    pub finished: bool,
    /// The question started last; null before the first starts.
    pub current_question: Option<CurrentQuestion>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CurrentQuestion {
    /// From 1.
    pub number: i32,
    /// Milliseconds since the Unix epoch, on the server clock.
    #[schema(value_type = i64)]
    pub started_at: Millis,
    /// When it closes by itself, in milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub deadline: Millis,
    pub open: bool,
}

impl QuizStatus {
    fn of(quiz: &Quiz) -> Self {
        Self {
            quiz_id: quiz.quiz_id.clone(),
            questions: quiz.questions.len(),
            players: quiz.active_players(),
            joining_locked: quiz.joining_locked,
            finished: quiz.finished,
            current_question: quiz.current.as_ref().map(|c| CurrentQuestion {
                number: c.number,
                started_at: c.started_at,
                deadline: c.deadline,
                open: c.closed.is_none(),
            }),
        }
    }
}

/// An accepted answer and the player's total after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerReceipt {
    pub answer: AnswerSubmitted,
    pub total: i64,
    /// True when this repeats an earlier request with the same idempotency key.
    pub repeated: bool,
}

/// Every quiz this instance owns.
#[derive(Debug)]
pub struct Quizzes {
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    by_id: RwLock<HashMap<String, Arc<LiveQuiz>>>,
    /// Join code to quiz id; an empty id reserves a code while its quiz is being created.
    by_code: RwLock<HashMap<String, String>>,
    /// The clocks that close open questions at their deadlines.
    clocks: SyncMutex<JoinSet<()>>,
    /// Where finished quizzes are kept once they left memory.
    store: Option<Arc<dyn SnapshotStore>>,
    /// Finished quizzes whose record is saved, until they leave memory.
    leaving: SyncMutex<HashSet<String>>,
    /// Finished quizzes read back from the store lately: they never change again.
    finished: SyncMutex<HashMap<String, Arc<Quiz>>>,
    restored: Restored,
    /// Where the snapshotter hears of every acknowledged append; none without snapshots.
    acks: Option<AckSender>,
    /// The shards this instance owns, when instances share the quizzes (ADR 0011); none for a
    /// single instance, which owns every quiz.
    shards: Option<Arc<Shards>>,
}

/// How many finished quizzes read back from the store are kept at hand (a podium reloaded by
/// every phone of a stadium reads one quiz many times).
const FINISHED_AT_HAND: usize = 64;

/// How a start restored the quizzes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Whether a snapshot was used; if not, why (the whole log was read).
    pub from_snapshot: bool,
    pub why_not: Option<String>,
    /// Quizzes in play that the snapshot held.
    pub snapshot_quizzes: usize,
    /// Records read from the log.
    pub records_read: usize,
    /// Quizzes in memory after the start.
    pub quizzes: usize,
    pub elapsed: Duration,
}

/// A quiz found for a command.
enum Found {
    Live(Arc<LiveQuiz>),
    /// A finished quiz that left memory.
    Finished(Arc<Quiz>),
}

/// A finished quiz decides nothing new: every command is refused, is already in effect, or
/// repeats a recorded answer.
fn decide_finished(quiz: &Quiz, command: &Command) -> Result<Option<AnswerSubmitted>> {
    match decide(quiz, command)? {
        Decision::Repeat(original) => Ok(Some(*original)),
        Decision::Append(events) if events.is_empty() => Ok(None),
        Decision::Append(_) => Err(Error::Internal(format!(
            "the finished quiz {} decided new events",
            quiz.quiz_id
        ))),
    }
}

impl Quizzes {
    /// Rebuilds every quiz from the whole log, then re-arms the clocks of open questions.
    pub async fn restore(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>) -> Result<Arc<Self>> {
        Ok(Self::restore_with(log, clock, None, Duration::ZERO)
            .await?
            .0)
    }

    /// Rebuilds the quizzes in play from the last snapshot and the log after it, or from the
    /// whole log when there is no usable snapshot (and says why), then re-arms the clocks of
    /// open questions. The snapshotter goes on from where the start read to; `gap_wait` is how
    /// long it lets a gap in the acknowledged appends stand before it reads the log.
    pub async fn restore_with(
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        store: Option<Arc<dyn SnapshotStore>>,
        gap_wait: Duration,
    ) -> Result<(Arc<Self>, Snapshotter)> {
        let started = Instant::now();
        if let Some(store) = &store
            && let Err(e) = store.forget_shards().await
        {
            tracing::warn!(error = %e, "forgetting a group's shard snapshots failed");
        }
        let (checkpoint, read, mut restored) = match Self::from_snapshot(&log, store.as_ref()).await
        {
            Ok(found) => found,
            Err(why_not) => {
                let read = log.read_from(&Positions::new()).await?;
                let restored = Restored {
                    why_not: Some(why_not),
                    records_read: read.records.len(),
                    ..Restored::default()
                };
                (None, read, restored)
            }
        };
        let codec = Codec::new();
        let mut quizzes: HashMap<String, Quiz> = checkpoint
            .iter()
            .flat_map(|c| &c.live)
            .filter_map(|(id, record)| Some((id.clone(), record.fold(&codec)?)))
            .collect();
        fold_tail(
            &mut quizzes,
            read.records.iter().filter_map(|r| r.event.as_ref()),
            store.as_ref(),
        )
        .await?;
        let (mut snapshotter, acks) =
            Snapshotter::new(store.clone(), checkpoint.as_ref(), gap_wait);
        snapshotter.absorb(read);
        restored.quizzes = quizzes.len();
        restored.elapsed = started.elapsed();
        match &restored.why_not {
            None => tracing::info!(
                quizzes = restored.quizzes,
                snapshot_quizzes = restored.snapshot_quizzes,
                records_read = restored.records_read,
                elapsed = ?restored.elapsed,
                "quizzes restored from the snapshot and the log after it"
            ),
            Some(why_not) => tracing::warn!(
                quizzes = restored.quizzes,
                records_read = restored.records_read,
                elapsed = ?restored.elapsed,
                why_not,
                "quizzes restored from the whole log"
            ),
        }
        let by_code = quizzes
            .values()
            .map(|q| (q.join_code.clone(), q.quiz_id.clone()))
            .collect();
        let open = open_questions(&quizzes);
        let this = Arc::new(Self {
            log,
            clock,
            by_id: RwLock::new(
                quizzes
                    .into_iter()
                    .map(|(id, q)| (id, LiveQuiz::new(q)))
                    .collect(),
            ),
            by_code: RwLock::new(by_code),
            clocks: SyncMutex::default(),
            acks: store.is_some().then_some(acks),
            store,
            leaving: SyncMutex::default(),
            finished: SyncMutex::default(),
            restored,
            shards: None,
        });
        this.arm_clocks(open);
        metrics::gauge!("podium_command_quizzes_in_memory").set(this.in_memory() as f64);
        Ok((this, snapshotter))
    }

    /// An instance of a group: it holds no quiz until the group gives it shards, which
    /// [`Quizzes::adopt`] restores from the log.
    pub fn in_group(
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        shards: Arc<Shards>,
        store: Option<Arc<dyn SnapshotStore>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            log,
            clock,
            by_id: RwLock::default(),
            by_code: RwLock::default(),
            clocks: SyncMutex::default(),
            store,
            leaving: SyncMutex::default(),
            finished: SyncMutex::default(),
            restored: Restored::default(),
            acks: None,
            shards: Some(shards),
        })
    }

    /// Takes on a shard's quizzes, restored by a claim whose markers the log acknowledged first.
    /// Returns how many it holds, and their open questions' deadlines: the caller re-arms those
    /// clocks once the shard is served here, since a clock that fires before would find the
    /// quiz not yet this instance's.
    pub fn adopt(
        self: &Arc<Self>,
        claim: Stamp,
        quizzes: HashMap<String, Quiz>,
    ) -> (usize, Vec<(String, Millis)>) {
        let adopted = quizzes.len();
        let open = open_questions(&quizzes);
        if let (Ok(mut by_id), Ok(mut by_code)) = (self.by_id.write(), self.by_code.write()) {
            for (quiz_id, quiz) in quizzes {
                let _ = by_code.insert(quiz.join_code.clone(), quiz_id.clone());
                let _ = by_id.insert(quiz_id, LiveQuiz::claimed(quiz, claim.epoch));
            }
            metrics::gauge!("podium_command_quizzes_in_memory").set(by_id.len() as f64);
        }
        (adopted, open)
    }

    /// Re-arms the clocks of open questions: each closes its question at its deadline, or at
    /// once if that has passed.
    pub fn arm_clocks(self: &Arc<Self>, open: Vec<(String, Millis)>) {
        for (quiz_id, deadline) in open {
            self.arm_question_clock(quiz_id, deadline);
        }
    }

    /// Lets a shard's quizzes go, once the group gave the shard to another instance.
    pub fn drop_shard(&self, shard: i32) {
        let Some(shards) = &self.shards else {
            return;
        };
        if let (Ok(mut by_id), Ok(mut by_code)) = (self.by_id.write(), self.by_code.write()) {
            by_id.retain(|quiz_id, _| shards.of(quiz_id) != shard);
            by_code.retain(|_, quiz_id| quiz_id.is_empty() || shards.of(quiz_id) != shard);
            metrics::gauge!("podium_command_quizzes_in_memory").set(by_id.len() as f64);
        }
    }

    /// The stamp this instance appends a quiz's records under: none for a single instance.
    /// With `live`, only under the claim that state was restored under.
    fn stamp(&self, quiz_id: &str, live: Option<&LiveQuiz>) -> Result<Option<Stamp>> {
        let Some(shards) = &self.shards else {
            return Ok(None);
        };
        let stamp = shards.stamp(quiz_id)?;
        match live {
            Some(live) if live.epoch != stamp.epoch => Err(Error::QuizMoved),
            _ => Ok(Some(stamp)),
        }
    }

    /// After an acknowledged append under `stamp`: whether this instance still owned the shard
    /// then (ADR 0011). Otherwise the client retries and reaches the new owner.
    async fn confirm(&self, stamp: Option<Stamp>) -> Result<()> {
        match (&self.shards, stamp) {
            (Some(shards), Some(stamp)) => shards.confirm(stamp).await,
            _ => Ok(()),
        }
    }

    /// The snapshot and the log after it; `Err` says why the whole log must be read instead.
    async fn from_snapshot(
        log: &Arc<dyn EventLog>,
        store: Option<&Arc<dyn SnapshotStore>>,
    ) -> std::result::Result<
        (
            Option<crate::snapshots::Checkpoint>,
            crate::event_log::LogRead,
            Restored,
        ),
        String,
    > {
        let Some(store) = store else {
            return Err("snapshots are off".into());
        };
        let checkpoint = match store.load().await {
            Ok(Some(checkpoint)) => checkpoint,
            Ok(None) => return Err("no snapshot was saved yet".into()),
            Err(e) => return Err(format!("the snapshot could not be read: {e}")),
        };
        let read = log
            .read_from(&checkpoint.positions)
            .await
            .map_err(|e| format!("the log after the snapshot could not be read: {e}"))?;
        if !read.out_of_range.is_empty() {
            // The log was recreated or truncated: the snapshot describes another log.
            if let Err(e) = store.clear().await {
                tracing::warn!(error = %e, "forgetting the stale snapshot failed");
            }
            return Err(format!(
                "the snapshot does not match the log ({})",
                read.out_of_range.join(", ")
            ));
        }
        let restored = Restored {
            from_snapshot: true,
            snapshot_quizzes: checkpoint.live.len(),
            records_read: read.records.len(),
            ..Restored::default()
        };
        Ok((Some(checkpoint), read, restored))
    }

    /// How this instance's start restored the quizzes.
    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// An append the log acknowledged: the quiz notes its position, and the snapshotter hears
    /// of it.
    fn acked(&self, live: Option<&LiveQuiz>, position: &Position, event: &Event) {
        if let Some(live) = live {
            live.acknowledged(position);
        }
        if let Some(acks) = &self.acks {
            let _ = acks.send(Acked {
                position: position.clone(),
                event: event.clone(),
            });
        }
    }

    /// A copy of a quiz's state, if it is in memory.
    pub async fn quiz(&self, quiz_id: &str) -> Option<Quiz> {
        let live = self.live(quiz_id).ok()?;
        Some(live.state.lock().await.quiz.clone())
    }

    /// Quizzes held in memory.
    pub fn in_memory(&self) -> usize {
        self.by_id.read().map_or(0, |q| q.len())
    }

    /// After a save: the finished quizzes it holds leave memory once nothing of theirs is in
    /// flight; those still busy are tried again after the next save.
    pub fn saved(&self, saved: &Saved) {
        let mut leaving = self.leaving.lock().unwrap_or_else(PoisonError::into_inner);
        leaving.extend(saved.finished.iter().cloned());
        let Ok(mut by_id) = self.by_id.write() else {
            return;
        };
        // The join codes of the quizzes that left, read while they could still be checked: a
        // request holding a quiz that just left must not keep its code in memory.
        let mut left = Vec::new();
        leaving.retain(|quiz_id| {
            let Some(live) = by_id.get(quiz_id) else {
                return false;
            };
            match live.may_leave(&saved.positions) {
                Some(join_code) => {
                    let _ = by_id.remove(quiz_id);
                    left.push((quiz_id.clone(), join_code));
                    false
                }
                None => true,
            }
        });
        metrics::gauge!("podium_command_quizzes_in_memory").set(by_id.len() as f64);
        drop(by_id);
        if let Ok(mut codes) = self.by_code.write() {
            for (quiz_id, join_code) in left {
                if codes.get(&join_code) == Some(&quiz_id) {
                    let _ = codes.remove(&join_code);
                }
            }
        }
    }

    async fn find(&self, quiz_id: &str) -> Result<Found> {
        if let Some(shards) = &self.shards
            && !shards.owns(shards.of(quiz_id))
        {
            return Err(Error::QuizMoved);
        }
        if let Ok(live) = self.live(quiz_id) {
            return Ok(Found::Live(live));
        }
        let Some(store) = &self.store else {
            return Err(Error::QuizNotFound);
        };
        let at_hand = self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(quiz_id)
            .cloned();
        if let Some(quiz) = at_hand {
            return Ok(Found::Finished(quiz));
        }
        let record = store.record(quiz_id).await?.ok_or(Error::QuizNotFound)?;
        // Only a finished quiz leaves memory; a record of any other is not this instance's.
        let quiz = record
            .fold(&Codec::new())
            .filter(|quiz| quiz.finished)
            .ok_or(Error::QuizNotFound)?;
        let quiz = Arc::new(quiz);
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        if finished.len() >= FINISHED_AT_HAND {
            finished.clear();
        }
        let _ = finished.insert(quiz_id.to_owned(), quiz.clone());
        Ok(Found::Finished(quiz))
    }

    fn live(&self, quiz_id: &str) -> Result<Arc<LiveQuiz>> {
        self.by_id
            .read()
            .map_err(poisoned)?
            .get(quiz_id)
            .cloned()
            .ok_or(Error::QuizNotFound)
    }

    /// The quiz a join code opens: a quiz in memory, else the finished quiz that had it last.
    pub async fn quiz_of_code(&self, code: &str) -> Result<String> {
        let code = code.to_ascii_uppercase();
        let in_memory = self
            .by_code
            .read()
            .map_err(poisoned)?
            .get(&code)
            .filter(|id| !id.is_empty())
            .cloned();
        if let Some(quiz_id) = in_memory {
            return Ok(quiz_id);
        }
        if let Some(shards) = &self.shards {
            return shards.quiz_of_code(&code).await?.ok_or(Error::QuizNotFound);
        }
        match &self.store {
            Some(store) => store.quiz_of_code(&code).await?.ok_or(Error::QuizNotFound),
            None => Err(Error::QuizNotFound),
        }
    }

    fn reserve_join_code(&self) -> Result<String> {
        let mut codes = self.by_code.write().map_err(poisoned)?;
        let mut rng = rand::rng();
        loop {
            let code: String = (0..JOIN_CODE_LEN)
                .map(|_| {
                    char::from(JOIN_CODE_ALPHABET[rng.random_range(0..JOIN_CODE_ALPHABET.len())])
                })
                .collect();
            if !codes.contains_key(&code) {
                let _ = codes.insert(code.clone(), String::new());
                return Ok(code);
            }
        }
    }

    /// A new quiz's id: in a group, one of a shard this instance owns (a create is never
    /// forwarded once it is here), and a join code no instance has given.
    async fn new_quiz_id(&self) -> Result<(String, String)> {
        let Some(shards) = &self.shards else {
            return Ok((uuid::Uuid::now_v7().to_string(), self.reserve_join_code()?));
        };
        if shards.owned().is_empty() {
            return Err(Error::QuizMoved);
        }
        let quiz_id = std::iter::repeat_with(|| uuid::Uuid::now_v7().to_string())
            .take(10_000)
            .find(|id| shards.owns(shards.of(id)))
            .ok_or(Error::QuizMoved)?;
        loop {
            let code = self.reserve_join_code()?;
            if shards.take_code(&code, &quiz_id).await? {
                return Ok((quiz_id, code));
            }
            // Another instance gave it: free the reservation here and draw again.
            if let Ok(mut codes) = self.by_code.write() {
                let _ = codes.remove(&code);
            }
        }
    }

    pub async fn create(&self, draft: &QuizDraft) -> Result<QuizCreated> {
        let (quiz_id, code) = self.new_quiz_id().await?;
        let release = |this: &Self| {
            if let Ok(mut codes) = this.by_code.write() {
                let _ = codes.remove(&code);
            }
        };
        let created = match create_quiz(draft, quiz_id.clone(), code.clone(), self.clock.now()) {
            Ok(created) => created,
            Err(rejection) => {
                release(self);
                return Err(rejection.into());
            }
        };
        let stamp = self.stamp(&quiz_id, None)?;
        let entry = Entry::new(Event::QuizCreated(created.clone())).stamped(stamp);
        match self.log.append(&entry).await {
            Ok(position) => {
                self.acked(None, &position, &entry.event);
                self.confirm(entry.stamp).await?;
            }
            // Nothing was appended: the code is free again.
            Err(e @ AppendError::Backpressure) => {
                release(self);
                return Err(e.into());
            }
            // The quiz may be in the log, and the next instance would restore it with its code:
            // the code stays reserved, so no other quiz takes it. The host creates it again.
            Err(e) => return Err(e.into()),
        }
        let _ = self.by_id.write().map_err(poisoned)?.insert(
            quiz_id.clone(),
            LiveQuiz::claimed(Quiz::created(&created), stamp.map_or(0, |s| s.epoch)),
        );
        let _ = self
            .by_code
            .write()
            .map_err(poisoned)?
            .insert(code, quiz_id);
        Ok(created)
    }

    pub async fn join(&self, quiz_id: &str, name: &str) -> Result<PlayerJoined> {
        let command = Command::Join {
            player_id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            at: self.clock.now(),
        };
        let live = match self.find(quiz_id).await? {
            Found::Live(live) => live,
            Found::Finished(quiz) => {
                let _ = decide_finished(&quiz, &command)?;
                return Err(Error::Internal("a finished quiz took a join".into()));
            }
        };
        let key = normalize_name(name)?.to_lowercase();
        let entry = {
            // Decided after any pending host command: a lock of joining, a kick or the finish
            // must be in the state a join is decided against.
            let _host = live.host_turn.lock().await;
            let mut state = live.state.lock().await;
            // A join with this name in doubt: whoever joins with the name next gets that
            // player, whose token nobody has received yet.
            if let Some(entry) = state.joins_in_doubt.remove(&key) {
                entry
            } else {
                if state.pending_names.contains(&key) {
                    return Err(Rejection::NameTaken.into());
                }
                let events = appendable(decide(&state.quiz, &command)?);
                let [Event::PlayerJoined(_)] = &events[..] else {
                    return Err(Error::Internal("a join decided other events".into()));
                };
                let _ = state.pending_names.insert(key.clone());
                Entry::new(events[0].clone())
            }
        };
        let entry = entry.stamped(self.stamp(quiz_id, Some(&live))?);
        let appended = self.log.append(&entry).await;
        let confirmed = match &appended {
            Ok(_) => self.confirm(entry.stamp).await,
            Err(_) => Ok(()),
        };
        let mut state = live.state.lock().await;
        if let Ok(position) = &appended {
            self.acked(Some(&live), position, &entry.event);
        }
        if let Err(moved) = confirmed {
            // The new owner restores the join from the log, or not: the client's retry finds out.
            let _ = state.pending_names.remove(&key);
            return Err(moved);
        }
        if let Err(e) = appended {
            if matches!(e, AppendError::Backpressure) {
                let _ = state.pending_names.remove(&key);
            } else {
                let _ = state.joins_in_doubt.insert(key, entry);
            }
            return Err(e.into());
        }
        let _ = state.pending_names.remove(&key);
        state.quiz.evolve(&entry.event);
        match entry.event {
            Event::PlayerJoined(joined) => Ok(joined),
            _ => Err(Error::Internal("a join decided other events".into())),
        }
    }

    /// Whether `player_id` has joined `quiz_id` and was not kicked: a rejoin with a valid token
    /// needs no new event.
    pub async fn player_name(&self, quiz_id: &str, player_id: &str) -> Result<String> {
        let name_in = |quiz: &Quiz| {
            if quiz.kicked.contains(player_id) {
                return Err(Error::Rejected(Rejection::PlayerKicked));
            }
            quiz.players
                .get(player_id)
                .cloned()
                .ok_or(Error::Rejected(Rejection::PlayerNotFound))
        };
        match self.find(quiz_id).await? {
            Found::Live(live) => name_in(&live.state.lock().await.quiz),
            Found::Finished(quiz) => name_in(&quiz),
        }
    }

    /// A host command: decided and appended while holding the quiz, so lifecycle events are
    /// decided against the state their predecessors produced.
    pub async fn host(self: &Arc<Self>, quiz_id: &str, command: Command) -> Result<QuizStatus> {
        let live = match self.find(quiz_id).await? {
            Found::Live(live) => live,
            Found::Finished(quiz) => {
                let _ = decide_finished(&quiz, &command)?;
                return Ok(QuizStatus::of(&quiz));
            }
        };
        let _host = live.host_turn.lock().await;
        let mut settled = None;
        let in_doubt = live.state.lock().await.lifecycle_in_doubt.take();
        if let Some((earlier, entries)) = in_doubt {
            self.append_lifecycle(quiz_id, &live, earlier.clone(), entries, true)
                .await?;
            settled = Some(earlier);
        }
        let events = match decide(&live.state.lock().await.quiz, &command) {
            Ok(decision) => appendable(decision),
            // The host retried the command whose outcome was in doubt: it is in effect now.
            Err(_) if settled.is_some_and(|earlier| command.repeats(&earlier)) => vec![],
            Err(rejection) => return Err(rejection.into()),
        };
        let entries = events.into_iter().map(Entry::new).collect();
        self.append_lifecycle(quiz_id, &live, command, entries, false)
            .await?;
        Ok(QuizStatus::of(&live.state.lock().await.quiz))
    }

    /// Appends a host command's entries in one round trip (a start closes the question before
    /// it: two events) and evolves the quiz by each acknowledged one in order, so a failure
    /// half-way leaves the state equal to the log but for the entries in doubt, which are kept,
    /// from the first failed one on, to be appended again unchanged. Entries that were in doubt
    /// already stay so whatever the failure: an earlier attempt may have logged them.
    ///
    /// The caller holds the host turn. The quiz's state is not held across the append: answers
    /// go on meanwhile, but for those the pending events can change, which wait for the turn.
    async fn append_lifecycle(
        self: &Arc<Self>,
        quiz_id: &str,
        live: &Arc<LiveQuiz>,
        command: Command,
        entries: Vec<Entry>,
        in_doubt: bool,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let stamp = self.stamp(quiz_id, Some(live))?;
        let entries: Vec<Entry> = entries.into_iter().map(|e| e.stamped(stamp)).collect();
        live.state.lock().await.pending = entries.iter().map(|e| e.event.clone()).collect();
        let outcomes = self.log.append_all(&entries).await;
        // One check after every acknowledgement covers them all.
        let confirmed = if outcomes.iter().any(std::result::Result::is_ok) {
            self.confirm(stamp).await
        } else {
            Ok(())
        };
        let mut state = live.state.lock().await;
        state.pending.clear();
        // The shard moved: the new owner holds what of this counts; nothing evolves here.
        confirmed?;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            if let Ok(position) = &outcome {
                self.acked(Some(live), position, &entries[i].event);
            }
            if let Err(e) = outcome {
                // Backpressure: neither this entry nor any after it was handed to the log now.
                if in_doubt || !matches!(e, AppendError::Backpressure) {
                    state.lifecycle_in_doubt = Some((command, entries[i..].to_vec()));
                }
                return Err(e.into());
            }
            self.recorded(quiz_id, &mut state, &entries[i].event);
        }
        Ok(())
    }

    /// A lifecycle event the log acknowledged: the quiz moves on, and a started question gets
    /// its clock.
    fn recorded(self: &Arc<Self>, quiz_id: &str, state: &mut Live, event: &Event) {
        state.quiz.evolve(event);
        if let Event::QuestionStarted(started) = event {
            self.arm_question_clock(quiz_id.to_owned(), started.deadline);
        }
    }

    pub async fn answer(&self, quiz_id: &str, command: AnswerCommand) -> Result<AnswerReceipt> {
        let live = match self.find(quiz_id).await? {
            Found::Live(live) => live,
            Found::Finished(quiz) => {
                let player_id = command.player_id.clone();
                let answer = decide_finished(&quiz, &Command::SubmitAnswer(command))?
                    .ok_or_else(|| Error::Internal("a finished quiz took an answer".into()))?;
                let total = quiz.standings.player(&player_id).map_or(0, |p| p.points);
                return Ok(AnswerReceipt {
                    answer,
                    total,
                    repeated: true,
                });
            }
        };
        let turn = live.turn_of(&command.player_id)?;
        let mut in_doubt = turn.lock().await;
        if let Some(entry) = in_doubt.as_ref() {
            let entry = entry.clone().stamped(self.stamp(quiz_id, Some(&live))?);
            let position = self.log.append(&entry).await?;
            self.acked(Some(&live), &position, &entry.event);
            self.confirm(entry.stamp).await?;
            live.state.lock().await.quiz.evolve(&entry.event);
            *in_doubt = None;
        }
        let player_id = command.player_id.clone();
        let question = command.question;
        let command = Command::SubmitAnswer(command);
        let decided = {
            let state = live.state.lock().await;
            let waits = state
                .pending
                .iter()
                .any(|e| changes_answer(e, question, &player_id));
            (!waits).then(|| decide(&state.quiz, &command))
        };
        let decision = match decided {
            Some(decision) => decision?,
            // A pending host command can change this answer's fate: decide after its outcome.
            None => {
                let waited = Instant::now();
                let _host = live.host_turn.lock().await;
                metrics::histogram!("podium_command_answer_waited_for_host_seconds")
                    .record(waited.elapsed().as_secs_f64());
                decide(&live.state.lock().await.quiz, &command)?
            }
        };
        let (answer, repeated) = match decision {
            Decision::Repeat(original) => (*original, true),
            Decision::Append(events) => {
                let [Event::AnswerSubmitted(answer)] = &events[..] else {
                    return Err(Error::Internal("an answer decided other events".into()));
                };
                let answer = answer.clone();
                let entry =
                    Entry::new(events[0].clone()).stamped(self.stamp(quiz_id, Some(&live))?);
                match self.log.append(&entry).await {
                    Ok(position) => {
                        self.acked(Some(&live), &position, &entry.event);
                        self.confirm(entry.stamp).await?;
                    }
                    Err(e) => {
                        if !matches!(e, AppendError::Backpressure) {
                            *in_doubt = Some(entry);
                        }
                        return Err(e.into());
                    }
                }
                (answer, false)
            }
        };
        let mut state = live.state.lock().await;
        if !repeated {
            state.quiz.evolve(&Event::AnswerSubmitted(answer.clone()));
        }
        let total = state
            .quiz
            .standings
            .player(&player_id)
            .map_or(0, |p| p.points);
        Ok(AnswerReceipt {
            answer,
            total,
            repeated,
        })
    }

    /// Closes the question at its deadline. If this instance stops first, the next one re-arms
    /// the clock at start-up, and an overdue question is closed at once.
    fn arm_question_clock(self: &Arc<Self>, quiz_id: String, deadline: Millis) {
        let this = Arc::downgrade(self);
        let mut wait = u64::try_from(deadline - self.clock.now()).unwrap_or(0) + 1;
        let mut clocks = self.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        // Finished clocks leave the set here, so it holds only the questions still open.
        while clocks.try_join_next().is_some() {}
        // The task ends once the question is closed or the quiz is gone, or at shutdown.
        let _ = clocks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let Some(this) = this.upgrade() else { return };
                let at = this.clock.now();
                match this.host(&quiz_id, Command::CloseDue { at }).await {
                    // Gone, or now another instance's: its owner re-armed the clock.
                    Ok(_) | Err(Error::QuizNotFound | Error::QuizMoved) => return,
                    Err(e) => {
                        // The log is unreachable: keep trying, the question must close.
                        tracing::warn!(quiz_id, error = %e, "closing a question at its deadline failed; retrying");
                        wait = 1000;
                    }
                }
            }
        });
    }

    /// Stops every question clock, at shutdown: the next instance re-arms them from the log.
    pub async fn stop_clocks(&self) {
        let mut clocks =
            std::mem::take(&mut *self.clocks.lock().unwrap_or_else(PoisonError::into_inner));
        clocks.shutdown().await;
    }
}

/// Folds one event of the log into the quizzes being restored: a creation adds its quiz (once),
/// anything else moves its quiz on.
/// Folds the log after a snapshot into the quizzes it held. A record for a quiz that finished
/// before the snapshot (a late answer) brings the quiz back from its record, until the next save
/// holds the answer.
pub(crate) async fn fold_tail(
    quizzes: &mut HashMap<String, Quiz>,
    events: impl Iterator<Item = &Event>,
    store: Option<&Arc<dyn SnapshotStore>>,
) -> Result<()> {
    let codec = Codec::new();
    let mut looked_up = HashSet::new();
    for event in events {
        let quiz_id = event.quiz_id();
        if !matches!(event, Event::QuizCreated(_))
            && !quizzes.contains_key(quiz_id)
            && looked_up.insert(quiz_id.to_owned())
            && let Some(store) = store
            && let Some(quiz) = store.record(quiz_id).await?.and_then(|r| r.fold(&codec))
        {
            let _ = quizzes.insert(quiz_id.to_owned(), quiz);
        }
        fold_into(quizzes, event);
    }
    Ok(())
}

fn fold_into(quizzes: &mut HashMap<String, Quiz>, event: &Event) {
    let quiz_id = event.quiz_id();
    match event {
        Event::QuizCreated(created) => {
            let _ = quizzes
                .entry(quiz_id.to_owned())
                .or_insert_with(|| Quiz::created(created));
        }
        other => match quizzes.get_mut(quiz_id) {
            Some(quiz) => quiz.evolve(other),
            None => tracing::warn!(quiz_id, "event for an unknown quiz"),
        },
    }
}

/// The open questions of restored quizzes, with their deadlines: the clocks to re-arm.
fn open_questions(quizzes: &HashMap<String, Quiz>) -> Vec<(String, Millis)> {
    quizzes
        .values()
        .filter_map(|q| q.open_deadline().map(|d| (q.quiz_id.clone(), d)))
        .collect()
}

fn appendable(decision: Decision) -> Vec<Event> {
    match decision {
        Decision::Append(events) => events,
        Decision::Repeat(_) => vec![],
    }
}
