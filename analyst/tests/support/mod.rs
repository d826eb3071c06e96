//! Running the real `podium-analyst` binary against a test's broker.

#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tokio::process::Command;

/// The binary, with the broker and topic prefix in its environment, as an operator would set
/// them.
pub fn analyst(brokers: &str, prefix: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_podium-analyst"));
    let _ = command
        .env("PODIUM_KAFKA_BROKERS", brokers)
        .env("PODIUM_TOPIC_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs it to the end; fails with its stderr unless it succeeded. Returns stdout.
pub async fn run(brokers: &str, prefix: &str, args: &[&str]) -> Result<String> {
    let output = analyst(brokers, prefix)
        .args(args)
        .output()
        .await
        .context("running podium-analyst")?;
    ensure!(
        output.status.success(),
        "podium-analyst {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Parses JSON Lines.
pub fn json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}
