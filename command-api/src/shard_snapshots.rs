//! Snapshots of a group member's shards (ADR 0012), so that a claim reads the log after the
//! shard's last snapshot, not all of it, and finished quizzes leave memory in a group too.
//!
//! One instance alone cuts its snapshots at the offsets the log acknowledged to it (ADR 0010):
//! every record is its own, so a missing offset is a gap to fill. In a group the answers
//! partitions interleave every owner's records, and a missing offset means nothing. So a member
//! reads the log after its shards' positions each interval, as any consumer would, and keeps the
//! records of its own shards, judged by the fence as it stood at those positions. Each shard's
//! snapshot is claimed under the owner's epoch, and a save under an older epoch is refused: a
//! deposed owner cannot write over what the new one read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use podium_schemas::Codec;
use podium_schemas::domain::Quiz;
use podium_schemas::fence::{Fence, Stamp, shard_of};

use crate::error::{Error, Result};
use crate::event_log::{EventLog, LogRead, Positions};
use crate::quizzes::fold_tail;
use crate::snapshots::{Followed, Save, Saved, ShardCheckpoint, ShardSave, SnapshotStore};

/// A shard this member owns: the epoch it claimed it under, and where its records are read to.
#[derive(Debug, Clone)]
struct Owned {
    epoch: u64,
    positions: Positions,
    /// Until the shard's first save: it was read from the log's start, so what this member
    /// follows of each quiz is its whole record, which the save writes in place of any older
    /// copy (one left by a single instance, or by a snapshot since lost).
    whole: bool,
    /// Whether this member saved the shard since it claimed it: the first round saves even a
    /// quiet shard, so that its next owner finds a snapshot at the claim's positions.
    saved: bool,
}

/// A claimed shard's quizzes, restored.
#[derive(Debug)]
pub struct Taken {
    pub stamp: Stamp,
    pub quizzes: HashMap<String, Quiz>,
    /// Why the claim read the shard's whole log; `None` when it read after a snapshot.
    pub why_not: Option<String>,
    /// Quizzes in play that the snapshot held.
    pub snapshot_quizzes: usize,
}

/// What one claim did, for every shard it took.
#[derive(Debug, Default)]
pub struct Claimed {
    pub taken: Vec<Taken>,
    /// Records the claim's read returned, for all its shards.
    pub records_read: usize,
    /// Records it left out as a deposed owner's.
    pub void: usize,
}

/// A claimed shard before its read: its snapshot, or why it has none.
struct Claiming {
    stamp: Stamp,
    snapshot: std::result::Result<ShardCheckpoint, String>,
}

/// Follows the quizzes of the shards this member owns and saves each shard's snapshot.
#[derive(Debug)]
pub struct ShardSnapshotter {
    store: Option<Arc<dyn SnapshotStore>>,
    codec: Codec,
    count: i32,
    owned: BTreeMap<i32, Owned>,
    quizzes: HashMap<String, Followed>,
}

impl ShardSnapshotter {
    /// Without a store, every claim reads the whole log and nothing is saved.
    pub fn new(store: Option<Arc<dyn SnapshotStore>>, count: i32) -> Self {
        Self {
            store,
            codec: Codec::new(),
            count,
            owned: BTreeMap::new(),
            quizzes: HashMap::new(),
        }
    }

