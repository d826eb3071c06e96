//! Freshness and fan-out, measured with probes: a probe is one correct answer by a player of a
//! small quiz, so it always changes the quiz's top 10. From its acknowledgement we time how
//! long until the query API shows the new points, and until SSE streams deliver them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::measure::{Recorded, Recorder};
use crate::podium::{Api, Game, correct_choice};

/// How long a probe's update may take before it counts as missed.
const MISSED_AFTER: Duration = Duration::from_secs(10);

/// Players of a probe quiz: at most the top 10, so every probe changes the top.
pub const PROBE_PLAYERS: usize = 10;

/// One probe: who answered, the points they had before, and when the answer was acknowledged.
#[derive(Debug, Clone)]
struct Probe {
    player_id: String,
    before: u64,
    acked: Option<Instant>,
}

/// Sends the probes of one quiz, one at a time.
#[derive(Debug)]
pub struct Prober {
    game: Arc<Game>,
    sent: usize,
    probes: Arc<RwLock<Vec<Probe>>>,
}

impl Prober {
    pub fn new(game: Arc<Game>) -> Self {
        Self {
            game,
            sent: 0,
            probes: Arc::default(),
        }
    }

    /// Sends the next probe; returns its player, the points it must reach, and its ack time.
    async fn send(&mut self, api: &Api) -> Result<(String, u64, Instant)> {
        let p = self.sent % self.game.players.len();
        let question = i32::try_from(self.sent / self.game.players.len())? + 1;
        self.sent += 1;
        api.open_question(&self.game, question).await?;
        let player = &self.game.players[p];
        let before = player.total.load(Ordering::Acquire);
        let index = {
            let mut probes = self.probes.write().unwrap_or_else(|e| e.into_inner());
            probes.push(Probe {
                player_id: player.id.clone(),
                before,
                acked: None,
            });
            probes.len() - 1
        };
        if let Err(kind) = api
            .answer(&self.game, p, question, correct_choice(question))
            .await
        {
            bail!("a probe answer was refused: {kind}");
        }
        let acked = Instant::now();
        let mut probes = self.probes.write().unwrap_or_else(|e| e.into_inner());
        probes[index].acked = Some(acked);
        Ok((
            player.id.clone(),
            player.total.load(Ordering::Acquire),
            acked,
        ))
    }
}

/// The top entries a frame carried: player id and points.
fn entries(event: &str, data: &str) -> Option<HashMap<String, u64>> {
    let v: Value = serde_json::from_str(data).ok()?;
    let entries = match event {
        "leaderboard" => &v["entries"],
        "snapshot" => &v["leaderboard"]["entries"],
        _ => return None,
    };
    Some(
        entries
            .as_array()?
            .iter()
            .filter_map(|e| Some((e["player_id"].as_str()?.to_owned(), e["points"].as_u64()?)))
            .collect(),
    )
}

/// Opens the dashboard stream of `quiz_id`.
async fn open_stream(
    api: &Api,
    quiz_id: &str,
) -> Result<impl futures::Stream<Item = Result<eventsource_stream::Event, String>> + use<>> {
    let response = api
        .http
        .get(format!("{}/v1/quizzes/{quiz_id}/events", api.query_url))
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        bail!("{}", crate::podium::failure_kind(status, &body));
    }
    Ok(response
        .bytes_stream()
        .eventsource()
        .map(|e| e.map_err(|e| e.to_string())))
}

#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    pub probes: u64,
    /// Acknowledged → the query API's player read shows the new points. Resolution: one read.
    pub visible: Recorded,
    /// Acknowledged → a dashboard's SSE stream delivers the new points.
    pub sse: Recorded,
}

