//! The chaos run: breaks the stack on purpose, mid-burst, and records how long it takes to
//! serve again by itself: until answers are accepted again, and until the read models equal a
//! pure fold of the log. These are measurements, not pass marks; the fault tests
//! (`e2e/tests/recovery.rs`) check that nothing is lost or doubled.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use podium_e2e::game::{Acks, Game, answer_all, answered_to, create, host, play_question};
use podium_e2e::processes::{Client, Processes, Service};
use serde::Serialize;

/// Players of the quiz the faults hit.
const PLAYERS: usize = 200;

/// One fault and how long recovery took, in milliseconds from the moment the broken part was
/// back (or restarted).
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub fault: String,
    /// Until the first answer in flight was acknowledged.
    pub first_answer_ms: Option<u128>,
    /// Until every answer of the burst was acknowledged.
    pub all_answers_ms: Option<u128>,
    /// Until the read models equalled a pure fold of the log.
    pub read_model_ms: u128,
    /// Requests refused (503, or no connection) and retried by the players while it lasted.
    pub retried_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub revision: String,
    pub players: usize,
    pub recoveries: Vec<Recovery>,
    /// Acknowledged answers whose entry is in the log more than once: appends retried after
    /// an unknown outcome, folded once by every reader.
    pub copies_in_log: usize,
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

/// Starts question `n` and a burst of every player's answer; runs `fault` once 20 answers are
/// in; returns the moment `fault` says recovery starts from, and the times until the first and
/// every answer of the burst came back.
async fn burst_with<F, Fut>(
    client: &Client,
    game: &Game,
    n: i32,
    acks: &Acks,
    fault: F,
) -> Result<(Instant, u128, u128)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Instant>>,
{
    host(client, game, &format!("questions/{n}/start")).await?;
    let burst = answer_all(client, game, n, acks);
    let watch = async {
        podium_testkit::eventually("the burst to begin", Duration::from_secs(60), || async {
            (answered_to(acks, n) >= 20).then_some(())
        })
        .await?;
        let back = fault().await?;
        let before = answered_to(acks, n);
        podium_testkit::eventually(
            "an answer after the fault",
            Duration::from_secs(120),
            || async {
                (answered_to(acks, n) > before || before == game.players.len()).then_some(())
            },
        )
        .await?;
        anyhow::Ok((back, ms(back)))
    };
    let (answered, watched) = tokio::join!(burst, watch);
    let (back, first) = watched?;
    answered?;
    let all = ms(back);
    host(client, game, &format!("questions/{n}/close")).await?;
    Ok((back, first, all))
}

async fn caught_up(stack: &Processes, since: Instant) -> Result<u128> {
    stack.converges_to(&stack.fold_of_log().await?).await?;
    Ok(ms(since))
}

/// Runs every fault in turn on one stack.
pub async fn run(bin_dir: &Path, revision: String) -> Result<ChaosReport> {
    let mut stack = Processes::start_from(Some(bin_dir.to_path_buf())).await?;
    let client = stack.client();
    let acks = Acks::default();
    let game = create(&client, PLAYERS, 6).await?;
    play_question(&client, &game, 1, &acks).await?;
    let mut recoveries = Vec::new();
    let mut refused = client.refused();
    let mut retried = move |client: &Client| {
        let now = client.refused();
        let delta = now - refused;
        refused = now;
        delta
    };

    eprintln!("  chaos          broker kill -9, 5 s down, mid-burst");
    let (back, first, all) = {
        let broker = &mut stack.broker;
        burst_with(&client, &game, 2, &acks, || async move {
            broker.kill().await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            broker.restart().await?;
            Ok(Instant::now())
        })
        .await?
    };
    recoveries.push(Recovery {
        fault: "broker kill -9, 5 s down".into(),
        first_answer_ms: Some(first),
        all_answers_ms: Some(all),
        read_model_ms: caught_up(&stack, back).await?,
        retried_requests: retried(&client),
    });

    eprintln!("  chaos          projector kill -9, restarted at once, mid-burst");
    let (back, _, _) = {
        let stack = &mut stack;
        // The supervisor's part, as the local stack's supervisord or Kubernetes would.
        burst_with(&client, &game, 3, &acks, || async move {
            stack.kill(Service::Projector).await?;
            stack.start_service(Service::Projector).await?;
            Ok(Instant::now())
        })
        .await?
    };
    recoveries.push(Recovery {
        fault: "projector kill -9, restarted at once".into(),
        first_answer_ms: None,
        all_answers_ms: None,
        read_model_ms: caught_up(&stack, back).await?,
        retried_requests: retried(&client),
    });

    eprintln!("  chaos          Redis back from a snapshot older than the read models");
    stack.redis.save().await?;
    play_question(&client, &game, 4, &acks).await?;
    stack.converges_to(&stack.fold_of_log().await?).await?;
    stack.redis.stop().await?;
    stack.redis.start_again().await?;
    let back = Instant::now();
    recoveries.push(Recovery {
        fault: "Redis back from an older snapshot".into(),
        first_answer_ms: None,
        all_answers_ms: None,
        read_model_ms: caught_up(&stack, back).await?,
        retried_requests: retried(&client),
    });

    eprintln!("  chaos          Redis restarted empty");
    stack.redis.restart_empty().await?;
    let back = Instant::now();
    recoveries.push(Recovery {
        fault: "Redis restarted empty (refold from the log)".into(),
        first_answer_ms: None,
        all_answers_ms: None,
        read_model_ms: caught_up(&stack, back).await?,
        retried_requests: retried(&client),
    });

    eprintln!("  chaos          command API kill -9, restarted at once");
    host(&client, &game, "questions/5/start").await?;
    stack.kill(Service::CommandApi).await?;
    let back = Instant::now();
    stack.start_service(Service::CommandApi).await?;
    let listening = ms(back);
    answer_all(&client, &game, 5, &acks).await?;
    let all = ms(back);
    host(&client, &game, "questions/5/close").await?;
    recoveries.push(Recovery {
        fault: "command API kill -9, restarted at once".into(),
        first_answer_ms: Some(listening),
        all_answers_ms: Some(all),
        read_model_ms: caught_up(&stack, back).await?,
        retried_requests: retried(&client),
    });

    let acknowledged = acks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let checked = stack
        .every_acknowledged_answer_is_in_the_log_once(&acknowledged)
        .await?;
    ensure!(checked.acknowledged > 0, "no answer was acknowledged");
    Ok(ChaosReport {
        revision,
        players: PLAYERS,
        recoveries,
        copies_in_log: checked.copies,
    })
}

impl ChaosReport {
    pub fn print_table(&self) {
        println!(
            "\nPodium {}, chaos run, {} players answering mid-fault",
            self.revision, self.players
        );
        println!(
            "{:<46} {:>14} {:>14} {:>14} {:>9}",
            "fault", "first answer", "every answer", "read model", "retried"
        );
        let cell = |v: Option<u128>| v.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        for r in &self.recoveries {
            println!(
                "{:<46} {:>14} {:>14} {:>14} {:>9}",
                r.fault,
                cell(r.first_answer_ms),
                cell(r.all_answers_ms),
                format!("{} ms", r.read_model_ms),
                r.retried_requests
            );
        }
        println!(
            "times run from the moment the broken part was back; for the command API, 'first \
             answer' is until it listened again. 'retried': requests refused (503, no \
             connection) and retried by the players. Every acknowledged answer was checked in \
             the log: each is there as one entry; {} extra copies are there (appends retried \
             after an unknown outcome; readers fold copies once).",
            self.copies_in_log
        );
    }
}
