//! Classifies gRPC responses by `grpc-status`.
//!
//! [`GrpcClassifier`] is a [`Classify`] over `Result<http::Response<B>, BoxError>`, the shape a
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) sees around a tonic `Channel` (or any gRPC
//! client built on `http` types). A gRPC server answers HTTP 200 whatever happened and puts the
//! result in a `grpc-status` field, so an HTTP status classifier would count every gRPC error as a
//! success; this one reads the code.
//!
//! # What counts
//!
//! | gRPC status                                                    | Outcome              |
//! |----------------------------------------------------------------|----------------------|
//! | `OK` (0)                                                       | [`Outcome::Success`] |
//! | `DEADLINE_EXCEEDED` (4)                                        | [`Outcome::Timeout`] |
//! | `UNKNOWN` (2), `RESOURCE_EXHAUSTED` (8), `INTERNAL` (13),      | [`Outcome::Failure`] |
//! | `UNAVAILABLE` (14), `DATA_LOSS` (15)                           | [`Outcome::Failure`] |
//! | the others: `NOT_FOUND`, `INVALID_ARGUMENT`, `CANCELLED`, ...  | [`Outcome::Ignored`] |
//! | an `Err`, a tower or tokio `Elapsed`                           | [`Outcome::Timeout`] |
//! | an `Err`, anything else                                        | [`Outcome::Failure`] |
//!
//! The failures are the codes that say the server is unwell: it is down or draining
//! (`UNAVAILABLE`), broke (`INTERNAL`, `UNKNOWN`, `DATA_LOSS`), ran out of something
//! (`RESOURCE_EXHAUSTED`: memory, a concurrency limit, a quota), or did not answer within the
//! caller's deadline (`DEADLINE_EXCEEDED`, counted as a timeout). The other errors are the caller's
//! (a bad argument, a missing entity, a failed precondition, a cancelled call) and are ignored, as
//! [`HttpClassifier`](super::http::HttpClassifier) ignores 4xx, for the same reason: they do not
//! test whether the server can do its work. Unlike HTTP's 429, which is ignored by default,
//! `RESOURCE_EXHAUSTED` is a failure, because gRPC servers also use it for their own exhaustion;
//! for an API where it only ever means the caller's quota, map it with
//! `.code_as(GrpcCode::ResourceExhausted, Outcome::Ignored)`.
//!
//! Errors count as they do with [`DefaultClassifier`].
//!
//! # Where the status is read
//!
//! The layer classifies a call when the response *head* arrives. What the head says:
//!
//! - **A `grpc-status` header** (a "Trailers-Only" response: how tonic and other servers send an
//!   error returned before any message, and how proxies such as Envoy reject a call): that code
//!   decides, whatever the HTTP status.
//! - **No `grpc-status`, HTTP status not 200**: an intermediary answered (a load balancer's 503, a
//!   gateway's 502). The code is the one gRPC's [HTTP to gRPC status mapping][mapping] gives,
//!   the code the caller's gRPC client reports: 400 `INTERNAL`, 401 `UNAUTHENTICATED`,
//!   403 `PERMISSION_DENIED`, 404 `UNIMPLEMENTED`, 429, 502, 503 and 504 `UNAVAILABLE`, anything
//!   else `UNKNOWN`. With the default codes, every 5xx is a failure.
//! - **No `grpc-status`, HTTP 200**: the call is under way and its status will come in the
//!   trailers, after the messages. It counts as a success at the head.
//!
//! So with [`classify_with`](crate::CircuitBreakerLayer::classify_with), a call that fails
//! *after* the response head (a streaming handler that fails after sending messages, any server
//! that sends its head before it knows the result) counts as a success: its status is in a
//! trailer the breaker has not seen when it records the call. [`CircuitBreakerLayer::grpc`](crate::CircuitBreakerLayer::grpc)
//! records each call at the end of its stream instead: the response body carries the call's
//! permit, the trailers' `grpc-status` decides (a stream that ends without one is `UNKNOWN`, as
//! tonic reads it), a body that breaks off is a failure, and a stream the caller drops before
//! its end is cancelled. See [`AtEndOfBody`](crate::layer::AtEndOfBody).

//! # What a tonic client sees of a rejection
//!
//! tonic turns a layer's error into a `Status` with `Status::from_error`, which keeps a `Status`
//! it finds in the error and makes anything else `Code::Unknown`. So a rejection reaches the
//! caller as `Unknown` ("circuit open: breaker `inventory`, next probe in 60s"), with the
//! `CircuitOpen` as the status's `source()`: [`Rejection::find`](crate::Rejection::find) finds
//! it. For `UNAVAILABLE` instead, map the error above the layer into a `Status` that keeps it:
//! `map_err(|err: BoxError| { let mut status = Status::unavailable(err.to_string());
//! status.set_source(Arc::from(err)); BoxError::from(status) })`; the caller then sees
//! `Unavailable`, and `Rejection::find` still finds the `CircuitOpen` through `source()`.
//!
//! # Malformed `grpc-status`
//!
//! A `grpc-status` that is not a code from 0 to 16 written in decimal (`"abc"`, `"14 "`, `"017"`,
//! `"99"`, bytes that are not text) reads as `UNKNOWN`, and so counts as a failure by default. That
//! is how tonic reads it too (its client turns it into an `Unknown` error), so the breaker counts
//! the call the way the caller sees it; a server that cannot write its status is not healthy.
//!
//! # Example
//!
//! ```
//! use http::Response;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::classify::grpc::{GrpcClassifier, GrpcCode};
//! use tower_circuit_breaker::{
//!     CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState,
//!     Classify, Outcome,
//! };
//!
//! /// A Trailers-Only response, as a gRPC server sends an error.
//! fn grpc_error(code: u8) -> Response<()> {
//!     Response::builder().header("grpc-status", code.to_string()).body(()).unwrap()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = CircuitBreakerConfig::default().failure_threshold(2);
//! let breaker = CircuitBreaker::with_config("users", config).unwrap();
//! let mut channel = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(GrpcClassifier::new()))
//!     .service(service_fn(|user: u32| async move {
//!         // NOT_FOUND for unknown users, UNAVAILABLE for the rest.
//!         Ok::<_, BoxError>(grpc_error(if user == 0 { 5 } else { 14 }))
//!     }));
//!
//! for _ in 0..5 {
//!     channel.ready().await.unwrap().call(0).await.unwrap();
//! }
//! assert_eq!(breaker.state(), CircuitState::Closed);
//! for _ in 0..2 {
//!     channel.ready().await.unwrap().call(7).await.unwrap();
//! }
//! assert!(channel.ready().await.unwrap().call(7).await.unwrap_err().is::<CircuitOpen>());
//!
//! // The code table is configurable, and usable by hand.
//! let quota_is_callers =
//!     GrpcClassifier::new().code_as(GrpcCode::ResourceExhausted, Outcome::Ignored);
//! assert_eq!(quota_is_callers.classify(&Ok(grpc_error(8))), Outcome::Ignored);
//! assert_eq!(GrpcClassifier::new().classify(&Ok(grpc_error(4))), Outcome::Timeout);
//! # }
//! ```
//!
//! [mapping]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md

use std::fmt;

use ::http::{HeaderMap, Response, StatusCode};
use tower::BoxError;

use super::{outcome_bits, outcome_from_bits, Classify, DefaultClassifier, Outcome};

/// A gRPC status code, as carried in `grpc-status`.
///
/// The names are those of the gRPC specification's
/// [status codes](https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    /// `OK` (0): not an error.
    Ok,
    /// `CANCELLED` (1): cancelled, typically by the caller.
    Cancelled,
    /// `UNKNOWN` (2): an error with no better code; also what an unreadable status reads as.
    Unknown,
    /// `INVALID_ARGUMENT` (3): the caller sent an invalid argument.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED` (4): the deadline expired before the operation finished.
    DeadlineExceeded,
    /// `NOT_FOUND` (5): a requested entity does not exist.
    NotFound,
    /// `ALREADY_EXISTS` (6): the entity the caller tried to create exists.
    AlreadyExists,
    /// `PERMISSION_DENIED` (7): the caller may not do this.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED` (8): a resource or quota ran out.
    ResourceExhausted,
    /// `FAILED_PRECONDITION` (9): the system is not in a state for this operation.
    FailedPrecondition,
    /// `ABORTED` (10): aborted, typically by a concurrency conflict.
    Aborted,
    /// `OUT_OF_RANGE` (11): the operation went past the valid range.
    OutOfRange,
    /// `UNIMPLEMENTED` (12): the server does not implement this method.
    Unimplemented,
    /// `INTERNAL` (13): an invariant the server relies on is broken.
    Internal,
    /// `UNAVAILABLE` (14): the service cannot be reached or is not serving, most likely for now.
    Unavailable,
    /// `DATA_LOSS` (15): unrecoverable data loss or corruption.
    DataLoss,
    /// `UNAUTHENTICATED` (16): the caller has no valid credentials.
    Unauthenticated,
}

