//! What the tower layer adds to a service call: `ready()`, `call()` and awaiting the response,
//! through [`CircuitBreakerLayer`] and through tower-resilience-circuitbreaker's layer, against
//! the same `service_fn` bare, in one run.
//!
//! - `layer_closed`: `bare` (the `service_fn` alone), `ours` (behind our layer on a closed
//!   breaker) and `tower_resilience` (behind the peer's layer, closed).
//! - `layer_open`: `ours` and `tower_resilience`, the rejection of a call by an open breaker
//!   through the layer.
//!
//! Futures are polled with a no-op waker: every service here is ready at once, so no runtime is
//! measured (the peer's `tokio` mutex is uncontended here and needs none).
//!
//! # The peer's config
//!
//! tower-resilience-circuitbreaker 0.14.0 (pinned as a dev-dependency of `benches`) is only a
//! tower layer, so it is benched here and in `closed_2threads` of the `engine` bench, not in the
//! engine's sync and async groups; failsafe and recloser have no tower layer and are benched
//! there. Closed: `consecutive_failures(5)` and `wait_duration_in_open(30 s)`, our default rule
//! and break; it admits one call half-open (its default) where ours admits 5. Open: both open
//! after 1 failure with a break of an hour; ours is tripped through a permit, the peer by one
//! failing request through its layer (it has no permit API). The peer records a duration, builds
//! an event per call and locks its `tokio` mutex twice per admitted call whatever its config.
//!
//! Run with `cargo bench -p benches --bench layer`; estimates land in
//! `target/criterion/<group>/<id>/new/estimates.json`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};

mod support;
use support::{config, ready_now, tower_resilience, upstream};

/// Our break for the closed benches, and the peer's.
const BREAK: Duration = Duration::from_secs(30);
/// The break for the open benches: nothing half-opens during a run.
const LONG_BREAK: Duration = Duration::from_secs(3600);

/// One request, made to completion at once.
fn request<S>(service: &mut S) -> u64
where
    S: Service<u64, Response = u64>,
{
    ready_now(support::request(service))
}

/// The upstream with an outage on request 0, to trip the peer through its layer.
fn flaky() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|request: u64| async move {
        if request == 0 {
            Err::<u64, BoxError>("down".into())
        } else {
            Ok(request)
        }
    })
}

fn layer_closed(c: &mut Criterion) {
    let breaker = CircuitBreaker::new("bench");
    let mut bare = upstream();
    let mut ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    let mut theirs = tower_resilience(5, BREAK).layer(upstream());
    let mut group = c.benchmark_group("layer_closed");
    group.bench_function("bare", |b| b.iter(|| request(&mut bare)));
    group.bench_function("ours", |b| b.iter(|| request(&mut ours)));
    group.bench_function("tower_resilience", |b| b.iter(|| request(&mut theirs)));
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        theirs.state_sync(),
        tower_resilience_circuitbreaker::CircuitState::Closed
    );
}

fn layer_open(c: &mut Criterion) {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(LONG_BREAK);
    let breaker = CircuitBreaker::with_config("bench", config).expect("valid config");
    breaker.try_acquire().expect("closed").failure();
    let mut ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    let mut theirs = tower_resilience(1, LONG_BREAK).layer(flaky());
    let tripped = ready_now(async {
        match theirs.ready().await {
            Ok(ready) => ready.call(0).await.is_err(),
            Err(_) => false,
        }
    });
    assert!(tripped && theirs.is_open(), "tower_resilience tripped");
    let mut group = c.benchmark_group("layer_open");
    group.bench_function("ours", |b| b.iter(|| request(&mut ours)));
    group.bench_function("tower_resilience", |b| b.iter(|| request(&mut theirs)));
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(theirs.is_open());
}

criterion_group! {
    name = layer;
    config = config();
    targets = layer_closed, layer_open
}
criterion_main!(layer);
