//! Middleware that runs every call of a [`tower::Service`] through a [`CircuitBreaker`].
//!
//! [`CircuitBreakerLayer`] holds one breaker. Every service it makes, every clone of those, and
//! every call to [`Layer::layer`](tower_layer::Layer::layer) shares it: state lives in the layer,
//! so it also works where axum calls `layer()` again for each request.
//!
//! # Readiness
//!
//! `poll_ready` asks the breaker first. While it rejects, `poll_ready` returns `Ready(Ok(()))` at
//! once, without polling the inner service, and `call` hands back the rejection (tower's
//! load-shed pattern: layers above, such as a `Buffer`, never see an error from `poll_ready` and
//! never wait on a dead service). Otherwise it drives the inner service's readiness, and never
//! calls an inner service that has not said it is ready. With
//! [`backpressure`](CircuitBreakerLayer::backpressure) on, `poll_ready` instead returns
//! `Pending` while the circuit rejects and wakes when it would admit again (for balancers).
//!
//! A call is admitted (and, half-open, takes a probe slot) in `call`, not in `poll_ready`, so a
//! service polled ready and never called holds nothing. A response future dropped before it
//! finishes releases its permit and counts as cancelled.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](tower::BoxError), as with tower's own timeout and
//! load-shed layers. A rejection is a [`CircuitOpen`](crate::CircuitOpen) or
//! [`HalfOpenFull`](crate::HalfOpenFull), found with `err.downcast_ref::<CircuitOpen>()`; the
//! inner service's errors pass through unchanged.
//!
//! # Classification
//!
//! A [`Classify`](crate::Classify) over `&Result<Response, BoxError>` decides how each call
//! counts. The default, [`DefaultClassifier`](crate::DefaultClassifier), counts errors as failures
//! and tower's `Elapsed` (from a per-try timeout inside the breaker) as timeouts; swap it with
//! [`classify_with`](CircuitBreakerLayer::classify_with).
//!
//! ## At the end of the body
//!
//! A response is judged when its head arrives, unless the layer classifies bodies: with
//! `classify_body_with` (and `CircuitBreakerLayer::grpc`, which is a gRPC client's layer with it
//! on; both with the `http` feature) the call's permit
//! moves into the response body, and the call is recorded when the body ends: a gRPC stream's
//! `grpc-status` trailer decides, a body that breaks off is a failure, a body dropped before its
//! end is cancelled. The service then answers with a `CircuitBreakerBody` around the inner body:
//!
//! ```
//! # #[cfg(feature = "http")]
//! # {
//! use std::future::poll_fn;
//! use std::pin::pin;
//! use http_body::Body;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, HttpClassifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreaker::new("reports");
//! let mut client = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()).classify_body_with(HttpClassifier::new()))
//!     .service(service_fn(|_request: ()| async {
//!         Ok::<_, BoxError>(http::Response::new(String::from("a long report")))
//!     }));
//!
//! let response = client.ready().await?.call(()).await?;
//! let mut body = pin!(response.into_body());
//! assert!(body.is_pending(), "the body holds the call until it ends");
//! while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
//!     frame?;
//! }
//! assert!(!body.is_pending());
//! assert_eq!(breaker.metrics().successful_calls, 1);
//! # Ok(())
//! # }
//! # }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```
//!
//! # On an axum route, and behind an HTTP client
//!
//! The default classifier counts errors, and an HTTP answer is not an error: to tower, a `503`
//! is an `Ok(response)`. An axum route's service never returns an error at all (its error is
//! `Infallible`; a handler's trouble arrives as a `500` response), so on a route the default
//! classifier sees nothing but successes and the circuit never opens. Classify by status:
//!
//! - on a route, use `CircuitBreakerRouteLayer` from the
//!   [`tower-circuit-breaker-axum`](https://docs.rs/tower-circuit-breaker-axum) crate: it counts
//!   5xx responses as failures and answers a rejection with `503` and `Retry-After`. This layer
//!   works there too, with `classify_with(HttpClassifier::new())` and a `HandleErrorLayer` above
//!   it to turn a rejection (a `BoxError`) into a response;
//! - behind an HTTP client, use `classify_with(HttpClassifier::new())` (5xx fail, 4xx are
//!   ignored), or `GrpcClassifier` for a gRPC channel. Both come with the `http` feature.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt, BoxError};
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreaker::with_config("inventory", CircuitBreakerConfig::default().failure_threshold(2))
//!     .unwrap();
//! let mut client = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .timeout(Duration::from_secs(1)) // per try, inside the breaker: an `Elapsed` is a timeout
//!     .service(service_fn(|_request: &str| async { Err::<String, BoxError>("503".into()) }));
//!
//! for _ in 0..2 {
//!     let err = client.ready().await.unwrap().call("GET /items").await.unwrap_err();
//!     assert_eq!(err.to_string(), "503");
//! }
//! let rejected = client.ready().await.unwrap().call("GET /items").await.unwrap_err();
//! assert!(rejected.is::<CircuitOpen>());
//! # }
//! ```
//!
//! [`CircuitBreaker`]: crate::CircuitBreaker

#[cfg(feature = "http")]
mod body;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod record;
mod service;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::body::{
    AtEndOfBody, AtHead, BodyEnded, CircuitBreakerBody, ClassifyEnd, ClassifyStream,
};
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
pub use self::body::{TowerHttp, TowerHttpEnd};
pub use self::future::{NotReady, ResponseFuture};
pub use self::layer::CircuitBreakerLayer;
pub use self::record::Record;
pub use self::service::CircuitBreakerService;
