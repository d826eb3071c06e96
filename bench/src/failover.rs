//! The failover run: three command APIs in a group (ADR 0011), one killed with `kill -9` while
//! its quizzes are being answered. Measured from the kill: until an answer to one of its quizzes,
//! sent through a survivor, is accepted (the failover window), and until the survivors serve
//! every shard. These are measurements, not pass marks: `e2e/tests/command_group.rs` checks that
//! nothing is lost or doubled across the move.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use podium_e2e::game::{Game, create, host};
use podium_e2e::processes::{Processes, Service};
use serde::Serialize;

/// The instances besides the first.
const OTHERS: [&str; 2] = ["command-b", "command-c"];
/// Quizzes created through each instance, so in its shards.
const QUIZZES_EACH: usize = 2;
const PLAYERS: usize = 20;

/// One kill and how long the move took.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub killed: String,
    /// Quizzes whose shard the killed instance owned.
    pub moved_quizzes: usize,
    /// From the kill until an answer to a moved quiz, retried every 200 ms through a survivor,
    /// was accepted.
    pub first_answer_ms: u128,
    /// From the kill until the survivors served every shard.
    pub all_shards_ms: u128,
    /// Requests refused (`503 quiz_moved`, or no connection) and retried meanwhile.
    pub retried_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub revision: String,
    pub instances: usize,
    /// The group's session timeout: a dead member is noticed after it.
    pub session_timeout_ms: u64,
    pub failovers: Vec<Failover>,
}

impl FailoverReport {
    pub fn print_table(&self) {
        println!(
            "\n{} command APIs in a group, session timeout {} ms",
            self.instances, self.session_timeout_ms
        );
        println!(
            "{:<12} {:>14} {:>18} {:>16} {:>9}",
            "killed", "moved quizzes", "first answer ms", "all shards ms", "retried"
        );
        for f in &self.failovers {
            println!(
                "{:<12} {:>14} {:>18} {:>16} {:>9}",
                f.killed, f.moved_quizzes, f.first_answer_ms, f.all_shards_ms, f.retried_requests
            );
        }
    }
}

pub async fn run(bin_dir: &Path, revision: String) -> Result<FailoverReport> {
    let env = vec![("PODIUM_COMMAND_INSTANCES".to_owned(), "group".to_owned())];
    let mut stack = Processes::start_with(Some(bin_dir.to_path_buf()), env).await?;
    let mut urls = vec![stack.command_url()];
    for name in OTHERS {
        urls.push(stack.start_instance(Service::CommandApi, name).await?);
    }
    let _ = stack
        .command_shards_settled(&OTHERS, &[true, true, true], Duration::from_secs(90))
        .await?;

    // Each instance creates quizzes in its own shards; every quiz's first question is open.
    let mut games: Vec<Vec<Game>> = Vec::new();
    for url in &urls {
        let client = stack.client_at(url);
        let mut own = Vec::new();
        for _ in 0..QUIZZES_EACH {
            let game = create(&client, PLAYERS, 2).await?;
            host(&client, &game, "questions/1/start").await?;
            own.push(game);
        }
        games.push(own);
    }

    // The second instance dies; an answer to one of its quizzes goes through the first.
    let survivor = stack.client();
    let moved = games.get(1).context("the second instance's quizzes")?;
    let game = moved.first().context("a quiz of the second instance")?;
    let (_, token) = game.players.first().context("a player")?;
    stack.kill_instance(OTHERS[0]).await?;
    let killed = Instant::now();
    let answer = survivor.answer(&game.quiz_id, token, 1, 1).await?;
    let first_answer_ms = killed.elapsed().as_millis();
    ensure!(answer.choice == 1, "the answer was recorded as {answer:?}");
    let _ = stack
        .command_shards_settled(&OTHERS, &[true, false, true], Duration::from_secs(90))
        .await?;
    let all_shards_ms = killed.elapsed().as_millis();

    Ok(FailoverReport {
        revision,
        instances: urls.len(),
        session_timeout_ms: 6000,
        failovers: vec![Failover {
            killed: OTHERS[0].to_owned(),
            moved_quizzes: moved.len(),
            first_answer_ms,
            all_shards_ms,
            retried_requests: survivor.refused(),
        }],
    })
}
