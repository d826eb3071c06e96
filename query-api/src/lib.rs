//! Podium's query side: leaderboards and ranks from the Redis read models. It never writes
//! events.

pub mod error;
pub mod http;
pub mod read_model;

use std::net::SocketAddr;

use clap::Parser;
use podium_runtime::rate_limit::{ClientRateArgs, RateLimiter};
use podium_schemas::read_model::Root;
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::read_model::ReadModel;

/// Configuration, from flags or the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "podium-query-api",
    version,
    about = "Podium's query API: leaderboards and player ranks from the read models."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PODIUM_QUERY_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Redis holding the hot read models.
    #[arg(
        long,
        env = "PODIUM_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// Root of every read-model key; the active generation is read under it.
    #[arg(long, env = "PODIUM_READ_MODEL_NAMESPACE", default_value = "podium")]
    pub namespace: String,

    #[command(flatten)]
    pub client_rate: ClientRateArgs,
}

/// A built query API; the listener is bound.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
}

impl App {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let read_model =
            ReadModel::connect(&config.redis_url, Root::new(&config.namespace)).await?;
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            router: http::router(read_model, RateLimiter::new(config.client_rate.rate())),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        podium_runtime::serve("query API", self.listener, self.router, shutdown).await?;
        Ok(())
    }
}
