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
/// How long the group may take to settle: on a long log, the first claims read all of it.
const SETTLE: Duration = Duration::from_secs(900);

/// The survivors' logs: the first instance's and the third's.
fn survivors_logs(stack: &Processes) -> [(&'static str, String); 2] {
    [
        ("command-a", stack.log_of(Service::CommandApi)),
        (OTHERS[1], stack.log_of_instance(OTHERS[1])),
    ]
}

/// The claims a stretch of an instance's log reports.
fn claims_in(by: &str, log: &str) -> Vec<Claim> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("shard claimed from the ")?;
            let field = |name: &str| {
                line.split(&format!("{name}="))
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next())
                    .map(|v| v.trim_matches('"').to_owned())
            };
            Some(Claim {
                by: by.to_owned(),
                from: rest.split_whitespace().next()?.to_owned(),
                records_read: field("records_read")?.parse().ok()?,
                elapsed: field("elapsed").unwrap_or_default(),
            })
        })
        .collect()
}

/// Waits until every shard has a snapshot, so that a claim after the kill can read one.
async fn every_shard_saved(stack: &Processes) -> Result<()> {
    let redis = stack.redis.connection().await?;
    podium_testkit::eventually("every shard saved", SETTLE, || {
        let mut redis = redis.clone();
        async move {
            for shard in 0..podium_schemas::topics::LIFECYCLE_PARTITIONS {
                let key = format!("{{{}:command}}:snapshot:{shard}", stack.namespace);
                let saved: Option<u64> = redis::cmd("HGET")
                    .arg(key)
                    .arg("saved")
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                let _ = saved?;
            }
            Some(())
        }
    })
    .await?;
    Ok(())
}

/// A survivor's claim of a moved shard, as its log says.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub by: String,
    /// `snapshot`, or `log` (read from the log's start).
    pub from: String,
    pub records_read: u64,
    pub elapsed: String,
}

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
    /// The survivors' claims of the moved shards.
    pub claims: Vec<Claim>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub revision: String,
    pub instances: usize,
    /// Events of finished quizzes in the log before the group started.
    pub log_events: usize,
    /// The group's session timeout: a dead member is noticed after it.
    pub session_timeout_ms: u64,
    pub failovers: Vec<Failover>,
}

impl FailoverReport {
    pub fn print_table(&self) {
        println!(
            "\n{} command APIs in a group, session timeout {} ms, {} events in the log before",
            self.instances, self.session_timeout_ms, self.log_events
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
            for c in &f.claims {
                println!(
                    "  claimed by {} from the {}: {} records read in {}",
                    c.by, c.from, c.records_read, c.elapsed
                );
            }
        }
    }
}

pub async fn run(bin_dir: &Path, revision: String, log_events: usize) -> Result<FailoverReport> {
    let env = vec![
        ("PODIUM_COMMAND_INSTANCES".to_owned(), "group".to_owned()),
        ("PODIUM_SNAPSHOT_INTERVAL_MS".to_owned(), "1000".to_owned()),
    ];
    let mut stack = Processes::start_with(Some(bin_dir.to_path_buf()), env).await?;
    if log_events > 0 {
        // Only the command APIs are measured; the others would compete for the two cores.
        stack.kill(Service::Projector).await?;
        stack.kill(Service::QueryApi).await?;
        stack.terminate(Service::CommandApi).await?;
        let quizzes = crate::restart::write_log(&stack, log_events).await?;
        eprintln!("  wrote {quizzes} finished quizzes");
        stack.start_service(Service::CommandApi).await?;
    }
    let mut urls = vec![stack.command_url()];
    for name in OTHERS {
        urls.push(stack.start_instance(Service::CommandApi, name).await?);
    }
    let _ = stack
        .command_shards_settled(&OTHERS, &[true, true, true], SETTLE)
        .await?;
    every_shard_saved(&stack).await?;

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
    let logged_before = survivors_logs(&stack).map(|(_, log)| log.len());
    stack.kill_instance(OTHERS[0]).await?;
    let killed = Instant::now();
    let answer = survivor.answer(&game.quiz_id, token, 1, 1).await?;
    let first_answer_ms = killed.elapsed().as_millis();
    ensure!(answer.choice == 1, "the answer was recorded as {answer:?}");
    let _ = stack
        .command_shards_settled(&OTHERS, &[true, false, true], Duration::from_secs(90))
        .await?;
    let all_shards_ms = killed.elapsed().as_millis();
    let claims = survivors_logs(&stack)
        .into_iter()
        .zip(logged_before)
        .flat_map(|((by, log), before)| claims_in(by, log.get(before..).unwrap_or_default()))
        .collect();

    Ok(FailoverReport {
        revision,
        instances: urls.len(),
        log_events,
        session_timeout_ms: 6000,
        failovers: vec![Failover {
            killed: OTHERS[0].to_owned(),
            moved_quizzes: moved.len(),
            first_answer_ms,
            all_shards_ms,
            retried_requests: survivor.refused(),
            claims,
        }],
    })
}
