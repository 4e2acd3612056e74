use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::{CircuitBreakerLayer, ResponseFuture};
use crate::breaker::Handle;
use crate::{CircuitBreaker, Classify, DefaultClassifier};

/// A [`Service`] whose calls go through a [`CircuitBreaker`]. Made by [`CircuitBreakerLayer`].
///
/// Clones share the breaker; each clone has its own readiness (a clone starts unpolled).
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    backpressure: bool,
    /// The breaker would admit and the inner service is ready: the common case, kept apart from
    /// `readiness` so the call path touches one flag and no drop glue.
    inner_ready: bool,
    readiness: Readiness,
    /// What this clone's response futures hold the breaker by (see `handle`).
    local: Local,
}

/// This clone's own handle to the breaker, made on its second call: a clone that makes one call
/// (axum clones a route's service for each request) costs no allocation, and one that makes many
/// (a client's service, a benchmark's worker) keeps its futures off the breaker's shared count.
enum Local {
    Unused,
    UsedOnce,
    Made(Arc<CircuitBreaker>),
}

impl Local {
    /// The handle for the next response future.
    #[inline]
    fn handle(&mut self, breaker: &CircuitBreaker) -> Handle {
        match self {
            Self::Made(local) => Handle::Local(Arc::clone(local)),
            Self::Unused => {
                *self = Self::UsedOnce;
                Handle::Shared(breaker.clone())
            }
            Self::UsedOnce => self.make(breaker),
        }
    }

    #[cold]
    #[inline(never)]
    fn make(&mut self, breaker: &CircuitBreaker) -> Handle {
        let local = Arc::new(breaker.clone());
        *self = Self::Made(Arc::clone(&local));
        Handle::Local(local)
    }
}

/// What the last `poll_ready` found, for the next `call`.
enum Readiness {
    /// Not polled since the last call, or ready (see `inner_ready`).
    Unpolled,
    /// The breaker rejected when `poll_ready` asked. `call` asks again: the break may have ended
    /// in between.
    Rejecting,
    /// Backpressure mode: waiting for the breaker to admit again.
    Waiting(Pin<Box<dyn Future<Output = ()> + Send + Sync>>),
}

impl<S> CircuitBreakerService<S> {
    /// Wraps `inner` with `breaker`, classified by [`DefaultClassifier`].
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self::with_parts(inner, breaker, DefaultClassifier, false)
    }

    /// A [`CircuitBreakerLayer`] sharing `breaker`.
    pub const fn layer(breaker: CircuitBreaker) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    pub(crate) fn with_parts(
        inner: S,
        breaker: CircuitBreaker,
        classifier: C,
        backpressure: bool,
    ) -> Self {
        Self {
            inner,
            breaker,
            classifier,
            backpressure,
            inner_ready: false,
            readiness: Readiness::Unpolled,
            local: Local::Unused,
        }
    }

    /// The breaker this service shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
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

impl<S, C, Request> Service<Request> for CircuitBreakerService<S, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            if let Readiness::Waiting(wait) = &mut self.readiness {
                ready!(wait.as_mut().poll(cx));
                self.readiness = Readiness::Unpolled;
            }
            match self.breaker.peek() {
                Ok(()) => {
                    if !matches!(self.readiness, Readiness::Unpolled) {
                        self.readiness = Readiness::Unpolled;
                    }
                    ready!(self.inner.poll_ready(cx)).map_err(Into::into)?;
                    self.inner_ready = true;
                    return Poll::Ready(Ok(()));
                }
                Err(_) if self.backpressure => {
                    self.inner_ready = false;
                    let breaker = self.breaker.clone();
                    self.readiness =
                        Readiness::Waiting(Box::pin(async move { breaker.ready().await }));
                }
                Err(_) => {
                    self.inner_ready = false;
                    self.readiness = Readiness::Rejecting;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        if std::mem::take(&mut self.inner_ready) {
            let (breaker, local) = (&self.breaker, &mut self.local);
            return match breaker.try_acquire_holding(|| local.handle(breaker)) {
                Ok(permit) => ResponseFuture::called(
                    self.inner.call(request),
                    permit,
                    self.classifier.clone(),
                ),
                // The state changed since `poll_ready`: counted by `try_acquire`.
                Err(rejection) => ResponseFuture::rejected(rejection.into_error()),
            };
        }
        match std::mem::replace(&mut self.readiness, Readiness::Unpolled) {
            Readiness::Rejecting => self.call_after_rejection(request),
            Readiness::Unpolled | Readiness::Waiting(_) => ResponseFuture::not_ready(),
        }
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// `call` after a `poll_ready` that found the breaker rejecting: the breaker is asked again
    /// now, so a rejection carries the time left now. If the break has ended in between and the
    /// breaker admits the call, the inner service (not polled while the breaker rejected) is asked
    /// whether it is ready at once; most are (clients, timeouts, `service_fn`). One that would
    /// make the call wait is not called: the call is turned away as open, with a `retry_after` of
    /// zero, and the permit goes back unused.
    #[cold]
    #[inline(never)]
    fn call_after_rejection<Request>(&mut self, request: Request) -> ResponseFuture<S::Future, C>
    where
        S: Service<Request>,
        S::Error: Into<BoxError>,
        C: Clone,
    {
        let permit = match self.breaker.try_acquire_holding(|| Handle::Shared(self.breaker.clone())) {
            Ok(permit) => permit,
            // Counted by `try_acquire`.
            Err(rejection) => return ResponseFuture::rejected(rejection.into_error()),
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.inner.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {
                ResponseFuture::called(self.inner.call(request), permit, self.classifier.clone())
            }
            Poll::Ready(Err(error)) => {
                drop(permit);
                ResponseFuture::rejected(error.into())
            }
            Poll::Pending => {
                drop(permit);
                let rejection = self.breaker.retry_now();
                ResponseFuture::rejected(rejection.into_error())
            }
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        // Readiness belongs to one handle: a clone must poll for its own.
        Self::with_parts(
            self.inner.clone(),
            self.breaker.clone(),
            self.classifier.clone(),
            self.backpressure,
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("classifier", &self.classifier)
            .field("backpressure", &self.backpressure)
            .finish_non_exhaustive()
    }
}
