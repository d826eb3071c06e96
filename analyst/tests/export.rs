//! `export` and `tail` against a real tansu broker holding played quizzes: an export killed
//! midway and resumed equals an uninterrupted one, byte for byte; time and offset ranges are
//! exact, also when they end past the last record; the Avro file decodes to the same records.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apache_avro::types::Value as Avro;
use podium_schemas::topics::Topics;
use podium_testkit::{Broker, EventWriter, QuizLog, unique};
use serde_json::Value;
use support::{analyst, json_lines, run};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A broker with two played quizzes in its topics.
struct Log {
    broker: Broker,
    prefix: String,
    quizzes: Vec<QuizLog>,
}

impl Log {
    async fn start() -> Result<Self> {
        let broker = Broker::start().await?;
        let prefix = format!("{}.", unique("t"));
        let topics = Topics::with_prefix(&prefix);
        broker.create_topics(&topics.with_partitions()).await?;
        let writer = EventWriter::new(broker.bootstrap())?;
        let quizzes = vec![
            QuizLog::play(&unique("quiz"), 20, 4, 0.9, 11)?,
            QuizLog::play(&unique("quiz"), 10, 3, 0.8, 12)?,
        ];
        for quiz in &quizzes {
            // Appended in order and acknowledged together: each partition keeps the order.
            let appends = quiz.events().map(|e| writer.append(topics.topic_of(e), e));
            let _ = futures::future::try_join_all(appends).await?;
        }
        Ok(Self {
            broker,
            prefix,
            quizzes,
        })
    }

    fn events(&self) -> usize {
        self.quizzes.iter().map(|q| q.events().count()).sum()
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        run(self.broker.bootstrap(), &self.prefix, args).await
    }

    /// Every record, as the unfiltered JSON Lines export gives them.
    async fn all(&self) -> Result<Vec<Value>> {
        json_lines(&self.run(&["export"]).await?)
    }
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

fn checkpoint(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.checkpoint", path.display()))
}

/// Starts an export that pauses after `after` records, waits until it says so, and kills it.
async fn export_killed_after(log: &Log, args: &[&str], after: u64) -> Result<()> {
    let after = after.to_string();
    let mut child = analyst(log.broker.bootstrap(), &log.prefix)
        .arg("export")
        .args(args)
        .args(["--pause-after", &after])
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let wanted = format!("paused after {after} records");
    let mut seen = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("waiting for the export to pause")??
    {
        if line.contains(&wanted) {
            // SIGKILL: no flush, no clean-up, as a crash or an operator's kill -9.
            child.kill().await?;
            return Ok(());
        }
        seen.push(line);
    }
    anyhow::bail!("the export ended without pausing: {seen:#?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_killed_midway_and_resumed_equals_an_uninterrupted_one() -> Result<()> {
    let log = Log::start().await?;
    let dir = tempfile::tempdir()?;
    for format in ["jsonl", "avro"] {
        let whole = dir.path().join(format!("whole.{format}"));
        let resumed = dir.path().join(format!("resumed.{format}"));
        let (whole_arg, resumed_arg) = (arg(&whole), arg(&resumed));
        let common = ["--format", format, "--checkpoint-every", "7"];
        let _ = log
            .run(&[&["export", "--output", &whole_arg][..], &common].concat())
            .await?;
        ensure!(
            !checkpoint(&whole).exists(),
            "a finished export leaves no checkpoint"
        );

        // Killed between two checkpoints, with what it read since the last one in the file.
        let args = [&["--output", &resumed_arg][..], &common].concat();
        export_killed_after(&log, &args, 40).await?;
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(checkpoint(&resumed))?)?;
        let at_checkpoint = saved["bytes"].as_u64().context("bytes")?;
        ensure!(
            saved["read"].as_u64() < Some(40),
            "the last checkpoint is before the kill: {saved}"
        );
        ensure!(
            std::fs::metadata(&resumed)?.len() > at_checkpoint,
            "the killed export wrote past its checkpoint"
        );
        // Without --resume, an interrupted export is not overwritten.
        let refused = analyst(log.broker.bootstrap(), &log.prefix)
            .args([&["export", "--output", &resumed_arg][..], &common].concat())
            .output()
            .await?;
        ensure!(
            !refused.status.success(),
            "export over an interrupted one without --resume"
        );
        ensure!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));