    /// Takes on shards claimed under `stamps`, whose markers the log acknowledged: reads each
    /// shard's snapshot and the log after it (once for all of them), and restores their quizzes.
    pub async fn claim(&mut self, log: &Arc<dyn EventLog>, stamps: &[Stamp]) -> Result<Claimed> {
        let mut claiming = Vec::new();
        for &stamp in stamps {
            let snapshot = match &self.store {
                None => Err("snapshots are off".to_owned()),
                Some(store) => match store.claim_shard(stamp.shard, stamp.epoch).await {
                    Ok(Some(found)) => Ok(found),
                    Ok(None) => Err("no snapshot of the shard was saved yet".to_owned()),
                    // A later claim is under way: this one is stale, and tried again.
                    Err(Error::QuizMoved) => return Err(Error::QuizMoved),
                    Err(e) => Err(format!("the snapshot could not be read: {e}")),
                },
            };
            claiming.push(Claiming { stamp, snapshot });
        }
        let mut read = self.read(log, &claiming).await?;
        if !read.out_of_range.is_empty() {
            // The log was recreated or truncated under the snapshots: read it whole instead.
            let why = format!(
                "the snapshot does not match the log ({})",
                read.out_of_range.join(", ")
            );
            for shard in &mut claiming {
                if shard.snapshot.is_ok() {
                    shard.snapshot = Err(why.clone());
                }
            }
            read = self.read(log, &claiming).await?;
        }
        let mut claimed = Claimed {
            records_read: read.records.len(),
            void: read.void,
            ..Claimed::default()
        };
        // The quizzes in play that each snapshot holds, before the records after it.
        if self.store.is_some() {
            for found in claiming.iter().filter_map(|c| c.snapshot.as_ref().ok()) {
                for (id, record) in &found.checkpoint.live {
                    let _ = self
                        .quizzes
                        .insert(id.clone(), Followed::saved(record, &self.codec));
                }
            }
        }
        let mut tails = self.follow(&read, &claiming);
        for Claiming { stamp, snapshot } in claiming {
            let mut quizzes = HashMap::new();
            let mut snapshot_quizzes = 0;
            if let Ok(found) = &snapshot {
                snapshot_quizzes = found.checkpoint.live.len();
                for (id, record) in &found.checkpoint.live {
                    if let Some(quiz) = record.fold(&self.codec) {
                        let _ = quizzes.insert(id.clone(), quiz);
                    }
                }
            }
            let tail = tails.remove(&stamp.shard).unwrap_or_default();
            fold_tail(
                &mut quizzes,
                tail.iter()
                    .filter_map(|&index| read.records[index].event.as_ref()),
                self.store.as_ref(),
            )
            .await?;
            let _ = self.owned.insert(
                stamp.shard,
                Owned {
                    epoch: stamp.epoch,
                    positions: Positions::new(),
                    whole: snapshot.is_err(),
                    saved: false,
                },
            );
            claimed.taken.push(Taken {
                stamp,
                quizzes,
                why_not: snapshot.err(),
                snapshot_quizzes,
            });
        }
        self.read_to(&read.end);
        Ok(claimed)
    }

    /// Follows the records of `read` past each shard's position, for the owned shards and those
    /// being claimed; returns the indices of each claimed shard's records, in the log's order.
    fn follow(&mut self, read: &LogRead, claiming: &[Claiming]) -> HashMap<i32, Vec<usize>> {
        let mut tails: HashMap<i32, Vec<usize>> = HashMap::new();
        for (index, recorded) in read.records.iter().enumerate() {
            let Some(event) = &recorded.event else {
                continue;
            };
            let shard = shard_of(event.quiz_id(), self.count);
            let at = (recorded.topic.clone(), recorded.partition);
            let claimed = claiming.iter().find(|c| c.stamp.shard == shard);
            let start = match claimed {
                Some(Claiming {
                    snapshot: Ok(found),
                    ..
                }) => found.checkpoint.positions.get(&at).copied(),
                Some(_) => None,
                None => match self.owned.get(&shard) {
                    Some(owned) => owned.positions.get(&at).copied(),
                    None => continue,
                },
            };
            if recorded.offset < start.unwrap_or(0) {
                continue;
            }
            if claimed.is_some() {
                tails.entry(shard).or_default().push(index);
            }
            if self.store.is_some() {
                self.quizzes
                    .entry(event.quiz_id().to_owned())
                    .or_default()
                    .add(event, recorded.payload.clone());
            }
        }
        tails
    }

    /// Every owned shard's records are now read to `end`.
    fn read_to(&mut self, end: &Positions) {
        for owned in self.owned.values_mut() {
            owned.positions.clone_from(end);
        }
    }

    /// Reads the log once for the owned shards and those being claimed: each partition from the
    /// earliest position any of them needs, judged by the epochs each held there.
    async fn read(&self, log: &Arc<dyn EventLog>, claiming: &[Claiming]) -> Result<LogRead> {
        let mut from_each: Vec<(&Positions, i32, u64)> = Vec::new();
        let mut whole = self.store.is_none();
        for shard in claiming {
            match &shard.snapshot {
                Ok(found) => {
                    from_each.push((&found.checkpoint.positions, shard.stamp.shard, found.epoch));
                }
                Err(_) => whole = true,
            }
        }
        for (&shard, owned) in &self.owned {
            from_each.push((&owned.positions, shard, owned.epoch));
        }
        let mut from = Positions::new();
        let mut fence = Fence::default();
        if !whole && let Some((first, ..)) = from_each.first() {
            let epochs: BTreeMap<i32, u64> = from_each
                .iter()
                .map(|&(_, shard, epoch)| (shard, epoch))
                .collect();
            // A partition that one of them has not read yet is read from its start.
            for at in first.keys() {
                let starts: Option<Vec<i64>> =
                    from_each.iter().map(|(p, ..)| p.get(at).copied()).collect();
                if let Some(start) = starts.and_then(|s| s.into_iter().min()) {
                    let _ = from.insert(at.clone(), start);
                    fence.restore(&at.0, at.1, &epochs);
                }
            }
        }
        Ok(log.read_fenced(&from, fence).await?)
    }

