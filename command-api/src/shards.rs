//! Several command-side instances sharing the quizzes (ADR 0011).
//!
//! - A quiz's shard is its lifecycle partition. The instances are members of one Kafka consumer
//!   group on the lifecycle topic and read nothing through it: the partitions the group assigns
//!   an instance are the shards it owns, and a dead member's shards move to the others within the
//!   group's session timeout.
//! - Each shard has an epoch in Redis, with the address of its owner. A new owner raises it,
//!   appends claim markers, restores the shard's quizzes from the log, and only then serves them.
//! - Every append is stamped with the owner's epoch, and acknowledged to the client only once
//!   a read of the epoch **after** the broker's acknowledgement still finds it. Readers void
//!   what an owner appends after a later owner's marker, so a paused owner adds nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use podium_runtime::KafkaArgs;
use podium_schemas::fence::{Stamp, shard_of};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::event_log::EventLog;
use crate::quizzes::Quizzes;
use crate::shard_snapshots::ShardSnapshotter;

/// Raises a shard's epoch and names its owner, in one step: `KEYS[1]` the shard's hash,
/// `ARGV[1]` the owner's address. Returns the new epoch.
const CLAIM: &str = r"
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return epoch
";

/// A change of the shards the group gives this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    /// The shard is still assigned here but its epoch moved (another instance claimed it while
    /// it was not its owner any more): claim it again.
    Reclaim(i32),
}

/// An epoch check waiting for the next batched read.
struct Check {
    stamp: Stamp,
    answer: oneshot::Sender<Result<bool>>,
}

/// This instance's view of the shards.
pub struct Shards {
    count: i32,
    address: String,
    connection: ConnectionManager,
    prefix: String,
    claim: redis::Script,
    /// What the group assigned, as its callbacks said: only these may be claimed.
    assigned: Mutex<HashSet<i32>>,
    /// The shards served here, with the epoch they were claimed under.
    owned: RwLock<HashMap<i32, u64>>,
    checks: mpsc::UnboundedSender<Check>,
    moves: mpsc::UnboundedSender<Move>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("count", &self.count)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Shards {
    /// Connects to Redis; `address` is where other instances forward this one's quizzes'
    /// requests. Returns the shards and the receiver of the group's moves.
    pub async fn connect(
        client: redis::Client,
        root: &str,
        address: String,
        count: i32,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Move>)> {
        let connection = ConnectionManager::new(client).await?;
        let (checks, pending) = mpsc::unbounded_channel();
        let (moves, moved) = mpsc::unbounded_channel();
        let prefix = format!("{{{root}:command}}");
        drop(tokio::spawn(check_epochs(
            pending,
            connection.clone(),
            prefix.clone(),
        )));
        let shards = Arc::new(Self {
            count,
            address,
            connection,
            prefix,
            claim: redis::Script::new(CLAIM),
            assigned: Mutex::default(),
            owned: RwLock::default(),
            checks,
            moves,
        });
        Ok((shards, moved))
    }

    /// How many shards there are: the lifecycle topic's partitions.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// The shard of a quiz.
    pub fn of(&self, quiz_id: &str) -> i32 {
        shard_of(quiz_id, self.count)
    }

    /// The stamp this instance appends a quiz's records under; `QuizMoved` if it does not own
    /// the quiz's shard (it lost it, or is still claiming it).
    pub fn stamp(&self, quiz_id: &str) -> Result<Stamp> {
        let shard = self.of(quiz_id);
        let owned = self.owned.read().unwrap_or_else(PoisonError::into_inner);
        owned
            .get(&shard)
            .map(|&epoch| Stamp { shard, epoch })
            .ok_or(Error::QuizMoved)
    }

    pub fn owns(&self, shard: i32) -> bool {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&shard)
    }

    /// The shards served here.
    pub fn owned(&self) -> Vec<i32> {
        let owned = self.owned.read().unwrap_or_else(PoisonError::into_inner);
        let mut shards: Vec<i32> = owned.keys().copied().collect();
        shards.sort_unstable();
        shards
    }

