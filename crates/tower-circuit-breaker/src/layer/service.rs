use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::record::Record;
use super::{CircuitBreakerLayer, ResponseFuture};
use crate::{CircuitBreaker, DefaultClassifier};

/// A [`Service`] whose calls go through a [`CircuitBreaker`]. Made by [`CircuitBreakerLayer`].
///
/// Clones share the breaker; each clone has its own readiness (a clone starts unpolled).
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    /// The breaker, as the handle response futures hold it by: the layer's (shared by every
    /// service it makes) until this clone's second call, then one of this clone's own.
    ///
    /// Every clone of a breaker bumps one reference count, which all threads share: a response
    /// future per request holding a clone made two cores fight over that count's cache line. A
    /// clone of its own keeps a busy service's requests off it, and a service that makes one call
    /// (axum clones a route's service for each request) allocates nothing.
    handle: Arc<CircuitBreaker>,
    classifier: C,
    backpressure: bool,
    /// The breaker would admit and the inner service is ready: the common case, kept apart from
    /// `readiness` so the call path touches one flag and no drop glue.
    inner_ready: bool,
    /// Whether `handle` is this clone's own.
    own: bool,
    /// Whether this clone has made a call.
    used: bool,
    readiness: Readiness,
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
        Self::with_parts(inner, Arc::new(breaker), DefaultClassifier, false)
    }

    /// A [`CircuitBreakerLayer`] sharing `breaker`.
    pub fn layer(breaker: CircuitBreaker) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    pub(crate) fn with_parts(
        inner: S,
        handle: Arc<CircuitBreaker>,
        classifier: C,
        backpressure: bool,
    ) -> Self {
        Self {
            inner,
            handle,
            classifier,
            backpressure,
            inner_ready: false,
            own: false,
            used: false,
            readiness: Readiness::Unpolled,
        }
    }

    /// On a clone's first call, notes it; on its second, gives it a handle of its own.
    #[cold]
    #[inline(never)]
    fn settle_handle(&mut self) {
        if std::mem::replace(&mut self.used, true) {
            self.handle = Arc::new(CircuitBreaker::clone(&self.handle));
            self.own = true;
        }
    }

    /// The breaker this service shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.handle
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
    C: Record<S::Response, Arc<CircuitBreaker>> + Clone,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            if let Readiness::Waiting(wait) = &mut self.readiness {
                ready!(wait.as_mut().poll(cx));
                self.readiness = Readiness::Unpolled;
            }
            match self.handle.peek() {
                true => {
                    if !matches!(self.readiness, Readiness::Unpolled) {
                        self.readiness = Readiness::Unpolled;
                    }
                    ready!(self.inner.poll_ready(cx)).map_err(Into::into)?;
                    self.inner_ready = true;
                    return Poll::Ready(Ok(()));
                }
                false if self.backpressure => {
                    self.inner_ready = false;
                    let breaker = self.handle.clone();
                    self.readiness =
                        Readiness::Waiting(Box::pin(async move { breaker.ready().await }));
                }
                false => {
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
            if !self.own {
                self.settle_handle();
            }
            let holder = Arc::clone(&self.handle);
            return match self.handle.try_acquire_holding(move || holder) {
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
        let permit = match self.handle.try_acquire_holding(|| Arc::clone(&self.handle)) {
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
                permit.release();
                ResponseFuture::rejected(error.into())
            }
            Poll::Pending => {
                permit.release();
                let rejection = self.handle.retry_now();
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
            Arc::clone(&self.handle),
            self.classifier.clone(),
            self.backpressure,
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.handle)
            .field("classifier", &self.classifier)
            .field("backpressure", &self.backpressure)
            .finish_non_exhaustive()
    }
}
