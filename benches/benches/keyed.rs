//! What a keyed breaker adds to a tower request, against the bare service and the single-breaker
//! layer over the same service, in one run; and the memory a keyed breaker takes.
//!
//! Every id makes the same request: an `http::Request<()>` for one of 1 000 authorities
//! (`h0.example:80` .. `h999.example:80`), cloned from a prebuilt list that each id cycles
//! through (the URIs are built from `'static` strings, so a clone copies and a drop frees no
//! shared count), driven as the `layer` bench drives its requests: `ready()`, `call()` and the
//! response, polled once with a no-op waker, no runtime. The inner service answers at once.
//!
//! - `keyed_closed_1t`: one thread. `bare` (the service alone), `ours_layer`
//!   ([`CircuitBreakerLayer`] over one closed breaker), `keyed_layer`
//!   ([`KeyedCircuitBreakerLayer::new`], keyed [`ByAuthority`], one closed breaker per
//!   authority, all 1 000 made before the run; the group's default bound of 1 000 holds them
//!   with no eviction).
//! - `keyed_closed_2t`: the same three on two threads at once, each thread through its own clone
//!   of the service (the same breaker, the same group), thread 0 on the even-numbered hosts and
//!   thread 1 on the odd ones. The figure is wall time over the calls of both threads
//!   (aggregate ns per call, as `closed_2threads` in the `engine` bench): with no contention it
//!   is half the one-thread figure. `keyed_layer_all_hosts` has both threads over all the hosts
//!   (so they meet on keys), `keyed_layer_one_hot_key` and `ours_layer_one_hot_key` both on one.
//! - `keyed_parts_1t`: where a keyed call's time goes. `get_1000_keys` is
//!   `KeyedBreakers::get` for the 1 000 keys in turn (the map lookup and the pin, the handle
//!   dropped at once); `get_one_key` the same for one key; `key_by_authority_1000` is
//!   [`ByAuthority`] taking the key of each of the 1 000 requests in turn; `bare_one_key`,
//!   `ours_layer_one_key` and `keyed_layer_one_key` the requests of `keyed_closed_1t` all for
//!   `h0.example:80`, so that what a call touches stays in the cache.
//!
//! Before criterion runs, `main` prints the memory of keyed breakers, measured with a counting
//! global allocator (`stats_alloc`'s wrapper of `std::alloc::System`: the workspace forbids
//! `unsafe` code, which a `GlobalAlloc` of our own needs): the live bytes of a group made with
//! `max_breakers(20_000)`, before and after `get` of 10 000 keys of 22 bytes each
//! (`host-00001.example:443`, handles dropped), again after each breaker's first transitions
//! (`isolate()` then `reset()` through `get`: two), and after ten (the history keeps the last
//! ten); next to [`CircuitBreaker::size_in_bytes`] and to 10 000 breakers made by
//! [`CircuitBreaker::new`]. It also counts allocations over 10 000 requests of each id (0
//! expected: the allocator's counts are shared atomics, so an allocating call would also be
//! slowed by them).
//!
//! Run with `cargo bench -p benches --bench keyed`; estimates land in
//! `target/criterion/<group>/<id>/new/estimates.json`.

use std::alloc::System;
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use http::{Request, Uri};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_circuit_breaker::keyed::{ByAuthority, KeyFor, KeyedBreakers, KeyedCircuitBreakerLayer};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, Transition,
};

mod support;
use support::{config, ready_now, spin_on, Pair};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Authorities the requests go to.
const HOSTS: usize = 1_000;

/// Keys made for the memory figures.
const MEMORY_KEYS: usize = 10_000;

/// One prebuilt request per authority, `h0.example:80` first.
fn requests() -> Vec<Request<()>> {
    (0..HOSTS)
        .map(|n| {
            // 'static, so a URI's clone is a copy: no shared count in the benched path.
            let uri: &'static str = Box::leak(format!("http://h{n}.example:80/").into_boxed_str());
            Request::get(Uri::from_static(uri))
                .body(())
                .expect("a valid request")
        })
        .collect()
}

/// A list of requests handed out in turn, each a clone.
struct Cycle {
    requests: Vec<Request<()>>,
    next: usize,
}

