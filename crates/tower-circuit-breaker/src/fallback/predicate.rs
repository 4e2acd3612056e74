use tower::BoxError;

use crate::classify::is_timeout;
use crate::Rejection;

/// Decides which errors a [`FallbackService`](super::FallbackService) answers with its fallback.
///
/// Errors it does not select pass through unchanged. Any `Fn(&BoxError) -> bool` is one (annotate
/// the closure's argument: `|err: &BoxError| err.is::<MyError>()`); the ready-made ones are
/// [`AnyError`] (the default), [`IsRejection`] and [`IsTimeout`], combined with
/// [`or`](ErrorPredicate::or).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot choose which errors the fallback answers",
    label = "not an `ErrorPredicate`",
    note = "`when` takes `IsRejection`, `IsTimeout`, `AnyError`, a combination with `.or(..)`, or a closure `|err: &BoxError| -> bool`"
)]
pub trait ErrorPredicate {
    /// Whether the fallback answers in place of `error`.
    fn matches(&self, error: &BoxError) -> bool;

    /// A predicate that selects an error when `self` or `other` does.
    fn or<Q>(self, other: Q) -> Or<Self, Q>
    where
        Self: Sized,
        Q: ErrorPredicate,
    {
        Or {
            first: self,
            second: other,
        }
    }
}

// Not recommended in errors: every type matches this impl, so without the attribute a type that
// is no predicate is reported as "expected a closure" instead of with `ErrorPredicate`'s message.
#[diagnostic::do_not_recommend]
impl<F> ErrorPredicate for F
where
    F: Fn(&BoxError) -> bool,
{
    fn matches(&self, error: &BoxError) -> bool {
        self(error)
    }
}

/// Selects every error. The default predicate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyError;

impl ErrorPredicate for AnyError {
    fn matches(&self, _error: &BoxError) -> bool {
        true
    }
}

/// Selects a call a breaker turned away: a [`CircuitOpen`](crate::CircuitOpen) or a
/// [`HalfOpenFull`](crate::HalfOpenFull), as the error itself or anywhere in its
/// [`source`](std::error::Error::source) chain (an error type of a layer in between that wraps it).
///
/// It does not look inside a [`CircuitBreakerError`](crate::CircuitBreakerError) (the error of
/// [`CircuitBreaker::call`](crate::CircuitBreaker::call)): box the `CircuitOpen` or
/// `HalfOpenFull` it holds instead, as the tower layer does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsRejection;

impl ErrorPredicate for IsRejection {
    fn matches(&self, error: &BoxError) -> bool {
        Rejection::find(error.as_ref()).is_some()
    }
}

/// Selects a timeout: [`tower::timeout::error::Elapsed`] or [`tokio::time::error::Elapsed`]
/// (as [`is_timeout`] tells them), as the error itself or anywhere in its
/// [`source`](std::error::Error::source) chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsTimeout;

impl ErrorPredicate for IsTimeout {
    fn matches(&self, error: &BoxError) -> bool {
        is_timeout(error.as_ref())
    }
}

/// Selects an error when either of two predicates does. Made by [`ErrorPredicate::or`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: ErrorPredicate, B: ErrorPredicate> ErrorPredicate for Or<A, B> {
    fn matches(&self, error: &BoxError) -> bool {
        self.first.matches(error) || self.second.matches(error)
    }
}
