//! What the breaker engine adds to a call, next to the same call made bare and made through the
//! Rust peers, all in one run.
//!
//! Each group measures one operation `bare` (the operation alone, where a baseline applies), `ours`
//! (the same operation through a [`CircuitBreaker`] with the default configuration: 5 consecutive
//! failures, a 30 s break), and each peer that has an API for it, so `ours - bare` is the breaker's
//! own cost per call and `ours / peer` is the comparison. Every routine returns a `u64`: the
//! operation's value, or 0 if the breaker rejected the call.
//!
//! - `closed_sync`: a cheap `fn` returning `Ok`, bare, and through a permit (`try_acquire()`,
//!   then `success()`) on a closed breaker; through `failsafe`'s `CircuitBreaker::call` and
//!   `recloser`'s `Recloser::call`.
//! - `closed_async`: an `async` operation awaited, bare, and through `breaker.call(..)`;
//!   through `failsafe::futures::CircuitBreaker::call` and `recloser::AsyncRecloser::call`. The
//!   future is polled once with a no-op waker (it is always ready), so no runtime is measured.
//! - `closed_2threads`: two threads calling at once, each through its own clone of (or `Arc` to)
//!   one shared breaker. The figure is wall time over the calls of both threads (aggregate ns per
//!   call), so with no contention it is half the one-thread figure. `ours`, `failsafe`,
//!   `failsafe_default` and `recloser` make the `closed_sync` call; `tower_resilience` has no
//!   call outside its tower layer, so it makes the `layer_closed` request (`ready()`, `call()`,
//!   the response) on a clone of one layered `service_fn`, next to `ours_layer`, the same request
//!   through our layer. These two are polled until ready (the peer's `tokio` mutex can make a
//!   contended call pending), re-polling at once, not parking: with a parking executor the peer
//!   fell into a lock hand-off convoy in some runs (5 to 16 µs per call) and not in others
//!   (about its one-thread figure), so its figure could not be reproduced that way.
//! - `open_sync` and `open_async`: the cost of a rejection by an open breaker (tripped by failures,
//!   with a break of an hour), through the calls of `closed_sync` and `closed_async`.
//!
//! `closed_sync` and `closed_2threads` also measure `ours_window_count` (a failure-rate rule over
//! the last 100 calls) and `ours_window_time` (over the last 60 s in 60 buckets), against `ours`,
//! the consecutive-failure rule alone.
//!
//! # The peers, and how their configs differ from ours
//!
//! Pinned as dev-dependencies of `benches`: failsafe 1.3.0, recloser 1.4.0,
//! tower-resilience-circuitbreaker 0.14.0 (id `tower_resilience`; see also the `layer` bench).
//!
//! - `failsafe`: `consecutive_failures(5, backoff::constant(30 s))`, our rule and break (no
//!   backoff, as ours by default). `failsafe_default` (`closed_sync`, `closed_2threads`) is
//!   `Config::new().build()`, its default policy: a success rate of 80 % over a 30 s time window
//!   (judged from 5 calls), or else 5 consecutive failures, with an equal-jittered backoff of 10 s to 300 s. Its futures API
//!   takes the future itself, not a closure, and clones the breaker (an `Arc`) into each call's
//!   future; the sync API takes the closure.
//! - `recloser`: has no consecutive-failure rule, only a failure rate over a ring of the last N
//!   calls. `closed_len(5)` with `error_rate_closed(1.0)` opens when all of the last 5 calls
//!   failed, which is 5 consecutive failures once the ring has filled (a fresh ring judges nothing
//!   for its first 5 calls, so from start-up it takes 6). Break `open_wait(30 s)`; its half-open
//!   settings are left at their defaults (10 calls, 50 %), where ours are 3 successes out of 5.
//!   The sync `Recloser` is not `Clone`, so two threads share it through an `Arc`.
//! - `tower_resilience`: a tower layer only (no sync call and no future wrapper), so it is in
//!   `closed_2threads` here and in `layer_closed` / `layer_open` in the `layer` bench, and not in
//!   `closed_sync`, `closed_async`, `open_sync` or `open_async`. `consecutive_failures(5)`,
//!   `wait_duration_in_open(30 s)`; one call admitted half-open (its default) where ours admits 5.
//! - Open benches: ours and `tower_resilience` open after 1 failure, `failsafe` and `recloser`
//!   are tripped by failing calls until they reject; every break is an hour. The threshold does
//!   not enter a rejection's cost.
//!
//! Run with `cargo bench -p benches --bench engine` (add a filter such as `closed_sync` to run
//! one group). Criterion writes its estimates to
//! `target/criterion/<group>/<id>/new/estimates.json`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::{
    config, guarded, operation, ready_now, request, spin_on, tower_resilience, upstream, Pair,
};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use tower::{Layer, Service};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, FailureRateRule,
    SlidingWindow,
};

// Every timed routine returns a plain `u64` for criterion to `black_box`. Returning the 16-byte
// `Result` itself made that `black_box` write it as two words and read it back as one, a failed
// store-to-load forward that added about 5 ns to every figure, bare ones included.

