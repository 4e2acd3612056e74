//! What classifying at the end of the body costs a call: `body_closed`, one request through the
//! layer over an upstream that answers at once with a one-frame body, the body read to its end,
//! side by side in one run:
//!
//! - `bare`: the upstream alone;
//! - `at_head`: `CircuitBreakerLayer::classify_with(HttpClassifier)`, the call recorded when the
//!   head arrives;
//! - `at_end`: `CircuitBreakerLayer::classify_body_with(HttpClassifier)`, the permit carried by
//!   the body and the call recorded when the body ends.
//!
//! Closed breaker, default config. The body is read the way a client reads it, frame by frame
//! until the end, for every id alike.

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitState, HttpClassifier};

mod support;
use support::{config, ready_now};

type Upstream = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn upstream() -> Upstream {
    service_fn(|_request: Request<()>| {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    })
}

/// One request, its body read to the end; the bytes read (0 on an error).
#[inline(always)]
fn request<S, B>(service: &mut S) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes>,
{
    ready_now(async {
        let Ok(ready) = service.ready().await else {
            return 0;
        };
        let Ok(response) = ready.call(black_box(Request::new(()))).await else {
            return 0;
        };
        let mut body = pin!(response.into_body());
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
        }
        read
    })
}

fn body_closed(c: &mut Criterion) {
    let at_head = CircuitBreaker::new("at_head");
    let at_end = CircuitBreaker::new("at_end");
    let mut bare = upstream();
    let mut head = CircuitBreakerLayer::new(at_head.clone())
        .classify_with(HttpClassifier::new())
        .layer(upstream());
    let mut end = CircuitBreakerLayer::new(at_end.clone())
        .classify_body_with(HttpClassifier::new())
        .layer(upstream());
    assert_eq!(request(&mut head), 2);
    assert_eq!(request(&mut end), 2);

    let mut group = c.benchmark_group("body_closed");
    group.bench_function("bare", |b| b.iter(|| request(&mut bare)));
    group.bench_function("at_head", |b| b.iter(|| request(&mut head)));
    group.bench_function("at_end", |b| b.iter(|| request(&mut end)));
    group.finish();

    for breaker in [&at_head, &at_end] {
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Closed);
        assert_eq!(
            metrics.failed_calls + metrics.cancelled_calls,
            0,
            "{metrics:?}"
        );
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = body_closed
}
criterion_main!(benches);
