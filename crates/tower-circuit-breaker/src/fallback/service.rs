use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::{AnyError, ErrorPredicate, Fallback, NoResponse, ResponseFuture, ResponsePredicate};

/// A [`Service`] that answers the errors a predicate selects, and the responses a response
/// predicate selects, with a [`Fallback`]. Made by [`FallbackLayer`](super::FallbackLayer).
///
/// `P` is the [`ErrorPredicate`] ([`AnyError`] by default), `R` the [`ResponsePredicate`]
/// ([`NoResponse`] by default: responses pass through).
///
/// Readiness is the inner service's. Clones hold clones of the inner service, the fallback and
/// the predicates; there is no per-clone state.
#[derive(Debug, Clone)]
pub struct FallbackService<S, F, P = AnyError, R = NoResponse> {
    inner: S,
    fallback: F,
    predicate: P,
    responses: R,
}

impl<S, F> FallbackService<S, F> {
    /// Wraps `inner`, falling back to `fallback` on every error.
    pub const fn new(inner: S, fallback: F) -> Self {
        Self {
            inner,
            fallback,
            predicate: AnyError,
            responses: NoResponse,
        }
    }
}

impl<S, F, P, R> FallbackService<S, F, P, R> {
    /// Falls back only on the errors `predicate` selects; the others pass through unchanged.
    pub fn when<P2>(self, predicate: P2) -> FallbackService<S, F, P2, R> {
        FallbackService {
            inner: self.inner,
            fallback: self.fallback,
            predicate,
            responses: self.responses,
        }
    }

    /// Falls back also on the responses `predicate` selects, a
    /// [`ResponsePredicate`]; see [`FallbackLayer::when_response`](super::FallbackLayer::when_response).
    pub fn when_response<R2>(self, predicate: R2) -> FallbackService<S, F, P, R2> {
        FallbackService {
            inner: self.inner,
            fallback: self.fallback,
            predicate: self.predicate,
            responses: predicate,
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

impl<S, F, P, R, Request> Service<Request> for FallbackService<S, F, P, R>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    F: Fallback<Request, Response = S::Response> + Clone,
    P: ErrorPredicate + Clone,
    R: ResponsePredicate<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F, P, Request, R>;

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
            self.responses.clone(),
            saved,
        )
    }
}