    fn is_assigned(&self, shard: i32) -> bool {
        self.assigned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&shard)
    }

    fn key(&self, shard: i32) -> String {
        shard_key(&self.prefix, shard)
    }

    fn code_key(&self, code: &str) -> String {
        format!("{}:code:{code}", self.prefix)
    }

    /// Raises the shard's epoch and names this instance its owner, if the group still assigns
    /// it here; `None` if it does not.
    pub async fn raise_epoch(&self, shard: i32) -> Result<Option<u64>> {
        if !self.is_assigned(shard) {
            return Ok(None);
        }
        let epoch: u64 = self
            .claim
            .key(self.key(shard))
            .arg(&self.address)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(Some(epoch))
    }

    /// The claim is done: the shard's quizzes are restored and served here, unless the group
    /// took the shard back meanwhile.
    pub fn claimed(&self, shard: i32, epoch: u64) -> bool {
        let assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        if !assigned.contains(&shard) {
            return false;
        }
        let _ = self
            .owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shard, epoch);
        metrics::gauge!("podium_command_shards_owned").set(self.owned().len() as f64);
        true
    }

    /// Stops serving `shards` at once: every command for their quizzes is forwarded or refused
    /// from now on.
    fn release(&self, shards: &[i32]) {
        let mut owned = self.owned.write().unwrap_or_else(PoisonError::into_inner);
        for shard in shards {
            let _ = owned.remove(shard);
        }
        metrics::gauge!("podium_command_shards_owned").set(owned.len() as f64);
    }

    /// After the broker acknowledged a record stamped `stamp`: whether the shard's epoch is
    /// still the stamp's. One Redis read answers every check queued before it was sent. If the
    /// epoch moved, the shard stops being served here and `QuizMoved` tells the client to retry,
    /// which reaches the new owner.
    pub async fn confirm(&self, stamp: Stamp) -> Result<()> {
        let (answer, answered) = oneshot::channel();
        self.checks
            .send(Check { stamp, answer })
            .map_err(|_| Error::Internal("the epoch checker stopped".into()))?;
        let current = answered
            .await
            .map_err(|_| Error::Internal("the epoch checker dropped a check".into()))??;
        if current {
            return Ok(());
        }
        metrics::counter!("podium_command_appends_fenced_total").increment(1);
        let still_ours = self
            .owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&stamp.shard)
            == Some(&stamp.epoch);
        if still_ours {
            tracing::warn!(
                shard = stamp.shard,
                epoch = stamp.epoch,
                "another instance claimed this shard; it is not served here until the group says"
            );
            self.release(&[stamp.shard]);
            if self.is_assigned(stamp.shard) {
                let _ = self.moves.send(Move::Reclaim(stamp.shard));
            }
        }
        Err(Error::QuizMoved)
    }

    /// Where a shard's owner takes requests, unless it is this instance or nobody claimed it.
    pub async fn owner(&self, shard: i32) -> Result<Option<String>> {
        let owner: Option<String> = redis::cmd("HGET")
            .arg(self.key(shard))
            .arg("owner")
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(owner.filter(|owner| *owner != self.address))
    }

    /// Takes a join code for a quiz across every instance; false if another quiz has it.
    pub async fn take_code(&self, code: &str, quiz_id: &str) -> Result<bool> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.code_key(code))
            .arg(quiz_id)
            .arg("NX")
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(taken.is_some())
    }

    /// The quiz a join code opens, whichever instance created it.
    pub async fn quiz_of_code(&self, code: &str) -> Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.code_key(code))
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// Joins the group of command-side instances on a thread of its own, which polls the
    /// membership until `stop` turns true, then leaves the group.
    pub fn join_group(
        self: &Arc<Self>,
        kafka: &KafkaArgs,
        session_timeout: Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<JoinHandle<()>> {
        let topics = kafka.topics();
        let mut config: ClientConfig = kafka.consumer_config();
        let _ = config
            .set("group.id", format!("{}podium-command", kafka.topic_prefix))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set(
                "session.timeout.ms",
                session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (session_timeout.as_millis() / 4).max(100).to_string(),
            );
        let consumer: BaseConsumer<Membership> = config
            .create_with_context(Membership {
                shards: self.clone(),
            })
            .map_err(|e| Error::Internal(format!("joining the command group: {e}")))?;
        consumer
            .subscribe(&[&topics.lifecycle])
            .map_err(|e| Error::Internal(format!("joining the command group: {e}")))?;
        std::thread::Builder::new()
            .name("command-group".into())
            .spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Partitions are paused once assigned: a poll only serves the membership.
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::warn!(error = %e, "the command group's consumer failed");
                    }
                }
                // Leaves the group now, so the others take the shards without waiting for the
                // session to time out.
                consumer.unsubscribe();
                let _ = consumer.poll(Duration::from_millis(100));
            })
            .map_err(|e| Error::Internal(format!("starting the group thread: {e}")))
    }
}

/// Claims the shards the group gives this instance and lets go of those it takes away, in the
/// order the group said. A claim raises each shard's epoch, appends its markers, reads each
/// shard's snapshot and the log after it (once for all of them) and restores their quizzes;
/// only then are they served here.
pub async fn follow_moves(
    mut moves: mpsc::UnboundedReceiver<Move>,
    shards: Arc<Shards>,
    quizzes: Arc<Quizzes>,
    log: Arc<dyn EventLog>,
    snapshots: Arc<tokio::sync::Mutex<ShardSnapshotter>>,
) {
    while let Some(first) = moves.recv().await {
        let mut to_claim = BTreeSet::new();
        let mut next = Some(first);
        while let Some(moved) = next {
            let mut let_go = Vec::new();
            match moved {
                Move::Assigned(given) => to_claim.extend(given),
                Move::Reclaim(shard) => {
                    let_go.push(shard);
                    let _ = to_claim.insert(shard);
                }
                Move::Revoked(taken) => {
                    for shard in taken {
                        let _ = to_claim.remove(&shard);
                        let_go.push(shard);
                    }
                }
            }
            for shard in let_go {
                quizzes.drop_shard(shard);
                snapshots.lock().await.release(shard);
            }
            next = moves.try_recv().ok();
        }
        let mut wait = Duration::from_millis(200);
        while !to_claim.is_empty() {
            match claim(&to_claim, &shards, &quizzes, &log, &snapshots).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, shards = ?to_claim, "claiming shards failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                    to_claim.retain(|s| shards.is_assigned(*s));
                }
            }
        }
    }
}