const CODES: [GrpcCode; 17] = [
    GrpcCode::Ok,
    GrpcCode::Cancelled,
    GrpcCode::Unknown,
    GrpcCode::InvalidArgument,
    GrpcCode::DeadlineExceeded,
    GrpcCode::NotFound,
    GrpcCode::AlreadyExists,
    GrpcCode::PermissionDenied,
    GrpcCode::ResourceExhausted,
    GrpcCode::FailedPrecondition,
    GrpcCode::Aborted,
    GrpcCode::OutOfRange,
    GrpcCode::Unimplemented,
    GrpcCode::Internal,
    GrpcCode::Unavailable,
    GrpcCode::DataLoss,
    GrpcCode::Unauthenticated,
];

// ===== impl GrpcCode =====

impl GrpcCode {
    /// The header (or trailer) that carries the code.
    pub const HEADER: &'static str = "grpc-status";

    /// The code numbered `code`; a number outside 0 to 16 is [`Unknown`](Self::Unknown), as
    /// gRPC clients read it.
    pub const fn from_i32(code: i32) -> Self {
        if code >= 0 && code < CODES.len() as i32 {
            CODES[code as usize]
        } else {
            Self::Unknown
        }
    }

    /// The code's number.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// Reads a `grpc-status` value: the code written in decimal, `"0"` to `"16"`, with no sign,
    /// padding or leading zero. Anything else is [`Unknown`](Self::Unknown), as tonic reads it.
    pub const fn from_bytes(value: &[u8]) -> Self {
        match *value {
            [digit @ b'0'..=b'9'] => Self::from_i32((digit - b'0') as i32),
            [b'1', digit @ b'0'..=b'6'] => Self::from_i32(10 + (digit - b'0') as i32),
            _ => Self::Unknown,
        }
    }

