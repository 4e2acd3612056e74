//! A breaker's rejection as an HTTP response: `503 Service Unavailable` with `Retry-After`.
//!
//! The engine's rejections ([`CircuitOpen`], [`HalfOpenFull`], [`Rejection`]) know nothing of
//! HTTP, and the orphan rule keeps this crate from implementing axum's [`IntoResponse`] for them,
//! so [`RejectionResponse`] wraps one. The
//! [`CircuitBreakerRouteLayer`](crate::route::CircuitBreakerRouteLayer) answers with it; a
//! `HandleErrorLayer` around the engine's own `CircuitBreakerLayer` can too, through
//! [`rejection_response`], which finds a rejection anywhere down an error's source chain.
//!
//! # The response
//!
//! | Rejection                     | Status | `Retry-After`                              |
//! |-------------------------------|--------|--------------------------------------------|
//! | open, next probe in `d`       | 503    | `d` in whole seconds, rounded up, at least 1 |
//! | open, isolated by hand        | 503    | none: nobody knows when it will end        |
//! | half-open, every probe taken  | 503    | `1`: a probe is in flight and decides soon |
//!
//! Rounded up, so a client that waits as told never arrives before the break ends: 200 ms gives
//! `1`, 30 s gives `30`, 30.2 s gives `31`. Never `0`: a rejection means "not now", and a client
//! told `0` would come straight back to the same rejection.
//!
//! The body is the rejection's text (`circuit open: breaker `db`, next probe in 1.5s`), as
//! `text/plain; charset=utf-8`.
//!
//! # Example
//!
//! ```
//! use axum::response::IntoResponse;
//! use http::StatusCode;
//! use tower_circuit_breaker::CircuitBreaker;
//! use tower_circuit_breaker_axum::rejection::RejectionResponse;
//!
//! let breaker = CircuitBreaker::new("db");
//! breaker.isolate();
//! let rejection = breaker.try_acquire().unwrap_err();
//!
//! let response = RejectionResponse::from(rejection).into_response();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! // Isolated by hand: no time to give.
//! assert!(response.headers().get("retry-after").is_none());
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::{HeaderValue, StatusCode};
use tower::BoxError;
use tower_circuit_breaker::{CircuitOpen, HalfOpenFull, Rejection};

/// A breaker's [`Rejection`] that answers as `503 Service Unavailable` with `Retry-After`.
///
/// See the [module docs](self) for the header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionResponse(Rejection);

// ===== impl RejectionResponse =====

impl RejectionResponse {
    /// Wraps `rejection`.
    pub const fn new(rejection: Rejection) -> Self {
        Self(rejection)
    }

    /// The rejection in `error` or anywhere down its [`source`](Error::source) chain (see
    /// [`Rejection::find`]).
    pub fn find(error: &(dyn Error + 'static)) -> Option<Self> {
        Rejection::find(error).map(Self)
    }

    /// The rejection it answers.
    pub const fn rejection(&self) -> &Rejection {
        &self.0
    }

    /// The rejection, unwrapped.
    pub fn into_rejection(self) -> Rejection {
        self.0
    }

    /// The `Retry-After` value in seconds: the time to the next probe rounded up to a whole
    /// second (at least 1), 1 for a half-open breaker with every probe taken, `None` for an
    /// isolated one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match &self.0 {
            Rejection::Open(open) => open.retry_after().map(whole_seconds_up),
            Rejection::HalfOpenFull(_) => Some(1),
        }
    }
}

/// `duration` in whole seconds, rounded up, and at least 1.
fn whole_seconds_up(duration: Duration) -> u64 {
    let seconds = duration.as_secs();
    let seconds = if duration.subsec_nanos() > 0 {
        seconds.saturating_add(1)
    } else {
        seconds
    };
    seconds.max(1)
}

impl From<Rejection> for RejectionResponse {
    fn from(rejection: Rejection) -> Self {
        Self(rejection)
    }
}

impl From<CircuitOpen> for RejectionResponse {
    fn from(open: CircuitOpen) -> Self {
        Self(Rejection::Open(open))
    }
}

impl From<HalfOpenFull> for RejectionResponse {
    fn from(full: HalfOpenFull) -> Self {
        Self(Rejection::HalfOpenFull(full))
    }
}

impl From<RejectionResponse> for Rejection {
    fn from(response: RejectionResponse) -> Self {
        response.0
    }
}

