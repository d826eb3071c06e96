//! The whole of Podium in one test process: a real tansu broker and a real Redis (started by the
//! testkit), topics under a unique prefix, and the command API, the projector and the query API
//! running in-process on free ports.

use std::time::Duration;

use anyhow::{Context, Result};
use podium_runtime::KafkaArgs;
use podium_testkit::{Broker, Redis, unique};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A test's token secret; any 32 bytes do.
pub const TOKEN_SECRET: &str = "podium-test-secret-of-at-least-32-bytes";

/// Every service of Podium, running.
#[derive(Debug)]
pub struct Stack {
    pub broker: Broker,
    pub redis: Redis,
    pub kafka: KafkaArgs,
    pub namespace: String,
    pub command_url: String,
    pub query_url: String,
    pub http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

fn stop_signal() -> (oneshot::Sender<()>, impl std::future::Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

impl Stack {
    pub async fn start() -> Result<Self> {
        let broker = Broker::start().await?;
        let redis = Redis::start().await?;
        let kafka = KafkaArgs::new(broker.bootstrap(), format!("{}.", unique("t")));
        broker
            .create_topics(&kafka.topics().with_partitions())
            .await?;
        let namespace = unique("podium");
        let mut stack = Self {
            broker,
            redis,
            kafka,
            namespace,
            command_url: String::new(),
            query_url: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            stops: vec![],
            tasks: vec![],
        };
        stack.command_url = stack.start_command_api().await?;
        stack.start_projector();
        stack.query_url = stack.start_query_api().await?;
        Ok(stack)
    }

    pub fn command_config(&self) -> podium_command_api::Config {
        podium_command_api::Config {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            kafka: self.kafka.clone(),
            token_secret: TOKEN_SECRET.into(),
            ack_timeout_ms: 10_000,
            producer_queue: 100_000,
        }
    }

    async fn start_command_api(&mut self) -> Result<String> {
        let app = podium_command_api::App::build(&self.command_config()).await?;
        let url = format!("http://{}", app.local_addr()?);
        let (stop, signal) = stop_signal();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = app.run_until(signal).await {
                eprintln!("command API failed: {e:#}");
            }
        }));
        Ok(url)
    }

    pub fn projector_config(&self) -> podium_projectors::Config {
        podium_projectors::Config {
            kafka: self.kafka.clone(),
            redis_url: self.redis.url(),
            namespace: self.namespace.clone(),
            group: format!("{}leaderboard", self.kafka.topic_prefix),
            batch_max: 500,
            batch_linger_ms: 5,
        }
    }

    fn start_projector(&mut self) {
        let config = self.projector_config();
        let (stop, signal) = stop_signal();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = podium_projectors::run(&config, signal).await {
                eprintln!("projector failed: {e:#}");
            }
        }));
    }

    async fn start_query_api(&mut self) -> Result<String> {
        let config = podium_query_api::Config {
            listen: "127.0.0.1:0".parse()?,
            redis_url: self.redis.url(),
            namespace: self.namespace.clone(),
        };
        let app = podium_query_api::App::build(&config).await?;
        let url = format!("http://{}", app.local_addr()?);
        let (stop, signal) = stop_signal();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = app.run_until(signal).await {
                eprintln!("query API failed: {e:#}");
            }
        }));
        Ok(url)
    }

    /// Sends a JSON command; returns the status and the JSON body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.command_url))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        Ok((
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        ))
    }

    /// Reads from the query API; returns the status and the JSON body.
    pub async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.query_url))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        Ok((
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        ))
    }

    /// Stops every service the way SIGTERM would, and waits for them to drain.
    pub async fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}
