//! A [`tower::retry::Policy`] that backs off between tries, respects circuit breakers and, for
//! HTTP, honours `Retry-After`.
//!
//! [`RetryPolicy`] retries a request whose result its [`Classify`](crate::Classify) calls a
//! failure (or a timeout), up to [`max_attempts`](RetryPolicy::max_attempts) tries in all, waiting
//! a capped, jittered, exponentially growing delay before each retry. It is for the caller's side
//! of a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer): the retry sits above the breaker, so
//! every try is one call the breaker sees and counts. It bounds the tries of one request, not the
//! share of retries across all requests: it keeps no retry budget (such as tower's
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
//! # `Retry-After`
//!
//! A server that is overloaded or limiting the caller's rate often says when to come back: a
//! `503 Service Unavailable` or `429 Too Many Requests` with `Retry-After: 2` (seconds) or
//! `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (a date). Retrying sooner only earns another
//! refusal and burns a try, so for a response it would retry, a policy with a hint reader (a
//! [`RetryAfter`]) asks it how long the response wants it to wait:
//!
//! - **A hint within [`max_retry_after`](RetryPolicy::max_retry_after)** (default 30 s): the
//!   policy waits exactly that long, with no jitter (the server chose the time), and tries again.
//!   The wait is bounded by this limit, not by [`max_delay`](RetryPolicy::max_delay), which
//!   bounds the backoff only. A date in the past, or `Retry-After: 0`, means now.
//! - **A hint beyond the limit**: the policy gives up at once and returns that response; no more
//!   tries. Waiting less than asked would most likely be refused again, and waiting longer than
//!   the caller allows is not the policy's to decide. A number of seconds too large to hold is
//!   taken as "very long" (beyond any limit), not as unreadable.
//! - **No hint, or one that cannot be read** (garbage, a negative or fractional number, bytes that
//!   are not text): the usual capped, jittered backoff, as for any other failure.
//!
//! The limit's default of 30 s is the total request timeout of Microsoft's standard resilience
//! handler, which honours `Retry-After` by default: a wait longer than that could not end within
//! such a caller's budget anyway. If an overall timeout sits above the retry, keep
//! `max_retry_after` below it: otherwise the timeout ends the wait, and the caller gets the
//! timeout's error instead of the server's response.
//!
//! Which responses carry a hint is the reader's business. [`RetryPolicy::new`] reads none
//! ([`NoRetryAfter`]), as before hints existed, so a policy for any response type keeps its
//! backoff. With the `http` feature, `HttpRetryAfter` reads the `Retry-After` header of 429 and
//! 503 responses only, the two statuses that define it as "try again later" (RFC 9110 gives it to
//! 503, RFC 6585 to 429); a 500 or 502 with a `Retry-After` backs off like any other 5xx. And
//! `RetryPolicy::http()` puts it together with an HTTP classifier for a hyper or reqwest-style
//! client. Any `Fn(&Res) -> Option<Duration>` is a reader too, for other response types or
//! statuses. The hint is only read from a response the classifier would retry: a reader never
//! turns a success, or an outcome the classifier ignores, into a retry.
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
//! [`Policy::retry`](tower::retry::Policy::retry) on that clone only, so the attempt count a
//! `RetryPolicy` keeps is the count of one request. A policy that has already been asked to retry
//! (outside a `Retry`) keeps its count when cloned; hand `Retry` a fresh one. The request must be
//! [`Clone`]: each try sends a clone.
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
#![cfg_attr(
    feature = "http",
    doc = r#"
# Example: HTTP with `Retry-After`

[`RetryPolicy::http`] retries errors, 5xx, 408 and 429, and waits as a 429 or 503 asks. Here a
`/busy` resource answers its first try with `503` and `Retry-After: 2`, and a `/maintenance`
resource asks for an hour, beyond the 10 s this caller allows:

```
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use http::{Response, StatusCode};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::RetryPolicy;

// Paused time from the start: the clock moves only to the next timer (here, the retry's wait),
// as soon as there is nothing else to do. Tests run instantly and see exact durations.
#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = tries.clone();
    let mut client = ServiceBuilder::new()
        .retry(RetryPolicy::http().max_attempts(3).max_retry_after(Duration::from_secs(10)))
        .service(service_fn(move |path: &'static str| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            let response = match path {
                "/busy" if first => Response::builder().status(503).header("retry-after", "2"),
                "/busy" => Response::builder().status(200),
                _ => Response::builder().status(503).header("retry-after", "3600"),
            };
            async move { Ok::<_, BoxError>(response.body(()).unwrap()) }
        }));

    // The second try goes out exactly 2 s after the first, unjittered.
    let started = Instant::now();
    let response = client.ready().await.unwrap().call("/busy").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(tries.swap(0, Ordering::SeqCst), 2);

    // An hour is beyond the limit: the caller gets the 503 after one try, at once.
    let started = Instant::now();
    let response = client.ready().await.unwrap().call("/maintenance").await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}
```
"#
)]

mod after;
mod delay;
mod policy;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use after::HttpRetryAfter;
pub use after::{NoRetryAfter, RetryAfter};
pub use delay::RetryDelay;
pub use policy::RetryPolicy;
