//! Per-caller request rate: a token bucket per API key (or per client IP address when no keys
//! are configured). A request over the rate gets `RESOURCE_EXHAUSTED`, a message saying when to
//! retry, and the same delay in `retry-after-ms` metadata.
//!
//! A call pays one token when it starts. Streaming handlers that serve many requests per call
//! find the caller's budget (an [`api::StreamBudget`](crate::api::StreamBudget) over a [`RateBudget`]) in
//! the request extensions and charge it per message.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, Ready, ready};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::auth::{Principal, is_open_path};
use crate::api::StreamBudget;

/// Metadata key of the retry hint, in milliseconds (the same key the engine's refusals use).
pub use crate::api::RETRY_AFTER_KEY;

/// Buckets untouched for longer than they take to refill are dropped every this many requests,
/// so that callers seen once do not pile up.
const CLEANUP_EVERY: u64 = 1024;

/// A request rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: NonZeroU32,
}

/// Why a rate limit is invalid.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// The rate is not a positive, finite number.
    #[error("request rate must be a positive number of requests per second, got {0}")]
    Rate(f64),
    /// The burst is zero.
    #[error("request burst must be at least 1")]
    Burst,
}

impl RateLimit {
    /// `per_second` requests per second per caller on average, `burst` at once (`None`: the rate
    /// rounded up, at least 1).
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, RateLimitError> {
        // Below one request a day the refill period overflows nothing but means nothing either.
        if !(per_second.is_finite() && per_second >= 1.0 / 86_400.0) {
            return Err(RateLimitError::Rate(per_second));
        }
        let burst = burst.unwrap_or(per_second.ceil().min(f64::from(u32::MAX)) as u32);
        let burst = NonZeroU32::new(burst).ok_or(RateLimitError::Burst)?;
        Ok(Self { per_second, burst })
    }

    /// Average requests per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Requests accepted at once after a quiet period.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    fn quota(&self) -> Quota {
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        // `with_period` is only `None` for a zero period, which the `max` above rules out.
        Quota::with_period(period).unwrap_or(Quota::per_second(NonZeroU32::MIN)).allow_burst(self.burst)
    }
}

/// A call or stream message over its caller's rate.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "request rate limit of {per_second} per second (burst {burst}) exceeded for {caller}; retry in {retry_ms} ms"
)]
pub struct RateExceeded {
    per_second: f64,
    burst: u32,
    caller: String,
    retry_ms: u64,
}

impl RateExceeded {
    /// How long to wait before the caller's next request is accepted.
    pub fn retry_after(&self) -> Duration {
        Duration::from_millis(self.retry_ms)
    }
}

impl From<RateExceeded> for Status {
    /// `RESOURCE_EXHAUSTED` with the retry hint in the message and in `retry-after-ms` metadata.
    fn from(refusal: RateExceeded) -> Self {
        let mut status = Status::resource_exhausted(refusal.to_string());
        status.metadata_mut().insert(RETRY_AFTER_KEY, refusal.retry_ms.into());
        status
    }
}

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Key(usize),
    Peer(IpAddr),
    Unknown,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Key(_) => f.write_str("this API key"),
            Caller::Peer(ip) => write!(f, "client {ip}"),
            Caller::Unknown => f.write_str("this client"),
        }
    }
}

fn caller<B>(request: &Request<B>) -> Caller {
    let ext = request.extensions();
    if let Some(p) = ext.get::<Principal>() {
        return Caller::Key(p.key_index);
    }
    super::connections::peer_addr(request).map_or(Caller::Unknown, |a| Caller::Peer(a.ip()))
}

struct Limiter {
    limit: RateLimit,
    buckets: DefaultKeyedRateLimiter<Caller>,
    checks: AtomicU64,
}

impl Limiter {
    /// Takes one token from `caller`'s bucket, or says when one will be there.
    fn check(&self, caller: &Caller) -> Result<(), RateExceeded> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            self.buckets.retain_recent();
        }
        let Err(not_until) = self.buckets.check_key(caller) else { return Ok(()) };
        let wait = not_until.wait_time_from(self.buckets.clock().now());
        // Rounded up: retrying after the hint must succeed.
        let retry_ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1);
        Err(RateExceeded {
            per_second: self.limit.per_second,
            burst: self.limit.burst.get(),
            caller: caller.to_string(),
            retry_ms,
        })
    }
}

/// The bucket of one call's caller, found in the request extensions of every call the
/// [`RateLimitLayer`] let through (when a limit is set). The call itself paid one token; a
/// streaming handler charges each further message here, so a long-lived stream cannot send more
/// than the caller's rate.
#[derive(Clone)]
pub struct RateBudget {
    limiter: Arc<Limiter>,
    caller: Caller,
}