impl Cycle {
    fn new(requests: Vec<Request<()>>) -> Self {
        assert!(!requests.is_empty());
        Self { requests, next: 0 }
    }

    /// The requests of `all` whose index is `parity` modulo 2.
    fn half(all: &[Request<()>], parity: usize) -> Self {
        Self::new(all.iter().skip(parity).step_by(2).cloned().collect())
    }

    #[inline]
    fn next(&mut self) -> Request<()> {
        let request = self.requests[self.next].clone();
        self.next += 1;
        if self.next == self.requests.len() {
            self.next = 0;
        }
        request
    }
}

/// The inner service of every id: answers at once.
fn upstream(
) -> impl Service<Request<()>, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
{
    service_fn(|request: Request<()>| async move {
        drop(request);
        Ok::<_, BoxError>(black_box(1))
    })
}

/// `ready()`, `call()` and the response, as a client makes one request; 0 on an error.
async fn request<S>(service: &mut S, request: Request<()>) -> u64
where
    S: Service<Request<()>, Response = u64>,
{
    match service.ready().await {
        Ok(ready) => ready.call(request).await.unwrap_or(0),
        Err(_) => 0,
    }
}

/// One request, made to completion at once.
#[inline(always)]
fn request_now<S>(service: &mut S, cycle: &mut Cycle) -> u64
where
    S: Service<Request<()>, Response = u64>,
{
    ready_now(request(service, cycle.next()))
}

/// A group with the default config and bound (1 000), every host's breaker made.
fn warm_group(requests: &[Request<()>]) -> KeyedBreakers {
    let group = KeyedBreakers::builder("hosts")
        .build()
        .expect("valid settings");
    let mut service = KeyedCircuitBreakerLayer::new(group.clone()).layer(upstream());
    let mut cycle = Cycle::new(requests.to_vec());
    for _ in 0..HOSTS {
        assert_eq!(request_now(&mut service, &mut cycle), 1);
    }
    assert_eq!(group.len(), HOSTS);
    group
}

/// Checks that the group kept every host's breaker, closed, and never overflowed.
fn assert_intact(group: &KeyedBreakers) {
    assert_eq!(group.len(), HOSTS);
    assert_eq!(group.evictions(), 0);
    assert_eq!(group.overflowed_calls(), 0);
    assert!(group
        .breakers()
        .iter()
        .all(|(breaker, _)| breaker.state() == CircuitState::Closed));
}

fn live_bytes() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

fn allocations() -> usize {
    GLOBAL.stats().allocations
}

/// Allocations per request over 10 000 requests to `service`.
fn allocations_per_request<S>(service: &mut S, requests: &[Request<()>]) -> f64
where
    S: Service<Request<()>, Response = u64>,
{
    const CALLS: usize = 10_000;
    let mut cycle = Cycle::new(requests.to_vec());
    // Let the service settle (the single layer's handle is its own from its second call).
    for _ in 0..HOSTS {
        black_box(request_now(service, &mut cycle));
    }
    let before = allocations();
    for _ in 0..CALLS {
        black_box(request_now(service, &mut cycle));
    }
    (allocations() - before) as f64 / CALLS as f64
}

