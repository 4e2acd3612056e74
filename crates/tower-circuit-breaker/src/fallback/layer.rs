use std::future::Future;

use tower::BoxError;
use tower_layer::Layer;

use super::{AnyError, FallbackFn, FallbackService, FallbackSyncFn, FallbackTo};

/// Wraps services in a [`FallbackService`] that answers selected errors with a fallback.
///
/// Each service gets its own clone of the fallback and the predicate; they share only what those
/// share (an `Arc` the closure captured, the fallback service's own shared state).
///
/// See the [module docs](crate::fallback).
#[derive(Debug, Clone)]
pub struct FallbackLayer<F, P = AnyError> {
    fallback: F,
    predicate: P,
}

impl<G> FallbackLayer<FallbackFn<G>> {
    /// Falls back to `f(error).await` on every error (narrow it with [`when`](Self::when)).
    ///
    /// `f` is an async closure, `FnOnce(BoxError) -> impl Future<Output = Result<Response, E>>`
    /// with `E: Into<BoxError>`, cloned for each call.
    pub const fn new<Fut>(f: G) -> Self
    where
        G: FnOnce(BoxError) -> Fut,
        Fut: Future,
    {
        Self::with_fallback(FallbackFn::new(f))
    }
}

impl<G> FallbackLayer<FallbackSyncFn<G>> {
    /// Falls back to `f(error)` on every error (narrow it with [`when`](Self::when)): for a
    /// default or cached response that needs no `.await`.
    pub const fn new_sync<T>(f: G) -> Self
    where
        G: FnOnce(BoxError) -> T,
    {
        Self::with_fallback(FallbackSyncFn::new(f))
    }
}

impl<T> FallbackLayer<FallbackTo<T>> {
    /// Falls back to calling `service` with a clone of the request on every error (narrow it
    /// with [`when`](Self::when)). The request type must be `Clone`; see [`FallbackTo`].
    pub const fn service(service: T) -> Self {
        Self::with_fallback(FallbackTo::new(service))
    }
}

impl<F> FallbackLayer<F> {
    /// Falls back to `fallback`, any [`Fallback`](super::Fallback), on every error (narrow it with
    /// [`when`](Self::when)).
    pub const fn with_fallback(fallback: F) -> Self {
        Self {
            fallback,
            predicate: AnyError,
        }
    }
}

impl<F, P> FallbackLayer<F, P> {
    /// Falls back only on the errors `predicate` selects, an
    /// [`ErrorPredicate`](super::ErrorPredicate); the others pass through unchanged.
    pub fn when<P2>(self, predicate: P2) -> FallbackLayer<F, P2> {
        FallbackLayer {
            fallback: self.fallback,
            predicate,
        }
    }
}

impl<S, F: Clone, P: Clone> Layer<S> for FallbackLayer<F, P> {
    type Service = FallbackService<S, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService::new(inner, self.fallback.clone()).when(self.predicate.clone())
    }
}
