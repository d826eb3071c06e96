//! Ownership epochs in the log (ADR 0011): the rule every reader applies so that a deposed
//! command-side owner can never add a decision, whatever it sends after it lost its shard.
//!
//! - A quiz's shard is its lifecycle partition ([`shard_of`]).
//! - Every record a command-side instance of a group appends carries its shard and the epoch
//!   under which it owns the shard ([`HEADER_SHARD`], [`HEADER_EPOCH`]).
//! - An instance that claims a shard first raises its epoch in Redis, then appends a
//!   [`SHARD_CLAIMED`] marker to the shard's lifecycle partition and to every answers partition,
//!   and appends nothing else before all are acknowledged.
//! - A reader keeps, per partition and shard, the highest epoch seen ([`Fence`]). A record whose
//!   epoch is lower is **void**: every fold skips it. In each partition, "lower than the highest
//!   seen" is "after the new owner's marker", so every reader, whatever it resumed from, voids
//!   the same records.
//!
//! Records without a stamp come from a single instance (or a build before groups) and always
//! count: no other owner existed.

use std::collections::BTreeMap;

/// Record header: the shard (lifecycle partition) of the record's quiz.
pub const HEADER_SHARD: &str = "podium_shard";
/// Record header: the epoch under which the appending instance owned the shard.
pub const HEADER_EPOCH: &str = "podium_epoch";
/// `event_type` header of a claim marker. A marker is not a quiz event: its payload is empty and
/// its stamp says which shard moved to which epoch.
pub const SHARD_CLAIMED: &str = "ShardClaimed";

/// The shard of a quiz: the lifecycle partition librdkafka's default partitioner
/// (`consistent_random`) gives its id, CRC-32 of the key modulo the partition count. The command
/// side produces lifecycle records to it explicitly, so owners and readers agree.
pub fn shard_of(quiz_id: &str, shards: i32) -> i32 {
    let hash = crc32fast::hash(quiz_id.as_bytes());
    i32::try_from(hash % u32::try_from(shards.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// Which owner, of which shard, appended a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub shard: i32,
    pub epoch: u64,
}

impl Stamp {
    /// The stamp of a record from its shard and epoch headers; `None` when it has none (or a
    /// malformed one, which no Podium build writes).
    pub fn parse(shard: Option<&str>, epoch: Option<&str>) -> Option<Self> {
        Some(Self {
            shard: shard?.parse().ok()?,
            epoch: epoch?.parse().ok()?,
        })
    }
}

/// What a reader does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fold it in.
    Count,
    /// Appended by an owner that had lost the shard: every fold skips it.
    Void,
    /// A claim marker: no event, only a raised epoch.
    Claim,
}

/// Per `(topic, partition, shard)`, the highest epoch a reader has seen. Readers that resume
/// store it with their positions, in the same atomic write; a replay from the beginning starts
/// from [`Fence::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fence {
    highest: BTreeMap<(String, i32, i32), u64>,
}

impl Fence {
    /// Judges a record, read in its partition's order. `claim` is whether its `event_type`
    /// header is [`SHARD_CLAIMED`].
    pub fn judge(
        &mut self,
        topic: &str,
        partition: i32,
        stamp: Option<Stamp>,
        claim: bool,
    ) -> Verdict {
        // Unstamped records come from one instance, where no other owner existed.
        let stale = stamp.is_some_and(|stamp| {
            let highest = self
                .highest
                .entry((topic.to_owned(), partition, stamp.shard))
                .or_insert(0);
            let stale = stamp.epoch < *highest;
            *highest = (*highest).max(stamp.epoch);
            stale
        });
        // A marker raises the epoch and is no event, whatever its own epoch.
        match (claim, stale) {
            (true, _) => Verdict::Claim,
            (false, true) => Verdict::Void,
            (false, false) => Verdict::Count,
        }
    }

    /// The epochs seen in one partition, by shard: what a reader stores with its position.
    pub fn of_partition(&self, topic: &str, partition: i32) -> BTreeMap<i32, u64> {
        self.highest
            .iter()
            .filter(|((t, p, _), _)| t == topic && *p == partition)
            .map(|((_, _, shard), epoch)| (*shard, *epoch))
            .collect()
    }