/// Probes `count` times, `interval` apart (while other load runs), timing both paths.
pub async fn freshness(
    api: &Api,
    game: Arc<Game>,
    count: usize,
    interval: Duration,
) -> Result<Freshness> {
    let mut stream = open_stream(api, &game.quiz_id).await?;
    let (board_tx, board_rx) = watch::channel((Instant::now(), HashMap::new()));
    let reader = tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            if let Some(top) = entries(&event.event, &event.data) {
                let _ = board_tx.send((Instant::now(), top));
            }
        }
    });
    let visible = Recorder::new();
    let sse = Recorder::new();
    let mut prober = Prober::new(game.clone());
    let mut sent = 0u64;
    for _ in 0..count {
        let started = Instant::now();
        let (player, total, acked) = prober.send(api).await?;
        sent += 1;
        let path = format!("/v1/quizzes/{}/players/{player}", game.quiz_id);
        let read = async {
            loop {
                match api.get(&path).await {
                    Ok((200, v)) if v["points"].as_u64().unwrap_or(0) >= total => {
                        return Instant::now();
                    }
                    _ => tokio::task::yield_now().await,
                }
            }
        };
        let mut boards = board_rx.clone();
        let streamed = async {
            boards
                .wait_for(|(_, top)| top.get(&player).is_some_and(|p| *p >= total))
                .await
                .map(|b| b.0)
        };
        let (seen, streamed) = tokio::join!(
            tokio::time::timeout(MISSED_AFTER, read),
            tokio::time::timeout(MISSED_AFTER, streamed)
        );
        let now = Instant::now();
        match seen {
            Ok(at) => visible.ok(at.saturating_duration_since(acked), now),
            Err(_) => visible.error("missed", now),
        }
        match streamed {
            Ok(Ok(at)) => sse.ok(at.saturating_duration_since(acked), now),
            Ok(Err(_)) => sse.error("stream_ended", now),
            Err(_) => sse.error("missed", now),
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
    reader.abort();
    Ok(Freshness {
        probes: sent,
        visible: visible.finish(),
        sse: sse.finish(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct FanOut {
    pub connections: usize,
    /// Seconds to open every stream and receive its snapshot.
    pub connect_seconds: f64,
    pub connect_failures: u64,
    pub probes: usize,
    /// Acknowledged → delivered, over every stream and probe.
    pub delivery: Recorded,
    /// Deliveries that never came: streams × probes − deliveries.
    pub missed: u64,
    pub resyncs: u64,
    pub disconnects: u64,
    pub stream_errors: u64,
    pub query_api_rss_before_bytes: u64,
    pub query_api_rss_connected_bytes: u64,
    pub bytes_per_connection: u64,
}

#[derive(Debug, Default)]
struct StreamCounts {
    connected: AtomicU64,
    failed: AtomicU64,
    resyncs: AtomicU64,
    disconnects: AtomicU64,
    errors: AtomicU64,
}

/// One dashboard: reads its stream and reports when each probe's points arrive.
async fn dashboard(
    api: Api,
    quiz_id: String,
    probes: Arc<RwLock<Vec<Probe>>>,
    counts: Arc<StreamCounts>,
    seen: mpsc::UnboundedSender<(usize, Instant)>,
) {
    let mut stream = match open_stream(&api, &quiz_id).await {
        Ok(stream) => stream,
        Err(_) => {
            let _ = counts.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut next = 0;
    let mut first = true;
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            let _ = counts.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if first {
            first = false;
            let _ = counts.connected.fetch_add(1, Ordering::Relaxed);
        }
        match event.event.as_str() {
            "disconnect" | "reconnect" => {
                let _ = counts.disconnects.fetch_add(1, Ordering::Relaxed);
                return;
            }
            "snapshot" if event.data.contains("\"resync\":true") => {
                let _ = counts.resyncs.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let Some(top) = entries(&event.event, &event.data) else {
            continue;
        };
        let now = Instant::now();
        let probes = probes.read().unwrap_or_else(|e| e.into_inner());
        while let Some(probe) = probes.get(next) {
            if top.get(&probe.player_id).is_some_and(|p| *p > probe.before) {
                let _ = seen.send((next, now));
                next += 1;
            } else {
                break;
            }
        }
    }
}

/// Holds `connections` dashboard streams on one quiz and sends `probes` probes through it.
pub async fn fan_out(
    api: &Api,
    game: Arc<Game>,
    connections: usize,
    probes: usize,
    interval: Duration,
    rss: impl Fn() -> Result<u64>,
) -> Result<FanOut> {
    let rss_before = rss()?;
    let mut prober = Prober::new(game.clone());
    let counts = Arc::new(StreamCounts::default());
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut readers = Vec::with_capacity(connections);
    for i in 0..connections {
        readers.push(tokio::spawn(dashboard(
            api.clone(),
            game.quiz_id.clone(),
            prober.probes.clone(),
            counts.clone(),
            seen_tx.clone(),
        )));
        // Opened in waves, as a crowd arrives, not in one SYN flood.
        if i % 250 == 249 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(seen_tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    loop {
        let settled = counts.connected.load(Ordering::Relaxed)
            + counts.failed.load(Ordering::Relaxed)
            + counts.errors.load(Ordering::Relaxed);
        if settled >= connections as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {settled} of {connections} streams opened within 120 s");
        }
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            eprintln!("  fan-out        {settled}/{connections} streams open");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let the server settle its buffers before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss()?;
    eprintln!(
        "  fan-out        {} streams open in {connect_seconds:.1} s; query API RSS {} → {} MiB",
        counts.connected.load(Ordering::Relaxed),
        rss_before >> 20,
        rss_connected >> 20
    );
    let mut acked = Vec::with_capacity(probes);
    for k in 0..probes {
        let started = Instant::now();
        let (_, _, at) = prober.send(api).await.context("a fan-out probe")?;
        acked.push(at);
        if k % 10 == 9 {
            eprintln!("  fan-out        {}/{probes} probes", k + 1);
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in &readers {
        reader.abort();
    }
    let delivery = Recorder::new();
    let mut delivered = 0u64;
    while let Ok((probe, at)) = seen_rx.try_recv() {
        if let Some(acked) = acked.get(probe) {
            delivery.ok(at.saturating_duration_since(*acked), at);
            delivered += 1;
        }
    }
    let connected = counts.connected.load(Ordering::Relaxed);
    let bytes_per_connection = rss_connected.saturating_sub(rss_before) / connected.max(1);
    Ok(FanOut {
        connections,
        connect_seconds,
        connect_failures: counts.failed.load(Ordering::Relaxed),
        probes,
        delivery: delivery.finish(),
        missed: (connected * probes as u64).saturating_sub(delivered),
        resyncs: counts.resyncs.load(Ordering::Relaxed),
        disconnects: counts.disconnects.load(Ordering::Relaxed),
        stream_errors: counts.errors.load(Ordering::Relaxed),
        query_api_rss_before_bytes: rss_before,
        query_api_rss_connected_bytes: rss_connected,
        bytes_per_connection,
    })
}
