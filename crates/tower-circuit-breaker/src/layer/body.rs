//! Classifying a streamed HTTP response when its body ends: [`AtEndOfBody`],
//! [`ClassifyStream`] and [`ClassifyEnd`], and the [`CircuitBreakerBody`] that carries the call's
//! permit.

use std::borrow::Borrow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::BoxError;

use super::record::Record;
use crate::classify::grpc::{GrpcClassifier, GrpcCode};
use crate::classify::http::HttpClassifier;
use crate::{CircuitBreaker, Classify, DefaultClassifier, Outcome, Permit};

/// Classifies a streamed HTTP response in two steps: at its head, and, unless the head decides,
/// when its body ends.
///
/// Implemented by [`GrpcClassifier`] (a `grpc-status` in the head decides, else the one in the
/// trailers; a stream that ends without one is `UNKNOWN`, as a gRPC client reads it) and by
/// [`HttpClassifier`] (a status it counts as a failure or ignores decides at the head; a success
/// waits for the body, which fails the call if it breaks off).
pub trait ClassifyStream {
    /// What the body keeps until its end to classify it: as small as it can be, since every
    /// response body carries one (nothing for HTTP, the code table's one word for gRPC).
    type End: ClassifyEnd;

    /// The outcome the response head decides, or what to classify the end of the body with.
    fn at_head<B>(&self, response: &Response<B>) -> AtHead<Self::End>;
}

/// What a response head decides: see [`ClassifyStream::at_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtHead<E> {
    /// The head decides: this outcome, recorded at once.
    Now(Outcome),
    /// The body's end decides, classified with this.
    AtEnd(E),
}

/// Classifies the end of a response body.
pub trait ClassifyEnd {
    /// The outcome of a body that ended, with its trailers if it had any. (A body that fails
    /// is a failure, and one dropped before its end is cancelled, whatever this says.)
    fn at_end(&self, trailers: Option<&HeaderMap>) -> Outcome;
}

impl ClassifyStream for GrpcClassifier {
    type End = Self;

    fn at_head<B>(&self, response: &Response<B>) -> AtHead<Self> {
        match GrpcClassifier::head_code(response) {
            Some(code) => AtHead::Now(self.classify_code(code)),
            None => AtHead::AtEnd(*self),
        }
    }
}

impl ClassifyEnd for GrpcClassifier {
    fn at_end(&self, trailers: Option<&HeaderMap>) -> Outcome {
        let code = trailers
            .and_then(GrpcCode::from_headers)
            .unwrap_or(GrpcCode::Unknown);
        self.classify_code(code)
    }
}

impl ClassifyStream for HttpClassifier {
    type End = BodyEnded;

    fn at_head<B>(&self, response: &Response<B>) -> AtHead<BodyEnded> {
        match self.classify_status(response.status()) {
            Outcome::Success => AtHead::AtEnd(BodyEnded),
            decided => AtHead::Now(decided),
        }
    }
}

/// The end of an HTTP body whose head was a success: a success once the body has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyEnded;

impl ClassifyEnd for BodyEnded {
    fn at_end(&self, _trailers: Option<&HeaderMap>) -> Outcome {
        Outcome::Success
    }
}

/// Records a call when its response body ends rather than when its head arrives: the layer's
/// classifier for streamed responses, made by
/// [`CircuitBreakerLayer::classify_body_with`](super::CircuitBreakerLayer::classify_body_with)
/// and [`CircuitBreakerLayer::grpc`](super::CircuitBreakerLayer::grpc).
///
/// The layer's service then answers with `http::Response<CircuitBreakerBody<B, C::End>>`: the
/// inner response with its body wrapped. The call's permit moves into the body, which records the
/// outcome exactly once:
///
/// - the head decides (a Trailers-Only gRPC error, a 5xx): recorded at once, the body passes
///   through untouched;
/// - the trailers arrive: [`ClassifyEnd::at_end`] with them (a gRPC stream's `grpc-status`);
/// - the body ends without trailers: [`ClassifyEnd::at_end`] without them;
/// - the body fails (the connection broke off): a failure;
/// - the body is dropped before its end (the caller stopped reading): cancelled, the engine's
///   rule for dropped calls (ignored unless the config counts them as failures), and a half-open
///   probe's slot is freed.
///
/// A call that fails with an error is classified at once, as [`DefaultClassifier`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct AtEndOfBody<C> {
    classifier: C,
}

impl<C> AtEndOfBody<C> {
    /// Classifies with `classifier`, at the head and at the end of the body.
    pub const fn new(classifier: C) -> Self {
        Self { classifier }
    }

    /// The classifier.
    pub const fn classifier(&self) -> &C {
        &self.classifier
    }
}

