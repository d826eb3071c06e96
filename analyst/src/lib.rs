//! Podium's analyst tool: replay, export and time travel over the event topics, without writing
//! a Kafka consumer. It reads the topics by manual assignment (no consumer group, no committed
//! offsets) and never writes to Kafka or to a read model.
//!
//! - [`tail`]: the topics live, as lines or JSON.
//! - [`export`]: a selection of records as JSON Lines or an Avro Object Container File,
//!   resumable.
//! - [`leaderboard`]: a quiz's leaderboard as it stood at a moment, and what-if re-scoring under
//!   another rule version, both folded with the projectors' own pure functions.

pub mod avro;
pub mod error;
pub mod export;
pub mod history;
pub mod leaderboard;
pub mod log;
pub mod record;
pub mod tail;
pub mod time;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use podium_runtime::KafkaArgs;

pub use error::{Error, Result};
use export::{ExportOptions, Format, OffsetBound, Selection, TopicChoice};
use history::{Moment, QuizHistory};
use time::Timestamp;

#[derive(Debug, Parser)]
#[command(
    name = "podium-analyst",
    version,
    about = "Replay, export and time travel over Podium's event topics.",
    long_about = "Replay, export and time travel over Podium's event topics.\n\n\
        Reads the lifecycle and answers topics by manual assignment: it joins no consumer group, \
        commits no offset, and writes nothing to Kafka or to any read model. Records go to \
        standard output, progress bars and messages to standard error (progress bars only on a \
        terminal). docs/analysts.md has worked examples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow the event topics live, one line per record (human-readable, or JSON).
    Tail(TailArgs),
    /// Export records as JSON Lines or an Avro Object Container File.
    ///
    /// Selects by topic, record time, offsets and quiz. Reads each partition up to the end it had
    /// when the export started, in offset order, partition by partition (the lifecycle topic
    /// first), in constant memory. When --output is a file, a checkpoint `<output>.checkpoint`
    /// lets an interrupted export continue with --resume; the result is the same, byte for
    /// byte, as an uninterrupted export.
    Export(ExportArgs),
    /// A quiz's leaderboard as it stood, recomputed from the log.
    ///
    /// Folds the quiz's events with the projectors' own pure functions. --as-of T counts every
    /// event whose own time (created_at, joined_at, started_at, closed_at, finished_at, an
    /// answer's received_at) is at or before T; --after-question N stops right after question N
    /// closed. Without either: everything the log holds now.
    Leaderboard(LeaderboardArgs),
    /// A what-if leaderboard under another scoring rule version.
    ///
    /// Re-scores every answer from its raw facts (correct or not, elapsed ms, and the question's
    /// points and time limit from QuizCreated) and folds the quiz again. Touches no read model.
    /// Rule versions: 1 = speed points round(P × (1 − t/2T)) plus the streak bonus (the live
    /// rule); 2 = the full points P for any correct answer, plus the same streak bonus.
    Rescore(RescoreArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Which topics to follow.
    #[arg(long, value_enum, default_value = "all")]
    pub topic: TopicChoice,

    /// Print each record as a JSON object (the export's JSON Lines format) instead of a line of
    /// text.
    #[arg(long)]
    pub json: bool,

    /// Start from the beginning of each partition instead of its end.
    #[arg(long)]
    pub from_beginning: bool,

    /// Show only this quiz's records.
    #[arg(long, value_name = "QUIZ_ID")]
    pub quiz: Option<String>,

    /// Stop after this many records (default: follow until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Which topics to export.
    #[arg(long, value_enum, default_value = "all")]
    pub topic: TopicChoice,

    /// Only records with a timestamp at or after this RFC 3339 time (exact: the record
    /// timestamps are compared, offsets-for-times is only a starting point).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<Timestamp>,

    /// Only records with a timestamp before this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<Timestamp>,

    /// Start at this offset (inclusive): OFFSET for every partition, PARTITION=OFFSET, or
    /// TOPIC:PARTITION=OFFSET with TOPIC lifecycle, answers or a topic name. Repeatable; the
    /// most specific one applies.
    #[arg(long, value_name = "BOUND")]
    pub from_offset: Vec<OffsetBound>,

    /// Stop before this offset (exclusive), in the same forms as --from-offset.
    #[arg(long, value_name = "BOUND")]
    pub to_offset: Vec<OffsetBound>,

    /// Only this quiz's records.
    #[arg(long, value_name = "QUIZ_ID")]
    pub quiz: Option<String>,

    /// Output format: JSON Lines, or an Avro Object Container File with the writer schema
    /// embedded.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,

    /// Write to this file (required for avro and --resume). Default: JSON Lines on standard
    /// output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Continue the interrupted export recorded in `<output>.checkpoint` (with the same
    /// selection). Without a checkpoint, the export starts from the beginning.
    #[arg(long, requires = "output")]
    pub resume: bool,

    /// Records read between two checkpoints (each flushes the output to disk).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub checkpoint_every: u64,

    /// Test hook: after N records read, flush and wait to be killed.
    #[arg(long, value_name = "N", hide = true)]
    pub pause_after: Option<u64>,
}

