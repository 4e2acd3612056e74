//! What the tower layer adds to a service call: `ready()`, `call()` and awaiting the response,
//! through [`CircuitBreakerLayer`] on a closed breaker, against the same `service_fn` bare.
//!
//! - `layer_closed`: `bare` (the `service_fn` alone) and `ours` (behind the layer).
//! - `layer_open`: `ours`, the rejection of a call by an open breaker through the layer.
//!
//! Futures are polled with a no-op waker: every service here is ready at once, so no runtime is
//! measured. Run with `cargo bench -p benches --bench layer`; estimates land in
//! `target/criterion/<group>/<id>/new/estimates.json`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};

/// Polls `future` once with a no-op waker; every future benched here is ready at once.
fn ready_now<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benched services never wait"),
    }
}

/// `ready()`, `call()` and the response, as a client makes one request; 0 on an error.
fn request<S>(service: &mut S) -> u64
where
    S: Service<u64, Response = u64>,
{
    ready_now(async {
        match service.ready().await {
            Ok(ready) => ready.call(black_box(1)).await.unwrap_or(0),
            Err(_) => 0,
        }
    })
}

fn upstream() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    service_fn(|request: u64| async move { Ok::<_, BoxError>(request) })
}

fn layer_closed(c: &mut Criterion) {
    let breaker = CircuitBreaker::new("bench");
    let mut bare = upstream();
    let mut ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    let mut group = c.benchmark_group("layer_closed");
    group.bench_function("bare", |b| b.iter(|| request(&mut bare)));
    group.bench_function("ours", |b| b.iter(|| request(&mut ours)));
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

fn layer_open(c: &mut Criterion) {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(3600));
    let breaker = CircuitBreaker::with_config("bench", config).expect("valid config");
    breaker.try_acquire().expect("closed").failure();
    let mut ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    let mut group = c.benchmark_group("layer_open");
    group.bench_function("ours", |b| b.iter(|| request(&mut ours)));
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Open);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = layer;
    config = config();
    targets = layer_closed, layer_open
}
criterion_main!(layer);
