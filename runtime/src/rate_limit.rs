//! Rate limits keyed by who is asking (a client address, a player, a quiz), on governor's
//! generic cell rate algorithm.

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

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

    /// Gateways and load balancers whose `X-Forwarded-For` is believed, as addresses or
    /// networks, comma separated (`10.0.0.0/8,127.0.0.1/32`). A request from one of them is
    /// limited by the client address it forwarded; from anywhere else, by its own address, so a
    /// client cannot pick its bucket by sending the header itself. Empty: the header is ignored.
    #[arg(long, env = "PODIUM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,
}

impl ClientRateArgs {
    /// No per-address limit and no trusted proxy.
    pub fn off() -> Self {
        Self {
            rate_per_client: 0,
            rate_burst_per_client: 0,
            trusted_proxies: vec![],
        }
    }

    pub fn rate(&self) -> Rate {
        Rate::per_second(self.rate_per_client, self.rate_burst_per_client)
    }

    /// The per-client limit and how the client is told from its proxies. Create it inside a
    /// Tokio runtime, as [`RateLimiter`].
    pub fn limit(&self) -> ClientLimit {
        ClientLimit {
            limiter: RateLimiter::new(self.rate()),
            proxies: TrustedProxies(self.trusted_proxies.clone().into()),
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the
    /// rightmost `X-Forwarded-For` hop that is not a trusted proxy. Hops left of it were
    /// written by the client and prove nothing; an entry that is not an address ends the walk
    /// at the last proxy.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        let mut client = peer;
        for hop in forwarded.rev() {
            let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = hop;
            if !self.trusts(hop) {
                return hop;
            }
        }
        client
    }
}

/// The per-client limiter with its trusted proxies: the state of [`per_client`].
#[derive(Debug, Clone)]
pub struct ClientLimit {
    limiter: RateLimiter<IpAddr>,
    proxies: TrustedProxies,
}

/// The client's address as [`per_client`] found it, for handlers with limits of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

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

/// Middleware: limits every request by the client's address (see [`TrustedProxies`]) and
/// hands that address on as [`ClientIp`]. Needs the app to be served with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub async fn per_client(
    State(limit): State<ClientLimit>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = limit.proxies.client_of(peer.ip(), request.headers());
    match limit.limiter.check(&client) {
        Ok(()) => {
            let _ = request.extensions_mut().insert(ClientIp(client));
            next.run(request).await
        }
        Err(wait) => too_many_requests(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies(nets.iter().filter_map(|n| n.parse().ok()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value) {
                let _ = headers.append("x-forwarded-for", value);
            }
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = proxies(&[]);
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(
            none.client_of(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        let gateway = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            gateway.client_of(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        let chain = proxies(&["10.0.0.0/8", "192.0.2.10/32"]);
        // The client forged the first entry; the edge (192.0.2.10) and the gateway appended.
        let headers = forwarded(&["1.2.3.4, 203.0.113.7", "192.0.2.10"]);
        assert_eq!(chain.client_of(ip("10.1.2.3"), &headers), ip("203.0.113.7"));
        let v6 = forwarded(&["2001:db8::7"]);
        assert_eq!(chain.client_of(ip("10.1.2.3"), &v6), ip("2001:db8::7"));
    }

    #[test]
    fn a_trusted_proxy_without_a_usable_header_is_its_own_client() {
        let gateway = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            gateway.client_of(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        // Garbage right of the last proxy: the walk stops at the proxy, never left of it.
        let headers = forwarded(&["203.0.113.7, not-an-address"]);
        assert_eq!(gateway.client_of(ip("10.0.0.5"), &headers), ip("10.0.0.5"));
        // Only proxies: the leftmost of them is as far as anyone can tell.
        let only = forwarded(&["10.9.9.9, 10.0.0.6"]);
        assert_eq!(gateway.client_of(ip("10.0.0.5"), &only), ip("10.9.9.9"));
    }
}
