//! Classifies HTTP responses by status code.
//!
//! [`HttpClassifier`] is a [`Classify`] over `Result<http::Response<B>, BoxError>`, the shape a
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) around a hyper, reqwest-style or axum
//! client sees. It is for breakers in front of HTTP services; for gRPC, whose errors travel in a
//! `grpc-status` header behind an HTTP 200, use [`GrpcClassifier`](super::grpc::GrpcClassifier).
//!
//! # What counts
//!
//! | Result                           | Outcome              |
//! |----------------------------------|----------------------|
//! | `Err`, a tower or tokio `Elapsed` | [`Outcome::Timeout`] |
//! | `Err`, anything else             | [`Outcome::Failure`] |
//! | 1xx, 2xx, 3xx                    | [`Outcome::Success`] |
//! | 4xx (429 included)               | [`Outcome::Ignored`] |
//! | 504 Gateway Timeout              | [`Outcome::Timeout`] |
//! | other 5xx                        | [`Outcome::Failure`] |
//! | 600 to 999 (not standard)        | [`Outcome::Failure`] |
//!
//! **A 4xx is ignored**: it neither opens nor closes the circuit and is not in the failure-rate
//! window, though it shows in the `ignored` count. A 4xx says the caller sent something the
//! server would not do, not whether the server can do its work. Counting it as a success, as Polly
//! and Resilience4j do by default, lets a caller's own bad requests hide a sick server: a burst of
//! 404s dilutes the failure rate below its threshold and resets the consecutive-failure count
//! while every valid request gets a 503. Counting it as ignored keeps both rules about the calls
//! that tested the server. The cost: a half-open probe answered with a 4xx decides nothing, so the
//! next call probes again. For the Polly behaviour, map them back:
//! `.statuses_as(400..=499, Outcome::Success)`.
//!
//! **429 Too Many Requests is ignored by default**, like the other 4xx: a 429 most often enforces
//! the caller's own quota (per key, per tenant), the server is up, and it says when to return
//! (`Retry-After`), which is a retry policy's job. When the 429s mean the whole service is shedding
//! load, turn on [`too_many_requests_as_failure`](HttpClassifier::too_many_requests_as_failure).
//!
//! **504 Gateway Timeout is a timeout**: a proxy gave up waiting for the service, so it counts
//! where the breaker's own timeouts do (a failure, also in the `timeouts` count).
//!
//! Status codes outside the standard 1xx to 5xx classes (600 to 999, which `http` accepts) come
//! from a server that does not speak HTTP properly, and count as failures.
//!
//! # Custom statuses
//!
//! [`status_as`](HttpClassifier::status_as) and [`statuses_as`](HttpClassifier::statuses_as) set
//! the outcome of one status or a range; the last call that names a status wins. For anything a
//! status table cannot say (a header, the request), write a closure and delegate the rest to
//! [`HttpClassifier::classify_status`].
//!
//! # What it cannot see
//!
//! The layer classifies a call when the response head arrives, before the body is read. A body
//! that fails while streaming (a reset connection, a truncated download) after a 200 head counts
//! as a success; only the caller reading the body sees that error.
//!
//! # Example
//!
//! ```
//! use http::{Response, StatusCode};
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::classify::http::HttpClassifier;
//! use tower_circuit_breaker::{
//!     CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState,
//!     Outcome,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = CircuitBreakerConfig::default().failure_threshold(2);
//! let breaker = CircuitBreaker::with_config("search", config).unwrap();
//! let classifier = HttpClassifier::new()
//!     .too_many_requests_as_failure(true)
//!     .status_as(StatusCode::NOT_IMPLEMENTED, Outcome::Ignored);
//! let mut client = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(classifier))
//!     .service(service_fn(|path: &'static str| async move {
//!         let status = match path {
//!             "/missing" => StatusCode::NOT_FOUND,
//!             _ => StatusCode::SERVICE_UNAVAILABLE,
//!         };
//!         Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
//!     }));
//!
//! // A 404 is the caller's mistake: the circuit stays closed.
//! for _ in 0..5 {
//!     let response = client.ready().await.unwrap().call("/missing").await.unwrap();
//!     assert_eq!(response.status(), StatusCode::NOT_FOUND);
//! }
//! assert_eq!(breaker.state(), CircuitState::Closed);
//!
//! // Two 503s in a row open it.
//! for _ in 0..2 {
//!     client.ready().await.unwrap().call("/search").await.unwrap();
//! }
//! let rejected = client.ready().await.unwrap().call("/search").await.unwrap_err();
//! assert!(rejected.is::<CircuitOpen>());
//! # }
//! ```
//!
//! A classifier is also usable by hand, or inside a closure for rules a status table cannot say:
//!
//! ```
//! use http::{Response, StatusCode};
//! use tower::BoxError;
//! use tower_circuit_breaker::classify::http::HttpClassifier;
//! use tower_circuit_breaker::{Classify, Outcome};
//!
//! let statuses = HttpClassifier::new();
//! // A 429 from the mesh's global rate limiter (Envoy marks it `x-envoy-ratelimited`) means the
//! // whole service is shedding load; the application's per-user 429s stay ignored.
//! let classifier = move |result: &Result<Response<()>, BoxError>| match result {
//!     Ok(response) if response.headers().contains_key("x-envoy-ratelimited") => Outcome::Failure,
//!     _ => statuses.classify(result),
//! };
//!
//! let shedding = Response::builder().status(429).header("x-envoy-ratelimited", "true");
//! assert_eq!(classifier.classify(&Ok(shedding.body(()).unwrap())), Outcome::Failure);
//! let quota = Response::builder().status(429).body(()).unwrap();
//! assert_eq!(classifier.classify(&Ok(quota)), Outcome::Ignored);
//! assert_eq!(statuses.classify_status(StatusCode::NOT_FOUND), Outcome::Ignored);
//! ```

