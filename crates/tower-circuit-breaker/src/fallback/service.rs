use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::{AnyError, ErrorPredicate, Fallback, ResponseFuture};

/// A [`Service`] that answers the errors a predicate selects with a [`Fallback`]. Made by
/// [`FallbackLayer`](super::FallbackLayer).
///
/// Readiness is the inner service's. Clones hold clones of the inner service, the fallback and
/// the predicate; there is no per-clone state.
#[derive(Debug, Clone)]
pub struct FallbackService<S, F, P = AnyError> {
    inner: S,
    fallback: F,
    predicate: P,
}

impl<S, F> FallbackService<S, F> {
    /// Wraps `inner`, falling back to `fallback` on every error.
    pub const fn new(inner: S, fallback: F) -> Self {
        Self {
            inner,
            fallback,
            predicate: AnyError,
        }
    }
}

impl<S, F, P> FallbackService<S, F, P> {
    /// Falls back only on the errors `predicate` selects; the others pass through unchanged.
    pub fn when<P2>(self, predicate: P2) -> FallbackService<S, F, P2> {
        FallbackService {
            inner: self.inner,
            fallback: self.fallback,
            predicate,
        }
    }

    /// The fallback.
    pub fn fallback(&self) -> &F {
        &self.fallback
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

impl<S, F, P, Request> Service<Request> for FallbackService<S, F, P>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    F: Fallback<Request, Response = S::Response> + Clone,
    P: ErrorPredicate + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F, P, Request>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // An error here says the inner service is gone, not that one call failed: it is not the
        // fallback's to answer.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let saved = self.fallback.save(&request);
        ResponseFuture::new(
            self.inner.call(request),
            self.fallback.clone(),
            self.predicate.clone(),
            saved,
        )
    }
}
