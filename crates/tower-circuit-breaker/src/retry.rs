//! A [`tower::retry::Policy`] that backs off between tries and respects circuit breakers.
//!
//! [`RetryPolicy`] retries a request whose result its [`Classify`] calls a failure (or a
//! timeout), up to [`max_attempts`](RetryPolicy::max_attempts) tries in all, waiting a capped,
//! jittered, exponentially growing delay before each retry. It is for the caller's side of a
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer): the retry sits above the breaker, so every
//! try is one call the breaker sees and counts. It bounds the tries of one request, not the share
//! of retries across all requests: it keeps no retry budget (such as tower's
//! [`TpsBudget`](tower::retry::budget::TpsBudget)); the breaker is what stops retries from piling
//! onto a service that is down.
//!
//! # Breaker rejections
//!
//! A [`CircuitOpen`](crate::CircuitOpen) or [`HalfOpenFull`](crate::HalfOpenFull) error (found
//! at the top of the error or anywhere in its [`source`](std::error::Error::source) chain) means
//! the breaker has already decided that the service is unwell; retrying at once would only be
//! rejected again. So a rejection is never retried after the usual backoff. It is retried only
//! when it says when the breaker will next admit a probe
//! ([`CircuitOpen::retry_after`](crate::CircuitOpen::retry_after)) and that is at most
//! [`max_rejection_wait`](RetryPolicy::max_rejection_wait): the policy then waits exactly that
//! long, and the next try is the breaker's probe. By default no rejection is waited out, and a
//! half-open breaker with every probe slot taken, or one isolated by hand, never says when it
//! will admit, so those are returned at once. Every try counts toward `max_attempts`, a rejected
//! one too, so a breaker that keeps reopening cannot hold a request forever.
//!
//! # Order
//!
//! Outermost first, as Polly wraps its strategies: fallback, overall timeout, retry, circuit
//! breaker, per-try timeout, client. The first layer added to a `ServiceBuilder` is the
//! outermost, so the builder reads in that order:
//!
//! ```text
//! ServiceBuilder::new()
//!     .timeout(overall)              // bounds the whole request, retries and waits included
//!     .retry(RetryPolicy::new())     // each try below is a new call
//!     .layer(CircuitBreakerLayer::new(breaker))
//!     .timeout(per_try)              // an `Elapsed` is a timeout failure, counted and retried
//!     .service(client)
//! ```
//!
//! # Per-request state
//!
//! tower's [`Retry`](tower::retry::Retry) clones its policy for each request and calls
//! [`Policy::retry`] on that clone only, so the attempt count a `RetryPolicy` keeps is the
//! count of one request. A policy that has already been asked to retry (outside a `Retry`) keeps
//! its count when cloned; hand `Retry` a fresh one. The request must be [`Clone`]: each try sends
//! a clone.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::{
//!     CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, RetryPolicy,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # tokio::time::pause();
//! let breaker = CircuitBreaker::with_config(
//!     "inventory",
//!     CircuitBreakerConfig::default().failure_threshold(2).break_duration(Duration::from_secs(30)),
//! )
//! .unwrap();
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = calls.clone();
//! let mut client = ServiceBuilder::new()
//!     .retry(
//!         RetryPolicy::new()
//!             .max_attempts(5)
//!             .base_delay(Duration::from_millis(50))
//!             .max_rejection_wait(Duration::from_secs(1)),
//!     )
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(move |_request: &'static str| {
//!         counted.fetch_add(1, Ordering::SeqCst);
//!         async { Err::<String, BoxError>("503".into()) }
//!     }));
//!
//! // Two tries fail and open the circuit; the third is rejected with a 30 s `retry_after`,
//! // longer than the policy will wait, so the retry stops there with the rejection.
//! let err = client.ready().await.unwrap().call("GET /items").await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! assert_eq!(breaker.metrics().rejected_open, 1);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::retry::Policy;
use tower::BoxError;

use crate::{Classify, DefaultClassifier, Rejection};

/// A [`tower::retry::Policy`] with capped exponential backoff and jitter that does not retry a
/// circuit breaker's rejection (or waits it out, when the breaker will admit soon enough).
///
/// Defaults: 3 tries in all, backoff from 100 ms doubling up to 10 s with jitter 0.5, no
/// rejection waited out, results classified by [`DefaultClassifier`] (any error is a failure).
/// See the [module docs](crate::retry).
#[derive(Debug, Clone)]
pub struct RetryPolicy<C = DefaultClassifier> {
    max_attempts: u32,
    base_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
    max_rejection_wait: Option<Duration>,
    classifier: C,
    /// Retries granted so far to the request this clone belongs to.
    retries: u32,
}

// ===== impl RetryPolicy =====

impl RetryPolicy {
    /// A policy with the defaults: 3 tries, 100 ms doubling to at most 10 s, jitter 0.5, no
    /// rejection waited out, [`DefaultClassifier`].
    pub const fn new() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
            max_rejection_wait: None,
            classifier: DefaultClassifier,
            retries: 0,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> RetryPolicy<C> {
    /// Tries in all, the first one included: `1` never retries, `3` retries twice. Default 3.
    /// The first try is always made, so `0` counts as `1`.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the first retry, before jitter. Default 100 ms.
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Each retry's backoff is the previous one's times `multiplier`: the `n`th retry waits
    /// `base_delay × multiplier^(n−1)`, capped at [`max_delay`](Self::max_delay). `1` keeps the
    /// backoff constant. Default 2. A backoff never shrinks: a multiplier below 1, or not a
    /// finite number, counts as 1.
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() && multiplier >= 1.0 {
            multiplier
        } else {
            1.0
        };
        self
    }

    /// The longest backoff, jitter included: growth stops here. Default 10 s.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much of each backoff is left to chance: a backoff `d` (already capped) becomes a delay
    /// drawn uniformly from `[d × (1 − jitter), d]`, so requests that failed together do not
    /// retry together, and no delay exceeds [`max_delay`](Self::max_delay). `0` is no jitter,
    /// `0.5` the "equal jitter" and `1` the "full jitter" of the AWS architecture blog. Default
    /// 0.5.
    ///
    /// Unlike [`BreakBackoff::jitter`](crate::BreakBackoff::jitter), which moves a break either
    /// way, this only shortens: `max_delay` is a bound a caller can plan an overall timeout by.
    /// A value outside `[0, 1]` is clamped to it; NaN counts as 0.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// Waits out a breaker's rejection whose [`retry_after`](crate::CircuitOpen::retry_after) is
    /// at most `wait`, then retries (the retry is the breaker's probe). The wait is the
    /// `retry_after` itself, not the backoff. A rejection that says nothing of when the breaker
    /// will admit (half-open and full, or isolated) is never retried. Default: no rejection is
    /// waited out.
    #[must_use]
    pub fn max_rejection_wait(mut self, wait: Duration) -> Self {
        self.max_rejection_wait = Some(wait);
        self
    }

    /// Decides which results are retried with `classifier` instead: those it calls a
    /// [`Failure`](crate::Outcome::Failure) or [`Timeout`](crate::Outcome::Timeout). Use the
    /// same classifier as the breaker's layer, so an `Ok` response with a 503 status is retried
    /// and an outcome the breaker ignores (a 404) is not.
    pub fn classify_with<C2>(self, classifier: C2) -> RetryPolicy<C2> {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: self.base_delay,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            jitter: self.jitter,
            max_rejection_wait: self.max_rejection_wait,
            classifier,
            retries: self.retries,
        }
    }

    /// The backoff before retry number `retry` (1 for the first), jitter drawn.
    fn backoff(&self, retry: u32) -> Duration {
        if self.base_delay.is_zero() || self.max_delay.is_zero() {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        // In nanoseconds, rounded, so 100 ms × 2 is 200 ms and not a nanosecond off either way.
        let grown = self.base_delay.as_nanos() as f64 * self.multiplier.powi(exponent);
        let capped = grown.min(self.max_delay.as_nanos() as f64);
        // The thread-local generator, not one kept in the policy: `Retry` clones the policy for
        // each request, and a generator cloned with it would give every request the same draws.
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::from_nanos(jittered.round() as u64).min(self.max_delay)
    }

    /// How long to wait before retrying after `rejection`, if it may be retried at all.
    fn rejection_wait(&self, rejection: &Rejection) -> Option<Duration> {
        let retry_after = rejection.retry_after()?;
        (retry_after <= self.max_rejection_wait?).then_some(retry_after)
    }
}

impl<C, Req, Res> Policy<Req, Res, BoxError> for RetryPolicy<C>
where
    C: Classify<Res, BoxError>,
    Req: Clone,
{
    type Future = RetryDelay;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, BoxError>) -> Option<RetryDelay> {
        let rejection = match result {
            Err(error) => Rejection::find(error.as_ref()),
            Ok(_) => None,
        };
        let wait_out = match &rejection {
            Some(rejection) => Some(self.rejection_wait(rejection)?),
            None if self.classifier.classify(result).is_failure() => None,
            None => return None,
        };
        if self.retries + 1 >= self.max_attempts {
            return None;
        }
        self.retries += 1;
        let delay = match wait_out {
            Some(retry_after) => {
                tracing::debug!(
                    retry = self.retries,
                    ?retry_after,
                    "waiting out a circuit breaker rejection before retrying"
                );
                retry_after
            }
            None => {
                let backoff = self.backoff(self.retries);
                tracing::debug!(retry = self.retries, ?backoff, "retrying a failed call");
                backoff
            }
        };
        Some(RetryDelay {
            sleep: tokio::time::sleep(delay),
        })
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

// ===== impl RetryDelay =====

pin_project! {
    /// The wait before a retry, returned by [`RetryPolicy`]'s [`Policy::retry`]: a
    /// [`tokio::time::sleep`], so paused time in tests drives it.
    pub struct RetryDelay {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl RetryDelay {
    /// When the wait ends.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.sleep.deadline()
    }
}

impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

impl fmt::Debug for RetryDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryDelay")
            .field("deadline", &self.sleep.deadline())
            .finish()
    }
}
