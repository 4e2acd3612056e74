//! What a finished call means to the breaker.
//!
//! A call ends in an [`Outcome`]: a success, a failure, a timeout (a failure that is also counted
//! as a timeout), or ignored (counted, but it neither opens nor closes the circuit). A [`Classify`]
//! turns a call's `Result` into an outcome; any `Fn(&Result<T, E>) -> Outcome` is one.
//!
//! Classifiers are values: small, `Clone` (the tower layer clones one into every call) and
//! independent of the middleware that uses them. This module has the generic ones:
//! [`ErrorIsFailure`] for the engine and [`DefaultClassifier`] for the tower layer. With the
//! `http` feature, the `http` submodule classifies HTTP responses by status code and the `grpc`
//! submodule classifies gRPC responses by `grpc-status`.
//!
//! # Example
//!
//! ```
//! use tower_circuit_breaker::{Classify, ErrorIsFailure, Outcome};
//!
//! // 404s are the caller's problem, not the server's: ignore them.
//! let classifier = |result: &Result<u16, std::io::Error>| match result {
//!     Ok(404) => Outcome::Ignored,
//!     Ok(status) if *status >= 500 => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(classifier.classify(&Ok(503)), Outcome::Failure);
//! assert_eq!(classifier.classify(&Ok(404)), Outcome::Ignored);
//! assert_eq!(ErrorIsFailure.classify(&Ok::<_, ()>(503)), Outcome::Success);
//! ```

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod grpc;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The service worked.
    Success,
    /// The service failed.
    Failure,
    /// The call took too long: a failure, also counted as a timeout.
    Timeout,
    /// Neither: counted in the totals, but it moves no state (a client error, a cancelled request).
    Ignored,
}

impl Outcome {
    /// Whether the outcome counts against the service (`Failure` or `Timeout`).
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Failure | Self::Timeout)
    }
}

/// Maps the result of a call to an [`Outcome`].
///
/// Implemented by [`ErrorIsFailure`] (any `Result`), [`DefaultClassifier`] (a `BoxError`
/// result, the tower layer's), `HttpClassifier` and `GrpcClassifier` (`http::Response<B>` with a
/// `BoxError`, with the `http` feature), and every closure `Fn(&Result<T, E>) -> Outcome`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify a call that ends in `Result<{T}, {E}>`",
    label = "not a classifier of `Result<{T}, {E}>`",
    note = "a classifier implements `Classify<{T}, {E}>`, or is a closure `|result: &Result<{T}, {E}>| -> Outcome`",
    note = "behind the tower layer and `RetryPolicy` the error is `tower::BoxError`; `HttpClassifier` and `GrpcClassifier` classify `http::Response<B>`"
)]
pub trait Classify<T, E> {
    /// Classifies one finished call.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

// Not recommended in errors: every type matches this impl, so without the attribute a type that
// is no classifier is reported as "expected a closure" instead of with `Classify`'s message.
#[diagnostic::do_not_recommend]
impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// The engine's default classifier: `Ok` is a success, `Err` is a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorIsFailure;

/// The tower layer's default classifier: `Ok` is a success; an error is a failure, or a timeout
/// when it is [`tower::timeout::error::Elapsed`] or [`tokio::time::error::Elapsed`] (a per-try
/// timeout inside the breaker).
///
/// It sees only errors, so it never counts an HTTP `5xx` as a failure: to tower that is an
/// `Ok(response)`, and an axum route's service never returns an error at all. Behind an HTTP
/// client or on an axum route, classify by status instead (`HttpClassifier`, with the `http`
/// feature; on a route, the `tower-circuit-breaker-axum` crate's `CircuitBreakerRouteLayer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<T> Classify<T, tower::BoxError> for DefaultClassifier {
    fn classify(&self, result: &Result<T, tower::BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) if is_timeout(error.as_ref()) => Outcome::Timeout,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Whether `error`, or an error down its [`source`](std::error::Error::source) chain, is a
/// timeout from tower's or tokio's timeout.
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |&error| error.source()).any(|error| {
        error.is::<tower::timeout::error::Elapsed>() || error.is::<tokio::time::error::Elapsed>()
    })
}

impl<T, E> Classify<T, E> for ErrorIsFailure {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// An outcome in two bits, for the status and code tables of the `http` and `grpc` classifiers.
#[cfg(feature = "http")]
const fn outcome_bits(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Timeout => 2,
        Outcome::Ignored => 3,
    }
}

/// The outcome in the lowest two bits of `bits`.
#[cfg(feature = "http")]
const fn outcome_from_bits(bits: u64) -> Outcome {
    match bits & 0b11 {
        0 => Outcome::Success,
        1 => Outcome::Failure,
        2 => Outcome::Timeout,
        _ => Outcome::Ignored,
    }
}
