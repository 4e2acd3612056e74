use axum::response::Response;
use tower::BoxError;
use tower_circuit_breaker::{Classify, HttpClassifier, Outcome};

/// The route layer's default classifier: [`HttpClassifier::new`] as a zero-sized value.
///
/// It classifies exactly as `HttpClassifier::new()` does (5xx failures, 504 a timeout, 4xx
/// ignored, the rest successes), by reading one shared `static` `HttpClassifier`. What it saves
/// is the copy: a classifier travels by value in every request's service and response future,
/// and an `HttpClassifier` is a 240-byte status table, which measured about 140 instructions per
/// request behind a route layer (an axum server under `wrk`). This one is nothing to copy.
///
/// A configured `HttpClassifier` given to
/// [`classify_with`](super::CircuitBreakerRouteLayer::classify_with) is copied per request like
/// any classifier; to share one instead, capture it in an `Arc` inside a closure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DefaultHttpClassifier;

/// The table every [`DefaultHttpClassifier`] reads.
static DEFAULT_HTTP_CLASSIFIER: HttpClassifier = HttpClassifier::new();

impl DefaultHttpClassifier {
    /// The `HttpClassifier` it classifies with.
    pub fn http_classifier(self) -> &'static HttpClassifier {
        &DEFAULT_HTTP_CLASSIFIER
    }
}

impl Classify<Response, BoxError> for DefaultHttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response, BoxError>) -> Outcome {
        DEFAULT_HTTP_CLASSIFIER.classify(result)
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn classifies_every_status_as_http_classifier_new() {
        let http = HttpClassifier::new();
        for code in 100..=999 {
            let status = StatusCode::from_u16(code).unwrap();
            let mut response = Response::default();
            *response.status_mut() = status;
            let result = Ok(response);
            assert_eq!(
                DefaultHttpClassifier.classify(&result),
                http.classify(&result),
                "{status}"
            );
        }
        let err: Result<Response, BoxError> = Err("connection reset".into());
        assert_eq!(DefaultHttpClassifier.classify(&err), Outcome::Failure);
    }

    #[test]
    fn is_zero_sized() {
        assert_eq!(std::mem::size_of::<DefaultHttpClassifier>(), 0);
        assert!(std::mem::size_of::<HttpClassifier>() >= 240);
    }
}
