//! The topics decode with a second Avro implementation: fastavro (PyPI), given only
//! `schemas/avro/*.avsc` and the Avro specification. It picks each record's writer schema by
//! the CRC-64-AVRO fingerprint in the record, computed by fastavro itself, never by a header,
//! and must read exactly what Podium's own codec reads.
//!
//! `deploy/local/install.sh` installs fastavro into `.podium/python`; `PODIUM_PYTHON` names
//! another interpreter.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use podium_e2e::game::{Acks, create, host, play_question};
use podium_e2e::processes::Processes;
use podium_schemas::{Codec, Event};
use podium_testkit::read_log;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    std::env::var_os("PODIUM_PYTHON")
        .map_or_else(|| repo().join(".podium/python/bin/python3"), PathBuf::from)
}

/// Each event's type and fields as JSON, the shape the Python decoder prints.
fn as_json(event: &Event) -> Result<serde_json::Value> {
    let body = match event {
        Event::QuizCreated(e) => serde_json::to_value(e)?,
        Event::PlayerJoined(e) => serde_json::to_value(e)?,
        Event::PlayerKicked(e) => serde_json::to_value(e)?,
        Event::JoiningLocked(e) => serde_json::to_value(e)?,
        Event::QuestionStarted(e) => serde_json::to_value(e)?,
        Event::QuestionClosed(e) => serde_json::to_value(e)?,
        Event::QuizFinished(e) => serde_json::to_value(e)?,
        Event::AnswerSubmitted(e) => serde_json::to_value(e)?,
    };
    Ok(serde_json::json!({"event_type": event.event_type(), "event": body}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fastavro_reads_every_record_on_the_topics_by_its_fingerprint() -> Result<()> {
    let python = python();
    ensure!(
        python.exists(),
        "{} is missing: run deploy/local/install.sh (it installs fastavro), or set PODIUM_PYTHON",
        python.display()
    );

    // A whole quiz: every event type is on the topics.
    let stack = Processes::start().await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, 5, 2).await?;
    host(&client, &game, "lock").await?;
    play_question(&client, &game, 1, &acks).await?;
    play_question(&client, &game, 2, &acks).await?;
    let kick = format!("players/{}/kick", game.players[4].0);
    host(&client, &game, &kick).await?;
    host(&client, &game, "finish").await?;

    let topics = stack.kafka.topics();
    let records = read_log(
        stack.broker.bootstrap(),
        &[&topics.lifecycle, &topics.answers],
    )
    .await?;
    let codec = Codec::new();
    let ours: Vec<serde_json::Value> = records
        .iter()
        .map(|r| as_json(&codec.decode(&r.payload)?))
        .collect::<Result<_>>()?;
    let types: std::collections::BTreeSet<&str> = ours
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    ensure!(
        types.len() == 8,
        "not every event type was played: {types:?}"
    );

    let mut decoder = std::process::Command::new(&python)
        .arg(repo().join("analyst/python/decode_records.py"))
        .arg(repo().join("schemas/avro"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    {
        let mut stdin = decoder.stdin.take().context("the decoder's stdin")?;
        for record in &records {
            let hex: String = record.payload.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(stdin, "{hex}")?;
        }
    }
    let output = decoder.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "fastavro could not decode the topics ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let theirs: Vec<serde_json::Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(
        theirs.len() == ours.len(),
        "fastavro decoded {} of {} records",
        theirs.len(),
        ours.len()
    );
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        ensure!(
            a == b,
            "record {i} differs:\n  podium:   {a}\n  fastavro: {b}"
        );
    }
    Ok(())
}
