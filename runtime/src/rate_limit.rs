//! Rate limits keyed by who is asking (a client address, a player, a quiz), on governor's
//! generic cell rate algorithm.

use std::hash::Hash;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::problem::Problem;

/// `count` requests per `period`, with bursts of up to `burst`. A count of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Rate {
    pub fn per_second(count: u32, burst: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(1),
            burst,
        }
    }

    /// A minute's allowance, which may all be used at once.
    pub fn per_minute(count: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(60),
            burst: count,
        }
    }

    fn quota(self) -> Option<Quota> {
        let count = NonZeroU32::new(self.count)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(count);
        Quota::with_period(self.period / count.get()).map(|q| q.allow_burst(burst))
    }
}

/// Requests per second and burst per client address; flattened into each API's configuration.
#[derive(Debug, Clone, Args)]
pub struct ClientRateArgs {
    /// Requests per second allowed from one client address; 0 turns the limit off (for example
    /// behind a gateway that limits, or a NAT that puts a stadium behind one address).
    #[arg(long, env = "PODIUM_RATE_PER_CLIENT", default_value_t = 200)]
    pub rate_per_client: u32,

    /// Requests one client address may send in a burst above its rate.
    #[arg(long, env = "PODIUM_RATE_BURST_PER_CLIENT", default_value_t = 400)]
    pub rate_burst_per_client: u32,
}

impl ClientRateArgs {
    pub fn rate(&self) -> Rate {
        Rate::per_second(self.rate_per_client, self.rate_burst_per_client)
    }
}

/// A keyed limiter; `None` inside when the rate is 0 (off). Create it inside a Tokio runtime:
/// a background task forgets idle keys.
#[derive(Debug, Clone)]
pub struct RateLimiter<K: Hash + Eq + Clone> {
    limiter: Option<Arc<DefaultKeyedRateLimiter<K>>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimiter<K> {
    pub fn new(rate: Rate) -> Self {
        let limiter = rate.quota().map(|quota| {
            let limiter = Arc::new(governor::RateLimiter::keyed(quota));
            // Forget idle keys now and then, so the key store stays bounded.
            let weak = Arc::downgrade(&limiter);
            drop(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    let _ = tick.tick().await;
                    let Some(limiter) = weak.upgrade() else {
                        return;
                    };
                    limiter.retain_recent();
                }
            }));
            limiter
        });
        Self { limiter }
    }

    /// `Ok` if `key` may go on now; otherwise how long until it may.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check_key(key)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }
}

/// The 429 problem, with `Retry-After` in whole seconds, rounded up.
pub fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {seconds} s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        let _ = response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Middleware: limits every request by the client's address. Needs the app to be served with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub async fn per_client(
    State(limiter): State<RateLimiter<std::net::IpAddr>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match limiter.check(&client.ip()) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many_requests(wait),
    }
}