/// Prints what keyed breakers take in memory, and what each id allocates per request.
fn memory() {
    let keys: Vec<String> = (1..=MEMORY_KEYS)
        .map(|n| format!("host-{n:05}.example:443"))
        .collect();
    let key_len = keys[0].len();
    assert!(keys.iter().all(|key| key.len() == key_len));

    let group = KeyedBreakers::builder("memory")
        .max_breakers(20_000)
        .build()
        .expect("valid settings");
    let empty = live_bytes();
    for key in &keys {
        drop(group.get(Some(key)));
    }
    let made = live_bytes();
    assert_eq!(group.len(), MEMORY_KEYS);
    let keyed_size = group.get(Some(&keys[0])).size_in_bytes();
    // `isolate()` then `reset()`: two transitions, Closed -> Isolated -> Closed.
    let transitions = |rounds: usize| {
        for key in &keys {
            let breaker = group.get(Some(key));
            for _ in 0..rounds {
                breaker.isolate();
                breaker.reset();
            }
        }
    };
    transitions(1);
    let moved = live_bytes();
    let keyed_size_moved = group.get(Some(&keys[0])).size_in_bytes();
    // Up to ten: the history keeps the last ten transitions.
    transitions(4);
    let moved_ten = live_bytes();
    let keyed_size_ten = group.get(Some(&keys[0])).size_in_bytes();
    assert_eq!(group.len(), MEMORY_KEYS);
    assert_eq!(group.evictions(), 0);
    let per = |bytes: isize| bytes as f64 / MEMORY_KEYS as f64;
    println!(
        "keyed breakers, default config, {MEMORY_KEYS} keys of {key_len} bytes \
         (`{}`), max_breakers(20_000), live bytes by a counting allocator:",
        keys[0]
    );
    println!(
        "  made by get: {} bytes ({:.0} per keyed breaker, its place in the map included)",
        made - empty,
        per(made - empty)
    );
    println!(
        "  after isolate() then reset() on each (its first transitions): {} bytes ({:.0} per \
         keyed breaker, {:.0} more)",
        moved - empty,
        per(moved - empty),
        per(moved - made)
    );
    println!(
        "  after ten transitions each: {} bytes ({:.0} per keyed breaker, {:.0} more than made)",
        moved_ten - empty,
        per(moved_ten - empty),
        per(moved_ten - made)
    );
    println!(
        "  size_in_bytes() of one keyed breaker: {keyed_size} made, {keyed_size_moved} after \
         two transitions, {keyed_size_ten} after ten (it counts the shared config, {} bytes, \
         whole; a transition kept in the history is {} bytes)",
        size_of::<CircuitBreakerConfig>(),
        size_of::<Transition>()
    );
    drop(group);

    let before = live_bytes();
    let standalone: Vec<CircuitBreaker> = keys
        .iter()
        .map(|key| CircuitBreaker::new(key.as_str()))
        .collect();
    let after = live_bytes();
    println!(
        "  CircuitBreaker::new, for comparison: size_in_bytes() {}; {MEMORY_KEYS} of them in a \
         Vec: {:.0} bytes live each",
        standalone[0].size_in_bytes(),
        per(after - before)
    );
    drop(standalone);

    let requests = requests();
    let group = warm_group(&requests);
    let breaker = CircuitBreaker::new("bench");
    println!(
        "allocations per request: bare {}, ours_layer {}, keyed_layer {}",
        allocations_per_request(&mut upstream(), &requests),
        allocations_per_request(
            &mut CircuitBreakerLayer::new(breaker).layer(upstream()),
            &requests
        ),
        allocations_per_request(
            &mut KeyedCircuitBreakerLayer::new(group.clone()).layer(upstream()),
            &requests
        ),
    );
    assert_intact(&group);
}

fn keyed_closed_1t(c: &mut Criterion) {
    let requests = requests();
    let group = warm_group(&requests);
    let breaker = CircuitBreaker::new("bench");
    let mut bare = upstream();
    let mut ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    let mut keyed = KeyedCircuitBreakerLayer::new(group.clone()).layer(upstream());
    let mut bench = c.benchmark_group("keyed_closed_1t");
    let mut cycle = Cycle::new(requests.clone());
    bench.bench_function("bare", |b| b.iter(|| request_now(&mut bare, &mut cycle)));
    let mut cycle = Cycle::new(requests.clone());
    bench.bench_function("ours_layer", |b| {
        b.iter(|| request_now(&mut ours, &mut cycle));
    });
    let mut cycle = Cycle::new(requests);
    bench.bench_function("keyed_layer", |b| {
        b.iter(|| request_now(&mut keyed, &mut cycle));
    });
    bench.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_intact(&group);
}

/// A worker making `calls` requests to its own clone of a service, on its half of the hosts.
fn worker<S>(mut service: S, mut cycle: Cycle) -> impl FnMut(u64) + Send
where
    S: Service<Request<()>, Response = u64> + Send + 'static,
{
    move |calls| {
        for _ in 0..calls {
            black_box(spin_on(request(&mut service, cycle.next())));
        }
    }
}

/// Benches `id` in `group` on two threads, each with its own clone of `service` and its half of
/// `requests`.
fn bench_pair<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    service: &S,
    requests: &[Request<()>],
) where
    S: Service<Request<()>, Response = u64> + Clone + Send + 'static,
{
    bench_pair_on(group, id, service, |n| Cycle::half(requests, n));
}

