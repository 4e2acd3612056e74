use tower::{service_fn, BoxError, Service, ServiceBuilder};
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, Classify, Outcome};

/// Classifies status codes, but the service below answers `String`s.
#[derive(Clone)]
struct ByStatus;

impl Classify<u16, BoxError> for ByStatus {
    fn classify(&self, result: &Result<u16, BoxError>) -> Outcome {
        match result {
            Ok(status) if *status < 500 => Outcome::Success,
            _ => Outcome::Failure,
        }
    }
}

fn serve<S: Service<u64, Response = String, Error = BoxError>>(_users: S) {}

fn main() {
    serve(
        ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(CircuitBreaker::new("users")).classify_with(ByStatus))
            .service(service_fn(|id: u64| async move { Ok::<_, BoxError>(format!("user {id}")) })),
    );
}
