//! `export`: the records of the event topics that a selection picks, as JSON Lines or an Avro
//! Object Container File, in constant memory.
//!
//! - **Order.** Partition by partition (the lifecycle topic first, partitions ascending), each in
//!   offset order: the same selection of the same log always gives the same file.
//! - **Bounds.** The high watermarks are taken when the export is planned, so an export ends
//!   even while quizzes keep appending. A time range is exact: offsets-for-times only says where
//!   to start reading (and that hint is checked against the record before it, since some brokers
//!   answer 0, or worse, for a time past the end); every record is then filtered by its
//!   timestamp.
//! - **Resume.** When the output is a file, `<output>.checkpoint` records the plan, where the
//!   export got to, and how long the output was at that moment, after a flush to disk. It is
//!   written every `checkpoint_every` records read and at the end of each partition, which are
//!   the same points in every run. `--resume` truncates the output to that length and carries
//!   on, so the result is byte for byte the uninterrupted export. The checkpoint is deleted when
//!   the export completes.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use podium_schemas::events::Millis;
use podium_schemas::fence::{Fence, Verdict};
use podium_schemas::topics::Topics;
use serde::{Deserialize, Serialize};

use crate::avro::ExportSchema;
use crate::error::{Error, Result};
use crate::log::{EventLog, Flow, LogRecord, TimeHint};
use crate::record::json_object;

/// Which event topics to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TopicChoice {
    /// Quiz lifecycle and joins.
    Lifecycle,
    /// Answers.
    Answers,
    /// Both, the lifecycle topic first.
    All,
}

impl TopicChoice {
    pub fn names(self, topics: &Topics) -> Vec<String> {
        match self {
            Self::Lifecycle => vec![topics.lifecycle.clone()],
            Self::Answers => vec![topics.answers.clone()],
            Self::All => vec![topics.lifecycle.clone(), topics.answers.clone()],
        }
    }
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// An Avro Object Container File with its writer schema embedded.
    Avro,
}

/// An offset bound from the command line: `120` holds for every selected partition, `3=120` for
/// partition 3 of each selected topic, `answers:3=120` (or the full topic name) for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetBound {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: i64,
}

impl FromStr for OffsetBound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?}: expected OFFSET, PARTITION=OFFSET or TOPIC:PARTITION=OFFSET (TOPIC is lifecycle, answers or a topic name)"
            )
        };
        let number = |n: &str| n.trim().parse::<i64>().ok().filter(|n| *n >= 0);
        let Some((place, offset)) = s.split_once('=') else {
            return Ok(Self {
                topic: None,
                partition: None,
                offset: number(s).ok_or_else(bad)?,
            });
        };
        let offset = number(offset).ok_or_else(bad)?;
        let (topic, partition) = match place.rsplit_once(':') {
            Some((topic, partition)) => (Some(topic.trim().to_owned()), partition),
            None => (None, place),
        };
        let partition = number(partition)
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(bad)?;
        Ok(Self {
            topic,
            partition: Some(partition),
            offset,
        })
    }
}

impl OffsetBound {
    fn names_topic(&self, topics: &Topics, topic: &str) -> bool {
        match self.topic.as_deref() {
            None => true,
            Some("lifecycle") => topic == topics.lifecycle,
            Some("answers") => topic == topics.answers,
            Some(name) => topic == name,
        }
    }

    /// How specific the bound is for this partition, if it applies: one partition of one topic
    /// beats a partition number, which beats every partition.
    fn specificity(&self, topics: &Topics, topic: &str, partition: i32) -> Option<u8> {
        if !self.names_topic(topics, topic) || self.partition.is_some_and(|p| p != partition) {
            return None;
        }
        Some(u8::from(self.topic.is_some()) * 2 + u8::from(self.partition.is_some()))
    }
}

/// The bound that applies to a partition: the most specific one, the last given among equals.
fn bound_for(bounds: &[OffsetBound], topics: &Topics, topic: &str, partition: i32) -> Option<i64> {
    bounds
        .iter()
        .filter_map(|b| Some((b.specificity(topics, topic, partition)?, b.offset)))
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, offset)| offset)
}