    /// Reads the log after the owned shards' positions and saves each shard's new records with
    /// the positions they reach; `None` when there is nothing to save.
    pub async fn catch_up(&mut self, log: &Arc<dyn EventLog>) -> Result<Option<Saved>> {
        let Some(store) = self.store.clone() else {
            return Ok(None);
        };
        if self.owned.is_empty() {
            return Ok(None);
        }
        let read = self.read(log, &[]).await?;
        if !read.out_of_range.is_empty() {
            return Err(Error::Snapshots(format!(
                "the log no longer continues the shards' snapshots ({}); restart the command API to restore from the whole log",
                read.out_of_range.join(", ")
            )));
        }
        let due = self
            .owned
            .values()
            .any(|owned| !owned.saved || owned.positions != read.end);
        let _ = self.follow(&read, &[]);
        self.read_to(&read.end);
        let unsaved = self.quizzes.values().any(|q| !q.unsaved.is_empty());
        if !due && !unsaved {
            return Ok(None);
        }
        let mut saved = self.save(store.as_ref(), &read.end).await?;
        saved.read_the_log = true;
        Ok(Some(saved))
    }

    /// Saves every owned shard's part; a shard whose save is refused moved to another owner,
    /// and this member forgets it.
    async fn save(&mut self, store: &dyn SnapshotStore, end: &Positions) -> Result<Saved> {
        let mut saves: BTreeMap<i32, ShardSave> = self
            .owned
            .iter()
            .map(|(&shard, owned)| {
                let save = ShardSave {
                    shard,
                    epoch: owned.epoch,
                    save: Save {
                        positions: owned.positions.clone(),
                        whole_records: owned.whole,
                        ..Save::default()
                    },
                };
                (shard, save)
            })
            .collect();
        for (id, followed) in &mut self.quizzes {
            followed.settle();
            let Some(part) = saves.get_mut(&shard_of(id, self.count)) else {
                continue;
            };
            if !followed.unsaved.is_empty() {
                part.save
                    .appended
                    .push((id.clone(), followed.unsaved.clone()));
            }
            if followed.finished {
                part.save
                    .finished
                    .push((id.clone(), followed.join_code.clone()));
            } else if !followed.in_play {
                part.save.started.push(id.clone());
            }
        }
        let saves: Vec<ShardSave> = saves.into_values().collect();
        let applied = store.save_shards(&saves).await?;
        let mut finished = Vec::new();
        for part in saves {
            if applied.contains(&part.shard) {
                if let Some(owned) = self.owned.get_mut(&part.shard) {
                    owned.whole = false;
                    owned.saved = true;
                }
                finished.extend(part.save.finished.into_iter().map(|(id, _)| id));
            } else {
                tracing::warn!(
                    shard = part.shard,
                    epoch = part.epoch,
                    "the shard's snapshot was refused: another instance claimed it"
                );
                self.release(part.shard);
            }
        }
        let count = self.count;
        self.quizzes
            .retain(|id, followed| !(followed.finished && applied.contains(&shard_of(id, count))));
        for (id, followed) in &mut self.quizzes {
            if applied.contains(&shard_of(id, count)) {
                followed.saved_now();
            }
        }
        Ok(Saved {
            positions: end.clone(),
            finished,
            live: self.quizzes.len(),
            read_the_log: true,
        })
    }

    /// Forgets a shard this member no longer owns.
    pub fn release(&mut self, shard: i32) {
        let _ = self.owned.remove(&shard);
        let count = self.count;
        self.quizzes.retain(|id, _| shard_of(id, count) != shard);
    }

    /// The shards this member follows.
    pub fn owned(&self) -> Vec<i32> {
        self.owned.keys().copied().collect()
    }
}
