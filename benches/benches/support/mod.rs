//! What the `engine` and `layer` benches share: the executor, the request, the upstream service,
//! the tower-resilience peer's setup, and criterion's settings.

#![allow(dead_code)] // each bench uses a part of it

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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