/// What an export picks. Two exports with equal selections of the same log give equal output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub topic_prefix: String,
    pub topics: TopicChoice,
    /// Record timestamps from (inclusive), ms.
    pub from: Option<Millis>,
    /// Record timestamps up to (exclusive), ms.
    pub to: Option<Millis>,
    /// First offsets to read (inclusive).
    pub from_offsets: Vec<OffsetBound>,
    /// Offsets to stop before (exclusive).
    pub to_offsets: Vec<OffsetBound>,
    pub quiz: Option<String>,
    pub format: Format,
}

/// One partition's part of the export: offsets `start` up to, not including, `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Which offsets of which partitions to read, bounded by the high watermarks of this moment.
pub fn plan(log: &EventLog, selection: &Selection) -> Result<Vec<Range>> {
    let topics = Topics::with_prefix(&selection.topic_prefix);
    let mut ranges = Vec::new();
    for topic in selection.topics.names(&topics) {
        for marks in log.partitions(&topic)? {
            let (low, high) = (marks.low, marks.high);
            let mut start = low;
            if let Some(bound) =
                bound_for(&selection.from_offsets, &topics, &topic, marks.partition)
            {
                start = start.max(bound);
            }
            if let Some(from) = selection.from {
                start = start.max(time_start(log, &marks, from)?);
            }
            let mut end = high;
            if let Some(bound) = bound_for(&selection.to_offsets, &topics, &topic, marks.partition)
            {
                end = end.min(bound);
            }
            ranges.push(Range {
                topic: topic.clone(),
                partition: marks.partition,
                start: start.min(high),
                end: end.max(start).min(high),
            });
        }
    }
    Ok(ranges)
}

/// Where reading for records at or after `from` may start in a partition. The broker's answer
/// is believed only if the record just before it is older than `from`; otherwise the whole
/// partition is read and filtered.
fn time_start(log: &EventLog, marks: &crate::log::PartitionMarks, from: Millis) -> Result<i64> {
    let (low, high) = (marks.low, marks.high);
    let hint = match log.offset_for_time(&marks.topic, marks.partition, from)? {
        TimeHint::End => return Ok(high),
        TimeHint::At(offset) => offset.clamp(low, high),
    };
    if hint <= low {
        return Ok(low);
    }
    let before = log.record_at(&marks.topic, marks.partition, hint - 1, high)?;
    Ok(match before {
        Some(r) if r.offset < hint && r.timestamp >= from => {
            tracing::warn!(topic = %marks.topic, partition = marks.partition, hint, "the broker's offset for the time is past records it should include; reading the partition from the start");
            low
        }
        _ => hint,
    })
}

/// How an export runs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub selection: Selection,
    /// `None`: JSON Lines to standard output.
    pub output: Option<PathBuf>,
    pub resume: bool,
    /// Records read between two checkpoints.
    pub checkpoint_every: u64,
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
    /// For tests: after this many records read, flush what was written past the last
    /// checkpoint and wait to be killed.
    pub pause_after: Option<u64>,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub written: u64,
    pub read: u64,
    pub undecodable: u64,
    pub partitions: usize,
    pub resumed: bool,
    pub elapsed: Duration,
}

/// Where an interrupted export stands, next to its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    selection: Selection,
    ranges: Vec<Range>,
    checkpoint_every: u64,
    /// The Avro file's sync marker, hex.
    marker: String,
    /// The range being read and the next offset to read in it.
    range: usize,
    next: i64,
    /// The output's length when this was written, after a flush to disk.
    bytes: u64,
    read: u64,
    written: u64,
    undecodable: u64,
    /// Records left out as void (ADR 0011).
    #[serde(default)]
    void: u64,
    /// The epochs seen in the range being read, up to `next` (`Fence::encode_epochs`): a
    /// resumed export judges the rest as an export that never stopped.
    #[serde(default)]
    epochs: String,
}

/// `<output>.checkpoint`.
pub fn checkpoint_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