use std::fmt;
use std::ops::{Bound, RangeBounds};

use ::http::{Response, StatusCode};
use tower::BoxError;

use super::{outcome_bits, outcome_from_bits, Classify, DefaultClassifier, Outcome};

/// Classifies `Result<http::Response<B>, BoxError>` by status code: 5xx are failures (504 a
/// timeout), 4xx are ignored, the rest are successes; errors are failures, or timeouts when they
/// are `Elapsed`. See the [module docs](self) for why.
///
/// `Copy`: a table of two bits per status code (240 bytes in all, no allocation), so the clone
/// the layer makes for every call is a plain copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpClassifier {
    statuses: StatusTable,
    too_many_requests_as_failure: bool,
}

// ===== impl HttpClassifier =====

impl HttpClassifier {
    /// The default classification: 5xx failures (504 a timeout), 4xx ignored, 1xx to 3xx
    /// successes, 429 ignored.
    pub const fn new() -> Self {
        Self {
            statuses: StatusTable::DEFAULT,
            too_many_requests_as_failure: false,
        }
    }

    /// Counts `status` as `outcome`.
    #[must_use]
    pub const fn status_as(mut self, status: StatusCode, outcome: Outcome) -> Self {
        self.statuses = self.statuses.with(status.as_u16(), outcome);
        self
    }

    /// Counts every status in `range` as `outcome`: `.statuses_as(400..=499, Outcome::Success)`.
    ///
    /// Numbers in the range that are not valid status codes (below 100, above 999) are skipped.
    #[must_use]
    pub fn statuses_as(mut self, range: impl RangeBounds<u16>, outcome: Outcome) -> Self {
        let start = match range.start_bound() {
            Bound::Included(&start) => start,
            Bound::Excluded(&start) => start.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&end) => end,
            Bound::Excluded(&end) => match end.checked_sub(1) {
                Some(end) => end,
                None => return self,
            },
            Bound::Unbounded => u16::MAX,
        };
        for status in start.max(FIRST_STATUS)..=end.min(LAST_STATUS) {
            self.statuses = self.statuses.with(status, outcome);
        }
        self
    }

    /// With `true`, 429 Too Many Requests is a failure, whatever [`status_as`](Self::status_as)
    /// says of it. Default `false`: a 429 is ignored like other 4xx (see the
    /// [module docs](self#what-counts)).
    #[must_use]
    pub const fn too_many_requests_as_failure(mut self, on: bool) -> Self {
        self.too_many_requests_as_failure = on;
        self
    }

    /// How a response with `status` counts.
    pub const fn classify_status(&self, status: StatusCode) -> Outcome {
        let code = status.as_u16();
        if self.too_many_requests_as_failure && code == StatusCode::TOO_MANY_REQUESTS.as_u16() {
            return Outcome::Failure;
        }
        self.statuses.get(code)
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Classify<Response<B>, BoxError> for HttpClassifier {
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status()),
            Err(_) => DefaultClassifier.classify(result),
        }
    }
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifier")
            .field("statuses", &self.statuses)
            .field(
                "too_many_requests_as_failure",
                &self.too_many_requests_as_failure,
            )
            .finish()
    }
}

