//! Middleware that answers some errors with a fallback response instead: a default, a cached
//! value, another service.
//!
//! tower has no fallback layer. [`FallbackLayer`] wraps a service; when a call fails with an
//! error its [`ErrorPredicate`] selects, the [`Fallback`] produces the response in its place.
//! Errors the predicate does not select, and every success, pass through untouched: an
//! unselected error is the very `BoxError` the inner service returned, and downcasts as before.
//!
//! # Where it goes
//!
//! Outermost. Polly wraps, and Microsoft's standard resilience handler stacks, the strategies in
//! this order, outermost first: fallback, overall timeout, retry, circuit breaker, per-try
//! timeout, then the client. The first layer added to a [`tower::ServiceBuilder`] is the
//! outermost, so the builder reads in that order:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(FallbackLayer::..)           // answers what got through everything below
//!     .timeout(overall)                   // bounds the whole call, retries included
//!     .layer(RetryLayer::new(policy))     // tries again, but not a rejection
//!     .layer(CircuitBreakerLayer::new(b)) // sees every try
//!     .timeout(per_try)                   // a slow try is a failure to the breaker
//!     .service(client)
//! ```
//!
//! # The fallback
//!
//! The inner service takes the request by value, so by the time it fails the request is gone.
//! The three ready-made fallbacks deal with that in the two ways tower users know:
//!
//! - [`FallbackLayer::new`] takes an async closure given the error, `|err: BoxError| async {
//!   .. }`, returning `Result<Response, E>`. It never sees the request, so any request type works.
//! - [`FallbackLayer::new_sync`] takes a closure given the error that returns the response.
//! - [`FallbackLayer::service`] takes another [`Service`](tower::Service) (a replica, a cache)
//!   and calls it with a clone of the request, as `tower::retry` does: the request must be
//!   `Clone`, and every call clones it before the inner service runs. The fallback service is
//!   polled ready only when it is needed.
//!
//! A fallback that needs only part of the request (a key, a header) implements [`Fallback`] and
//! keeps just that part. The fallback, and the predicate, are cloned into each call's future: a
//! closure that captures large state should capture it in an `Arc`.
//!
//! A fallback that fails returns its own error (as a `BoxError`) in place of the one it was
//! called for.
//!
//! # Which errors
//!
//! By default every error ([`AnyError`]). [`when`](FallbackLayer::when) narrows it:
//! [`IsRejection`] selects calls a breaker turned away ([`CircuitOpen`](crate::CircuitOpen),
//! [`HalfOpenFull`](crate::HalfOpenFull)), [`IsTimeout`] selects tower's and tokio's `Elapsed`;
//! both also look through the error's `source()` chain. [`ErrorPredicate::or`] combines them,
//! and any `Fn(&BoxError) -> bool` is a predicate too.
//!
//! # Readiness and errors
//!
//! `poll_ready` is the inner service's. An error from it is returned as it is, not answered by
//! the fallback: in tower it means the service is unusable, not that a call failed (the breaker's
//! layer never returns one for an open circuit). The service's error is
//! [`BoxError`](tower::BoxError), as with tower's own timeout and load-shed layers.
//!
//! # Example
//!
//! A recommendations client that serves bestsellers while its breaker is open, and still reports
//! the failures that opened it:
//!
//! ```
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::fallback::{FallbackLayer, IsRejection};
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreaker::with_config(
//!     "recommendations",
//!     CircuitBreakerConfig::default().failure_threshold(2),
//! )
//! .unwrap();
//! let mut client = ServiceBuilder::new()
//!     .layer(FallbackLayer::new_sync(|_rejected| vec!["bestsellers"]).when(IsRejection))
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|_user: u64| async { Err::<Vec<&str>, BoxError>("503".into()) }));
//!
//! // Failures the breaker let through are not rejections: they pass through.
//! for _ in 0..2 {
//!     let err = client.ready().await.unwrap().call(7).await.unwrap_err();
//!     assert_eq!(err.to_string(), "503");
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//!
//! // Now the breaker rejects, and the fallback answers.
//! let response = client.ready().await.unwrap().call(7).await.unwrap();
//! assert_eq!(response, ["bestsellers"]);
//! # }
//! ```
//!
//! Falling back to a cache on a rejection or a timeout, with an async closure:
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::fallback::{ErrorPredicate, FallbackLayer, IsRejection, IsTimeout};
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # tokio::time::pause();
//! let mut client = ServiceBuilder::new()
//!     .layer(
//!         FallbackLayer::new(|err: BoxError| async move {
//!             Ok::<_, BoxError>(format!("cached price (fresh one failed: {err})"))
//!         })
//!         .when(IsRejection.or(IsTimeout)),
//!     )
//!     .timeout(Duration::from_secs(2))
//!     .layer(CircuitBreakerLayer::new(CircuitBreaker::new("prices")))
//!     .service(service_fn(|_sku: &str| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         Ok::<_, BoxError>(String::from("fresh price"))
//!     }));
//!
//! let price = client.ready().await.unwrap().call("sku-1").await.unwrap();
//! assert_eq!(price, "cached price (fresh one failed: request timed out)");
//! # }
//! ```

mod action;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod predicate;
mod service;

pub use self::action::{Fallback, FallbackFn, FallbackSyncFn, FallbackTo};
pub use self::future::{FallbackToFuture, ResponseFuture};
pub use self::layer::FallbackLayer;
pub use self::predicate::{AnyError, ErrorPredicate, IsRejection, IsTimeout, Or};
pub use self::service::FallbackService;