impl Checkpoint {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::file(path))?;
        serde_json::from_str(&text).map_err(|e| Error::CheckpointMismatch {
            path: path.to_owned(),
            reason: format!("unreadable: {e}"),
        })
    }

    /// Replaces the file in one step, so a kill leaves the old or the new one.
    fn save(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp).map_err(Error::file(&tmp))?;
        serde_json::to_writer_pretty(&mut file, self)?;
        file.sync_data().map_err(Error::file(&tmp))?;
        std::fs::rename(&tmp, path).map_err(Error::file(path))?;
        Ok(())
    }
}

/// A sync marker that is a function of what is exported, so two runs of the same export give
/// the same bytes. Any 16 bytes unlikely to appear in the data do; FNV-1a twice gives them.
fn sync_marker(selection: &Selection, ranges: &[Range]) -> Result<[u8; 16]> {
    let text = serde_json::to_string(&(selection, ranges))?;
    let fnv = |seed: u64| {
        text.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_le_bytes());
    marker[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_le_bytes());
    Ok(marker)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A writer that counts the bytes it was given: the output's length once flushed.
#[derive(Debug)]
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type FileOut = Counted<BufWriter<File>>;

/// Where the records go.
enum Sink<'s> {
    Stdout(BufWriter<std::io::Stdout>),
    Jsonl(FileOut),
    Avro(Box<apache_avro::Writer<'s, FileOut>>),
}

impl std::fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stdout(_) => "Sink::Stdout",
            Self::Jsonl(_) => "Sink::Jsonl",
            Self::Avro(_) => "Sink::Avro",
        })
    }
}

impl Sink<'_> {
    /// Flushes everything written so far to disk; returns the output's length.
    fn flush(&mut self) -> Result<u64> {
        let file = match self {
            Self::Stdout(out) => {
                out.flush()?;
                return Ok(0);
            }
            Self::Jsonl(file) => file,
            Self::Avro(writer) => {
                let _ = writer.flush()?;
                writer.get_mut()
            }
        };
        file.flush()?;
        file.inner.get_ref().sync_data()?;
        Ok(file.bytes)
    }
}

/// An export under way.
struct Run<'s> {
    codec: Codec,
    /// The epochs seen in each partition read so far.
    fence: Fence,
    avro: &'s ExportSchema,
    sink: Sink<'s>,
    state: Checkpoint,
    checkpoint: Option<PathBuf>,
    pause_after: Option<u64>,
    bar: ProgressBar,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("sink", &self.sink)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Run<'_> {
    fn record(&mut self, range: usize, record: LogRecord) -> Result<Flow> {
        self.state.read += 1;
        self.bar.inc(1);
        self.write(&record)?;
        if self.state.read.is_multiple_of(self.state.checkpoint_every) {
            self.save(range, record.offset + 1)?;
        }
        if self.pause_after == Some(self.state.read) {
            let _ = self.sink.flush()?;
            self.bar.finish_and_clear();
            eprintln!("paused after {} records", self.state.read);
            loop {
                std::thread::park();
            }
        }
        Ok(Flow::Continue)
    }

    fn write(&mut self, record: &LogRecord) -> Result<()> {
        // A claim marker is not an event; an export that starts at a partition's start (every
        // export without --from) leaves out what the projectors void.
        match record.judge(&mut self.fence) {
            Verdict::Count => {}
            Verdict::Claim => return Ok(()),
            Verdict::Void => {
                self.state.void += 1;
                return Ok(());
            }
        }
        let selection = &self.state.selection;
        if selection.from.is_some_and(|from| record.timestamp < from)
            || selection.to.is_some_and(|to| record.timestamp >= to)
        {
            return Ok(());
        }
        let event = match self.codec.decode(&record.payload) {
            Ok(event) => event,
            Err(e) => {
                self.state.undecodable += 1;
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "undecodable record skipped");
                return Ok(());
            }
        };
        if selection
            .quiz
            .as_deref()
            .is_some_and(|q| q != event.quiz_id())
        {
            return Ok(());
        }
        match &mut self.sink {
            Sink::Stdout(out) => {
                serde_json::to_writer(&mut *out, &json_object(record, &event))?;
                out.write_all(b"\n")?;
            }
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &json_object(record, &event))?;
                out.write_all(b"\n")?;
            }
            Sink::Avro(writer) => {
                let value = self.avro.value(&self.codec, record, event.event_type())?;
                let _ = writer.append_value_ref(&value)?;
            }
        }
        self.state.written += 1;
        Ok(())
    }

    /// Flushes, then records that reading resumes at `next` in range `range`.
    fn save(&mut self, range: usize, next: i64) -> Result<()> {
        let bytes = self.sink.flush()?;
        self.state.range = range;
        self.state.next = next;
        self.state.bytes = bytes;
        self.state.epochs = self
            .state
            .ranges
            .get(range)
            .map(|r| Fence::encode_epochs(&self.fence.of_partition(&r.topic, r.partition)))
            .unwrap_or_default();
        if let Some(path) = &self.checkpoint {
            self.state.save(path)?;
        }
        Ok(())
    }
}

