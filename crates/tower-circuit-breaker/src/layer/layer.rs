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
