use std::error::Error;
use std::fmt;
use std::ops::RangeBounds;

use ::http::{HeaderMap, Response, StatusCode};
use tower::BoxError;

use super::ResponsePredicate;
use crate::Classify;

/// Selects HTTP responses whose status code is in a range: `StatusIn(500..=599)`, `StatusIn(500..)`,
/// `StatusIn(503..=503)`.
///
/// The fallback is given a [`FailedResponse`] with the response's status and headers.
///
/// To select what the breaker counts as a failure (504 as a timeout, 429 when configured so, your
/// own overrides), use [`ClassifiedFailure`] with the breaker's classifier instead, so the two
/// cannot disagree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusIn<R>(pub R);

impl<R, B> ResponsePredicate<Response<B>> for StatusIn<R>
where
    R: RangeBounds<u16>,
{
    fn check(&self, response: Response<B>) -> Result<Response<B>, BoxError> {
        if self.0.contains(&response.status().as_u16()) {
            Err(Box::new(FailedResponse::from_response(response)))
        } else {
            Ok(response)
        }
    }
}

/// Selects HTTP responses a classifier counts as a failure ([`Outcome::Failure`] or
/// [`Outcome::Timeout`]): `ClassifiedFailure(HttpClassifier::new())`.
///
/// Give it the classifier the [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) and the
/// [`RetryPolicy`](crate::RetryPolicy) use, and the fallback answers exactly the responses the
/// breaker counts against the service and the retry retried: with
/// [`HttpClassifier`](crate::HttpClassifier)'s defaults, 5xx and 6xx to 9xx, not 4xx.
///
/// The classifier is any [`Classify<http::Response<B>, BoxError>`](Classify) (the shape the
/// breaker's layer classifies), and sees the response as `Ok(response)`. The fallback is given a
/// [`FailedResponse`] with the response's status and headers.
///
/// [`Outcome::Failure`]: crate::Outcome::Failure
/// [`Outcome::Timeout`]: crate::Outcome::Timeout
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifiedFailure<C>(pub C);

impl<C, B> ResponsePredicate<Response<B>> for ClassifiedFailure<C>
where
    C: Classify<Response<B>, BoxError>,
{
    fn check(&self, response: Response<B>) -> Result<Response<B>, BoxError> {
        let result = Ok(response);
        if self.0.classify(&result).is_failure() {
            result.and_then(|response| Err(FailedResponse::from_response(response).into()))
        } else {
            result
        }
    }
}

/// Selects HTTP responses a closure picks, `HttpResponseIf(|response: &http::Response<B>| ..)`,
/// and gives the fallback a [`FailedResponse`] (a bare closure predicate gives it a
/// [`SelectedResponse`](super::SelectedResponse), which has no status or headers).
#[derive(Clone, Copy, Default)]
pub struct HttpResponseIf<F>(pub F);

impl<F, B> ResponsePredicate<Response<B>> for HttpResponseIf<F>
where
    F: Fn(&Response<B>) -> bool,
{
    fn check(&self, response: Response<B>) -> Result<Response<B>, BoxError> {
        if (self.0)(&response) {
            Err(Box::new(FailedResponse::from_response(response)))
        } else {
            Ok(response)
        }
    }
}

impl<F> fmt::Debug for HttpResponseIf<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpResponseIf")
            .field(&format_args!("{}", std::any::type_name::<F>()))
            .finish()
    }
}

/// The error a fallback is given for a selected HTTP response: its status and headers.
///
/// Made by the HTTP response predicates ([`StatusIn`], [`ClassifiedFailure`],
/// [`HttpResponseIf`]). The body is dropped unread, so the connection is not held while the
/// fallback runs; the headers stay, for a fallback that reads `Retry-After`, a request id or a
/// cache validator. A fallback downcasts to it:
///
/// ```
/// # use http::{header, Response, StatusCode};
/// # use tower::BoxError;
/// # use tower_circuit_breaker::fallback::FailedResponse;
/// # let response = Response::builder().status(503).header(header::RETRY_AFTER, "30").body(()).unwrap();
/// let error: BoxError = FailedResponse::from_response(response).into();
/// assert_eq!(error.to_string(), "upstream answered 503 Service Unavailable");
///
/// let failed = error.downcast_ref::<FailedResponse>().unwrap();
/// assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(failed.headers()[header::RETRY_AFTER], "30");
/// ```
///
/// When the fallback returns it as its own error (it had nothing to answer with), it reaches the
/// caller as an `Err` in place of the response.
#[derive(Debug, Clone)]
pub struct FailedResponse {
    status: StatusCode,
    headers: HeaderMap,
}

impl FailedResponse {
    /// Keeps `response`'s status and headers, and drops its body (and extensions).
    pub fn from_response<B>(response: Response<B>) -> Self {
        let (parts, body) = response.into_parts();
        drop(body);
        Self::new(parts.status, parts.headers)
    }

    /// A failed response with `status` and `headers`.
    pub const fn new(status: StatusCode, headers: HeaderMap) -> Self {
        Self { status, headers }
    }

    /// The response's status.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's headers.
    pub const fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The response's headers, taken out.
    pub fn into_headers(self) -> HeaderMap {
        self.headers
    }
}

impl<B> From<Response<B>> for FailedResponse {
    fn from(response: Response<B>) -> Self {
        Self::from_response(response)
    }
}

/// `upstream answered 503 Service Unavailable`, or only the number for a status without a
/// standard reason phrase.
impl fmt::Display for FailedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream answered {}", self.status.as_u16())?;
        match self.status.canonical_reason() {
            Some(reason) => write!(f, " {reason}"),
            None => Ok(()),
        }
    }
}

impl Error for FailedResponse {}
