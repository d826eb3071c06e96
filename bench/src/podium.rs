//! Podium's HTTP API as the load generator calls it: quizzes, joins, host commands and answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::measure::Recorder;

/// Questions per benchmark quiz: the most a quiz may have, so answers last long.
pub const QUESTIONS: i32 = 100;

/// The correct choice of question `n` (choices 0..4).
pub fn correct_choice(n: i32) -> i64 {
    i64::from(n % 4)
}

/// One HTTP client for everything the load generator sends: connections are pooled and kept
/// alive, as a fleet of phones would each keep theirs.
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?)
}

#[derive(Debug)]
pub struct Player {
    pub id: String,
    pub token: String,
    /// Points the command API reported after this player's last answer.
    pub total: AtomicU64,
}

/// A quiz created over HTTP, its players, and how far the host has taken it.
#[derive(Debug)]
pub struct Game {
    pub quiz_id: String,
    pub host: String,
    pub players: Vec<Player>,
    /// The question the host last started.
    pub started: AtomicI32,
    /// Held while the host starts a question, so only one caller starts it.
    pub starting: tokio::sync::Mutex<()>,
    /// Answers finished (whatever their outcome) per question, 1-based.
    pub finished: Vec<AtomicU64>,
}

impl Game {
    /// Counts one answer to question `n` as done, whatever became of it, so the host can move on.
    pub fn finish_one(&self, n: i32) {
        if let Some(finished) = self.finished.get(usize::try_from(n).unwrap_or(0)) {
            let _ = finished.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Why a call failed, as a short stable kind: the problem's `code`, else the status, else the
/// transport error.
pub fn failure_kind(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http_{status}"))
}

pub fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub command_url: String,
    pub query_url: String,
    /// How long each host question start took: a start closes the question before it, and
    /// the quiz's answers wait behind it.
    pub starts: Arc<Recorder>,
    /// Behind a gateway: each player and host sends as a client address of its own, in
    /// `X-Forwarded-For`, as the internet's clients reach a gateway. The gateway's per-client
    /// rate limit would otherwise see one client.
    pub forwarded: bool,
}

/// A made-up client address for `who`, stable for the run: 10.x.y.z.
fn client_address(who: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    who.hash(&mut hasher);
    let [a, b, c, ..] = hasher.finish().to_le_bytes();
    format!("10.{a}.{b}.{c}")
}

impl Api {
    /// `request` as sent by the client `who` (a token), behind a gateway.
    fn from(&self, request: reqwest::RequestBuilder, who: &str) -> reqwest::RequestBuilder {
        if self.forwarded {
            request.header("x-forwarded-for", client_address(who))
        } else {
            request
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<(u16, Value)> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.command_url))
            .json(body);
        if let Some(token) = token {
            request = self.from(request.bearer_auth(token), token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.query_url))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Creates a quiz of [`QUESTIONS`] questions with a two-minute limit each, and joins
    /// `players` players to it, `parallel` joins at a time.
    pub async fn create_game(&self, title: &str, players: usize, parallel: usize) -> Result<Game> {
        let questions: Vec<Value> = (1..=QUESTIONS)
            .map(|n| {
                json!({
                    "text": format!("Question {n}?"),
                    "choices": ["A", "B", "C", "D"],
                    "correct_choice": correct_choice(n),
                    "time_limit_seconds": 120,
                })
            })
            .collect();
        let (status, created) = self
            .post(
                "/v1/quizzes",
                None,
                &json!({"title": title, "questions": questions}),
            )
            .await?;
        if status != 201 {
            bail!("creating a quiz: {status} {created}");
        }
        let code = created["join_code"].as_str().unwrap_or_default().to_owned();
        let players: Vec<Player> = futures::stream::iter(0..players)
            .map(|i| {
                let code = code.clone();
                async move {
                    let body = json!({"join_code": code, "name": format!("player {i}")});
                    let (status, joined) = self.post("/v1/join", None, &body).await?;
                    if status != 201 {
                        bail!("joining: {status} {joined}");
                    }
                    Ok(Player {
                        id: joined["player_id"].as_str().unwrap_or_default().to_owned(),
                        token: joined["player_token"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        total: AtomicU64::new(0),
                    })
                }
            })
            .buffered(parallel)
            .try_collect()
            .await?;
        Ok(Game {
            quiz_id: created["quiz_id"].as_str().unwrap_or_default().to_owned(),
            host: created["host_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            players,
            started: AtomicI32::new(0),
            starting: tokio::sync::Mutex::new(()),
            finished: (0..=QUESTIONS).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Makes sure question `n` of `game` is open. The host starts the next question only once
    /// every answer to the one before has finished, so no answer races a close. The wait for
    /// those answers holds no lock: with more answers in flight than a round of questions, a
    /// caller for question n + 1 could otherwise hold the host's lock while the answers to n
    /// it waits for queue behind that same lock.
    pub async fn open_question(&self, game: &Game, n: i32) -> Result<()> {
        loop {
            let started = game.started.load(Ordering::Acquire);
            if started >= n {
                return Ok(());
            }
            let next = started + 1;
            let before = usize::try_from(next - 1).unwrap_or(0);
            if before > 0 {
                let everyone = game.players.len() as u64;
                while game.finished[before].load(Ordering::Acquire) < everyone {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let _starting = game.starting.lock().await;
            if game.started.load(Ordering::Acquire) >= next {
                continue;
            }
            let path = format!("/v1/quizzes/{}/questions/{next}/start", game.quiz_id);
            let sent = Instant::now();
            let (status, body) = self.post(&path, Some(&game.host), &json!({})).await?;
            if status != 200 {
                self.starts.error("start_failed", Instant::now());
                bail!("starting question {next}: {status} {body}");
            }
            let now = Instant::now();
            self.starts.ok(now - sent, now);
            game.started.store(next, Ordering::Release);
        }
    }

    /// Player `p` of `game` answers question `n`; the error is the kind of failure.
    pub async fn answer(
        &self,
        game: &Game,
        p: usize,
        n: i32,
        choice: i64,
    ) -> std::result::Result<(), String> {
        let player = &game.players[p];
        let response = self
            .http
            .post(format!(
                "{}/v1/quizzes/{}/answers",
                self.command_url, game.quiz_id
            ))
            .bearer_auth(&player.token)
            .json(&json!({"question": n, "choice": choice}));
        let response = self.from(response, &player.token).send().await;
        let outcome = match response {
            Err(e) => Err(transport_kind(&e)),
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                if status == 201 {
                    if let Some(total) = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["total"].as_u64())
                    {
                        player.total.store(total, Ordering::Release);
                    }
                    Ok(())
                } else {
                    Err(failure_kind(status, &body))
                }
            }
        };
        game.finish_one(n);
        outcome
    }
}

/// Creates `count` games of `players` each, `parallel` joins at a time.
pub async fn create_games(
    api: &Api,
    prefix: &str,
    count: usize,
    players: usize,
    parallel: usize,
) -> Result<Vec<Arc<Game>>> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            api.create_game(&format!("{prefix} {i}"), players, parallel)
                .await
                .map(Arc::new)
        })
        .buffered(4)
        .try_collect()
        .await
}
