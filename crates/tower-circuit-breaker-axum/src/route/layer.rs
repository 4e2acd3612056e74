use tower_circuit_breaker::CircuitBreaker;
use tower_layer::Layer;

use super::{CircuitBreakerRouteService, DefaultHttpClassifier};

/// Wraps axum routes in a [`CircuitBreakerRouteService`] sharing one [`CircuitBreaker`].
///
/// The breaker lives in the layer: every service it makes, every clone of those, and every call
/// to [`Layer::layer`] shares it. See the [module docs](crate::route).
#[derive(Debug, Clone)]
pub struct CircuitBreakerRouteLayer<C = DefaultHttpClassifier> {
    breaker: CircuitBreaker,
    classifier: C,
}

// ===== impl CircuitBreakerRouteLayer =====

impl CircuitBreakerRouteLayer {
    /// A layer guarding routes with `breaker`, classified by status as
    /// [`HttpClassifier::new`](tower_circuit_breaker::HttpClassifier::new) does: 5xx are
    /// failures, 4xx are ignored (see [`DefaultHttpClassifier`]).
    pub const fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classifier: DefaultHttpClassifier,
        }
    }
}

impl<C> CircuitBreakerRouteLayer<C> {
    /// Classifies responses with `classifier` instead: any
    /// [`Classify`](tower_circuit_breaker::Classify) over
    /// `&Result<axum::response::Response, BoxError>` (the result is always `Ok`: a route never
    /// fails), such as a configured
    /// [`HttpClassifier`](tower_circuit_breaker::HttpClassifier) or a closure. Each request's
    /// future gets a clone of it.
    pub fn classify_with<C2>(self, classifier: C2) -> CircuitBreakerRouteLayer<C2> {
        CircuitBreakerRouteLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker every service of this layer shares.
    pub const fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The classifier each service gets a copy of.
    pub const fn classifier(&self) -> &C {
        &self.classifier
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerRouteLayer<C> {
    type Service = CircuitBreakerRouteService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerRouteService::with_parts(inner, self.breaker.clone(), self.classifier.clone())
    }
}