async fn claim(
    to_claim: &BTreeSet<i32>,
    shards: &Shards,
    quizzes: &Arc<Quizzes>,
    log: &Arc<dyn EventLog>,
    snapshots: &tokio::sync::Mutex<ShardSnapshotter>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut epochs = Vec::new();
    for &shard in to_claim {
        if let Some(epoch) = shards.raise_epoch(shard).await? {
            epochs.push(Stamp { shard, epoch });
        }
    }
    for stamp in &epochs {
        log.claim(*stamp).await?;
    }
    // After every marker: the read holds every record an earlier owner got acknowledged.
    let mut snapshots = snapshots.lock().await;
    let claimed = snapshots.claim(log, &epochs).await?;
    for taken in claimed.taken {
        let stamp = taken.stamp;
        let (adopted, open) = quizzes.adopt(stamp, taken.quizzes);
        if shards.claimed(stamp.shard, stamp.epoch) {
            quizzes.arm_clocks(open);
            let from = if taken.why_not.is_none() {
                "snapshot"
            } else {
                "log"
            };
            metrics::histogram!("podium_command_claim_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("podium_command_claims_total", "from" => from).increment(1);
            tracing::info!(
                shard = stamp.shard,
                epoch = stamp.epoch,
                quizzes = adopted,
                snapshot_quizzes = taken.snapshot_quizzes,
                records_read = claimed.records_read,
                void = claimed.void,
                why_not = taken.why_not.as_deref().unwrap_or(""),
                elapsed = ?started.elapsed(),
                "shard claimed from the {from}"
            );
        } else {
            quizzes.drop_shard(stamp.shard);
            snapshots.release(stamp.shard);
        }
    }
    Ok(())
}

/// The Redis hash of a shard's epoch and owner.
fn shard_key(prefix: &str, shard: i32) -> String {
    format!("{prefix}:shard:{shard}")
}

/// Answers epoch checks in batches: one pipelined read per batch, one batch at a time.
async fn check_epochs(
    mut pending: mpsc::UnboundedReceiver<Check>,
    connection: ConnectionManager,
    prefix: String,
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = pending.try_recv() {
            batch.push(more);
        }
        let shards: BTreeSet<i32> = batch.iter().map(|c| c.stamp.shard).collect();
        let mut pipe = redis::pipe();
        for shard in &shards {
            let _ = pipe
                .cmd("HGET")
                .arg(shard_key(&prefix, *shard))
                .arg("epoch");
        }
        let read: std::result::Result<Vec<Option<u64>>, _> =
            pipe.query_async(&mut connection.clone()).await;
        metrics::histogram!("podium_command_epoch_checks_per_read").record(batch.len() as f64);
        match read {
            Ok(epochs) => {
                let epochs: HashMap<i32, Option<u64>> = shards.into_iter().zip(epochs).collect();
                for check in batch {
                    let current = epochs.get(&check.stamp.shard).copied().flatten();
                    let _ = check.answer.send(Ok(current == Some(check.stamp.epoch)));
                }
            }
            Err(e) => {
                let cause = format!("reading the shards' epochs: {e}");
                for check in batch {
                    let _ = check.answer.send(Err(Error::Snapshots(cause.clone())));
                }
            }
        }
    }
}

/// The group member's callbacks.
struct Membership {
    shards: Arc<Shards>,
}

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            // Before the group hands them on: nothing new is decided for their quizzes here.
            let shards: Vec<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
            {
                let mut assigned = self
                    .shards
                    .assigned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for shard in &shards {
                    let _ = assigned.remove(shard);
                }
            }
            self.shards.release(&shards);
            tracing::info!(?shards, "shards revoked");
            let _ = self.shards.moves.send(Move::Revoked(shards));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(given) => {
                if given.count() == 0 {
                    return;
                }
                if let Err(e) = consumer.pause(given) {
                    tracing::warn!(error = %e, "pausing the group's partitions failed");
                }
                let shards: Vec<i32> = given.elements().iter().map(|e| e.partition()).collect();
                self.shards
                    .assigned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(shards.iter().copied());
                tracing::info!(?shards, "shards assigned");
                let _ = self.shards.moves.send(Move::Assigned(shards));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "the command group's rebalance failed")
            }
        }
    }
}
