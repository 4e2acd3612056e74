//! What the benches share: the executors, the request, the upstream service, the
//! tower-resilience peer's setup, a pair of worker threads, and criterion's settings.

#![allow(dead_code)] // each bench uses a part of it

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::{service_fn, BoxError, Service, ServiceExt};

/// Polls `future` once with a no-op waker; every future benched with it is ready at once.
///
/// Always inlined, for every id alike: as a separate function it copied each future into its own
/// frame just after the caller had written it, and that copy read the future back in wider loads
/// than it was written with, a stall that cost the peers 14 to 20 ns a call and ours 10. A future
/// in a real program is moved into its task long before it is polled.
#[inline(always)]
pub(crate) fn ready_now<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benched futures never wait"),
    }
}

/// `ready()`, `call()` and the response, as a client makes one request; 0 on an error.
pub(crate) async fn request<S>(service: &mut S) -> u64
where
    S: Service<u64, Response = u64>,
{
    match service.ready().await {
        Ok(ready) => ready.call(black_box(1)).await.unwrap_or(0),
        Err(_) => 0,
    }
}

/// The upstream every layer bench wraps: answers at once.
pub(crate) fn upstream(
) -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static {
    service_fn(|request: u64| async move { Ok::<_, BoxError>(request) })
}

/// tower-resilience-circuitbreaker's layer, opening after `failures` consecutive failures.
pub(crate) fn tower_resilience(
    failures: usize,
    pause: Duration,
) -> tower_resilience_circuitbreaker::CircuitBreakerLayer {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(failures)
        .wait_duration_in_open(pause)
        .build()
        .expect("valid config")
}

/// Short, stable settings: the whole `cargo bench -p benches` stays within a few minutes.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// Polls `future` until it is ready, with a no-op waker, re-polling at once while it is pending
/// (as a busy executor would). Used where two threads share a peer's async lock: a parking
/// executor makes the peer's contended `tokio` mutex fall into a hand-off convoy whose cost (one
/// thread wake-up per call, or none) changes from run to run.
pub(crate) fn spin_on<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::hint::spin_loop();
    }
}

/// Two worker threads kept parked between samples, so a sample times the calls and not thread
/// start-up. Each sample sends both threads their half of the calls, releases them together and
/// waits for both to finish.
pub(crate) struct Pair {
    jobs: Vec<mpsc::Sender<u64>>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    threads: Vec<JoinHandle<()>>,
}

impl Pair {
    /// Starts two threads; thread `n` runs the worker `make(n)`, which is given a count of calls
    /// to make.
    pub(crate) fn spawn<W>(mut make: impl FnMut(usize) -> W) -> Self
    where
        W: FnMut(u64) + Send + 'static,
    {
        let start = Arc::new(Barrier::new(3));
        let done = Arc::new(Barrier::new(3));
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for n in 0..2 {
            let (tx, rx) = mpsc::channel::<u64>();
            let mut work = make(n);
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
    pub(crate) fn run(&self, iters: u64) -> Duration {
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

/// The operation every engine call wraps: as cheap as a call gets, opaque to the optimizer.
#[inline(never)]
pub(crate) fn operation() -> Result<u64, ()> {
    Ok(black_box(1))
}

/// One call through a permit, recorded by its result; 0 if it was rejected (the `closed_sync`
/// call).
#[inline]
pub(crate) fn guarded(breaker: &tower_circuit_breaker::CircuitBreaker) -> u64 {
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