        let _ = log
            .run(
                &[
                    &["export", "--resume", "--output", &resumed_arg][..],
                    &common,
                ]
                .concat(),
            )
            .await?;
        ensure!(
            !checkpoint(&resumed).exists(),
            "the resumed export finished"
        );
        assert_eq!(
            std::fs::read(&resumed)?,
            std::fs::read(&whole)?,
            "{format}: resumed and uninterrupted exports are the same bytes"
        );
    }

    // The Avro file holds the same records as the JSON Lines, readable with its embedded schema.
    let lines = json_lines(&std::fs::read_to_string(dir.path().join("whole.jsonl"))?)?;
    assert_eq!(lines.len(), log.events());
    let reader = apache_avro::Reader::new(std::fs::File::open(dir.path().join("whole.avro"))?)?;
    let mut count = 0;
    for (value, line) in reader.zip(&lines) {
        let Avro::Record(fields) = value? else {
            anyhow::bail!("a record")
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            field("topic"),
            Some(Avro::String(
                line["topic"].as_str().unwrap_or_default().into()
            ))
        );
        assert_eq!(
            field("offset"),
            Some(Avro::Long(line["offset"].as_i64().unwrap_or(-1)))
        );
        assert_eq!(
            field("timestamp"),
            Some(Avro::TimestampMillis(
                line["timestamp"].as_i64().unwrap_or(-1)
            ))
        );
        let Some(Avro::Union(_, event)) = field("event") else {
            anyhow::bail!("an event union")
        };
        let Avro::Record(event) = *event else {
            anyhow::bail!("an event record")
        };
        assert_eq!(
            event
                .iter()
                .find(|(n, _)| n == "quiz_id")
                .map(|(_, v)| v.clone()),
            Some(Avro::String(
                line["event"]["quiz_id"].as_str().unwrap_or_default().into()
            ))
        );
        count += 1;
    }
    assert_eq!(count, lines.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_ending_past_the_last_record_ends_at_the_last_record() -> Result<()> {
    let log = Log::start().await?;
    let all = log.all().await?;
    assert_eq!(all.len(), log.events());
    let stamp = |r: &Value| r["timestamp"].as_i64().unwrap_or(-1);
    let mut stamps: Vec<i64> = all.iter().map(stamp).collect();
    stamps.sort_unstable();
    let (first, middle, last) = (
        stamps[0],
        stamps[stamps.len() / 2],
        stamps[stamps.len() - 1],
    );
    let rfc = |ms: i64| podium_analyst::time::Timestamp(ms).to_string();
    let day = 86_400_000;

    // From the middle to a day past the last record: exactly the records from the middle on,
    // and the export ends (at the high watermarks it started with).
    let tail = json_lines(
        &log.run(&["export", "--from", &rfc(middle), "--to", &rfc(last + day)])
            .await?,
    )?;
    let expected: Vec<&Value> = all.iter().filter(|r| stamp(r) >= middle).collect();
    assert_eq!(tail.iter().collect::<Vec<_>>(), expected);

    // Wholly past the end: nothing, even where the broker answers offset 0 for such a time.
    let none = log
        .run(&["export", "--from", &rfc(last + 1), "--to", &rfc(last + day)])
        .await?;
    assert_eq!(none, "");

    // Up to, not including, the middle.
    let head = json_lines(
        &log.run(&["export", "--from", &rfc(first - day), "--to", &rfc(middle)])
            .await?,
    )?;
    let expected: Vec<&Value> = all.iter().filter(|r| stamp(r) < middle).collect();
    assert_eq!(head.iter().collect::<Vec<_>>(), expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_topics_and_quizzes_select_exactly() -> Result<()> {
    let log = Log::start().await?;
    let all = log.all().await?;
    let place = |r: &Value| {
        (
            r["topic"].as_str().unwrap_or_default().to_owned(),
            r["partition"].as_i64().unwrap_or(-1),
            r["offset"].as_i64().unwrap_or(-1),
        )
    };
    let answers = format!("{}podium.answers.v1", log.prefix);

    // Offsets 1 to 4 of every partition, except answers partition 2 which starts at 3.
    let picked = json_lines(
        &log.run(&[
            "export",
            "--from-offset",
            "1",
            "--from-offset",
            "answers:2=3",
            "--to-offset",
            "5",
        ])
        .await?,
    )?;
    let expected: Vec<&Value> = all
        .iter()
        .filter(|r| {
            let (topic, partition, offset) = place(r);
            let from = if topic == answers && partition == 2 {
                3
            } else {
                1
            };
            (from..5).contains(&offset)
        })
        .collect();
    assert_eq!(picked.iter().collect::<Vec<_>>(), expected);

    // One quiz, answers only.
    let quiz = &log.quizzes[1];
    let picked = json_lines(
        &log.run(&["export", "--topic", "answers", "--quiz", &quiz.quiz_id])
            .await?,
    )?;
    assert_eq!(picked.len(), quiz.answer_count());
    assert!(
        picked.iter().all(|r| r["event_type"] == "AnswerSubmitted"
            && r["event"]["quiz_id"] == quiz.quiz_id.as_str())
    );

    // Avro needs a file.
    let refused = analyst(log.broker.bootstrap(), &log.prefix)
        .args(["export", "--format", "avro"])
        .output()
        .await?;
    assert!(!refused.status.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_shows_records_as_lines_or_json() -> Result<()> {
    let log = Log::start().await?;
    let quiz = &log.quizzes[0];
    let count = quiz.events().count().to_string();
    let lines = json_lines(
        &log.run(&[
            "tail",
            "--from-beginning",
            "--json",
            "--quiz",
            &quiz.quiz_id,
            "--count",
            &count,
        ])
        .await?,
    )?;
    assert_eq!(lines.len(), quiz.events().count());
    assert!(
        lines
            .iter()
            .all(|r| r["event"]["quiz_id"] == quiz.quiz_id.as_str())
    );
    let text = log
        .run(&[
            "tail",
            "--from-beginning",
            "--topic",
            "lifecycle",
            "--quiz",
            &quiz.quiz_id,
            "--count",
            "2",
        ])
        .await?;
    let text: Vec<&str> = text.lines().collect();
    assert_eq!(text.len(), 2);
    assert!(
        text[0].contains("QuizCreated") && text[0].contains(&quiz.quiz_id),
        "{text:?}"
    );
    assert!(text[1].contains("PlayerJoined"), "{text:?}");
    Ok(())
}