/// The moment to look at a quiz.
#[derive(Debug, Args)]
pub struct MomentArgs {
    /// The leaderboard as it stood at this RFC 3339 time, by the events' own times.
    #[arg(long, value_name = "RFC3339", conflicts_with = "after_question")]
    pub as_of: Option<Timestamp>,

    /// The leaderboard right after question N (numbered from 1) closed.
    #[arg(long, value_name = "N")]
    pub after_question: Option<i32>,
}

impl MomentArgs {
    fn moment(&self) -> Moment {
        match (self.as_of, self.after_question) {
            (Some(t), _) => Moment::AsOf(t),
            (_, Some(n)) => Moment::AfterQuestion(n),
            _ => Moment::Latest,
        }
    }
}

/// What `leaderboard` and `rescore` both read and print.
#[derive(Debug, Args)]
pub struct BoardArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// The quiz.
    #[arg(long, value_name = "QUIZ_ID")]
    pub quiz: String,

    #[command(flatten)]
    pub moment: MomentArgs,

    /// Print JSON instead of a table (for `leaderboard`, the query API's leaderboard shape).
    #[arg(long)]
    pub json: bool,

    /// Show only the first N rows.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
}

impl BoardArgs {
    /// Prints `board` as JSON or as the table `to_table` makes.
    fn print<B: serde::Serialize>(
        &self,
        board: &B,
        to_table: impl FnOnce(&B) -> String,
    ) -> Result<()> {
        let text = if self.json {
            serde_json::to_string_pretty(board)? + "\n"
        } else {
            to_table(board)
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        Ok(out.flush()?)
    }
}

#[derive(Debug, Args)]
pub struct LeaderboardArgs {
    #[command(flatten)]
    pub board: BoardArgs,
}

#[derive(Debug, Args)]
pub struct RescoreArgs {
    /// The scoring rule version to re-score with (1 or 2).
    #[arg(long, value_name = "VERSION")]
    pub rules: i32,

    #[command(flatten)]
    pub board: BoardArgs,
}

/// Runs a command, writing its output to standard output.
pub fn run(cli: Cli) -> Result<()> {
    let progress = std::io::stderr().is_terminal();
    let stdout = std::io::stdout();
    match cli.command {
        Command::Tail(args) => {
            let options = tail::TailOptions {
                topics: args.topic,
                json: args.json,
                from_beginning: args.from_beginning,
                quiz: args.quiz,
                limit: args.count,
            };
            tail::tail(&args.kafka, &options, &mut stdout.lock())
        }
        Command::Export(args) => {
            let options = ExportOptions {
                selection: Selection {
                    topic_prefix: args.kafka.topic_prefix.clone(),
                    topics: args.topic,
                    from: args.from.map(Timestamp::millis),
                    to: args.to.map(Timestamp::millis),
                    from_offsets: args.from_offset,
                    to_offsets: args.to_offset,
                    quiz: args.quiz,
                    format: args.format,
                },
                output: args.output.clone(),
                resume: args.resume,
                checkpoint_every: args.checkpoint_every,
                progress,
                pause_after: args.pause_after,
            };
            let report = export::export(&args.kafka, &options)?;
            let target = args
                .output
                .as_ref()
                .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
            eprintln!(
                "exported {} records to {target} ({} read from {} partitions{}{}) in {:.1?}",
                report.written,
                report.read,
                report.partitions,
                if report.undecodable > 0 {
                    format!(", {} undecodable skipped", report.undecodable)
                } else {
                    String::new()
                },
                if report.resumed { ", resumed" } else { "" },
                report.elapsed
            );
            Ok(())
        }
        Command::Leaderboard(LeaderboardArgs { board: args }) => {
            let history = QuizHistory::read(&args.kafka, &args.quiz, progress)?;
            let board = leaderboard::board(&history, args.moment.moment(), args.top)?;
            args.print(&board, leaderboard::Board::to_table)
        }
        Command::Rescore(RescoreArgs { rules, board: args }) => {
            let history = QuizHistory::read(&args.kafka, &args.quiz, progress)?;
            let board = leaderboard::rescore(&history, args.moment.moment(), rules, args.top)?;
            args.print(&board, leaderboard::Rescored::to_table)
        }
    }
}
