//! Middleware that guards axum routes with a [`CircuitBreaker`], classifying by status code and
//! answering rejections with `503 Service Unavailable` and `Retry-After`.
//!
//! An axum route's service never fails: its error type is [`Infallible`](std::convert::Infallible)
//! and a handler's trouble arrives as a `500` response. Behind the engine's own
//! `CircuitBreakerLayer`, a route therefore needs a `HandleErrorLayer` to turn the layer's
//! `BoxError` back into a response, and a status classifier, or the breaker sees nothing but
//! successes. [`CircuitBreakerRouteLayer`] is both in one: its service is an axum route service
//! (`Response = axum::response::Response`, `Error = Infallible`), so it goes straight into
//! [`Router::route_layer`](axum::Router::route_layer), [`Router::layer`](axum::Router::layer) or
//! [`MethodRouter::layer`](axum::routing::MethodRouter::layer).
//!
//! It holds no breaker logic: each request asks the breaker for a permit
//! ([`CircuitBreaker::try_acquire_owned`]) and records the response's outcome on it, the same path
//! the engine's layer and [`CircuitBreaker::call`] take.
//!
//! # Classification
//!
//! By default [`HttpClassifier::new`](tower_circuit_breaker::HttpClassifier::new)'s rules, as
//! the zero-sized [`DefaultHttpClassifier`]: 5xx are failures (504 a timeout), 4xx are ignored
//! (a caller's bad request says nothing of the server's health), the rest are successes. [`classify_with`](CircuitBreakerRouteLayer::classify_with) takes any
//! [`Classify`](tower_circuit_breaker::Classify) over `&Result<Response, BoxError>`, the shape the
//! engine's layer classifies too, so one classifier value serves both; here the result is always
//! `Ok`. A response is classified when its head is ready, before the body streams.
//!
//! # Rejections
//!
//! While the breaker rejects, the inner service is not called: the response is a
//! [`RejectionResponse`](crate::rejection::RejectionResponse), `503` with `Retry-After` in whole
//! seconds rounded up (see [`rejection`](crate::rejection) for the exact rules).
//!
//! # State and placement
//!
//! The breaker lives in the layer: every service the layer makes, and every clone, shares it,
//! wherever axum calls [`Layer::layer`](tower_layer::Layer::layer). One layer is one breaker:
//! `.route_layer(...)` on a router guards all of its routes with one breaker (unmatched paths never
//! reach it, so a scan of 404s cannot trip it); give each route its own layer for a breaker per
//! route.
//!
//! Where speed matters, put the layer on the handler (`get(handler.layer(layer))`): axum boxes a
//! route layered with `get(handler).layer(..)` or `route_layer(..)` once more, which costs about
//! as much again as the breaker. Measured with `wrk` against an axum server on one saturated
//! thread, the layer on the handler served 0.98 of the bare handler's requests a second, and
//! through `route_layer` 0.97.
//!
//! # Readiness and cancellation
//!
//! `poll_ready` is the inner service's (an axum route is always ready); the breaker is asked in
//! `call`, so a rejection never holds up the layers above. A response future dropped before it
//! finishes (the client went away, an outer timeout) releases its permit: the call counts as
//! cancelled, as the breaker's [`CancelledCalls`](tower_circuit_breaker::CancelledCalls) setting
//! says, and a half-open probe slot is freed.
//!
//! # Example
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use axum::routing::get;
//! use axum::Router;
//! use tower::ServiceExt;
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
//! use tower_circuit_breaker_axum::route::CircuitBreakerRouteLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let config = CircuitBreakerConfig::default()
//!     .failure_threshold(2)
//!     .break_duration(std::time::Duration::from_secs(30));
//! let breaker = CircuitBreaker::with_config("db", config).unwrap();
//! let app = Router::new()
//!     .route("/orders", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
//!     .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
//!     .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
//! let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
//!
//! // 4xx say nothing of the server's health.
//! for _ in 0..5 {
//!     let response = app.clone().oneshot(get("/missing")).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::NOT_FOUND);
//! }
//! // Two 500s open the circuit; the next request is answered without the handler.
//! for _ in 0..2 {
//!     let response = app.clone().oneshot(get("/orders")).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! }
//! let response = app.clone().oneshot(get("/orders")).await.unwrap();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()["retry-after"], "30");
//! # }
//! ```
//!
//! [`CircuitBreaker`]: tower_circuit_breaker::CircuitBreaker
//! [`CircuitBreaker::try_acquire_owned`]: tower_circuit_breaker::CircuitBreaker::try_acquire_owned
//! [`CircuitBreaker::call`]: tower_circuit_breaker::CircuitBreaker::call

mod classify;
mod future;
mod layer;
mod service;

pub use self::classify::DefaultHttpClassifier;
pub use self::future::ResponseFuture;
pub use self::layer::CircuitBreakerRouteLayer;
pub use self::service::CircuitBreakerRouteService;