    /// The code in the `grpc-status` of `headers` (a response head or its trailers); `None` when
    /// there is none.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(Self::HEADER)
            .map(|value| Self::from_bytes(value.as_bytes()))
    }

    /// The code a gRPC client reports for a response with HTTP status `status` and no
    /// `grpc-status`, from gRPC's HTTP to gRPC status mapping.
    const fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502..=504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }
}

/// Classifies `Result<http::Response<B>, BoxError>` by the gRPC status in the response head:
/// `UNAVAILABLE`, `INTERNAL`, `UNKNOWN`, `RESOURCE_EXHAUSTED` and `DATA_LOSS` are failures,
/// `DEADLINE_EXCEEDED` a timeout, `OK` a success, the other codes ignored; errors are failures,
/// or timeouts when they are `Elapsed`. See the [module docs](self) for why, and for what a
/// classifier of the response head cannot see.
///
/// `Copy`, eight bytes: the clone the layer makes for every call is free.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcClassifier {
    /// Two bits per code, code 0 in the lowest bits.
    codes: u64,
}

// ===== impl GrpcClassifier =====

impl GrpcClassifier {
    /// The default classification (see the [module docs](self#what-counts)).
    pub const fn new() -> Self {
        let mut classifier = Self { codes: 0 };
        let mut index = 0;
        while index < CODES.len() {
            let code = CODES[index];
            let outcome = match code {
                GrpcCode::Ok => Outcome::Success,
                GrpcCode::DeadlineExceeded => Outcome::Timeout,
                GrpcCode::Unknown
                | GrpcCode::ResourceExhausted
                | GrpcCode::Internal
                | GrpcCode::Unavailable
                | GrpcCode::DataLoss => Outcome::Failure,
                _ => Outcome::Ignored,
            };
            classifier = classifier.code_as(code, outcome);
            index += 1;
        }
        classifier
    }

    /// Counts `code` as `outcome`.
    #[must_use]
    pub const fn code_as(mut self, code: GrpcCode, outcome: Outcome) -> Self {
        let shift = code as u32 * 2;
        self.codes = (self.codes & !(0b11 << shift)) | (outcome_bits(outcome) << shift);
        self
    }

    /// How a call that ended with `code` counts.
    pub const fn classify_code(&self, code: GrpcCode) -> Outcome {
        outcome_from_bits(self.codes >> (code as u32 * 2))
    }

    /// The code a response head says the call ended with; `None` when the status is still to
    /// come in the trailers (HTTP 200 without `grpc-status`).
    pub(crate) fn head_code<B>(response: &Response<B>) -> Option<GrpcCode> {
        GrpcCode::from_headers(response.headers()).or_else(|| {
            (response.status() != StatusCode::OK)
                .then(|| GrpcCode::from_http_status(response.status()))
        })
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Classify<Response<B>, BoxError> for GrpcClassifier {
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            Ok(response) => match Self::head_code(response) {
                Some(code) => self.classify_code(code),
                None => Outcome::Success,
            },
            Err(_) => DefaultClassifier.classify(result),
        }
    }
}

/// Lists each code's outcome: `{Ok: Success, Cancelled: Ignored, ..}`.
impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Codes<'a>(&'a GrpcClassifier);
        impl fmt::Debug for Codes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(CODES.iter().map(|&code| (code, self.0.classify_code(code))))
                    .finish()
            }
        }

        f.debug_struct("GrpcClassifier")
            .field("codes", &Codes(self))
            .finish()
    }
}
