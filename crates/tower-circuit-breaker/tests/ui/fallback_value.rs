use tower::{service_fn, BoxError, Service, ServiceBuilder};
use tower_circuit_breaker::fallback::FallbackLayer;

fn serve<S: Service<u64, Response = String, Error = BoxError>>(_users: S) {}

fn main() {
    serve(
        ServiceBuilder::new()
            // A value is not a fallback: `FallbackLayer::new_sync(|_| String::from("cached"))` is.
            .layer(FallbackLayer::with_fallback(String::from("cached")))
            .service(service_fn(|id: u64| async move { Ok::<_, BoxError>(format!("user {id}")) })),
    );
}
