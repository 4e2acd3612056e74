//! How the layer records a call once its response arrives: at once, by a [`Classify`], or, for
//! a streamed HTTP body, when the body ends (`AtEndOfBody`, with the `http` feature).

use std::borrow::Borrow;

use tower::BoxError;

use crate::{CircuitBreaker, Classify, Permit};

/// What the layer does with a call's permit when the inner service answers, and the response it
/// hands on. Every [`Classify`] of `Result<T, BoxError>` is one: it records the outcome at once
/// and hands the response on as it is. `AtEndOfBody` (with the `http`
/// feature) moves the permit into the response's body and records when the body ends.
///
/// `H` is how the permit holds its breaker (the layer's shared handle, or a keyed breaker).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot record a call that ends in `Result<{T}, BoxError>`",
    label = "not a classifier of `Result<{T}, BoxError>`",
    note = "the layer takes a `Classify<{T}, BoxError>` (such as `DefaultClassifier`, `HttpClassifier`, `GrpcClassifier` or a closure), or `AtEndOfBody<C>` for an `http::Response` whose body decides"
)]
pub trait Record<T, H: Borrow<CircuitBreaker>> {
    /// The response the layer's service answers with.
    type Response;

    /// Records (or arranges to record) the call that ended in `result`, and hands on its
    /// response.
    ///
    /// # Errors
    ///
    /// The call's error, as it is.
    fn record(
        &self,
        result: Result<T, BoxError>,
        permit: Permit<H>,
    ) -> Result<Self::Response, BoxError>;
}

impl<T, H, C> Record<T, H> for C
where
    H: Borrow<CircuitBreaker>,
    C: Classify<T, BoxError>,
{
    type Response = T;

    #[inline]
    fn record(&self, result: Result<T, BoxError>, permit: Permit<H>) -> Result<T, BoxError> {
        permit.record(self.classify(&result));
        result
    }
}
