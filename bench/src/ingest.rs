//! Ingest: answers submitted over HTTP across one huge quiz and many small ones. First closed
//! loop (a fixed number of answers in flight, as fast as the stack acknowledges them) to find
//! the maximum rate, then open loop at half of it to read the latency a provisioned stack
//! gives. Open-loop latency runs from each answer's scheduled time, so a stalled server is not
//! hidden by the generator waiting for it (coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::measure::{Recorded, Recorder};
use crate::podium::{Api, Game, QUESTIONS};

/// Every answer the games can take, in an order that lets the host move on: all of question 1
/// (player by player, interleaving the games), then all of question 2, and so on.
#[derive(Debug)]
pub struct Answers {
    games: Vec<Arc<Game>>,
    /// (game, player) in the order they answer each question.
    round: Vec<(usize, usize)>,
    next: AtomicUsize,
}

impl Answers {
    pub fn new(games: Vec<Arc<Game>>) -> Self {
        let most = games.iter().map(|g| g.players.len()).max().unwrap_or(0);
        let mut round = Vec::new();
        for p in 0..most {
            for (g, game) in games.iter().enumerate() {
                if p < game.players.len() {
                    round.push((g, p));
                }
            }
        }
        Self {
            games,
            round,
            next: AtomicUsize::new(0),
        }
    }

    /// The next answer to send: its game, player and question; `None` once every question of
    /// every game is answered.
    fn claim(&self) -> Option<(Arc<Game>, usize, i32)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let per_round = self.round.len().max(1);
        let question = i32::try_from(i / per_round).ok()? + 1;
        if question > QUESTIONS || self.round.is_empty() {
            return None;
        }
        let (g, p) = self.round[i % per_round];
        Some((self.games[g].clone(), p, question))
    }

    /// Answers left.
    pub fn remaining(&self) -> usize {
        let total = self.round.len() * usize::try_from(QUESTIONS).unwrap_or(0);
        total.saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

/// Sends one answer (opening its question first if needed) and records it against `since`.
async fn submit(api: &Api, answers: &Answers, recorder: &Recorder, since: Instant) -> bool {
    let Some((game, p, question)) = answers.claim() else {
        return false;
    };
    let waiting = Instant::now();
    let opened = api.open_question(&game, question).await;
    recorder.waited(waiting.elapsed());
    if let Err(e) = opened {
        tracing::warn!(error = %e, "the host could not start a question");
        recorder.error("host_start_failed", Instant::now());
        game.finish_one(question);
        return true;
    }
    let choice = rand::rng().random_range(0..4);
    let outcome = api.answer(&game, p, question, choice).await;
    let now = Instant::now();
    match outcome {
        Ok(()) => recorder.ok(now - since, now),
        Err(kind) => recorder.error(&kind, now),
    }
    true
}

/// Progress on stderr once a second while a phase runs.
pub async fn report_progress(what: &str, recorder: &Recorder, stop: &AtomicBool, total: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    let _ = tick.tick().await;
    while !stop.load(Ordering::Relaxed) {
        let _ = tick.tick().await;
        let latency = recorder.latency();
        let per_second = latency.count - last;
        last = latency.count;
        eprintln!(
            "  {what:<14} {:>4.0}/{:.0} s  {per_second:>7}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            recorder
                .started()
                .elapsed()
                .as_secs_f64()
                .min(total.as_secs_f64()),
            total.as_secs_f64(),
            latency.p50_ms,
            latency.p99_ms,
        );
    }
}

/// Closed loop: `in_flight` answers outstanding at all times, for `duration`; progress is
/// printed under `label`.
pub async fn saturate(
    api: &Api,
    answers: &Arc<Answers>,
    in_flight: usize,
    duration: Duration,
    label: &str,
) -> Recorded {
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (api, answers, recorder) = (api.clone(), answers.clone(), recorder.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if !submit(&api, &answers, &recorder, Instant::now()).await {
                        break;
                    }
                }
            })
        })
        .collect();
    let progress = {
        let (recorder, stop, label) = (recorder.clone(), stop.clone(), label.to_owned());
        tokio::spawn(async move { report_progress(&label, &recorder, &stop, duration).await })
    };
    for worker in workers {
        let _ = worker.await;
    }
    // Measured before the progress line's last tick, which can come up to a second later.
    let recorded = recorder.finish();
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    recorded
}

/// Most answers outstanding in open loop before the generator itself counts as overloaded.
const OPEN_LOOP_CEILING: usize = 8192;

/// Open loop: answers scheduled at `rate` per second for `duration`, whatever the stack does.
pub async fn at_rate(
    api: &Api,
    answers: &Arc<Answers>,
    rate: f64,
    duration: Duration,
    progress_label: &str,
) -> Recorded {
    open_loop(rate, duration, progress_label, |recorder, since| {
        let (api, answers) = (api.clone(), answers.clone());
        async move {
            let _ = submit(&api, &answers, &recorder, since).await;
        }
    })
    .await
}

/// The open-loop generator: starts `send` at `rate` a second for `duration`, whether or not
/// earlier sends are back. `send` records its outcome, timed from `since`, its scheduled
/// start. Beyond [`OPEN_LOOP_CEILING`] outstanding, a send is counted as `generator_backlog`.
pub async fn open_loop<S, F>(
    rate: f64,
    duration: Duration,
    progress_label: &str,
    send: S,
) -> Recorded
where
    S: Fn(Arc<Recorder>, Instant) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = {
        let (recorder, stop) = (recorder.clone(), stop.clone());
        let label = progress_label.to_owned();
        tokio::spawn(async move { report_progress(&label, &recorder, &stop, duration).await })
    };
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = tokio::time::Instant::now();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut sent = 0u32;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let scheduled = start + interval * sent;
        if scheduled.duration_since(start) >= duration {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        sent += 1;
        if outstanding.load(Ordering::Relaxed) >= OPEN_LOOP_CEILING {
            recorder.error("generator_backlog", Instant::now());
            continue;
        }
        let _ = outstanding.fetch_add(1, Ordering::Relaxed);
        let sending = send(recorder.clone(), scheduled.into_std());
        let outstanding = outstanding.clone();
        let _ = tasks.spawn(async move {
            sending.await;
            let _ = outstanding.fetch_sub(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    // Measured before the progress line's last tick, which can come up to a second later.
    let recorded = recorder.finish();
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    recorded
}