/// Runs an export to its end.
pub fn export(kafka: &KafkaArgs, options: &ExportOptions) -> Result<ExportReport> {
    let started = Instant::now();
    let selection = &options.selection;
    if options.output.is_none() && selection.format == Format::Avro {
        return Err(Error::Usage("--format avro needs --output FILE".into()));
    }
    if options.output.is_none() && options.resume {
        return Err(Error::Usage("--resume needs --output FILE".into()));
    }
    let checkpoint = options.output.as_deref().map(checkpoint_path);
    let saved = match &checkpoint {
        Some(path) if path.exists() => {
            if !options.resume {
                return Err(Error::CheckpointExists(path.clone()));
            }
            let saved = Checkpoint::load(path)?;
            if &saved.selection != selection {
                return Err(Error::CheckpointMismatch {
                    path: path.clone(),
                    reason: format!(
                        "it selected {}, this run selects {}",
                        serde_json::to_string(&saved.selection)?,
                        serde_json::to_string(selection)?
                    ),
                });
            }
            Some(saved)
        }
        Some(path) if options.resume => {
            tracing::info!(checkpoint = %path.display(), "nothing to resume; starting the export");
            None
        }
        _ => None,
    };
    let resumed = saved.is_some();

    let log = EventLog::connect(kafka)?;
    let state = match saved {
        Some(saved) => {
            // The topics are still there; and their metadata, now at hand, spares the first
            // read of each a wait for it.
            for topic in selection
                .topics
                .names(&Topics::with_prefix(&selection.topic_prefix))
            {
                let _ = log.partitions(&topic)?;
            }
            saved
        }
        None => {
            let ranges = plan(&log, selection)?;
            Checkpoint {
                marker: hex(&sync_marker(selection, &ranges)?),
                selection: selection.clone(),
                next: ranges.first().map_or(0, |r| r.start),
                ranges,
                checkpoint_every: options.checkpoint_every.max(1),
                range: 0,
                bytes: 0,
                read: 0,
                written: 0,
                undecodable: 0,
                void: 0,
                epochs: String::new(),
            }
        }
    };
    let avro = ExportSchema::new()?;
    let sink = open_sink(options, &state, &avro)?;
    let remaining: i64 = state
        .ranges
        .iter()
        .enumerate()
        .skip(state.range)
        .map(|(i, r)| {
            r.end
                - if i == state.range {
                    state.next.max(r.start)
                } else {
                    r.start
                }
        })
        .map(|n| n.max(0))
        .sum();
    let bar = if options.progress {
        ProgressBar::new(u64::try_from(remaining).unwrap_or(0))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("export {bar:40} {pos}/{len} records, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    tracing::info!(
        partitions = state.ranges.len(),
        records = remaining,
        resumed,
        "export started"
    );

    let mut fence = Fence::default();
    if let Some(range) = state.ranges.get(state.range) {
        fence.restore(
            &range.topic,
            range.partition,
            &Fence::decode_epochs(&state.epochs),
        );
    }
    let mut run = Run {
        codec: Codec::new(),
        fence,
        avro: &avro,
        sink,
        checkpoint,
        pause_after: options.pause_after,
        bar,
        state,
    };
    if !resumed {
        // The empty output (an Avro file's header) is the first checkpoint.
        let first = run.state.next;
        run.save(0, first)?;
    }
    let ranges = run.state.ranges.clone();
    for (i, range) in ranges.iter().enumerate().skip(run.state.range) {
        let from = if i == run.state.range {
            run.state.next.max(range.start)
        } else {
            range.start
        };
        let t = Instant::now();
        log.read(&range.topic, range.partition, from, range.end, |record| {
            run.record(i, record)
        })?;
        tracing::debug!(topic = %range.topic, partition = range.partition, from, end = range.end, elapsed = ?t.elapsed(), "partition read");
        let next = ranges.get(i + 1).map_or(0, |r| r.start);
        run.save(i + 1, next)?;
    }
    run.bar.finish_and_clear();
    if let Some(path) = &run.checkpoint {
        std::fs::remove_file(path).map_err(Error::file(path))?;
    }
    Ok(ExportReport {
        written: run.state.written,
        read: run.state.read,
        undecodable: run.state.undecodable,
        partitions: ranges.len(),
        resumed,
        elapsed: started.elapsed(),
    })
}

fn open_sink<'s>(
    options: &ExportOptions,
    state: &Checkpoint,
    avro: &'s ExportSchema,
) -> Result<Sink<'s>> {
    let Some(path) = &options.output else {
        return Ok(Sink::Stdout(BufWriter::new(std::io::stdout())));
    };
    let resumed = state.bytes > 0;
    let file = if resumed {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(Error::file(path))?;
        let len = file.metadata().map_err(Error::file(path))?.len();
        if len < state.bytes {
            return Err(Error::CheckpointMismatch {
                path: checkpoint_path(path),
                reason: format!(
                    "{} has {len} bytes, fewer than the {} it had at the checkpoint",
                    path.display(),
                    state.bytes
                ),
            });
        }
        // Whatever was written after the last checkpoint is written again.
        file.set_len(state.bytes).map_err(Error::file(path))?;
        let _ = file.seek(SeekFrom::End(0)).map_err(Error::file(path))?;
        file
    } else {
        File::create(path).map_err(Error::file(path))?
    };
    let out = Counted {
        inner: BufWriter::with_capacity(1 << 16, file),
        bytes: state.bytes,
    };
    Ok(match state.selection.format {
        Format::Jsonl => Sink::Jsonl(out),
        Format::Avro => {
            let marker = unhex(&state.marker).ok_or_else(|| Error::CheckpointMismatch {
                path: checkpoint_path(path),
                reason: "its sync marker is not 16 hex bytes".into(),
            })?;
            let writer = apache_avro::Writer::builder()
                .schema(avro.schema())
                .writer(out)
                .marker(marker)
                .has_header(resumed)
                .build()?;
            Sink::Avro(Box::new(writer))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_bounds_parse_in_three_forms() {
        assert_eq!(
            "120".parse::<OffsetBound>(),
            Ok(OffsetBound {
                topic: None,
                partition: None,
                offset: 120
            })
        );
        assert_eq!(
            "3=7".parse::<OffsetBound>(),
            Ok(OffsetBound {
                topic: None,
                partition: Some(3),
                offset: 7
            })
        );
        assert_eq!(
            "answers:3=7".parse::<OffsetBound>(),
            Ok(OffsetBound {
                topic: Some("answers".into()),
                partition: Some(3),
                offset: 7
            })
        );
        assert!("-1".parse::<OffsetBound>().is_err());
        assert!("a=1".parse::<OffsetBound>().is_err());
    }

    #[test]
    fn the_most_specific_bound_wins() {
        let topics = Topics::with_prefix("t.");
        let bounds: Vec<OffsetBound> = ["10", "2=20", "answers:2=30"]
            .iter()
            .map(|b| b.parse().expect("parses"))
            .collect();
        assert_eq!(bound_for(&bounds, &topics, &topics.answers, 2), Some(30));
        assert_eq!(bound_for(&bounds, &topics, &topics.lifecycle, 2), Some(20));
        assert_eq!(bound_for(&bounds, &topics, &topics.answers, 1), Some(10));
        assert_eq!(bound_for(&[], &topics, &topics.answers, 1), None);
    }

    #[test]
    fn markers_round_trip_through_hex() {
        let marker = [0xa5u8; 16];
        assert_eq!(unhex(&hex(&marker)), Some(marker));
        assert_eq!(unhex("zz"), None);
    }
}