impl<B, C, H> Record<Response<B>, H> for AtEndOfBody<C>
where
    B: Body,
    C: ClassifyStream,
    H: Borrow<CircuitBreaker>,
{
    type Response = Response<CircuitBreakerBody<B, C::End, H>>;

    #[inline]
    fn record(
        &self,
        result: Result<Response<B>, BoxError>,
        permit: Permit<H>,
    ) -> Result<Self::Response, BoxError> {
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let error = Err(error);
                permit.record(DefaultClassifier.classify(&error));
                return error;
            }
        };
        let pending = match self.classifier.at_head(&response) {
            AtHead::Now(outcome) => {
                permit.record(outcome);
                None
            }
            // Nothing left to read: the end is now.
            AtHead::AtEnd(end) if response.body().is_end_stream() => {
                permit.record(end.at_end(None));
                None
            }
            AtHead::AtEnd(end) => Some((permit, end)),
        };
        Ok(response.map(|inner| CircuitBreakerBody { inner, pending }))
    }
}

pin_project! {
    /// A response body that records its call's outcome when it ends: see [`AtEndOfBody`].
    /// Its frames, size hint and end are the inner body's.
    pub struct CircuitBreakerBody<B, E, H = Arc<CircuitBreaker>>
    where
        H: Borrow<CircuitBreaker>,
    {
        #[pin]
        inner: B,
        // The call's permit and what classifies the end, until its outcome is recorded.
        pending: Option<(Permit<H>, E)>,
    }
}

impl<B, E, H: Borrow<CircuitBreaker>> CircuitBreakerBody<B, E, H> {
    /// Whether the call's outcome is still to be recorded.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, E, H> Body for CircuitBreakerBody<B, E, H>
where
    B: Body,
    E: ClassifyEnd,
    H: Borrow<CircuitBreaker>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some((_, end)) = this.pending {
            let outcome = match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => Some(end.at_end(Some(trailers))),
                    // The last data frame: a reader may stop here without asking for more.
                    None if this.inner.is_end_stream() => Some(end.at_end(None)),
                    None => None,
                },
                Some(Err(_)) => Some(Outcome::Failure),
                None => Some(end.at_end(None)),
            };
            if let Some(outcome) = outcome {
                if let Some((permit, _)) = this.pending.take() {
                    permit.record(outcome);
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, E, H: Borrow<CircuitBreaker>> fmt::Debug for CircuitBreakerBody<B, E, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBody")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

/// A tower-http response classifier ([`tower_http::classify::ClassifyResponse`], such as
/// `ServerErrorsAsFailures` or `GrpcErrorsAsFailures`) as the breaker's: with
/// [`classify_body_with`](super::CircuitBreakerLayer::classify_body_with) its end-of-stream
/// classification decides at the end of the body; with
/// [`classify_with`](super::CircuitBreakerLayer::classify_with) the head decides (a response
/// that needs its end counts as a success).
///
/// tower-http's classes are only success and failure: a failure class is a failure, an error
/// is classified as [`DefaultClassifier`] does. Which to pick: this crate's [`HttpClassifier`]
/// and [`GrpcClassifier`] also know the outcomes a breaker needs besides (a 4xx or a
/// `NOT_FOUND` ignored rather than a success, a 504 or `DEADLINE_EXCEEDED` counted as a timeout)
/// and cost nothing per call to consult; take this adapter when an app already classifies with
/// tower-http (for its trace layer) and the breaker must agree with it.
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct TowerHttp<C>(pub C);

/// The end of a body a [`TowerHttp`] classifier waits for: its tower-http end-of-stream
/// classifier.
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
#[derive(Debug, Clone)]
pub struct TowerHttpEnd<E>(E);

#[cfg(feature = "tower-http")]
impl<C> ClassifyStream for TowerHttp<C>
where
    C: tower_http::classify::ClassifyResponse + Clone,
    C::ClassifyEos: Clone,
{
    type End = TowerHttpEnd<C::ClassifyEos>;

    fn at_head<B>(&self, response: &Response<B>) -> AtHead<Self::End> {
        use tower_http::classify::ClassifiedResponse;
        match self.0.clone().classify_response(response) {
            ClassifiedResponse::Ready(Ok(())) => AtHead::Now(Outcome::Success),
            ClassifiedResponse::Ready(Err(_)) => AtHead::Now(Outcome::Failure),
            ClassifiedResponse::RequiresEos(end) => AtHead::AtEnd(TowerHttpEnd(end)),
        }
    }
}

#[cfg(feature = "tower-http")]
impl<E> ClassifyEnd for TowerHttpEnd<E>
where
    E: tower_http::classify::ClassifyEos + Clone,
{
    fn at_end(&self, trailers: Option<&HeaderMap>) -> Outcome {
        match self.0.clone().classify_eos(trailers) {
            Ok(()) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(feature = "tower-http")]
impl<B, C> Classify<Response<B>, BoxError> for TowerHttp<C>
where
    C: tower_http::classify::ClassifyResponse + Clone,
{
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        use tower_http::classify::ClassifiedResponse;
        match result {
            Ok(response) => match self.0.clone().classify_response(response) {
                ClassifiedResponse::Ready(Err(_)) => Outcome::Failure,
                ClassifiedResponse::Ready(Ok(())) | ClassifiedResponse::RequiresEos(_) => {
                    Outcome::Success
                }
            },
            Err(_) => DefaultClassifier.classify(result),
        }
    }
}