impl std::fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateBudget")
            .field("caller", &self.caller)
            .field("limit", &self.limiter.limit)
            .finish()
    }
}

impl RateBudget {
    /// Takes one token for one more request of this call, or refuses it with the same message
    /// and retry hint a refused call gets.
    pub fn charge(&self) -> Result<(), RateExceeded> {
        self.limiter.check(&self.caller)
    }
}

/// Tower layer enforcing a [`RateLimit`] per caller (a pass-through without one). It must sit
/// inside the [`AuthLayer`](super::auth::AuthLayer), whose [`Principal`] names the key.
#[derive(Clone, Default)]
pub struct RateLimitLayer {
    limiter: Option<Arc<Limiter>>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer").field("limit", &self.limiter.as_ref().map(|l| l.limit)).finish()
    }
}

impl RateLimitLayer {
    /// Limits every caller to `limit`; `None` lets every request through.
    pub fn new(limit: Option<RateLimit>) -> Self {
        let limiter = limit.map(|limit| {
            Arc::new(Limiter {
                limit,
                buckets: DefaultKeyedRateLimiter::keyed(limit.quota()),
                checks: AtomicU64::new(0),
            })
        });
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited { inner, limiter: self.limiter.clone() }
    }
}

/// The service built by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimited<S> {
    inner: S,
    limiter: Option<Arc<Limiter>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimited<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(limiter) = &self.limiter
            && !is_open_path(request.uri().path())
        {
            let caller = caller(&request);
            if let Err(refusal) = limiter.check(&caller) {
                tracing::debug!(path = request.uri().path(), "request over the rate limit");
                return Either::Left(ready(Ok(Status::from(refusal).into_http())));
            }
            let budget = RateBudget { limiter: Arc::clone(limiter), caller };
            request.extensions_mut().insert(StreamBudget::new(move || budget.charge().map_err(Status::from)));
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_rates_are_refused() {
        assert!(matches!(RateLimit::new(0.0, None), Err(RateLimitError::Rate(_))));
        assert!(matches!(RateLimit::new(f64::NAN, None), Err(RateLimitError::Rate(_))));
        assert!(matches!(RateLimit::new(-1.0, None), Err(RateLimitError::Rate(_))));
        assert!(matches!(RateLimit::new(5.0, Some(0)), Err(RateLimitError::Burst)));
        assert_eq!(RateLimit::new(2.5, None).unwrap().burst(), 3);
    }

    #[test]
    fn burst_then_refusal_with_a_retry_hint_per_caller() {
        let limiter = Limiter {
            limit: RateLimit::new(1.0, Some(2)).unwrap(),
            buckets: DefaultKeyedRateLimiter::keyed(RateLimit::new(1.0, Some(2)).unwrap().quota()),
            checks: AtomicU64::new(0),
        };
        let a = Caller::Key(0);
        assert!(limiter.check(&a).is_ok());
        assert!(limiter.check(&a).is_ok());
        let refusal = limiter.check(&a).expect_err("third request within a second is refused");
        let retry_ms = refusal.retry_after().as_millis();
        let status = Status::from(refusal);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let hint: u128 = status.metadata().get(RETRY_AFTER_KEY).unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(hint, retry_ms);
        assert!((1..=1000).contains(&hint), "{hint}");
        assert_eq!(
            status.message(),
            format!(
                "request rate limit of 1 per second (burst 2) exceeded for this API key; retry in {hint} ms"
            )
        );
        // Another caller has its own bucket.
        assert!(limiter.check(&Caller::Key(1)).is_ok());
    }

    #[test]
    fn a_budget_charges_the_bucket_of_its_caller() {
        let limit = RateLimit::new(1.0, Some(2)).unwrap();
        let limiter = Arc::new(Limiter {
            limit,
            buckets: DefaultKeyedRateLimiter::keyed(limit.quota()),
            checks: AtomicU64::new(0),
        });
        let budget = RateBudget { limiter: Arc::clone(&limiter), caller: Caller::Key(0) };
        assert!(limiter.check(&Caller::Key(0)).is_ok(), "the call's own token");
        assert!(budget.charge().is_ok(), "a second message");
        let refusal = budget.charge().expect_err("a third message within a second");
        assert!(refusal.to_string().contains("retry in"), "{refusal}");
        assert!(limiter.check(&Caller::Key(0)).is_err(), "messages and calls share the bucket");
        assert!(RateBudget { limiter, caller: Caller::Key(1) }.charge().is_ok());
    }
}
