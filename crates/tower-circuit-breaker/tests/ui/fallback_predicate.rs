use tower::{service_fn, BoxError, Service, ServiceBuilder};
use tower_circuit_breaker::fallback::{FallbackLayer, IsRejection, IsTimeout};

fn serve<S: Service<u64, Response = String, Error = BoxError>>(_users: S) {}

fn main() {
    serve(
        ServiceBuilder::new()
            // Either of two predicates is `IsRejection.or(IsTimeout)`, not a tuple.
            .layer(FallbackLayer::new_sync(|_| String::from("cached")).when((IsRejection, IsTimeout)))
            .service(service_fn(|id: u64| async move { Ok::<_, BoxError>(format!("user {id}")) })),
    );
}