/// A failing operation, to trip the peers.
fn failing() -> Result<u64, ()> {
    Err(())
}

/// The peers' breakers, configured as close to ours as their APIs allow (see the module docs),
/// and one call through each.
mod peers {
    use std::sync::Arc;
    use std::time::Duration;

    use failsafe::failure_policy::{self, ConsecutiveFailures};
    use failsafe::{backoff, Config, StateMachine};
    use recloser::{AsyncRecloser, Recloser};

    use super::{failing, operation};

    /// failsafe with `failures` consecutive failures and a constant break of `pause`.
    pub(super) type Failsafe = StateMachine<ConsecutiveFailures<backoff::Constant>, ()>;

    pub(super) fn failsafe(failures: u32, pause: Duration) -> Failsafe {
        let policy = failure_policy::consecutive_failures(failures, backoff::constant(pause));
        Config::new().failure_policy(policy).build()
    }

    /// failsafe's default policy, `Config::new().build()`.
    pub(super) fn failsafe_default() -> impl failsafe::CircuitBreaker + Clone + Send + 'static {
        Config::new().build()
    }

    /// One sync call through a failsafe breaker.
    #[inline]
    pub(super) fn failsafe_call(breaker: &impl failsafe::CircuitBreaker) -> u64 {
        failsafe::CircuitBreaker::call(breaker, operation).unwrap_or(0)
    }

    /// failsafe tripped open, with a break of `pause`.
    pub(super) fn failsafe_open(pause: Duration) -> Failsafe {
        let breaker = failsafe(5, pause);
        for _ in 0..5 {
            let _ = failsafe::CircuitBreaker::call(&breaker, failing);
        }
        assert!(!breaker.is_call_permitted(), "failsafe tripped");
        breaker
    }

    /// recloser opening when the last `failures` calls all failed, with a break of `pause`.
    pub(super) fn recloser(failures: usize, pause: Duration) -> Recloser {
        Recloser::custom()
            .error_rate_closed(1.0)
            .closed_len(failures)
            .open_wait(pause)
            .build()
    }

    /// One sync call through a recloser.
    #[inline]
    pub(super) fn recloser_call(breaker: &Recloser) -> u64 {
        breaker.call(operation).unwrap_or(0)
    }

    /// A recloser tripped open, with a break of `pause`: a fresh ring takes one failure more.
    pub(super) fn recloser_open(pause: Duration) -> Recloser {
        let breaker = recloser(5, pause);
        for _ in 0..6 {
            let _ = breaker.call(failing);
        }
        assert!(
            matches!(breaker.call(operation), Err(recloser::Error::Rejected)),
            "recloser tripped"
        );
        breaker
    }

    /// The async face of a recloser.
    pub(super) fn async_recloser(breaker: Recloser) -> Arc<AsyncRecloser> {
        Arc::new(AsyncRecloser::from(breaker))
    }
}

/// The default breaker and the two windowed ones, with their bench ids.
fn breakers() -> [(&'static str, CircuitBreaker); 3] {
    let windowed = |window| {
        let rule = FailureRateRule::new(0.5).window(window);
        CircuitBreaker::with_config("bench", CircuitBreakerConfig::default().failure_rate(rule))
            .expect("valid config")
    };
    [
        ("ours", CircuitBreaker::new("bench")),
        ("ours_window_count", windowed(SlidingWindow::Calls(100))),
        (
            "ours_window_time",
            windowed(SlidingWindow::time(Duration::from_secs(60), 60)),
        ),
    ]
}

/// Our break for the closed benches, and the peers'.
const BREAK: Duration = Duration::from_secs(30);
/// The break for the open benches: nothing half-opens during a run.
const LONG_BREAK: Duration = Duration::from_secs(3600);

fn closed_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_sync");
    group.bench_function("bare", |b| b.iter(|| operation().unwrap_or(0)));
    for (id, breaker) in breakers() {
        group.bench_function(id, |b| b.iter(|| guarded(&breaker)));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
    let failsafe = peers::failsafe(5, BREAK);
    group.bench_function("failsafe", |b| b.iter(|| peers::failsafe_call(&failsafe)));
    let failsafe_default = peers::failsafe_default();
    group.bench_function("failsafe_default", |b| {
        b.iter(|| peers::failsafe_call(&failsafe_default));
    });
    let recloser = peers::recloser(5, BREAK);
    group.bench_function("recloser", |b| b.iter(|| peers::recloser_call(&recloser)));
    group.finish();
    assert!(failsafe.is_call_permitted());
}

/// The async operation every async bench wraps.
async fn async_operation() -> Result<u64, ()> {
    Ok(black_box(1))
}

/// The ids `ours`, `failsafe` and `recloser` of an async group: one call through each, awaited
/// by [`ready_now`].
fn async_ids(
    group: &mut BenchmarkGroup<'_, WallTime>,
    breaker: &CircuitBreaker,
    failsafe: &peers::Failsafe,
    recloser: &recloser::AsyncRecloser,
) {
    group.bench_function("ours", |b| {
        b.iter(|| ready_now(breaker.call(async_operation)).unwrap_or(0));
    });
    group.bench_function("failsafe", |b| {
        b.iter(|| {
            let call = failsafe::futures::CircuitBreaker::call(failsafe, async_operation());
            ready_now(call).unwrap_or(0)
        });
    });
    group.bench_function("recloser", |b| {
        b.iter(|| ready_now(recloser.call(async_operation())).unwrap_or(0));
    });
}

/// Ours for the open benches: tripped by one failure, with a break of an hour.
fn open_breaker() -> CircuitBreaker {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(LONG_BREAK);
    let breaker = CircuitBreaker::with_config("bench", config).expect("valid config");
    breaker.try_acquire().expect("closed").failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    breaker
}

fn closed_async(c: &mut Criterion) {
    let breaker = CircuitBreaker::new("bench");
    let failsafe = peers::failsafe(5, BREAK);
    let recloser = peers::async_recloser(peers::recloser(5, BREAK));
    let mut group = c.benchmark_group("closed_async");
    group.bench_function("bare", |b| {
        b.iter(|| ready_now(async_operation()).unwrap_or(0));
    });
    async_ids(&mut group, &breaker, &failsafe, &recloser);
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(failsafe.is_call_permitted());
}

/// Benches `id` in `group` on a [`Pair`] of workers made by `make`.
fn bench_pair<W>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, make: impl FnMut() -> W)
where
    W: FnMut(u64) + Send + 'static,
{
    let mut make = make;
    let pair = Pair::spawn(|_| make());
    group.bench_function(id, |b| b.iter_custom(|iters| pair.run(iters)));
}