// ===== impl StatusTable =====

const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 999;
const STATUSES: usize = (LAST_STATUS - FIRST_STATUS + 1) as usize;
const BITS_PER_STATUS: usize = 2;
const WORDS: usize = (STATUSES * BITS_PER_STATUS).div_ceil(64);

/// An outcome for every status code `http` accepts (100 to 999), two bits each.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct StatusTable([u64; WORDS]);

impl StatusTable {
    const DEFAULT: Self = Self::default_table();

    const fn default_table() -> Self {
        let mut table = Self([0; WORDS]);
        let mut status = FIRST_STATUS;
        while status <= LAST_STATUS {
            let outcome = match status {
                100..=399 => Outcome::Success,
                400..=499 => Outcome::Ignored,
                504 => Outcome::Timeout,
                _ => Outcome::Failure,
            };
            table = table.with(status, outcome);
            status += 1;
        }
        table
    }

    /// The word and the shift of `status`'s two bits; `None` outside 100 to 999.
    const fn position(status: u16) -> Option<(usize, u32)> {
        if status < FIRST_STATUS || status > LAST_STATUS {
            return None;
        }
        let bit = (status - FIRST_STATUS) as usize * BITS_PER_STATUS;
        Some((bit / 64, (bit % 64) as u32))
    }

    const fn with(mut self, status: u16, outcome: Outcome) -> Self {
        if let Some((word, shift)) = Self::position(status) {
            self.0[word] = (self.0[word] & !(0b11 << shift)) | (outcome_bits(outcome) << shift);
        }
        self
    }

    const fn get(&self, status: u16) -> Outcome {
        match Self::position(status) {
            Some((word, shift)) => outcome_from_bits(self.0[word] >> shift),
            // `StatusCode` holds 100 to 999 only.
            None => Outcome::Failure,
        }
    }
}

/// Lists runs of statuses with one outcome: `{100..=399: Success, 400..=499: Ignored, ..}`.
impl fmt::Debug for StatusTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Run(u16, u16);
        impl fmt::Debug for Run {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0 == self.1 {
                    write!(f, "{}", self.0)
                } else {
                    write!(f, "{}..={}", self.0, self.1)
                }
            }
        }

        let mut map = f.debug_map();
        let mut start = FIRST_STATUS;
        while start <= LAST_STATUS {
            let outcome = self.get(start);
            let mut end = start;
            while end < LAST_STATUS && self.get(end + 1) == outcome {
                end += 1;
            }
            map.entry(&Run(start, end), &outcome);
            start = end + 1;
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_every_outcome_at_the_edges() {
        for outcome in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Timeout,
            Outcome::Ignored,
        ] {
            for status in [FIRST_STATUS, 131, 132, LAST_STATUS] {
                let table = StatusTable::DEFAULT.with(status, outcome);
                assert_eq!(table.get(status), outcome, "{status}");
            }
        }
    }

    #[test]
    fn debug_lists_runs() {
        assert_eq!(
            format!("{:?}", HttpClassifier::new().statuses),
            "{100..=399: Success, 400..=499: Ignored, 500..=503: Failure, 504: Timeout, \
             505..=999: Failure}"
        );
    }
}
