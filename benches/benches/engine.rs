//! What the breaker engine adds to a call, next to the same call made bare.
//!
//! Each group measures one operation twice: `bare` (the operation alone) and `ours` (the same
//! operation through a [`CircuitBreaker`] with the default configuration), so `ours - bare` is the
//! breaker's own cost per call.
//!
//! - `closed_sync`: a cheap `fn` returning `Ok`, bare, and through a permit
//!   (`try_acquire()`, then `success()`) on a closed breaker.
//! - `closed_async`: an `async` operation awaited, bare, and through `breaker.call(..)`. The
//!   future is polled once with a no-op waker (it is always ready), so no runtime is measured.
//! - `closed_2threads`: two threads calling at once, each through its own clone of one shared
//!   breaker. The figure is wall time over the calls of both threads (aggregate ns per call), so
//!   with no contention it is half the one-thread figure.
//! - `open_sync`: the cost of a rejection by an open breaker (tripped by one failure, with a
//!   break of an hour).
//!
//! `closed_sync` and `closed_2threads` also measure `ours_window_count` (a failure-rate rule over
//! the last 100 calls) and `ours_window_time` (over the last 60 s in 60 buckets), against `ours`,
//! the consecutive-failure rule alone.
//!
//! Run with `cargo bench -p benches --bench engine` (add a filter such as `closed_sync` to run
//! one group). Criterion writes its estimates to
//! `target/criterion/<group>/<id>/new/estimates.json`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, FailureRateRule, SlidingWindow,
};

// Every timed routine returns a plain `u64` for criterion to `black_box`. Returning the 16-byte
// `Result` itself made that `black_box` write it as two words and read it back as one, a failed
// store-to-load forward that added about 5 ns to every figure, bare ones included.

/// The operation every bench wraps: as cheap as a call gets, opaque to the optimizer.
#[inline(never)]
fn operation() -> Result<u64, ()> {
    Ok(black_box(1))
}

/// One call through a permit, recorded by its result; 0 if it was rejected.
#[inline]
fn guarded(breaker: &CircuitBreaker) -> u64 {
    let Ok(permit) = breaker.try_acquire() else {
        return 0;
    };
    let result = operation();
    match result {
        Ok(_) => permit.success(),
        Err(()) => permit.failure(),
    }
    result.unwrap_or(0)
}

/// Polls `future` once with a no-op waker; every future benched here is ready at once.
fn ready_now<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benched futures never wait"),
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

fn closed_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_sync");
    group.bench_function("bare", |b| b.iter(|| operation().unwrap_or(0)));
    for (id, breaker) in breakers() {
        group.bench_function(id, |b| b.iter(|| guarded(&breaker)));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
    group.finish();
}

fn closed_async(c: &mut Criterion) {
    let breaker = CircuitBreaker::new("bench");
    let op = || async { Ok::<u64, ()>(black_box(1)) };
    let mut group = c.benchmark_group("closed_async");
    group.bench_function("bare", |b| b.iter(|| ready_now(op()).unwrap_or(0)));
    group.bench_function("ours", |b| {
        b.iter(|| ready_now(breaker.call(op)).unwrap_or(0));
    });
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// Two worker threads kept parked between samples, so a sample times the calls and not thread
/// start-up. Each sample sends both threads their share of the calls, releases them together and
/// waits for both to finish.
struct Pair {
    jobs: Vec<mpsc::Sender<u64>>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    threads: Vec<JoinHandle<()>>,
}

impl Pair {
    /// Starts two threads; each runs its own worker made by `make`, which is given a count of
    /// calls to make.
    fn spawn<W>(mut make: impl FnMut() -> W) -> Self
    where
        W: FnMut(u64) + Send + 'static,
    {
        let start = Arc::new(Barrier::new(3));
        let done = Arc::new(Barrier::new(3));
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::channel::<u64>();
            let mut work = make();
            let (start, done) = (Arc::clone(&start), Arc::clone(&done));
            threads.push(thread::spawn(move || {
                while let Ok(calls) = rx.recv() {
                    start.wait();
                    work(calls);
                    done.wait();
                }
            }));
            jobs.push(tx);
        }
        Self {
            jobs,
            start,
            done,
            threads,
        }
    }

    /// Wall time for `iters` calls, split between the two threads.
    fn run(&self, iters: u64) -> Duration {
        let half = iters / 2;
        for (job, calls) in self.jobs.iter().zip([half, iters - half]) {
            job.send(calls).expect("bench worker alive");
        }
        self.start.wait();
        let began = Instant::now();
        self.done.wait();
        began.elapsed()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.jobs.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn closed_2threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_2threads");
    let bare = Pair::spawn(|| {
        |calls| {
            for _ in 0..calls {
                black_box(operation().unwrap_or(0));
            }
        }
    });
    group.bench_function("bare", |b| b.iter_custom(|iters| bare.run(iters)));
    drop(bare);
    for (id, breaker) in breakers() {
        let ours = Pair::spawn(|| {
            let breaker = breaker.clone();
            move |calls| {
                for _ in 0..calls {
                    black_box(guarded(&breaker));
                }
            }
        });
        group.bench_function(id, |b| b.iter_custom(|iters| ours.run(iters)));
        drop(ours);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
    group.finish();
}

fn open_sync(c: &mut Criterion) {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(3600));
    let breaker = CircuitBreaker::with_config("bench", config).expect("valid config");
    breaker.try_acquire().expect("closed").failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    let mut group = c.benchmark_group("open_sync");
    group.bench_function("ours", |b| b.iter(|| guarded(&breaker)));
    group.finish();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().total_calls, 1);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = engine;
    config = config();
    targets = closed_sync, closed_async, closed_2threads, open_sync
}
criterion_main!(engine);
