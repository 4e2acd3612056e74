use std::sync::Arc;

use tower_layer::Layer;

use super::CircuitBreakerService;
use crate::{CircuitBreaker, DefaultClassifier};

/// Wraps services in a [`CircuitBreakerService`] sharing one [`CircuitBreaker`].
///
/// The default classifier, [`DefaultClassifier`], counts errors as failures. An HTTP client's
/// `5xx` and an axum route's `500` are responses, not errors, so there it never sees a failure:
/// give it `HttpClassifier` with [`classify_with`](Self::classify_with), or, on an axum route,
/// use the `tower-circuit-breaker-axum` crate's `CircuitBreakerRouteLayer` (see
/// [On an axum route](crate::layer#on-an-axum-route-and-behind-an-http-client)).
///
/// See the [module docs](crate::layer) for readiness, errors and classification.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    /// Shared by every service the layer makes (see the service's first calls).
    breaker: Arc<CircuitBreaker>,
    classifier: C,
    backpressure: bool,
}

impl CircuitBreakerLayer {
    /// A layer guarding every call with `breaker`, classified by [`DefaultClassifier`].
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker: Arc::new(breaker),
            classifier: DefaultClassifier,
            backpressure: false,
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl CircuitBreakerLayer<crate::layer::AtEndOfBody<crate::GrpcClassifier>> {
    /// A layer for a gRPC client ([`GrpcClassifier`](crate::GrpcClassifier)) that records each
    /// call when its response stream ends, with the `grpc-status` of its trailers: a stream that
    /// sends messages and then fails counts as the failure it is. The service answers with
    /// `http::Response<CircuitBreakerBody<B, GrpcClassifier>>` (see
    /// [`AtEndOfBody`](crate::layer::AtEndOfBody)). For the head-only classification, use
    /// `CircuitBreakerLayer::new(breaker).classify_with(GrpcClassifier::new())`.
    pub fn grpc(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer::new(breaker).classify_body_with(crate::GrpcClassifier::new())
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Classifies results with `classifier` instead: a [`Classify`](crate::Classify) over
    /// `&Result<S::Response, BoxError>`, such as `HttpClassifier` for `http::Response`s.
    pub fn classify_with<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
            backpressure: self.backpressure,
        }
    }

    /// Classifies each call with `classifier` at the head of its response and, unless the head
    /// decides, when the response body ends: its trailers, or a body that breaks off, decide. The
    /// call's permit moves into the body; see [`AtEndOfBody`](crate::layer::AtEndOfBody). The
    /// service answers with `http::Response<CircuitBreakerBody<B, C2::End>>`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn classify_body_with<C2>(
        self,
        classifier: C2,
    ) -> CircuitBreakerLayer<crate::layer::AtEndOfBody<C2>> {
        self.classify_with(crate::layer::AtEndOfBody::new(classifier))
    }

    /// With `true`, `poll_ready` returns `Pending` while the circuit rejects and wakes when it
    /// would admit again, instead of returning ready and rejecting in `call`. For balancers that
    /// pick among ready services. Default `false`.
    #[must_use]
    pub fn backpressure(mut self, on: bool) -> Self {
        self.backpressure = on;
        self
    }

    /// The breaker every service of this layer shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::with_parts(
            inner,
            Arc::clone(&self.breaker),
            self.classifier.clone(),
            self.backpressure,
        )
    }
}
