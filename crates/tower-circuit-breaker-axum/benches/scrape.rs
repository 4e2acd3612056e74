//! What one `/metrics` scrape of a full registry costs: 1000 breakers (the registry's default
//! bound), each with a failure-rate window and some calls behind it, one in ten of them open.
//!
//! - `render`: [`metrics::render`], the Prometheus text a `/metrics` route serves: the registry's
//!   snapshot and its encoding.
//! - `render_openmetrics`: the same as `OpenMetrics` text.
//! - `snapshot`: [`CircuitBreakerRegistry::snapshot`] alone, the engine's share of `render`.
//!
//! And the same 1000 breakers as the keys of one keyed group (`scrape_keyed_1000`):
//!
//! - `render`: each key with its series (the default), with a `group` label.
//! - `render_aggregate`: [`RegistryCollector::keyed_aggregate`], the group's figures alone.
//!
//! The target is a median under 5 ms for `render`.
//!
//! Run with `cargo bench -p tower-circuit-breaker-axum --bench scrape`. Criterion writes its
//! estimates (with the median) to `target/criterion/scrape_1000_breakers/<id>/new/estimates.json`
//! (and `scrape_keyed_1000/<id>/…`).

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_circuit_breaker::config::{FailureRateRule, SlidingWindow};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState, Clock, ManualClock,
};
use tower_circuit_breaker_axum::metrics::{self, RegistryCollector};

const BREAKERS: usize = 1000;
const CALLS_PER_BREAKER: usize = 50;

/// Every breaker's config: a failure-rate window, every call timed.
fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(5)
        .latency_sample_every(1)
        .failure_rate(
            FailureRateRule::new(0.5)
                .window(SlidingWindow::Calls(100))
                .minimum_throughput(20),
        )
}

/// 50 calls through the `index`th breaker (every fifth a failure, each timed at a few
/// milliseconds); every tenth breaker then fails until it opens.
fn drive(breaker: &CircuitBreaker, index: usize, time: &ManualClock) {
    for call in 0..CALLS_PER_BREAKER {
        let permit = breaker.try_acquire().expect("closed");
        time.advance(Duration::from_millis(1 + (call % 7) as u64));
        if call % 5 == 4 {
            permit.failure();
        } else {
            permit.success();
        }
    }
    if index % 10 == 0 {
        while breaker.state() == CircuitState::Closed {
            breaker.try_acquire().expect("closed").failure();
        }
    }
}

/// 1000 named breakers, each driven by [`drive`].
fn registry() -> CircuitBreakerRegistry {
    let time = ManualClock::new();
    let registry = CircuitBreakerRegistry::builder()
        .max_breakers(BREAKERS)
        .default_config(config())
        .clock(Clock::manual(&time))
        .build()
        .expect("valid settings");
    for index in 0..BREAKERS {
        let breaker = registry
            .get_or_create(&format!("upstream-{index:04}"))
            .expect("within the bound");
        drive(&breaker, index, &time);
    }
    registry
}

/// A registry with no named breaker and one keyed group of 1000 keys, each driven by [`drive`].
fn keyed_registry() -> CircuitBreakerRegistry {
    let time = ManualClock::new();
    let registry = CircuitBreakerRegistry::builder()
        .default_config(config())
        .clock(Clock::manual(&time))
        .build()
        .expect("valid settings");
    let hosts = registry
        .keyed("hosts")
        .max_breakers(BREAKERS)
        .build()
        .expect("valid group");
    for index in 0..BREAKERS {
        let breaker = hosts.get(Some(&format!("upstream-{index:04}.example:443")));
        drive(&breaker, index, &time);
    }
    assert_eq!(hosts.len(), BREAKERS);
    registry
}

fn scrape_keyed(c: &mut Criterion) {
    let registry = keyed_registry();
    let per_key = RegistryCollector::new(registry.clone());
    let aggregate = RegistryCollector::new(registry).keyed_aggregate(true);
    let mut group = c.benchmark_group("scrape_keyed_1000");
    group.bench_function("render", |b| {
        b.iter(|| black_box(black_box(&per_key).render()));
    });
    group.bench_function("render_aggregate", |b| {
        b.iter(|| black_box(black_box(&aggregate).render()));
    });
    group.finish();
}

fn scrape(c: &mut Criterion) {
    let registry = registry();
    assert_eq!(registry.len(), BREAKERS);
    let mut group = c.benchmark_group("scrape_1000_breakers");
    group.bench_function("render", |b| {
        b.iter(|| black_box(metrics::render(black_box(&registry))));
    });
    group.bench_function("render_openmetrics", |b| {
        b.iter(|| black_box(metrics::render_openmetrics(black_box(&registry))));
    });
    group.bench_function("snapshot", |b| {
        b.iter(|| black_box(black_box(&registry).snapshot()));
    });
    group.finish();
}

criterion_group!(benches, scrape, scrape_keyed);
criterion_main!(benches);
