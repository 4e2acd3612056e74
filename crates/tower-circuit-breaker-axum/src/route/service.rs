use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::Request;
use tower::BoxError;
use tower_circuit_breaker::{CircuitBreaker, Classify};
use tower_service::Service;

use super::{CircuitBreakerRouteLayer, DefaultHttpClassifier, ResponseFuture};

/// An axum route service whose requests go through a [`CircuitBreaker`]. Made by
/// [`CircuitBreakerRouteLayer`].
///
/// It never fails (`Error = Infallible`, like the route it wraps): a rejection is answered with
/// a [`RejectionResponse`](crate::rejection::RejectionResponse), without calling the inner
/// service. Clones share the breaker. See the [module docs](crate::route).
#[derive(Debug, Clone)]
pub struct CircuitBreakerRouteService<S, C = DefaultHttpClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
}

// ===== impl CircuitBreakerRouteService =====

impl<S> CircuitBreakerRouteService<S> {
    /// Wraps `inner` with `breaker`, classified by [`DefaultHttpClassifier`].
    pub const fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self::with_parts(inner, breaker, DefaultHttpClassifier)
    }

    /// A [`CircuitBreakerRouteLayer`] sharing `breaker`.
    pub const fn layer(breaker: CircuitBreaker) -> CircuitBreakerRouteLayer {
        CircuitBreakerRouteLayer::new(breaker)
    }
}

impl<S, C> CircuitBreakerRouteService<S, C> {
    pub(crate) const fn with_parts(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self {
            inner,
            breaker,
            classifier,
        }
    }

    /// The breaker this service shares.
    pub const fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, B> Service<Request<B>> for CircuitBreakerRouteService<S, C>
where
    S: Service<Request<B>, Error = Infallible>,
    S::Response: IntoResponse,
    C: Classify<Response, BoxError> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, C>;

    /// The inner service's readiness (an axum route is always ready). The breaker is asked in
    /// `call`, so a rejection never holds up the layers above.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, self.classifier.clone())
            }
            // Counted as a rejection by `try_acquire_owned`; the inner service is not called.
            Err(rejection) => ResponseFuture::rejected(rejection),
        }
    }
}
