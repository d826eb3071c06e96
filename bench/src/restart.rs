//! The restart run: how long the command API takes to serve again, and how much memory it
//! holds, against the length of a log of finished quizzes (ADR 0010). Each size gets a stack of
//! its own; the log is written straight to the broker, as the command side writes it, then the
//! command API starts four ways:
//!
//! - `snapshots off`: it reads the whole log and keeps every quiz in memory (before ADR 0010);
//! - `first start`: snapshots on, none saved yet, so it reads the whole log too; the memory is
//!   measured again once its first save let the finished quizzes leave;
//! - `after kill -9`: it reads what the last snapshot did not hold;
//! - `after a clean stop`: the stop saved a last snapshot, so it reads nothing.
//!
//! These are measurements, not pass marks: `e2e/tests/recovery.rs` checks that a restart loses
//! and doubles nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use podium_e2e::processes::{Processes, Service};
use podium_testkit::{EventWriter, QuizLog, unique};
use serde::Serialize;

use crate::stack::rss;

/// Players and questions of each quiz written: 500 × 10 at a 90 % answer rate, about 5,000
/// events a quiz.
const PLAYERS: usize = 500;
const QUESTIONS: usize = 10;

/// One start of the command API.
#[derive(Debug, Clone, Serialize)]
pub struct Start {
    pub how: String,
    /// From the process's start until it listened.
    pub seconds: f64,
    /// What its log said it restored from.
    pub restored: String,
    /// Resident memory once it listened.
    pub rss_bytes: u64,
    /// Resident memory once the finished quizzes left memory, when that was waited for.
    pub rss_after_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Size {
    pub events: usize,
    pub quizzes: usize,
    pub write_seconds: f64,
    pub starts: Vec<Start>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub revision: String,
    pub sizes: Vec<Size>,
}

impl RestartReport {
    pub fn print_table(&self) {
        println!(
            "\n{:>10}  {:<20} {:>9} {:>10} {:>12}  restored from",
            "events", "start", "seconds", "RSS MiB", "after MiB"
        );
        for size in &self.sizes {
            for start in &size.starts {
                println!(
                    "{:>10}  {:<20} {:>9.2} {:>10.1} {:>12}  {}",
                    size.events,
                    start.how,
                    start.seconds,
                    mib(start.rss_bytes),
                    start
                        .rss_after_bytes
                        .map_or_else(|| "-".to_owned(), |b| format!("{:.1}", mib(b))),
                    start.restored
                );
            }
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs every size in `sizes` (events in the log).
pub async fn run(bin_dir: &Path, sizes: &[usize], revision: String) -> Result<RestartReport> {
    let mut report = RestartReport {
        revision,
        sizes: Vec::new(),
    };
    for &events in sizes {
        crate::step(&format!(
            "restart on a log of {events} events of finished quizzes"
        ));
        report.sizes.push(size(bin_dir, events).await?);
    }
    Ok(report)
}

async fn size(bin_dir: &Path, events: usize) -> Result<Size> {
    let mut stack = Processes::start_with(
        Some(bin_dir.to_path_buf()),
        vec![("PODIUM_SNAPSHOT_INTERVAL_MS".into(), "1000".into())],
    )
    .await?;
    // Only the command API is measured; the others would compete for the two cores.
    stack.kill(Service::Projector).await?;
    stack.kill(Service::QueryApi).await?;
    stack.terminate(Service::CommandApi).await?;

    let started = Instant::now();
    let quizzes = write_log(&stack, events).await?;
    let write_seconds = started.elapsed().as_secs_f64();
    eprintln!("  wrote {quizzes} quizzes in {write_seconds:.1} s");

    let mut starts = Vec::new();
    stack.set_env("PODIUM_COMMAND_SNAPSHOTS", "off");
    starts.push(start(&mut stack, "snapshots off", false).await?);
    stack.terminate(Service::CommandApi).await?;

    stack.set_env("PODIUM_COMMAND_SNAPSHOTS", "redis");
    starts.push(start(&mut stack, "first start", true).await?);
    stack.kill(Service::CommandApi).await?;
    starts.push(start(&mut stack, "after kill -9", true).await?);
    stack.terminate(Service::CommandApi).await?;
    starts.push(start(&mut stack, "after a clean stop", true).await?);
    Ok(Size {
        events,
        quizzes,
        write_seconds,
        starts,
    })
}

/// Writes finished quizzes until the log holds at least `events`; returns how many.
pub(crate) async fn write_log(stack: &Processes, events: usize) -> Result<usize> {
    let writer = EventWriter::new(stack.broker.bootstrap())?;
    let topics = stack.kafka.topics();
    let (mut written, mut quizzes) = (0, 0);
    while written < events {
        let quiz = QuizLog::play(&unique("restart"), PLAYERS, QUESTIONS, 0.9, quizzes as u64)?;
        let mut appends = futures::stream::iter(quiz.events())
            .map(|e| writer.append(topics.topic_of(e), e))
            .buffer_unordered(1024);
        while let Some(appended) = appends.next().await {
            appended?;
            written += 1;
        }
        quizzes += 1;
        if quizzes % 20 == 0 {
            eprintln!("  {written} of {events} events written");
        }
    }
    Ok(quizzes)
}

/// Starts the command API, times it until it listens, and reads its memory; with `settle`, also
/// once the finished quizzes left memory.
async fn start(stack: &mut Processes, how: &str, settle: bool) -> Result<Start> {
    let started = Instant::now();
    stack.start_service(Service::CommandApi).await?;
    let seconds = started.elapsed().as_secs_f64();
    let pid = stack
        .pid(Service::CommandApi)
        .context("the command API runs")?;
    let rss_bytes = rss(pid)?;
    let log = stack.log_of(Service::CommandApi);
    let restored = log
        .lines()
        .rev()
        .find(|l| l.contains("quizzes restored from"))
        .map(|l| {
            l.split_once("quizzes restored from")
                .map_or(l, |(_, r)| r)
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    let rss_after_bytes = if settle {
        stack
            .command_api_holds_no_quiz(Duration::from_secs(600))
            .await?;
        Some(rss(pid)?)
    } else {
        None
    };
    eprintln!(
        "  {how:<20} {seconds:>7.2} s, {:.1} MiB{}: {restored}",
        mib(rss_bytes),
        rss_after_bytes.map_or_else(String::new, |b| format!(", then {:.1} MiB", mib(b)))
    );
    Ok(Start {
        how: how.to_owned(),
        seconds,
        restored,
        rss_bytes,
        rss_after_bytes,
    })
}