/// Benches `id` in `group` on two threads, each with its own clone of `service` and the requests
/// `cycle` gives thread 0 or 1.
fn bench_pair_on<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    service: &S,
    cycle: impl Fn(usize) -> Cycle,
) where
    S: Service<Request<()>, Response = u64> + Clone + Send + 'static,
{
    let pair = Pair::spawn(|n| worker(service.clone(), cycle(n)));
    group.bench_function(id, |b| b.iter_custom(|iters| pair.run(iters)));
}

fn keyed_closed_2t(c: &mut Criterion) {
    let requests = requests();
    let group = warm_group(&requests);
    let breaker = CircuitBreaker::new("bench");
    let mut bench = c.benchmark_group("keyed_closed_2t");
    bench_pair(&mut bench, "bare", &upstream(), &requests);
    let ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    bench_pair(&mut bench, "ours_layer", &ours, &requests);
    let keyed = KeyedCircuitBreakerLayer::new(group.clone()).layer(upstream());
    bench_pair(&mut bench, "keyed_layer", &keyed, &requests);
    // Both threads over all 1 000 hosts (thread 1 half the list ahead), so they meet on a key's
    // breaker, whose counters are one line for all threads.
    bench_pair_on(&mut bench, "keyed_layer_all_hosts", &keyed, |n| {
        let mut all = requests.clone();
        all.rotate_left(n * requests.len() / 2);
        Cycle::new(all)
    });
    // Both threads on one host: every call meets the other thread's on one breaker.
    bench_pair_on(&mut bench, "keyed_layer_one_hot_key", &keyed, |_| {
        Cycle::new(vec![requests[0].clone()])
    });
    bench_pair_on(&mut bench, "ours_layer_one_hot_key", &ours, |_| {
        Cycle::new(vec![requests[0].clone()])
    });
    bench.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_intact(&group);
}

fn keyed_parts_1t(c: &mut Criterion) {
    let requests = requests();
    let group = warm_group(&requests);
    let keys: Vec<String> = requests
        .iter()
        .map(|request| request.uri().authority().expect("an authority").to_string())
        .collect();
    let mut bench = c.benchmark_group("keyed_parts_1t");
    let mut next = 0;
    bench.bench_function("get_1000_keys", |b| {
        b.iter(|| {
            let breaker = group.get(Some(&keys[next]));
            next += 1;
            if next == keys.len() {
                next = 0;
            }
            u64::from(breaker.state() == CircuitState::Closed)
        });
    });
    bench.bench_function("get_one_key", |b| {
        b.iter(|| {
            let breaker = group.get(Some(black_box(&keys[0])));
            u64::from(breaker.state() == CircuitState::Closed)
        });
    });
    let by_authority = ByAuthority::default();
    let mut next = 0;
    bench.bench_function("key_by_authority_1000", |b| {
        b.iter(|| {
            let key = by_authority.key(&requests[next]);
            next += 1;
            if next == requests.len() {
                next = 0;
            }
            key.map_or(0, |key| key.len() as u64)
        });
    });
    let one = vec![requests[0].clone()];
    let mut bare = upstream();
    let mut cycle = Cycle::new(one.clone());
    bench.bench_function("bare_one_key", |b| {
        b.iter(|| request_now(&mut bare, &mut cycle));
    });
    let breaker = CircuitBreaker::new("bench");
    let mut ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    let mut cycle = Cycle::new(one.clone());
    bench.bench_function("ours_layer_one_key", |b| {
        b.iter(|| request_now(&mut ours, &mut cycle));
    });
    let mut keyed = KeyedCircuitBreakerLayer::new(group.clone()).layer(upstream());
    let mut cycle = Cycle::new(one);
    bench.bench_function("keyed_layer_one_key", |b| {
        b.iter(|| request_now(&mut keyed, &mut cycle));
    });
    bench.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_intact(&group);
}

criterion_group! {
    name = keyed;
    config = config();
    targets = keyed_closed_1t, keyed_closed_2t, keyed_parts_1t
}

fn main() {
    memory();
    keyed();
    Criterion::default().configure_from_args().final_summary();
}
