//! Middleware that answers some errors, and some responses, with a fallback response instead: a
//! default, a cached value, another service.
//!
//! tower has no fallback layer. [`FallbackLayer`] wraps a service; when a call fails with an
//! error its [`ErrorPredicate`] selects, or answers with a response its [`ResponsePredicate`]
//! selects (an HTTP 503 that got through every retry), the [`Fallback`] produces the response in
//! its place. Errors and responses the predicates do not select pass through untouched: an
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
//! A fallback that needs only part of the request (a key, a path, a header) implements
//! [`Fallback`] and keeps just that part in its [`Saved`](Fallback::Saved) (see the last example).
//! The fallback, and the predicates, are cloned into each call's future: a closure that captures
//! large state should capture it in an `Arc`.
//!
//! A fallback that fails returns its own error (as a `BoxError`) in place of the one it was
//! called for, or in place of the response.
//!
//! # Which errors
//!
//! By default every error ([`AnyError`]). [`when`](FallbackLayer::when) narrows it:
//! [`IsRejection`] selects calls a breaker turned away ([`CircuitOpen`](crate::CircuitOpen),
//! [`HalfOpenFull`](crate::HalfOpenFull)), [`IsTimeout`] selects tower's and tokio's `Elapsed`;
//! both also look through the error's `source()` chain. [`ErrorPredicate::or`] combines them,
//! and any `Fn(&BoxError) -> bool` is a predicate too.
//!
//! # Which responses
//!
//! By default none ([`NoResponse`]): every `Ok` passes through, and the check compiles away.
//! [`when_response`](FallbackLayer::when_response) selects some. Each finished call is judged
//! once: an `Err` by the error predicate (set with [`when`](FallbackLayer::when)), an `Ok` by the
//! response predicate. A response the response predicate selects goes to the fallback whatever
//! the error predicate would say of the error it becomes.
//!
//! - Any `Fn(&Response) -> bool` (annotate the closure's argument), `Option::is_none` for a
//!   lookup that answers `None`: the fallback is given a [`SelectedResponse`].
//! - With the `http` feature, for `http::Response<B>`:
//!   - `StatusIn(500..=599)` selects a range of status codes;
//!   - `ClassifiedFailure(HttpClassifier::new())` selects what a classifier (any
//!     [`Classify`](crate::Classify) of `http::Response<B>`) counts as a failure or a timeout.
//!     Give it the classifier of the breaker and the retry policy, and the fallback answers
//!     exactly the responses they count as failures and retried;
//!   - `HttpResponseIf(|response: &http::Response<B>| ..)` selects what a closure picks.
//!
//!   These give the fallback a `FailedResponse`.
//!
//! Put the fallback outermost, above the retry: below it, the fallback would answer each try's
//! failed response, and the retry (and a breaker) above it would see a success.
//!
//! # What the fallback is given for a response
//!
//! The [`Fallback`] trait is the one for errors, so [`new`](FallbackLayer::new),
//! [`new_sync`](FallbackLayer::new_sync), [`service`](FallbackLayer::service) and your own
//! fallbacks answer responses too. The predicate turns the selected response into an error value,
//! and the fallback is called with it in place of an error. A fallback tells what it was called
//! for by downcasting the `BoxError`:
//!
//! - `FailedResponse` (with the `http` feature): a selected HTTP response, with its `status()`
//!   and `headers()`, so a fallback can read `Retry-After`, a request id or a cache validator.
//!   The body is dropped unread, so the connection is not held while the fallback runs. It reads
//!   as `upstream answered 503 Service Unavailable`.
//! - [`SelectedResponse`]: a response a closure predicate selected; it says only that.
//! - anything else: an error of the inner service, one the error predicate selected.
//!
//! The response itself is not handed over. What the fallback needs of the request (the path, a
//! cache key) it keeps through [`Fallback::save`], before the request goes to the inner service.
//! A fallback with nothing to answer with returns an error, its own or the one it was given: the
//! caller gets it in place of the response (a `FailedResponse` then reaches the caller as an
//! `Err`).
//!
//! # Readiness and errors
//!
//! `poll_ready` is the inner service's. An error from it is returned as it is, not answered by
//! the fallback: in tower it means the service is unusable, not that a call failed (the breaker's
//! layer never returns one for an open circuit). The service's error is
//! [`BoxError`](tower::BoxError), as with tower's own timeout and load-shed layers.
//!
//! # Examples
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
//!
//! Falling back on a response: a price lookup that answers `None` for a product it has no price
//! for gets the list price instead, while errors still pass through:
//!
//! ```
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::fallback::{FallbackLayer, IsRejection, SelectedResponse};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut prices = ServiceBuilder::new()
//!     .layer(
//!         FallbackLayer::new_sync(|err: BoxError| {
//!             assert!(err.is::<SelectedResponse>());
//!             Some(1999) // the list price
//!         })
//!         .when(IsRejection)
//!         .when_response(Option::<u32>::is_none),
//!     )
//!     .service(service_fn(|sku: &'static str| async move {
//!         match sku {
//!             "sku-1" => Ok(Some(1250)),
//!             "sku-2" => Ok(None),
//!             _ => Err(BoxError::from("no such product")),
//!         }
//!     }));
//!
//! assert_eq!(prices.ready().await.unwrap().call("sku-1").await.unwrap(), Some(1250));
//! assert_eq!(prices.ready().await.unwrap().call("sku-2").await.unwrap(), Some(1999));
//! let err = prices.ready().await.unwrap().call("sku-3").await.unwrap_err();
//! assert_eq!(err.to_string(), "no such product");
//! # }
//! ```
//!
//! An HTTP client whose fallback answers a failing response with the last good body for the
//! request's path (with the `http` feature). The fallback keeps the path through
//! [`Fallback::save`], and reads the failed response's `Retry-After` to pass it on; for a path it
//! has nothing cached for, the caller gets the `FailedResponse` as its error:
//!
//! ```
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::collections::HashMap;
//! use std::future::{ready, Ready};
//! use std::sync::Arc;
//!
//! use http::{header, HeaderValue, Request, Response, StatusCode};
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::fallback::{ClassifiedFailure, FailedResponse, Fallback, FallbackLayer};
//! use tower_circuit_breaker::HttpClassifier;
//!
//! /// Answers with the last good body for the request's path.
//! #[derive(Clone)]
//! struct LastGoodBody {
//!     cache: Arc<HashMap<&'static str, &'static str>>,
//! }
//!
//! impl<B> Fallback<Request<B>> for LastGoodBody {
//!     type Response = Response<String>;
//!     type Error = BoxError;
//!     type Future = Ready<Result<Response<String>, BoxError>>;
//!     // All it needs of the request: the path, kept before the request goes out.
//!     type Saved = String;
//!
//!     fn save(&self, request: &Request<B>) -> String {
//!         request.uri().path().to_owned()
//!     }
//!
//!     fn call(self, path: String, error: BoxError) -> Self::Future {
//!         let Some(&body) = self.cache.get(path.as_str()) else {
//!             return ready(Err(error)); // nothing cached: the caller gets the error
//!         };
//!         let mut response = Response::new(body.to_owned());
//!         response.headers_mut().insert("x-served-from", HeaderValue::from_static("cache"));
//!         // A selected response arrives as a `FailedResponse`; an error as itself.
//!         if let Some(failed) = error.downcast_ref::<FailedResponse>() {
//!             if let Some(retry_after) = failed.headers().get(header::RETRY_AFTER) {
//!                 response.headers_mut().insert(header::RETRY_AFTER, retry_after.clone());
//!             }
//!         }
//!         ready(Ok(response))
//!     }
//! }
//!
//! let cache = Arc::new(HashMap::from([("/catalog", "cached catalog")]));
//! let mut client = ServiceBuilder::new()
//!     .layer(
//!         // What the breaker's classifier calls a failure: 5xx, not 4xx.
//!         FallbackLayer::with_fallback(LastGoodBody { cache })
//!             .when_response(ClassifiedFailure(HttpClassifier::new())),
//!     )
//!     .service(service_fn(|request: Request<()>| async move {
//!         let response = match request.uri().path() {
//!             "/missing" => Response::builder().status(404),
//!             _ => Response::builder().status(503).header(header::RETRY_AFTER, "30"),
//!         };
//!         Ok::<_, BoxError>(response.body(String::from("from upstream")).unwrap())
//!     }));
//! let get = |path| Request::get(path).body(()).unwrap();
//!
//! // A 503 for a cached path: the cached body, and the upstream's `Retry-After`.
//! let response = client.ready().await.unwrap().call(get("/catalog")).await.unwrap();
//! assert_eq!((response.status(), response.body().as_str()), (StatusCode::OK, "cached catalog"));
//! assert_eq!(response.headers()[header::RETRY_AFTER], "30");
//!
//! // A 404 is not a failure: it passes through untouched.
//! let response = client.ready().await.unwrap().call(get("/missing")).await.unwrap();
//! assert_eq!((response.status(), response.body().as_str()), (StatusCode::NOT_FOUND, "from upstream"));
//!
//! // A 503 for a path with nothing cached: the fallback's error, the `FailedResponse`.
//! let err = client.ready().await.unwrap().call(get("/orders")).await.unwrap_err();
//! assert_eq!(err.to_string(), "upstream answered 503 Service Unavailable");
//! let failed = err.downcast_ref::<FailedResponse>().unwrap();
//! assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(failed.headers()[header::RETRY_AFTER], "30");
//! # }
//! ```

mod action;
mod future;
#[cfg(feature = "http")]
mod http;
#[allow(clippy::module_inception)]
mod layer;
mod predicate;
mod response;
mod service;
#[cfg(test)]
mod tests;

pub use self::action::{Fallback, FallbackFn, FallbackSyncFn, FallbackTo};
pub use self::future::{FallbackToFuture, ResponseFuture};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::http::{ClassifiedFailure, FailedResponse, HttpResponseIf, StatusIn};
pub use self::layer::FallbackLayer;
pub use self::predicate::{AnyError, ErrorPredicate, IsRejection, IsTimeout, Or};
pub use self::response::{NoResponse, ResponsePredicate, SelectedResponse};
pub use self::service::FallbackService;
