//! What a shared-state store costs a call: the same closed-state call on a breaker of a registry
//! with no store and on one of a registry with a store attached, side by side in one run.
//!
//! One group, `store_closed`, with the `closed_sync` call of the `engine` bench (a permit from
//! `try_acquire()`, then `success()`) and the `layer_closed` request of the `layer` bench
//! (`ready()`, `call()` and the response through [`CircuitBreakerLayer`] over a `service_fn` that
//! answers at once):
//!
//! - `no_store`: the call on breaker `bench` of a registry with no store;
//! - `memory_store`: the same on breaker `bench` of a registry with an [`InMemoryStateStore`]
//!   attached;
//! - `layer_no_store` and `layer_memory_store`: the request through the layer, on the same two
//!   breakers.
//!
//! Both registries are made by one function, with the same config for `bench` (the default: 5
//! consecutive failures, a 30 s break). The store is attached inside a multi-thread Tokio runtime
//! made here (one worker), and `synced()` is awaited before anything is measured, so the link's
//! two background tasks are running, connected and idle; the runtime stays alive until the group
//! ends, and its status is checked afterwards.
//!
//! The store kind does not matter, which is why this uses the in-memory store and never Redis:
//! nothing of the store is on a call's path. A call reads and writes the breaker's own atomics;
//! the store only hears of transitions, through the registry's transition channel, and a
//! closed-state success makes none. So `memory_store - no_store` (and `layer_memory_store -
//! layer_no_store`) should be noise.
//!
//! Run with `cargo bench -p benches --bench store`; estimates land in
//! `target/criterion/store_closed/<id>/new/estimates.json`.

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service};
use tower_circuit_breaker::registry::CircuitBreakerRegistry;
use tower_circuit_breaker::store::{InMemoryStateStore, StoreOptions};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};

mod support;
use support::{config, guarded, ready_now, upstream};

/// The breaker every id calls, by its name in the registry.
const NAME: &str = "bench";

/// One request through the layer, made to completion at once (the `layer` bench's request).
fn request<S>(service: &mut S) -> u64
where
    S: Service<u64, Response = u64>,
{
    ready_now(support::request(service))
}

/// A registry with the one breaker every id calls; both registries are made here.
fn registry() -> CircuitBreakerRegistry {
    CircuitBreakerRegistry::builder()
        .breaker(NAME, CircuitBreakerConfig::default())
        .build()
        .expect("valid registry")
}

fn store_closed(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let plain = registry();
    let shared = registry();
    let handle = runtime.block_on(async {
        let handle = shared
            .attach_store(InMemoryStateStore::new(), StoreOptions::default())
            .expect("store attached");
        handle.synced().await;
        handle
    });
    let before = handle.status();
    assert!(before.connected && before.synced, "{before:?}");

    let no_store = plain.get(NAME).expect("breaker");
    let memory_store = shared.get(NAME).expect("breaker");
    let mut layer_no_store = CircuitBreakerLayer::new(no_store.clone()).layer(upstream());
    let mut layer_memory_store = CircuitBreakerLayer::new(memory_store.clone()).layer(upstream());

    let mut group = c.benchmark_group("store_closed");
    group.bench_function("no_store", |b| b.iter(|| guarded(&no_store)));
    group.bench_function("memory_store", |b| b.iter(|| guarded(&memory_store)));
    group.bench_function("layer_no_store", |b| {
        b.iter(|| request(&mut layer_no_store));
    });
    group.bench_function("layer_memory_store", |b| {
        b.iter(|| request(&mut layer_memory_store));
    });
    group.finish();

    for breaker in [&no_store, &memory_store] {
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
    // Still linked, and nothing published meanwhile: a closed-state success makes no transition.
    let after = handle.status();
    assert!(after.connected && after.synced, "{after:?}");
    assert_eq!(after.published, before.published, "{after:?}");
    assert_eq!(after.dropped_updates, 0, "{after:?}");
    assert!(plain.store().is_none());
    drop(runtime);
}

criterion_group! {
    name = store;
    config = config();
    targets = store_closed
}
criterion_main!(store);
