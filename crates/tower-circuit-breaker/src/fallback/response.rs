use std::error::Error;
use std::fmt;

use tower::BoxError;

/// Decides which responses a [`FallbackService`](super::FallbackService) answers with its
/// fallback, and what the fallback is given for them.
///
/// A response is an `Ok` from the inner service. [`check`](ResponsePredicate::check) hands back
/// the responses it does not select, untouched, and turns the ones it selects into the error the
/// [`Fallback`](super::Fallback) is called with, so every fallback (an async closure, a sync
/// closure, another service, a hand-written one) answers them the way it answers errors.
///
/// Ready-made:
///
/// - [`NoResponse`], the default: selects nothing, and compiles away.
/// - Any `Fn(&Response) -> bool` (annotate the closure's argument:
///   `|quote: &Quote| quote.is_stale()`). The fallback is given a [`SelectedResponse`].
/// - With the `http` feature, over `http::Response<B>`: `StatusIn` (a range of status codes),
///   `ClassifiedFailure` (what a classifier such as `HttpClassifier` calls a failure) and
///   `HttpResponseIf` (a closure). The fallback is given a `FailedResponse`, which keeps the
///   status and the headers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot choose which `{Res}` responses the fallback answers",
    label = "not a `ResponsePredicate<{Res}>`",
    note = "`when_response` takes a closure `|response: &{Res}| -> bool`, or (with the `http` feature, for `http::Response<B>`) `StatusIn(500..=599)`, `ClassifiedFailure(HttpClassifier::new())` or `HttpResponseIf(|response: &http::Response<B>| -> bool)`"
)]
pub trait ResponsePredicate<Res> {
    /// Hands `response` back (`Ok`) when the fallback should not answer it, or the error the
    /// fallback is called with in its place (`Err`).
    ///
    /// # Errors
    ///
    /// Returns the selected response turned into an error: a [`SelectedResponse`], or for HTTP
    /// responses a `FailedResponse`, or any error the predicate chooses.
    fn check(&self, response: Res) -> Result<Res, BoxError>;
}

// Not recommended in errors: every type matches this impl, so without the attribute a type that
// is no predicate is reported as "expected a closure" instead of with the trait's message.
#[diagnostic::do_not_recommend]
impl<Res, F> ResponsePredicate<Res> for F
where
    F: Fn(&Res) -> bool,
{
    fn check(&self, response: Res) -> Result<Res, BoxError> {
        if self(&response) {
            Err(Box::new(SelectedResponse::new()))
        } else {
            Ok(response)
        }
    }
}

/// Selects no response: every `Ok` passes through. The default response predicate.
///
/// A zero-sized type whose [`check`](ResponsePredicate::check) always hands the response back,
/// so a fallback without [`when_response`](super::FallbackLayer::when_response) costs nothing
/// on the success path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoResponse;

impl<Res> ResponsePredicate<Res> for NoResponse {
    #[inline(always)]
    fn check(&self, response: Res) -> Result<Res, BoxError> {
        Ok(response)
    }
}

/// The error a fallback is given for a response a closure predicate selected.
///
/// The response itself is dropped. A fallback tells it from an error with
/// `error.is::<SelectedResponse>()`; one that needs something from the response selects it with
/// a predicate that keeps that part instead (implement [`ResponsePredicate`] and return your own
/// error from [`check`](ResponsePredicate::check)), as `FailedResponse` keeps an HTTP response's
/// status and headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectedResponse {
    _private: (),
}

impl SelectedResponse {
    /// The error for a selected response.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl fmt::Display for SelectedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the response was selected for the fallback")
    }
}

impl Error for SelectedResponse {}
