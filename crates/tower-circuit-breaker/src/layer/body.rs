//! Classifying a streamed HTTP response when its body ends: [`AtEndOfBody`],
//! [`ClassifyStream`] and the [`CircuitBreakerBody`] that carries the call's permit.

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
    /// The outcome the response head decides, or `None` to wait for the end of the body.
    fn at_head<B>(&self, response: &Response<B>) -> Option<Outcome>;

    /// The outcome of a body that ended, with its trailers if it had any.
    fn at_end(&self, trailers: Option<&HeaderMap>) -> Outcome;
}

impl ClassifyStream for GrpcClassifier {
    fn at_head<B>(&self, response: &Response<B>) -> Option<Outcome> {
        GrpcClassifier::head_code(response).map(|code| self.classify_code(code))
    }

    fn at_end(&self, trailers: Option<&HeaderMap>) -> Outcome {
        let code = trailers
            .and_then(GrpcCode::from_headers)
            .unwrap_or(GrpcCode::Unknown);
        self.classify_code(code)
    }
}

impl ClassifyStream for HttpClassifier {
    fn at_head<B>(&self, response: &Response<B>) -> Option<Outcome> {
        match self.classify_status(response.status()) {
            Outcome::Success => None,
            decided => Some(decided),
        }
    }

    fn at_end(&self, _trailers: Option<&HeaderMap>) -> Outcome {
        Outcome::Success
    }
}

/// Records a call when its response body ends rather than when its head arrives: the layer's
/// classifier for streamed responses, made by
/// [`CircuitBreakerLayer::classify_body_with`](super::CircuitBreakerLayer::classify_body_with)
/// and [`CircuitBreakerLayer::grpc`](super::CircuitBreakerLayer::grpc).
///
/// The layer's service then answers with `http::Response<CircuitBreakerBody<B, C>>`: the inner
/// response with its body wrapped. The call's permit moves into the body, which records the
/// outcome exactly once:
///
/// - the head decides (a Trailers-Only gRPC error, a 5xx): recorded at once, the body passes
///   through untouched;
/// - the trailers arrive: [`ClassifyStream::at_end`] with them (a gRPC stream's `grpc-status`);
/// - the body ends without trailers: [`ClassifyStream::at_end`] without them;
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
    C: ClassifyStream + Clone,
    H: Borrow<CircuitBreaker>,
{
    type Response = Response<CircuitBreakerBody<B, C, H>>;

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
            Some(outcome) => {
                permit.record(outcome);
                None
            }
            // Nothing left to read: the end is now.
            None if response.body().is_end_stream() => {
                permit.record(self.classifier.at_end(None));
                None
            }
            None => Some(permit),
        };
        Ok(response.map(|inner| CircuitBreakerBody {
            inner,
            pending,
            classifier: self.classifier.clone(),
        }))
    }
}

pin_project! {
    /// A response body that records its call's outcome when it ends: see [`AtEndOfBody`].
    /// Its frames, size hint and end are the inner body's.
    pub struct CircuitBreakerBody<B, C, H = Arc<CircuitBreaker>>
    where
        H: Borrow<CircuitBreaker>,
    {
        #[pin]
        inner: B,
        // The call's permit, until its outcome is recorded.
        pending: Option<Permit<H>>,
        classifier: C,
    }
}

impl<B, C, H: Borrow<CircuitBreaker>> CircuitBreakerBody<B, C, H> {
    /// Whether the call's outcome is still to be recorded.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, C, H> Body for CircuitBreakerBody<B, C, H>
where
    B: Body,
    C: ClassifyStream,
    H: Borrow<CircuitBreaker>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.pending.is_some() {
            let outcome = match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => Some(this.classifier.at_end(Some(trailers))),
                    // The last data frame: a reader may stop here without asking for more.
                    None if this.inner.is_end_stream() => Some(this.classifier.at_end(None)),
                    None => None,
                },
                Some(Err(_)) => Some(Outcome::Failure),
                None => Some(this.classifier.at_end(None)),
            };
            if let Some(outcome) = outcome {
                if let Some(permit) = this.pending.take() {
                    permit.record(outcome);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, C, H: Borrow<CircuitBreaker>> fmt::Debug for CircuitBreakerBody<B, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBody")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}