impl fmt::Display for RejectionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl IntoResponse for RejectionResponse {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_secs();
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, self.0.to_string()).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The response for a breaker's rejection found in `err` or down its source chain; `None` when
/// no breaker rejected the call (the error is the inner service's own).
///
/// For a `HandleErrorLayer` around the engine's `CircuitBreakerLayer`:
///
/// ```
/// use axum::error_handling::HandleErrorLayer;
/// use axum::http::StatusCode;
/// use axum::response::{IntoResponse, Response};
/// use axum::routing::get;
/// use axum::Router;
/// use tower::{BoxError, ServiceBuilder};
/// use tower_circuit_breaker::classify::http::HttpClassifier;
/// use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
/// use tower_circuit_breaker_axum::rejection::rejection_response;
///
/// async fn handle_error(err: BoxError) -> Response {
///     rejection_response(&err)
///         .unwrap_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response())
/// }
///
/// let breaker = CircuitBreaker::new("db");
/// let app: Router = Router::new().route(
///     "/orders",
///     get(|| async { "orders" }).layer(
///         ServiceBuilder::new()
///             .layer(HandleErrorLayer::new(handle_error))
///             .layer(CircuitBreakerLayer::new(breaker).classify_with(HttpClassifier::new())),
///     ),
/// );
/// # let _ = app;
/// ```
pub fn rejection_response(err: &BoxError) -> Option<Response> {
    RejectionResponse::find(err.as_ref()).map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, Clock, ManualClock};

    use super::*;

    /// A breaker opened for 30 s on `time`, with one probe slot.
    fn open_breaker(time: &ManualClock) -> CircuitBreaker {
        let config = CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(Duration::from_secs(30))
            .half_open_max_calls(1);
        let breaker = CircuitBreaker::builder("db")
            .config(config)
            .clock(Clock::manual(time))
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().failure();
        breaker
    }

    fn header(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(RETRY_AFTER)
            .map(|value| value.to_str().unwrap())
    }

    #[test]
    fn open_answers_503_with_the_break_left_rounded_up() {
        let time = ManualClock::new();
        let breaker = open_breaker(&time);
        time.advance(Duration::from_millis(29_800));
        let rejection = RejectionResponse::from(breaker.try_acquire().unwrap_err());
        assert_eq!(rejection.retry_after_secs(), Some(1));
        assert_eq!(
            rejection.to_string(),
            "circuit open: breaker `db`, next probe in 200ms"
        );

        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response), Some("1"));
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn half_open_full_answers_retry_after_one_second() {
        let time = ManualClock::new();
        let breaker = open_breaker(&time);
        time.advance(Duration::from_secs(30));
        let _probe = breaker.try_acquire().unwrap();
        let rejection = breaker.try_acquire().unwrap_err();
        assert!(matches!(rejection, Rejection::HalfOpenFull(_)));

        let response = RejectionResponse::from(rejection).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response), Some("1"));
    }

    #[test]
    fn isolated_answers_without_retry_after() {
        let breaker = CircuitBreaker::new("db");
        breaker.isolate();
        let rejection = RejectionResponse::from(breaker.try_acquire().unwrap_err());
        assert_eq!(rejection.retry_after_secs(), None);
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response), None);
    }

    #[test]
    fn converts_from_each_rejection_type() {
        let time = ManualClock::new();
        let breaker = open_breaker(&time);
        let Rejection::Open(open) = breaker.try_acquire().unwrap_err() else {
            panic!("expected an open rejection");
        };
        let response = RejectionResponse::from(open.clone());
        assert_eq!(response.rejection(), &Rejection::Open(open.clone()));
        assert_eq!(Rejection::from(response), Rejection::Open(open));

        time.advance(Duration::from_secs(30));
        let _probe = breaker.try_acquire().unwrap();
        let Rejection::HalfOpenFull(full) = breaker.try_acquire().unwrap_err() else {
            panic!("expected a half-open rejection");
        };
        let response = RejectionResponse::from(full.clone());
        assert_eq!(response.into_rejection(), Rejection::HalfOpenFull(full));
    }

    /// An error that wraps another, as a layer between the breaker and the handler might.
    #[derive(Debug)]
    struct Wrapped(BoxError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn rejection_response_finds_a_rejection_down_the_source_chain() {
        let time = ManualClock::new();
        let breaker = open_breaker(&time);
        let err: BoxError = Box::new(Wrapped(breaker.try_acquire().unwrap_err().into_error()));
        let response = rejection_response(&err).expect("a rejection in the chain");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response), Some("30"));

        let other: BoxError = Box::new(Wrapped("connection refused".into()));
        assert!(rejection_response(&other).is_none());
    }

    #[test]
    fn rounds_up_to_whole_seconds() {
        let cases = [
            (Duration::from_millis(200), 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(30), 30),
            (Duration::from_millis(30_200), 31),
            (Duration::new(59, 999_999_999), 60),
        ];
        for (duration, seconds) in cases {
            assert_eq!(whole_seconds_up(duration), seconds, "{duration:?}");
        }
    }

    #[test]
    fn zero_rounds_to_one_second() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
    }

    #[test]
    fn saturates_at_the_largest_duration() {
        assert_eq!(whole_seconds_up(Duration::MAX), u64::MAX);
    }
}
