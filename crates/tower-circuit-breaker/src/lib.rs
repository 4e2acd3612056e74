//! A circuit breaker for Rust services: a lock-free engine you can call directly, shaped to sit in
//! a `tower` stack.
//!
//! This crate is for code that makes outbound calls (HTTP clients, gRPC channels, queue and
//! database clients) and wants them to fail fast while the other side is down.
//!
//! - [`CircuitBreaker`] is the engine: a named, cheaply cloned handle that admits or rejects
//!   calls, measures their outcomes and moves between [`CircuitState`]s. Use it through
//!   [`call`](CircuitBreaker::call), through permits ([`try_acquire`](CircuitBreaker::try_acquire))
//!   for code that is not one future, or wait on [`ready`](CircuitBreaker::ready) in a consumer
//!   loop.
//! - [`CircuitBreakerConfig`] says when it trips and recovers; it deserializes from YAML, TOML or
//!   JSON with durations such as `"30s"`, and is validated when a breaker is built.
//! - [`metrics`](CircuitBreaker::metrics), [`subscribe`](CircuitBreaker::subscribe) and `tracing`
//!   events show what it does; [`reset`](CircuitBreaker::reset),
//!   [`isolate`](CircuitBreaker::isolate) and [`disable`](CircuitBreaker::disable) override it.
//! - [`CircuitBreakerLayer`] puts a breaker in a `tower::ServiceBuilder` stack (see [`layer`]);
//!   [`FallbackLayer`] answers the errors you choose, [`RetryPolicy`] retries without hammering
//!   an open breaker, and with the `http` feature `HttpClassifier` and
//!   `GrpcClassifier` (in `classify::http` and `classify::grpc`) tell a failing response from a caller's mistake.
//!
//! # The order of the layers
//!
//! Polly and Microsoft's standard resilience handler wrap these strategies in one order, outermost
//! first: fallback, overall timeout, retry, circuit breaker, per-try timeout, then the client. In
//! tower the first layer added to a `ServiceBuilder` is the outermost, so the builder reads in
//! that order, and every try is seen by the breaker:
//!
//! ```
//! # use std::time::Duration;
//! # use tower::{BoxError, ServiceBuilder};
//! # use tower_circuit_breaker::fallback::{ErrorPredicate, FallbackLayer, IsRejection, IsTimeout};
//! # use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, RetryPolicy};
//! # let breaker = CircuitBreaker::new("upstream");
//! let client = ServiceBuilder::new()
//!     .layer(FallbackLayer::new_sync(|_: BoxError| "cached").when(IsRejection.or(IsTimeout)))
//!     .timeout(Duration::from_secs(2)) // overall
//!     .retry(RetryPolicy::new().max_attempts(3))
//!     .layer(CircuitBreakerLayer::new(breaker))
//!     .timeout(Duration::from_millis(500)) // per try: an `Elapsed` is a timeout failure
//!     .service(tower::service_fn(|request: &'static str| async move { Ok::<_, BoxError>(request) }));
//! # let _ = client;
//! ```
//!
//! In the closed state a call costs one atomic load to admit and one relaxed atomic add (on a
//! counter line of this thread's own) to record; no lock, no allocation, and a clock read only for
//! one call in [`latency_sample_every`](CircuitBreakerConfig::latency_sample_every).
//!
//! # Recipes
//!
//! - **A hyper client behind the whole stack, kept in axum state**: the program
//!   [`examples/axum_client_stack.rs`][client-stack] (`cargo run --example axum_client_stack`
//!   in the repository) puts `hyper_util::client::legacy::Client`, a
//!   `Service<http::Request<B>>`, under the stack above. Three things make it fit:
//!   - *The response body is boxed.* The fallback must answer in the client's response type, and
//!     only hyper can make a `hyper::body::Incoming`. So `.map_response(|r:
//!     Response<Incoming>| r.map(|body| body.map_err(BoxError::from).boxed()))`, just above the
//!     client, makes every layer, the fallback too, answer `http::Response<BoxBody<Bytes,
//!     BoxError>>` (`http_body_util::combinators::BoxBody`; `UnsyncBoxBody` for a body that is
//!     not `Sync`).
//!   - *The request is `Clone`.* `tower::retry` sends a clone of the request on every try, so
//!     the request is `http::Request<Full<Bytes>>`, not a streaming body such as axum's `Body`
//!     or hyper's `Incoming`: buffer a body into `Bytes` before it goes in.
//!   - *The error is `BoxError`*, as every layer here returns and [`RetryPolicy`] expects. The
//!     stack then boxes into `tower::util::BoxCloneSyncService<Request<Full<Bytes>>,
//!     Response<BoxBody<Bytes, BoxError>>, BoxError>`, which is `Clone + Send + Sync` as axum
//!     state must be.
//! - **A breaker on an axum route**: a route's service never returns an error, so the default
//!   classifier never sees a failure there and the circuit never opens. Classify by status
//!   (`HttpClassifier`), or use the `CircuitBreakerRouteLayer` of
//!   [`tower-circuit-breaker-axum`][axum-crate]; see [`layer`](crate::layer#on-an-axum-route-and-behind-an-http-client).
//! - **Each step of the stack, printed as it happens**, against a server that fails and hangs:
//!   [`examples/polly_order.rs`][polly-order].
//! - **A queue consumer that pauses while the circuit is open** and loses no message:
//!   [`examples/queue_consumer.rs`][queue-consumer], on [`ready`](CircuitBreaker::ready).
//!
//! [client-stack]: https://github.com/tower-circuit-breaker/tower-circuit-breaker/blob/main/examples/axum_client_stack.rs
//! [polly-order]: https://github.com/tower-circuit-breaker/tower-circuit-breaker/blob/main/examples/polly_order.rs
//! [queue-consumer]: https://github.com/tower-circuit-breaker/tower-circuit-breaker/blob/main/examples/queue_consumer.rs
//! [axum-crate]: https://docs.rs/tower-circuit-breaker-axum
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let breaker = CircuitBreaker::with_config(
//!     "payments",
//!     CircuitBreakerConfig::default()
//!         .failure_threshold(3)
//!         .break_duration(Duration::from_secs(10))
//!         .success_threshold(1),
//! )
//! .unwrap();
//!
//! for _ in 0..3 {
//!     let _ = breaker.call(|| async { Err::<(), _>("503") }).await;
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! match breaker.call(|| async { Ok::<_, &str>("paid") }).await {
//!     Err(CircuitBreakerError::Open(open)) => assert_eq!(open.retry_after(), Some(Duration::from_secs(10))),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//!
//! tokio::time::advance(Duration::from_secs(10)).await;
//! assert_eq!(breaker.call(|| async { Ok::<_, &str>("paid") }).await, Ok("paid"));
//! assert_eq!(breaker.state(), CircuitState::Closed);
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod breaker;
pub mod classify;
pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod fallback;
pub mod keyed;
pub mod layer;
pub mod metrics;
pub mod registry;
pub mod retry;
mod state;
pub mod store;
mod sync;

pub use breaker::{Builder, CircuitBreaker, OwnedPermit, Permit};
#[cfg(feature = "http")]
pub use classify::grpc::{GrpcClassifier, GrpcCode};
#[cfg(feature = "http")]
pub use classify::http::HttpClassifier;
pub use classify::{Classify, DefaultClassifier, ErrorIsFailure, Outcome};
pub use clock::{Clock, ManualClock};
pub use config::{
    BreakBackoff, CancelledCalls, CircuitBreakerConfig, ConfigError, FailureRateRule,
    SlidingWindow, SlowCallRule,
};
pub use error::{CircuitBreakerError, CircuitOpen, HalfOpenFull, Rejection};
pub use event::{Transition, TransitionReason};
pub use fallback::{FallbackLayer, FallbackService};
pub use keyed::{KeyedBreakers, KeyedCircuitBreakerLayer, KeyedCircuitBreakerService};
#[cfg(feature = "http")]
pub use layer::{AtEndOfBody, CircuitBreakerBody, ClassifyEnd, ClassifyStream};
pub use layer::{CircuitBreakerLayer, CircuitBreakerService};
pub use metrics::{CircuitMetrics, LatencyMetrics, TransitionCounts, WindowMetrics};
pub use registry::{CircuitBreakerRegistry, HealthStatus};
pub use retry::RetryPolicy;
pub use state::CircuitState;
