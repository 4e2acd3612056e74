use std::future::Future;

use tower::BoxError;
use tower_layer::Layer;

use super::{AnyError, FallbackFn, FallbackService, FallbackSyncFn, FallbackTo, NoResponse};

/// Wraps services in a [`FallbackService`] that answers selected errors, and selected responses,
/// with a fallback.
///
/// `F` is the [`Fallback`](super::Fallback), `P` the [`ErrorPredicate`](super::ErrorPredicate)
/// that selects errors ([`AnyError`] by default), `R` the
/// [`ResponsePredicate`](super::ResponsePredicate) that selects responses ([`NoResponse`] by
/// default). Each service gets its own clone of the fallback and the predicates; they share only
/// what those share (an `Arc` the closure captured, the fallback service's own shared state).
///
/// See the [module docs](crate::fallback).
#[derive(Debug, Clone)]
pub struct FallbackLayer<F, P = AnyError, R = NoResponse> {
    fallback: F,
    predicate: P,
    responses: R,
}

impl<G> FallbackLayer<FallbackFn<G>> {
    /// Falls back to `f(error).await` on every error (narrow it with [`when`](Self::when); select
    /// responses too with [`when_response`](Self::when_response)).
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
    /// Falls back to `f(error)` on every error (narrow it with [`when`](Self::when); select
    /// responses too with [`when_response`](Self::when_response)): for a default or cached
    /// response that needs no `.await`.
    pub const fn new_sync<T>(f: G) -> Self
    where
        G: FnOnce(BoxError) -> T,
    {
        Self::with_fallback(FallbackSyncFn::new(f))
    }
}

impl<T> FallbackLayer<FallbackTo<T>> {
    /// Falls back to calling `service` with a clone of the request on every error (narrow it
    /// with [`when`](Self::when); select responses too with
    /// [`when_response`](Self::when_response)). The request type must be `Clone`; see
    /// [`FallbackTo`].
    pub const fn service(service: T) -> Self {
        Self::with_fallback(FallbackTo::new(service))
    }
}

impl<F> FallbackLayer<F> {
    /// Falls back to `fallback`, any [`Fallback`](super::Fallback), on every error (narrow it with
    /// [`when`](Self::when); select responses too with [`when_response`](Self::when_response)).
    pub const fn with_fallback(fallback: F) -> Self {
        Self {
            fallback,
            predicate: AnyError,
            responses: NoResponse,
        }
    }
}

impl<F, P, R> FallbackLayer<F, P, R> {
    /// Falls back only on the errors `predicate` selects, an
    /// [`ErrorPredicate`](super::ErrorPredicate); the others pass through unchanged.
    pub fn when<P2>(self, predicate: P2) -> FallbackLayer<F, P2, R> {
        FallbackLayer {
            fallback: self.fallback,
            predicate,
            responses: self.responses,
        }
    }

    /// Falls back also on the responses `predicate` selects, a
    /// [`ResponsePredicate`](super::ResponsePredicate): a closure `|response: &Response| ->
    /// bool`, or for HTTP `StatusIn(500..=599)` or `ClassifiedFailure(HttpClassifier::new())`.
    /// The others pass through untouched.
    ///
    /// The fallback is called with the selected response turned into an error
    /// ([`SelectedResponse`](super::SelectedResponse), or `FailedResponse` for HTTP responses),
    /// whatever [`when`](Self::when) selects of errors. By default no response is selected.
    pub fn when_response<R2>(self, predicate: R2) -> FallbackLayer<F, P, R2> {
        FallbackLayer {
            fallback: self.fallback,
            predicate: self.predicate,
            responses: predicate,
        }
    }
}

impl<S, F: Clone, P: Clone, R: Clone> Layer<S> for FallbackLayer<F, P, R> {
    type Service = FallbackService<S, F, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService::new(inner, self.fallback.clone())
            .when(self.predicate.clone())
            .when_response(self.responses.clone())
    }
}
