//! `tail`: the event topics live, one line per record.

use std::io::Write;

use podium_runtime::KafkaArgs;
use podium_schemas::Codec;
use podium_schemas::fence::{Fence, Verdict};
use rdkafka::Offset;

use crate::error::Result;
use crate::export::TopicChoice;
use crate::log::{EventLog, Flow};
use crate::record::{human_line, human_undecodable, json_object, undecodable_object};

/// How `tail` runs.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topics: TopicChoice,
    pub json: bool,
    pub from_beginning: bool,
    pub quiz: Option<String>,
    /// Stop after this many lines (all when `None`).
    pub limit: Option<u64>,
}

/// Follows the topics and writes each record to `out` until the limit, or forever.
pub fn tail(kafka: &KafkaArgs, options: &TailOptions, out: &mut impl Write) -> Result<()> {
    let log = EventLog::connect_live(kafka)?;
    let start = if options.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut starts = Vec::new();
    for topic in options.topics.names(&kafka.topics()) {
        for marks in log.partitions(&topic)? {
            starts.push((topic.clone(), marks.partition, start));
        }
    }
    let codec = Codec::new();
    let mut shown = 0u64;
    if options.limit == Some(0) {
        return Ok(());
    }
    // From where the tail starts: records voided by a marker before it are not known as void.
    let mut fence = Fence::default();
    log.follow(&starts, |record| {
        if record.judge(&mut fence) != Verdict::Count {
            return Ok(Flow::Continue);
        }
        let line = match codec.decode(&record.payload) {
            Ok(event) => {
                if options
                    .quiz
                    .as_deref()
                    .is_some_and(|q| q != event.quiz_id())
                {
                    return Ok(Flow::Continue);
                }
                if options.json {
                    serde_json::to_string(&json_object(&record, &event))?
                } else {
                    human_line(&record, &event)
                }
            }
            // An undecodable record cannot be told apart by quiz: show it unless filtering.
            Err(_) if options.quiz.is_some() => return Ok(Flow::Continue),
            Err(e) if options.json => undecodable_object(&record, &e.to_string()).to_string(),
            Err(e) => human_undecodable(&record, &e.to_string()),
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        shown += 1;
        Ok(if options.limit.is_some_and(|l| shown >= l) {
            Flow::Stop
        } else {
            Flow::Continue
        })
    })
}