    /// Sets a partition's epochs to those a reader stored with its position: what it had seen
    /// up to there, whatever it saw beyond before it went back.
    pub fn restore(&mut self, topic: &str, partition: i32, epochs: &BTreeMap<i32, u64>) {
        self.forget(topic, partition);
        for (shard, epoch) in epochs {
            let _ = self
                .highest
                .insert((topic.to_owned(), partition, *shard), *epoch);
        }
    }

    /// Forgets a partition, when a reader no longer reads it.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.highest
            .retain(|(t, p, _), _| !(t == topic && *p == partition));
    }

    /// The epochs of one partition as text, `shard:epoch,…`: how readers store them beside a
    /// position.
    pub fn encode_epochs(epochs: &BTreeMap<i32, u64>) -> String {
        epochs
            .iter()
            .map(|(shard, epoch)| format!("{shard}:{epoch}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads [`Fence::encode_epochs`] back; pairs that do not parse are left out.
    pub fn decode_epochs(text: &str) -> BTreeMap<i32, u64> {
        text.split(',')
            .filter_map(|pair| {
                let (shard, epoch) = pair.split_once(':')?;
                Some((shard.parse().ok()?, epoch.parse().ok()?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(shard: i32, epoch: u64) -> Option<Stamp> {
        Some(Stamp { shard, epoch })
    }

    #[test]
    fn records_of_a_deposed_owner_after_the_marker_are_void_and_before_it_count() {
        let mut fence = Fence::default();
        assert_eq!(fence.judge("a", 0, stamp(1, 1), false), Verdict::Count);
        assert_eq!(fence.judge("a", 0, stamp(1, 2), true), Verdict::Claim);
        assert_eq!(fence.judge("a", 0, stamp(1, 1), false), Verdict::Void);
        assert_eq!(fence.judge("a", 0, stamp(1, 2), false), Verdict::Count);
        // Another shard, another partition and another topic are apart.
        assert_eq!(fence.judge("a", 0, stamp(2, 1), false), Verdict::Count);
        assert_eq!(fence.judge("a", 1, stamp(1, 1), false), Verdict::Count);
        assert_eq!(fence.judge("b", 0, stamp(1, 1), false), Verdict::Count);
        // Unstamped records come from a single instance: they count.
        assert_eq!(fence.judge("a", 0, None, false), Verdict::Count);
        // A stale marker changes nothing.
        assert_eq!(fence.judge("a", 0, stamp(1, 1), true), Verdict::Claim);
        assert_eq!(fence.judge("a", 0, stamp(1, 2), false), Verdict::Count);
    }

    #[test]
    fn a_reader_that_resumes_from_stored_epochs_judges_as_one_that_read_from_the_start() {
        let log = [
            (stamp(0, 1), false),
            (stamp(0, 2), true),
            (stamp(0, 1), false),
            (stamp(1, 3), true),
            (stamp(0, 2), false),
            (stamp(1, 2), false),
        ];
        let mut whole = Fence::default();
        let all: Vec<Verdict> = log
            .iter()
            .map(|(s, c)| whole.judge("t", 4, *s, *c))
            .collect();
        for cut in 0..log.len() {
            let mut first = Fence::default();
            let mut verdicts: Vec<Verdict> = log[..cut]
                .iter()
                .map(|(s, c)| first.judge("t", 4, *s, *c))
                .collect();
            let stored = Fence::encode_epochs(&first.of_partition("t", 4));
            let mut resumed = Fence::default();
            resumed.restore("t", 4, &Fence::decode_epochs(&stored));
            verdicts.extend(
                log[cut..]
                    .iter()
                    .map(|(s, c)| resumed.judge("t", 4, *s, *c)),
            );
            assert_eq!(verdicts, all, "resumed at {cut}");
        }
    }

    #[test]
    fn stamps_are_parsed_and_malformed_ones_are_none() {
        assert_eq!(Stamp::parse(Some("2"), Some("7")), stamp(2, 7));
        assert_eq!(Stamp::parse(Some("x"), Some("7")), None);
        assert_eq!(Stamp::parse(Some("2"), None), None);
    }

    #[test]
    fn every_quiz_has_a_shard_within_the_partitions() {
        for id in ["", "a", "0193c0de-0000-7000-8000-000000000000"] {
            assert!((0..3).contains(&shard_of(id, 3)));
        }
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }
}