/// A worker making `calls` sync calls with `call`.
fn sync_worker<B: Send + 'static>(breaker: B, call: fn(&B) -> u64) -> impl FnMut(u64) + Send {
    move |calls| {
        for _ in 0..calls {
            black_box(call(&breaker));
        }
    }
}

/// A worker making `calls` requests to its own clone of a layered service, each awaited by
/// [`spin_on`].
fn layer_worker<S>(mut service: S) -> impl FnMut(u64) + Send
where
    S: Service<u64, Response = u64> + Send + 'static,
{
    move |calls| {
        for _ in 0..calls {
            black_box(spin_on(request(&mut service)));
        }
    }
}

fn closed_2threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_2threads");
    bench_pair(&mut group, "bare", || {
        |calls| {
            for _ in 0..calls {
                black_box(operation().unwrap_or(0));
            }
        }
    });
    for (id, breaker) in breakers() {
        bench_pair(&mut group, id, || sync_worker(breaker.clone(), guarded));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
    let failsafe = peers::failsafe(5, BREAK);
    bench_pair(&mut group, "failsafe", || {
        sync_worker(failsafe.clone(), peers::failsafe_call)
    });
    assert!(failsafe.is_call_permitted());
    let failsafe_default = peers::failsafe_default();
    bench_pair(&mut group, "failsafe_default", || {
        sync_worker(failsafe_default.clone(), peers::failsafe_call)
    });
    let recloser = Arc::new(peers::recloser(5, BREAK));
    bench_pair(&mut group, "recloser", || {
        sync_worker(Arc::clone(&recloser), |breaker| {
            peers::recloser_call(breaker)
        })
    });

    let breaker = CircuitBreaker::new("bench");
    let ours = CircuitBreakerLayer::new(breaker.clone()).layer(upstream());
    bench_pair(&mut group, "ours_layer", || layer_worker(ours.clone()));
    assert_eq!(breaker.state(), CircuitState::Closed);
    let theirs = tower_resilience(5, BREAK).layer(upstream());
    bench_pair(&mut group, "tower_resilience", || {
        layer_worker(theirs.clone())
    });
    assert!(!theirs.is_open());
    group.finish();
}

fn open_sync(c: &mut Criterion) {
    let breaker = open_breaker();
    let failsafe = peers::failsafe_open(LONG_BREAK);
    let recloser = peers::recloser_open(LONG_BREAK);
    let mut group = c.benchmark_group("open_sync");
    group.bench_function("ours", |b| b.iter(|| guarded(&breaker)));
    group.bench_function("failsafe", |b| b.iter(|| peers::failsafe_call(&failsafe)));
    group.bench_function("recloser", |b| b.iter(|| peers::recloser_call(&recloser)));
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().total_calls, 1);
    assert!(!failsafe.is_call_permitted());
}

fn open_async(c: &mut Criterion) {
    let breaker = open_breaker();
    let failsafe = peers::failsafe_open(LONG_BREAK);
    let recloser = peers::async_recloser(peers::recloser_open(LONG_BREAK));
    let mut group = c.benchmark_group("open_async");
    async_ids(&mut group, &breaker, &failsafe, &recloser);
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().total_calls, 1);
    assert!(!failsafe.is_call_permitted());
}

criterion_group! {
    name = engine;
    config = config();
    targets = closed_sync, closed_async, closed_2threads, open_sync, open_async
}
criterion_main!(engine);
